"""One job's runs: started through the :class:`~leaderjob.daemon.starts.Starter` port, tracked
until the guardian reports their end, their deadline kept in step with the lease, their timeouts
enforced.

A start is requested and its answer read later (:meth:`Runs.confirm`, at every collection of
the guardian's reports), so that a pass of the loop requests every due run's start before any
answer is awaited, and the loop keeps renewing the lease meanwhile. A run is tracked from its
request on: while its start is not answered yet it counts as running for every overlap,
hand-over and campaign decision (S1, S6); ``job.started`` is logged when the guardian confirms
the exec.

A start happens only while the seat's lease leaves time for it (before ``D − grace``); a start
that is not confirmed is a ``failed_to_start`` record, and the run it gave up on is still
tracked until the guardian says it ended, so that nothing overlaps it (S1, S6). The outcome of a
run that ended goes to :class:`~leaderjob.daemon.history.History`; a retry, if one is due, to
the runner (``retry``), which owns the tenure.
"""

from __future__ import annotations

import math
import signal
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from leaderjob.config import job_environment
from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import EXIT_LOST, SERVICE_RESTART_DELAY, ActiveRun, Report
from leaderjob.daemon.starts import Starter, StartRequest
from leaderjob.election.machine import DEFAULT
from leaderjob.history.records import iso


@dataclass(eq=False)
class _Starting:
    """A start requested whose answer has not been read yet."""

    active: ActiveRun
    request: StartRequest
    now: float  # monotonic time of the request
    lag_from: datetime | None
    claimed_at: float | None


