"""One job's tenure: what happens to one job while this replica leads it.

The runner starts runs (under the daemon's guardian, which kills each by the lease's
deadline), collects the guardian's reports, keeps their deadline in step with the lease,
enforces timeouts, schedules retries, and writes history records. Its scheduling half (slots,
claims, control switches, catch-up) is :class:`~leaderjob.daemon.scheduling.Scheduling`.

It does not decide leadership: the loop tells it when a tenure begins (:meth:`Runner.begin`) and
ends (:meth:`Runner.end`), and the session says how much etcd time the cycle has left. It never
campaigns while a run of a lost tenure still lives (:meth:`Runner.may_campaign`): a new tenure
would overlap it (S1).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock, Waker
from leaderjob.config import job_environment
from leaderjob.daemon.history import History
from leaderjob.daemon.model import (
    SERVICE_RESTART_DELAY,
    ActiveRun,
    Report,
    Settings,
    Tenure,
)
from leaderjob.daemon.scheduling import CLAIM_AHEAD, Scheduling
from leaderjob.daemon.session import Seat, Session
from leaderjob.daemon.unknown import UnknownClaims
from leaderjob.election.machine import DEFAULT
from leaderjob.election.store import StoreError
from leaderjob.guard.supervisor import Guardian, Run
from leaderjob.history.records import ElectionData, iso
from leaderjob.ops.fingerprint import job_fingerprint
from leaderjob.schedule.due import DueWatch
from leaderjob.schedule.planner import Planner

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics
    from leaderjob.ops.notify import Notifier


class Runner(History, Scheduling):
    def __init__(
        self,
        settings: Settings,
        session: Session,
        seat: Seat,
        *,
        clock: Clock,
        wakeup: Waker,
        environ: Mapping[str, str],
        log: Any,
        metrics: Metrics | None = None,
        on_done: Callable[[], None] = lambda: None,
        election: str | None = None,
        notifier: Notifier | None = None,
        guardian: Guardian | None = None,
    ) -> None:
        self.s = settings
        self.session = session
        self.seat = seat
        self.clock = clock
        self.wakeup = wakeup
        self.environ = environ
        self.log = log
        self.metrics = metrics
        #: --on-failure and --ping-url (shared by the daemon's jobs; never blocks).
        self.notifier = notifier
        #: The daemon's guardian process, shared by its jobs (None: each run starts its own).
        self.guardian = guardian
        #: Called when a ``once`` run is over (``leaderjob lock`` is done): the loop leaves.
        self.on_done = on_done
        #: The daemon's election (a group's name when the daemon runs a jobs file).
        self.election = election or settings.election
        self.data = ElectionData(session.store, settings.prefix, settings.election)
        self.planner = self._planner(settings)
        self.runs: list[ActiveRun] = []
        self.tenure: Tenure | None = None
        self.restart_at = 0.0
        self.ran_once = False
        self.exit_code = 0
        self.last_run: dict[str, Any] | None = None
        #: Removed from the jobs file and on its way out (set by the applier).
        self.retiring = False
        #: History records (entry, completed at) not yet written: bookkeeping waits for a cycle
        #: with time to spare, so it never delays a renewal.
        self._backlog: list[tuple[dict[str, Any], datetime]] = []
        self.unknown_claims = UnknownClaims()  # slots whose claim may or may not have applied
        self._describe()

    def _describe(self) -> None:
        """This job's series exist, and leaderjob_job_info says what it runs."""
        if self.metrics is not None:
            s = self.s
            expr, zone = (s.schedule.expr, s.schedule.timezone) if s.schedule else (None, None)
            fingerprint = job_fingerprint(s.command, s.mode, expr, zone)
            due = None
            if s.mode == "schedule" and s.schedule is not None:
                watch, wall = DueWatch(s.schedule, self.clock.wall()), self.clock.wall
                due = lambda: watch.timestamp(wall())  # noqa: E731 - read at each scrape
            self.metrics.track(s.election, mode=s.mode, fingerprint=fingerprint, due=due)

    def reconfigure(self, settings: Settings) -> None:
        """New settings from a reloaded jobs file, between runs: a new planner, and while
        leading a new catch-up from the newest claim — the change takes effect at the next slot
        (slots already claimed are never run again)."""
        self.s = settings
        self.planner = self._planner(settings)
        self._describe()
        if self.tenure is not None:
            self.tenure.ready = False
            self.tenure.published = False

    @staticmethod
    def _planner(settings: Settings) -> Planner | None:
        if settings.schedule is None:
            return None
        return Planner(
            settings.schedule,
            settings.election,
            catch_up=settings.catch_up,
            starting_deadline=(
                None
                if settings.starting_deadline is None
                else timedelta(seconds=settings.starting_deadline)
            ),
            jitter=settings.jitter,
        )

    # -- the tenure -----------------------------------------------------------------------------

    def begin(self, token: int) -> None:
        """A term of leadership begins (``election.acquired``)."""
        self.tenure = Tenure(token=token, since=self.clock.wall())
        self.restart_at = 0.0

    def end(self) -> None:
        """The term ended (``election.lost``): drop it, and stop every run of it."""
        self.tenure = None
        if self.planner is not None:
            self.planner.end_tenure()
        for active in self.runs:
            active.run.stop("killed_on_leadership_loss")

    @property
    def idle(self) -> bool:
        """Between runs: nothing running, no retry or replacement waiting, no slot claimed
        ahead (a job may move)."""
        return not self.runs and (
            self.tenure is None or (not self.tenure.pending and self.tenure.ahead is None)
        )

    def may_campaign(self) -> bool:
        # Never campaign while a job of a lost tenure still runs: a new tenure would overlap it.
        return not self.runs and not (self.s.mode == "once" and self.ran_once)

    def next_wakeup(self, now: float, leading: bool) -> float:
        """Monotonic time the loop must wake for this job: a timeout, or (leading) a start."""
        until = math.inf
        for active in self.runs:
            if active.timeout_at is not None and active.run.stop_reason is None:
                until = min(until, active.timeout_at)
        if leading:
            until = min(until, self._next_start(now))
        return until

    def _next_start(self, now: float) -> float:
        """Monotonic time of the next thing to start while leading."""
        tenure = self.tenure
        if tenure is None:
            return now
        if self.s.mode == "service":
            return self.restart_at if not self.runs else math.inf
        if self.s.mode == "once":
            return now if not self.ran_once else math.inf
        # Schedule mode only: the switches, catch-up and pending runs exist for slots alone.
        times = [tenure.control_at]
        # A pending run blocked by an active one adds no wake-up: the run's end wakes the loop.
        times += [p.not_before for p in tenure.pending if not self._blocked()]
        if self.planner is not None:
            slot = self.planner.peek()
            if slot is not None:
                planning = tenure.slot_clock.peek(self.clock.wall(), now)
                start = now + (slot.start_time - planning).total_seconds()
                times.append(start)
                if self.may_claim_ahead(tenure):  # claimed ahead, once: no busy wake-ups
                    times.append(start - CLAIM_AHEAD.total_seconds())
        if not tenure.ready:
            times.append(now + 0.2)
        return min(times)

    # -- runs ------------------------------------------------------------------------------------

    def _reconcile_runs(self) -> None:
        deadline = self.seat.deadline
        now = self.clock.monotonic()
        for active in self.runs:
            if deadline is not None and self.seat.leading:
                active.run.extend(deadline)
            if (
                active.timeout_at is not None
                and now >= active.timeout_at
                and active.run.stop_reason is None
            ):
                self.log.warning("job.timed_out", run_id=active.run.run_id, slot=active.slot)
                active.run.stop("timed_out")
        if self.metrics is not None and deadline is not None:
            remaining = max(0.0, deadline - now) if self.seat.leading else 0.0
            self.metrics.deadline_remaining.labels(self.election, self.s.election).set(remaining)

    def _collect_runs(self) -> bool:
        """Absorb the guardian's reports; True if a run finished."""
        finished = False
        for active in list(self.runs):
            run = active.run
            for ev in run.take_events():
                if "signal" in ev:
                    self.log.warning(
                        "job.signalled", run_id=run.run_id, signal=ev["signal"], reason=ev["reason"]
                    )
                    if self.metrics is not None:
                        self.metrics.job_kills.labels(
                            self.election, self.s.election, ev["signal"], ev["reason"]
                        ).inc()
            if run.done:
                self.runs.remove(active)
                if run.confirmed:
                    self._finished(active)
                    finished = True
                else:
                    # A start given up on (already reported as failed_to_start) has ended: only
                    # now may a new run, a campaign or a revoke follow it.
                    self.log.info(
                        "job.unconfirmed_ended",
                        run_id=run.run_id,
                        slot=active.slot,
                        pid=run.pid,
                        error=run.error,
                    )
        return finished

    # -- starting -----------------------------------------------------------------------------

    def _start_due(self) -> Report | None:
        tenure = self.tenure
        if tenure is None:
            return None
        if self.s.mode == "once":
            if self.ran_once:
                if not tenure.published and self.session.may_bookkeep():
                    self._publish_tenure(tenure)
                return None
            report = self._start("lock", self.clock.wall(), 0)
            # A start skipped for the deadline did not happen: the tenure is ending (D − grace
            # is near), and the next one runs the command. Anything else was the one attempt.
            self.ran_once = report.action != "job_skipped"
            return report
        if self.s.mode == "service":
            if self.runs or self.clock.monotonic() < self.restart_at:
                if not tenure.published and self.session.may_bookkeep():
                    self._publish_tenure(tenure)
                return None
            return self._start("service", self.clock.wall(), 0)
        return self._start_scheduled(tenure)

    def _publish_tenure(self, tenure: Tenure) -> None:
        """Since when this replica leads a service or holds a lock (a schedule publishes it with
        the schedule), for `status`; once per tenure, after the command started, fenced by our
        key."""
        if self.seat.key is None:
            return
        info = {"leader": self.s.identity, "token": tenure.token, "since": iso(tenure.since)}
        try:
            tenure.published = self.data.publish_tenure(
                self.seat.key, tenure.token, info, timeout=self.session.io_timeout()
            )
        except StoreError as exc:
            self.session.store_error(exc)

    def _start(
        self,
        slot: str,
        scheduled: datetime,
        attempt: int,
        lag_from: datetime | None = None,
        claimed_at: float | None = None,
    ) -> Report:
        """Start a run now. ``claimed_at``: monotonic time its slot's claim was committed."""
        now = self.clock.monotonic()
        seat = self.seat
        token = seat.token
        if not seat.can_start_work(now) or token is None or self.seat.lease_id is None:
            self.log.warning("job.skipped", reason="deadline", slot=slot)
            if self.metrics is not None:
                self.metrics.slots_skipped.labels(self.election, self.s.election, "deadline").inc()
            if attempt == 0:  # a retry's slot ran already
                self._not_run(slot, scheduled, "late", "skipped_deadline", token)
            return Report("job_skipped", {"reason": "deadline"})
        deadline, term_at = seat.deadline, seat.term_at
        assert deadline is not None and term_at is not None
        run_id = uuid.uuid4().hex[:12]
        env = job_environment(self.environ)
        env.update(self.s.job_env)  # the file's env for this job; the context below wins
        env.update(
            LEADERJOB_FENCING_TOKEN=str(token),
            LEADERJOB_ELECTION=self.election,
            LEADERJOB_IDENTITY=self.s.identity,
            LEADERJOB_LEASE_ID=f"{self.seat.lease_id:x}",
            LEADERJOB_SCHEDULED_TIME=iso(scheduled) or "",
            LEADERJOB_SLOT=slot,
            LEADERJOB_RUN_ID=run_id,
            LEADERJOB_ATTEMPT=str(attempt),
            # For writes guarded by our key (leaderjob.fencing.etcd, `leaderjob fenced put`).
            LEADERJOB_LEADER_KEY=self.seat.key or "",
            LEADERJOB_ENDPOINTS=",".join(self.s.endpoints)
            or self.environ.get("LEADERJOB_ENDPOINTS", ""),
        )
        if self.seat.job != DEFAULT:
            env["LEADERJOB_JOB"] = self.seat.job
        run = Run(
            argv=self.s.command,
            env=env,
            deadline=deadline,
            grace=self.s.timing.grace,
            wakeup=self.wakeup,
            run_id=run_id,
            token=token,
            cwd=self.s.workdir,
        )
        # The daemon's guardian is already up: a start is one fork + exec.
        run.guardian = self.guardian.take() if self.guardian is not None else None
        # The wait is bounded by the lease budget: at D − grace the guardian refuses to exec.
        run.start(now, wait=term_at - now)
        if not run.confirmed:
            if not run.done:
                # Given up for certain (the guardian can no longer exec it), but it may have
                # just started the job: track the run until the guardian reports its end (or
                # is gone), so that nothing overlaps it — no second copy, no campaign, no
                # revoke (S1, S6).
                self.runs.append(ActiveRun(run, slot, scheduled, attempt, None))
            run.close()  # already closed by start(); said again here because S1 rests on it
            self.log.error("job.failed_to_start", run_id=run_id, slot=slot, error=run.error)
            if self.metrics is not None:
                job = (self.election, self.s.election)
                self.metrics.job_runs.labels(*job, "failed_to_start").inc()
                self.metrics.slots_not_run.labels(*job, "failed_to_start").inc()
            self.restart_at = now + SERVICE_RESTART_DELAY
            if self.s.mode == "once":
                self.exit_code = 127
                self.on_done()
            record = {
                "run_id": run_id,
                "slot": slot,
                "scheduled_time": iso(scheduled),
                "token": token,
                "identity": self.s.identity,
                "outcome": "failed_to_start",
                "not_run": "failed_to_start",
                "error": run.error,
            }
            self._record(record)
            self._notify(record)
            return Report("job_failed_to_start", {"error": run.error})
        timeout_at = now + self.s.timeout if self.s.timeout else None
        self.runs.append(ActiveRun(run, slot, scheduled, attempt, timeout_at))
        lag = (self.clock.wall() - (lag_from or scheduled)).total_seconds()
        logged = self.clock.monotonic()

        def since(t: float | None) -> float | None:
            # A step of the start, in seconds after the intended start (as lag_seconds is).
            return None if t is None else round(lag - (logged - t), 4)

        self.log.info(
            "job.started",
            run_id=run_id,
            pid=run.pid,
            slot=slot,
            scheduled_time=env["LEADERJOB_SCHEDULED_TIME"],
            attempt=attempt,
            lag_seconds=round(lag, 4),
            claimed_seconds=since(claimed_at),
            requested_seconds=since(run.started_at),
            watchdog_ready_seconds=since(run.watchdog_ready_at),
            exec_seconds=since(run.exec_at),
        )
        self._notify(None, run_id)
        if self.metrics is not None:
            self.metrics.job_running.labels(self.election, self.s.election).set(1)
            if self.s.mode == "schedule" and attempt == 0 and lag_from is not None:
                self.metrics.schedule_lag.labels(self.election, self.s.election).observe(
                    max(0.0, lag)
                )
        return Report("job_started", {"run_id": run_id, "pid": run.pid, "slot": slot})