class Runs:
    def __init__(
        self,
        job: JobContext,
        starter: Starter,
        history: History,
        *,
        environ: Mapping[str, str],
        on_done: Callable[[], None],
        retry: Callable[[ActiveRun, float], None],
    ) -> None:
        self.job = job
        self.starter = starter
        self.history = history
        self.environ = environ
        #: Called when a ``once`` run is over (``leaderjob lock`` is done): the loop leaves.
        self.on_done = on_done
        #: Called with a run that failed or timed out (and the time): the runner queues a retry.
        self.retry = retry
        #: Started and not yet reported ended (confirmed or not).
        self.active: list[ActiveRun] = []
        #: Of those, the ones whose start was requested and not answered yet.
        self.starting: list[_Starting] = []
        #: A service's next run starts no earlier (after an exit or a failed start).
        self.restart_at = 0.0
        #: ``leaderjob lock``'s exit code: its run's.
        self.exit_code = 0
        #: The lease's deadline and our leadership as last reconciled.
        self._reconciled: tuple[float | None, bool] = (None, False)

    def blocked(self) -> bool:
        """A pending run must wait: another run is active and runs may not overlap."""
        return bool(self.active) and self.job.s.concurrency != "allow"

    def reconcile(self) -> None:
        """Keep the guardian's deadlines in step with the lease; enforce timeouts. The runs'
        ``D`` and the remaining-time gauge move when the lease's deadline or our leadership
        did (a renewal), not at every cycle: a burst's cycles come many times a second, and a
        thousand jobs' gauges each time were a fifth of the loop."""
        seat = self.job.seat
        deadline = seat.deadline
        now = self.job.clock.monotonic()
        leading = seat.leading
        moved = (deadline, leading) != self._reconciled
        self._reconciled = (deadline, leading)
        for active in self.active:
            if moved and deadline is not None and leading:
                active.run.extend(deadline)
            if (
                active.timeout_at is not None
                and now >= active.timeout_at
                and active.run.stop_reason is None
            ):
                self.job.log.warning("job.timed_out", run_id=active.run.run_id, slot=active.slot)
                active.run.stop("timed_out")
        if moved and self.job.metrics is not None and deadline is not None:
            remaining = max(0.0, deadline - now) if leading else 0.0
            self.job.gauge("deadline_remaining").set(remaining)

    def collect(self) -> tuple[bool, bool]:
        """Absorb the guardian's reports: whether a run finished, and whether any report came
        (news for the loop's next pass, :mod:`.attention`)."""
        # A start answered first: a run that ended had started, or had not.
        news = self.confirm()
        finished = False
        for active in list(self.active):
            run = active.run
            events = run.take_events()
            news = news or bool(events) or run.done
            for ev in events:
                if "signal" in ev:
                    self.job.log.warning(
                        "job.signalled", run_id=run.run_id, signal=ev["signal"], reason=ev["reason"]
                    )
                    if self.job.metrics is not None:
                        self.job.metrics.job_kills.labels(
                            self.job.election, self.job.s.election, ev["signal"], ev["reason"]
                        ).inc()
            if run.done:
                self.active.remove(active)
                if run.confirmed:
                    self._finished(active)
                    finished = True
                else:
                    # A start given up on (already reported as failed_to_start) has ended: only
                    # now may a new run, a campaign or a revoke follow it.
                    self.job.log.info(
                        "job.unconfirmed_ended",
                        run_id=run.run_id,
                        slot=active.slot,
                        pid=run.pid,
                        error=run.error,
                    )
        return finished, news

    def _finished(self, active: ActiveRun) -> None:
        """A confirmed run ended: recorded; a service waits before its next run, a lock's exit
        code is its run's, a failed run is retried while attempts are left."""
        run = active.run
        now = self.job.clock.monotonic()
        outcome = self.history.finished(active, now, running=bool(self.active))
        self.restart_at = now + SERVICE_RESTART_DELAY
        if self.job.s.mode == "once":
            rc = run.returncode
            if run.stop_reason == "killed_on_leadership_loss":
                self.exit_code = EXIT_LOST
            elif rc is not None:
                self.exit_code = rc if rc >= 0 else 128 - rc
            elif outcome == "watchdog_failed":
                self.exit_code = 128 + signal.SIGKILL  # the command was killed with the guardian
            self.on_done()
        elif outcome in ("failed", "timed_out") and active.attempt < self.job.s.retries:
            self.retry(active, now)

    def start(
        self,
        slot: str,
        scheduled: datetime,
        attempt: int,
        lag_from: datetime | None = None,
        claimed_at: float | None = None,
    ) -> Report:
        """Start a run now. ``claimed_at``: monotonic time its slot's claim was committed."""
        job, s = self.job, self.job.s
        now = job.clock.monotonic()
        seat = job.seat
        token = seat.token
        if not seat.can_start_work(now) or token is None or seat.lease_id is None:
            job.log.warning("job.skipped", reason="deadline", slot=slot)
            if job.metrics is not None:
                job.metrics.slots_skipped.labels(job.election, s.election, "deadline").inc()
            if attempt == 0:  # a retry's slot ran already
                self.history.not_run(slot, scheduled, "late", "skipped_deadline", token)
            return Report("job_skipped", {"reason": "deadline"})
        deadline, term_at = seat.deadline, seat.term_at
        assert deadline is not None and term_at is not None
        run_id = uuid.uuid4().hex[:12]
        env = job_environment(self.environ)
        env.update(s.job_env)  # the file's env for this job; the context below wins
        env.update(
            LEADERJOB_FENCING_TOKEN=str(token),
            LEADERJOB_ELECTION=job.election,
            LEADERJOB_IDENTITY=s.identity,
            LEADERJOB_LEASE_ID=f"{seat.lease_id:x}",
            LEADERJOB_SCHEDULED_TIME=iso(scheduled) or "",
            LEADERJOB_SLOT=slot,
            LEADERJOB_RUN_ID=run_id,
            LEADERJOB_ATTEMPT=str(attempt),
            # For writes guarded by our key (leaderjob.fencing.etcd, `leaderjob fenced put`).
            LEADERJOB_LEADER_KEY=seat.key or "",
            LEADERJOB_ENDPOINTS=",".join(s.endpoints)
            or self.environ.get("LEADERJOB_ENDPOINTS", ""),
        )
        if seat.job != DEFAULT:
            env["LEADERJOB_JOB"] = seat.job
        request = StartRequest(
            argv=s.command,
            env=env,
            deadline=deadline,
            grace=s.timing.grace,
            run_id=run_id,
            token=token,
            cwd=s.workdir,
            wait=term_at - now,
        )
        run = self.starter.request(request, now)
        # Running from the request on (S1, S6): every overlap and campaign decision sees it.
        active = ActiveRun(run, slot, scheduled, attempt, None)
        self.active.append(active)
        start = _Starting(active, request, now, lag_from, claimed_at)
        self.starting.append(start)
        report = self._answer(start)  # already known (a start that failed at once)?
        return report or Report("job_starting", {"run_id": run_id, "slot": slot})

    def confirm(self) -> bool:
        """Read the answers that came to the starts requested (never waits): each confirmed
        run is started (``job.started``), each failed one recorded as ``failed_to_start``.
        Whether any answer came."""
        before = len(self.starting)
        for start in list(self.starting):
            self._answer(start)
        return len(self.starting) != before

    def confirm_by(self) -> float:
        """When the loop must look again at the starts still waiting for their answer: the
        first one's limit (the guardian's report wakes it earlier)."""
        return min((st.now + st.request.wait for st in self.starting), default=math.inf)

    def _answer(self, start: _Starting) -> Report | None:
        answer = start.active.run.confirm()
        if answer is None:
            return None
        self.starting.remove(start)
        a, r = start.active, start.request
        if not answer:
            return self._failed_to_start(a, r, start.now)
        return self._started(a, r, start.now, start.lag_from, start.claimed_at)

    def _failed_to_start(self, active: ActiveRun, request: StartRequest, now: float) -> Report:
        """The guardian did not confirm the start: a ``failed_to_start`` record."""
        job, s, run_id = self.job, self.job.s, request.run_id
        run, slot, scheduled = active.run, active.slot, active.scheduled
        if run.done:
            self.active.remove(active)
        # Else given up for certain (the guardian can no longer exec it), but it may have just
        # started the job: it stays tracked until the guardian reports its end (or is gone),
        # so that nothing overlaps it — no second copy, no campaign, no revoke (S1, S6).
        run.close()  # already closed by start(); said again here because S1 rests on it
        job.log.error("job.failed_to_start", run_id=run_id, slot=slot, error=run.error)
        if job.metrics is not None:
            series = (job.election, s.election)
            job.metrics.job_runs.labels(*series, "failed_to_start").inc()
            job.metrics.slots_not_run.labels(*series, "failed_to_start").inc()
        self.restart_at = now + SERVICE_RESTART_DELAY
        if s.mode == "once":
            self.exit_code = 127
            self.on_done()
        record = {
            "run_id": run_id,
            "slot": slot,
            "scheduled_time": iso(scheduled),
            "token": request.token,
            "identity": s.identity,
            "outcome": "failed_to_start",
            "not_run": "failed_to_start",
            "error": run.error,
        }
        self.history.record(record)
        self.history.notify(record)
        return Report("job_failed_to_start", {"error": run.error})

    def _started(
        self,
        active: ActiveRun,
        request: StartRequest,
        now: float,
        lag_from: datetime | None,
        claimed_at: float | None,
    ) -> Report:
        """The guardian confirmed the start: ``job.started`` logged, the timeout counted from
        the request."""
        job, s, run_id = self.job, self.job.s, request.run_id
        run, slot, scheduled, attempt = active.run, active.slot, active.scheduled, active.attempt
        active.timeout_at = now + s.timeout if s.timeout else None
        lag = (job.clock.wall() - (lag_from or scheduled)).total_seconds()
        logged = job.clock.monotonic()

        def since(t: float | None) -> float | None:
            # A step of the start, in seconds after the intended start (as lag_seconds is).
            return None if t is None else round(lag - (logged - t), 4)

        job.log.info(
            "job.started",
            run_id=run_id,
            pid=run.pid,
            slot=slot,
            scheduled_time=request.env["LEADERJOB_SCHEDULED_TIME"],
            attempt=attempt,
            lag_seconds=round(lag, 4),
            claimed_seconds=since(claimed_at),
            requested_seconds=since(run.started_at),
            watchdog_ready_seconds=since(run.watchdog_ready_at),
            exec_seconds=since(run.exec_at),
            exec_reported_seconds=since(run.exec_reported_at),
        )
        self.history.notify(None, run_id)
        if job.metrics is not None:
            job.metrics.job_running.labels(job.election, s.election).set(1)
            if s.mode == "schedule" and attempt == 0 and lag_from is not None:
                job.metrics.schedule_lag.labels(job.election, s.election).observe(max(0.0, lag))
        return Report("job_started", {"run_id": run_id, "pid": run.pid, "slot": slot})
