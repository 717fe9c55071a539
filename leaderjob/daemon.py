"""The daemon loop: one cycle = deadline check → job reports → health → election → job ↔
leadership → control switches → schedule → wait.

Each :meth:`Daemon.cycle` returns a :class:`Report` that says what it decided; the log and the
tests read those. The loop waits on one :class:`~leaderjob.clock.Waker` that everything wakes:
the predecessor watch, the watchdog's reports, the health checker, the signal handlers (which
must take no lock). Stop is therefore prompt, and no thread but the main one decides anything.

Modes: ``schedule`` (run the command for each slot of the schedule while leading), ``service`` (no
schedule: keep the command running while leading, restart it when it exits), and ``once``
(``leaderjob lock``: run it once under leadership, release, exit with its exit code).

Leaving leadership on purpose (shutdown, failing health check, lock done) always goes in this
order: stop the job (renewing the lease meanwhile) → resign → revoke. The successor can only start
after our job is dead (docs/safety.md L2, S6).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from leaderjob.clock import Clock, SystemClock, Waker
from leaderjob.config import Timing, election_prefix, job_environment
from leaderjob.election.elector import Elector, Outcome
from leaderjob.election.machine import Phase, Reason, Transition
from leaderjob.election.store import Store, StoreError, StoreRejected
from leaderjob.fingerprint import ConfigWatch
from leaderjob.health import HealthChecker
from leaderjob.log import get_logger
from leaderjob.metrics import Metrics
from leaderjob.planner import CatchUp, Planner, Slot, SlotClock
from leaderjob.records import ElectionData, iso
from leaderjob.schedule import Schedule
from leaderjob.supervisor import Run

Mode = Literal["schedule", "service", "once"]
Concurrency = Literal["forbid", "replace", "allow"]

#: Exit code of `leaderjob lock` when leadership was lost before the command finished.
EXIT_LOST = 4
#: Exit code when etcd rejects us (credentials, permissions, TLS).
EXIT_REJECTED = 1
#: Wait before restarting a service-mode command that exited.
SERVICE_RESTART_DELAY = 1.0
#: Retry backoff: 1 s, 2 s, 4 s … capped.
RETRY_BASE, RETRY_CAP = 1.0, 60.0
#: History records waiting for a cycle with time to spare; beyond this the oldest are dropped.
MAX_BACKLOG = 100


@dataclass(frozen=True)
class Settings:
    election: str
    prefix: str  # the key prefix root; the election lives under <prefix>/<election>/
    identity: str
    timing: Timing
    command: tuple[str, ...]
    mode: Mode = "schedule"
    schedule: Schedule | None = None
    rpc_timeout: float = 5.0
    catch_up: CatchUp = "once"
    starting_deadline: float | None = None
    jitter: float = 0.0
    concurrency: Concurrency = "forbid"
    timeout: float | None = None
    retries: int = 0
    history_limit: int = 50
    endpoints: tuple[str, ...] = ()  # handed to the job for fenced writes, never credentials

    @property
    def election_prefix(self) -> str:
        return election_prefix(self.prefix, self.election)


@dataclass(frozen=True)
class Report:
    """What one cycle decided, in one word, with a few facts."""

    action: str
    detail: Mapping[str, Any] | None = None


@dataclass
class ActiveRun:
    run: Run
    slot: str
    scheduled: datetime
    attempt: int
    timeout_at: float | None


@dataclass
class Pending:
    """A slot waiting to start: a retry after backoff, or a replacement waiting for the old run."""

    slot: str
    scheduled: datetime
    attempt: int
    not_before: float
    token: int
    fire: Slot | None = None  # set when the slot still has to be claimed (catch-up)
    #: A claimed replacement (``--concurrency replace``): only the newest one waits, and only
    #: until its starting deadline.
    replacing: Slot | None = None


@dataclass
class Tenure:
    """What belongs to one term of leadership, dropped as a whole when it ends."""

    token: int
    ready: bool = False  # catch-up decided
    published: bool = False  # the schedule is in state/schedule
    control_at: float = 0.0
    #: As last read; None until read. Informational: a claim to run is itself refused while the
    #: election is suspended, and a retry reads the switch before it starts.
    suspended: bool | None = None
    pending: list[Pending] = field(default_factory=list)
    #: The newest slot claimed in etcd: read at the start of the tenure, then ours. Slots only
    #: move forward from it, whatever the wall clock does (a backward step waits it out).
    last_claimed: datetime | None = None
    #: The time slots are planned by: the wall clock, held back after a jump (planner.SlotClock).
    slot_clock: SlotClock = field(default_factory=SlotClock)


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"SIG{-returncode}"


class Daemon:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        health: HealthChecker | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.s = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.health = health
        self.environ = dict(os.environ if environ is None else environ)
        self.wakeup = Waker()  # set from signal handlers too: no locks
        self.elector = Elector(
            store,
            settings.timing,
            settings.election_prefix,
            settings.identity,
            self.clock,
            self.wakeup,
            rpc_timeout=settings.rpc_timeout,
        )
        self.data = ElectionData(store, settings.prefix, settings.election)
        self.planner = (
            Planner(
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
            if settings.schedule is not None
            else None
        )
        self.log = get_logger(election=settings.election, identity=settings.identity)
        self.config = ConfigWatch(
            store,
            settings.prefix,
            settings.election,
            settings.identity,
            command=settings.command,
            mode=settings.mode,
            schedule=settings.schedule.expr if settings.schedule else None,
            timezone=settings.schedule.timezone if settings.schedule else None,
            log=self.log,
            metrics=metrics,
        )
        self.runs: list[ActiveRun] = []
        self.tenure: Tenure | None = None
        self.restart_at = 0.0
        self.leaving: str | None = None  # why we are handing over: shutdown, unhealthy, ...
        self.stop_signals = 0
        self.exit_code = 0
        self.ran_once = False
        self.ever_connected = False
        self.last_contact: float | None = None
        self.fatal: str | None = None
        self.leading_since: datetime | None = None
        self.last_run: dict[str, Any] | None = None
        self._last_error: tuple[str, float] | None = None
        #: End of this cycle's etcd budget on the leader path (None outside it).
        self._budget_end: float | None = None
        #: History records (entry, completed at) not yet written: bookkeeping waits for a cycle
        #: with time to spare, so it never delays a renewal.
        self._backlog: list[tuple[dict[str, Any], datetime]] = []
        self.snapshot: dict[str, Any] = {}
        self._publish("starting")

    # -- the loop ---------------------------------------------------------------------------

    def serve(self) -> int:
        """Run until stopped; returns the process exit code."""
        self._install_signal_handlers()
        self.log.info(
            "daemon.started",
            mode=self.s.mode,
            ttl=self.s.timing.ttl,
            renew_interval=round(self.s.timing.renew_interval, 3),
            grace=round(self.s.timing.grace, 3),
            schedule=self.s.schedule.expr if self.s.schedule else None,
            timezone=self.s.schedule.timezone if self.s.schedule else None,
            concurrency=self.s.concurrency,
            prefix=self.s.election_prefix,
        )
        if self.health is not None:
            self.health.start()
        try:
            while True:
                report = self.cycle()
                self._publish(report.action)
                if report.action == "exited":
                    return self.exit_code
                self._wait()
        finally:
            # Only reached with runs on a crash: kill them, and close the control pipes so that
            # each watchdog kills its job even if the message did not get through. The lease is
            # not revoked: it expires after the job is dead (S6).
            for active in self.runs:
                active.run.kill("daemon_exit")
                active.run.close()
            for active in self.runs:
                active.run.wait(2.0)
            if self.health is not None:
                self.health.stop()
            self.elector.close()

    def request_stop(self, reason: str = "signal") -> None:
        """Graceful stop: stop the job, release leadership, exit 0. Safe in a signal handler."""
        self.stop_signals += 1
        if self.leaving not in ("shutdown", "fatal"):
            self.leaving = "shutdown"
            self.stop_reason = reason
        self.wakeup.set()

    def cycle(self) -> Report:
        self.wakeup.clear()
        # 1. The deadline first: after a freeze, step down before any other I/O.
        t = self.elector.check(self.clock.monotonic())
        if t is not None:
            self._on_transition(t)
        # 2. What the watchdogs reported.
        finished = self._collect_runs()
        # 3. Health: an unhealthy replica hands over and does not campaign.
        self._apply_health()
        if self.leaving is not None:
            return self._leave()
        # 4. Election: campaign, renew, confirm.
        out = self.elector.step(may_campaign=self._may_campaign())
        self._note_election(out)
        if self.fatal is not None:
            self.leaving = "fatal"
            return self._leave()
        for t in out.transitions:
            self._on_transition(t)
        self.config.tick(
            self.clock.monotonic(),
            self.elector.lease_id,
            leading=self.elector.phase is Phase.LEADING,
            timeout=self._io_timeout(),
            on_error=self._store_error,
        )
        if self.elector.phase is not Phase.LEADING:
            if not self.runs and self.elector.to_revoke:
                self._release()
            return Report("job_finished" if finished else self.elector.phase.value)
        # 5. Leading: keep the watchdogs' deadline in step with the lease; enforce timeouts.
        self._reconcile_runs()
        # 6. Start what is due.
        started = self._start_due()
        if started is not None:
            return started
        return Report("job_finished" if finished else "leading")

    def _wait(self) -> None:
        now = self.clock.monotonic()
        until = self.elector.next_wakeup(now, self._may_campaign())
        for active in self.runs:
            if active.timeout_at is not None and active.run.stop_reason is None:
                until = min(until, active.timeout_at)
        if self.elector.phase is Phase.LEADING and self.leaving is None:
            until = min(until, self._next_start(now))
        if self.leaving is not None:
            until = min(until, now + 0.05)
        self.clock.wait(self.wakeup, max(0.0, until - now))

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
                times.append(now + (slot.start_time - planning).total_seconds())
        if not tenure.ready:
            times.append(now + 0.2)
        return min(times)

    # -- election -----------------------------------------------------------------------------

    def _may_campaign(self) -> bool:
        # Never campaign while a job of a lost tenure still runs: a new tenure would overlap it.
        return (
            self.leaving is None and not self.runs and not (self.s.mode == "once" and self.ran_once)
        )

    def _note_election(self, out: Outcome) -> None:
        for err in out.errors:
            if isinstance(err, StoreRejected) and not self.ever_connected:
                self.fatal = f"etcd rejected leaderjob: {err}"
                self.log.error("etcd.rejected", operation=err.operation, error=err.detail)
                return
            self._store_error(err)
        if out.keepalive_result is not None and self.metrics is not None:
            self.metrics.keepalives.labels(self.s.election, out.keepalive_result).inc()
            if out.keepalive_latency is not None:
                self.metrics.keepalive_latency.labels(self.s.election).observe(
                    out.keepalive_latency
                )
        if self.elector.last_contact is not None:
            if not self.ever_connected:
                self.log.info("etcd.connected", endpoint=getattr(self.store, "endpoint", None))
            self.ever_connected = True
            self.last_contact = self.elector.last_contact

    def _store_error(self, err: StoreError) -> None:
        if self.metrics is not None:
            self.metrics.etcd_errors.labels(self.s.election, err.operation).inc()
        now = self.clock.monotonic()
        key = f"{err.operation}:{err.detail}"
        if self._last_error is None or self._last_error[0] != key or now - self._last_error[1] > 5:
            self._last_error = (key, now)
            self.log.warning(
                "etcd.rejected" if isinstance(err, StoreRejected) else "etcd.unavailable",
                operation=err.operation,
                error=err.detail,
            )

    def _on_transition(self, t: Transition) -> None:
        self._transition(t)
        self._publish(t.event)  # probes see a leadership change at once, not after the cycle

    def _transition(self, t: Transition) -> None:
        if t.event == "lease.granted":
            self.log.info("lease.granted", lease_id=f"{t.lease_id:x}")
        elif t.event == "election.acquired":
            assert t.token is not None
            self.log = self.log.bind(token=t.token)
            self.leading_since = self.clock.wall()
            self.tenure = Tenure(token=t.token)
            self.restart_at = 0.0
            self.log.info("election.acquired", lease_id=f"{t.lease_id:x}")
            if self.metrics is not None:
                self.metrics.transitions.labels(self.s.election, "acquired").inc()
                self.metrics.set_leader(t.token)
        elif t.event == "election.lost":
            assert t.reason is not None
            # A planned handover (shutdown, lock done, unhealthy) is routine: a rolling deploy must
            # not look like trouble to log-based alerting. Only an unplanned loss warns.
            level = self.log.info if t.reason is Reason.RESIGNED else self.log.warning
            level("election.lost", reason=t.reason.value, lease_id=f"{t.lease_id:x}")
            self.log = self.log.unbind("token")
            self.leading_since = None
            self.tenure = None
            if self.planner is not None:
                self.planner.end_tenure()
            if self.metrics is not None:
                self.metrics.transitions.labels(self.s.election, "lost").inc()
                self.metrics.set_leader(None)
            for active in self.runs:
                active.run.stop("killed_on_leadership_loss")
        elif t.event == "lease.lost":
            assert t.reason is not None
            self.log.warning("lease.lost", reason=t.reason.value, lease_id=f"{t.lease_id:x}")

    def _release(self) -> None:
        for err in self.elector.release():
            self._store_error(err)

    def _io_timeout(self, ceiling: float | None = None) -> float:
        """A timeout for a non-critical call: it must never hold up the next renewal.

        On the leader path every call also fits in what is left of the cycle's budget, so all of
        a cycle's calls together (claims, reads, bookkeeping) end by then.
        """
        now = self.clock.monotonic()
        cap = min(ceiling if ceiling is not None else self._cycle_budget(), self.s.rpc_timeout)
        if self._budget_end is not None:
            cap = min(cap, max(0.0, self._budget_end - now))
        return self.elector.machine.rpc_deadline(now, cap)

    def _cycle_budget(self) -> float:
        """etcd time one cycle may spend on the leader path: half a renew interval, so the next
        keepalive is never more than that late."""
        return max(0.2, self.s.timing.renew_interval / 2)

    def _budget_left(self) -> float:
        if self._budget_end is None:
            return self._cycle_budget()
        return self._budget_end - self.clock.monotonic()

    def _may_call(self) -> bool:
        """Enough budget left for one more call this cycle (else it waits for the next)."""
        return self._budget_left() >= 0.05

    def _may_bookkeep(self) -> bool:
        """Bookkeeping (history, pruning, publishing) yields to the keepalive: it only runs while
        at least half the cycle's budget is left."""
        return self._budget_left() >= self._cycle_budget() / 2

    # -- health -------------------------------------------------------------------------------

    def _apply_health(self) -> None:
        h = self.health
        if h is None:
            return
        if not h.healthy and self.leaving is None:
            self.log.warning("health.failed", failures=h.consecutive_failures, error=h.last_error)
            if self.metrics is not None:
                self.metrics.health_transitions.labels(self.s.election, "unhealthy").inc()
                self.metrics.healthy.labels(self.s.election).set(0)
            self.leaving = "unhealthy"
        elif h.healthy and self.leaving == "unhealthy" and not self.runs:
            self.log.info("health.recovered")
            if self.metrics is not None:
                self.metrics.health_transitions.labels(self.s.election, "healthy").inc()
                self.metrics.healthy.labels(self.s.election).set(1)
            self.leaving = None

    # -- leaving ------------------------------------------------------------------------------

    def _leave(self) -> Report:
        """Stop the job while still renewing, then resign and revoke, then exit or idle."""
        reason = self.leaving or "shutdown"
        if self.runs:
            for active in self.runs:
                active.run.stop(reason)
                if self.stop_signals > 1:
                    active.run.kill(reason)
            out = self.elector.step(may_campaign=False)
            self._note_election(out)
            for t in out.transitions:
                self._on_transition(t)
            self._reconcile_runs()
            return Report("stopping_job", {"reason": reason})
        gone = self.elector.resign()
        if gone is not None and gone.event == "election.lost":
            self._on_transition(gone)
        elif gone is not None:
            self.log.info("election.withdrawn", reason=reason, lease_id=f"{gone.lease_id:x}")
        self._release()
        if reason == "unhealthy":
            return Report("unhealthy")
        if reason == "fatal":
            self.exit_code = EXIT_REJECTED
        self.log.info(
            "daemon.stopped",
            reason=getattr(self, "stop_reason", reason),
            exit_code=self.exit_code,
        )
        return Report("exited", {"reason": reason})

    # -- runs ---------------------------------------------------------------------------------

    def _reconcile_runs(self) -> None:
        deadline = self.elector.machine.deadline
        now = self.clock.monotonic()
        for active in self.runs:
            if deadline is not None and self.elector.phase is Phase.LEADING:
                active.run.extend(deadline)
            if (
                active.timeout_at is not None
                and now >= active.timeout_at
                and active.run.stop_reason is None
            ):
                self.log.warning("job.timed_out", run_id=active.run.run_id, slot=active.slot)
                active.run.stop("timed_out")
        if self.metrics is not None and deadline is not None:
            remaining = max(0.0, deadline - now) if self.elector.phase is Phase.LEADING else 0.0
            self.metrics.deadline_remaining.labels(self.s.election).set(remaining)

    def _collect_runs(self) -> bool:
        """Absorb the watchdogs' reports; True if a run finished."""
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
                            self.s.election, ev["signal"], ev["reason"]
                        ).inc()
            if run.done:
                self.runs.remove(active)
                run.close()
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

    def _finished(self, active: ActiveRun) -> None:
        run = active.run
        now = self.clock.monotonic()
        duration = now - run.started_at
        rc = run.returncode
        outcome = run.outcome
        record = {
            "run_id": run.run_id,
            "slot": active.slot,
            "scheduled_time": iso(active.scheduled),
            "token": run.token,
            "identity": self.s.identity,
            "attempt": active.attempt,
            "started_at": iso(self.clock.wall() - timedelta(seconds=duration)),
            "finished_at": iso(self.clock.wall()),
            "duration_seconds": round(duration, 3),
            "exit_code": rc if rc is not None and rc >= 0 else None,
            "signal": _signal_name(rc) if rc is not None else None,
            "outcome": outcome,
        }
        self.last_run = record
        self.log.info(
            "job.finished",
            run_id=run.run_id,
            slot=active.slot,
            token=run.token,
            exit_code=record["exit_code"],
            signal=record["signal"],
            outcome=outcome,
            duration_seconds=record["duration_seconds"],
            attempt=active.attempt,
        )
        if self.metrics is not None:
            m = self.metrics
            m.job_running.labels(self.s.election).set(1 if self.runs else 0)
            m.job_runs.labels(self.s.election, outcome).inc()
            m.job_duration.labels(self.s.election).observe(duration)
            if outcome == "succeeded":
                m.last_success.labels(self.s.election).set(self.clock.wall().timestamp())
        self._record(record)
        self.restart_at = now + SERVICE_RESTART_DELAY
        if self.s.mode == "once":
            if run.stop_reason == "killed_on_leadership_loss":
                self.exit_code = EXIT_LOST
            elif rc is not None:
                self.exit_code = rc if rc >= 0 else 128 - rc
            elif outcome == "watchdog_failed":
                self.exit_code = 128 + signal.SIGKILL  # the command was killed with its watchdog
            if self.leaving is None:
                self.leaving = "lock_done"
        elif (
            outcome in ("failed", "timed_out")
            and active.attempt < self.s.retries
            and self.tenure is not None
            and self.tenure.token == run.token
        ):
            backoff = min(RETRY_CAP, RETRY_BASE * 2**active.attempt)
            self.tenure.pending.append(
                Pending(active.slot, active.scheduled, active.attempt + 1, now + backoff, run.token)
            )
            self.log.info(
                "job.retry_scheduled",
                slot=active.slot,
                attempt=active.attempt + 1,
                backoff_seconds=backoff,
            )

    def _record(self, entry: dict[str, Any]) -> None:
        """Queue a history record, keyed by now (its completion); written by :meth:`_flush`."""
        if self.s.mode != "schedule":
            return
        self._backlog.append((entry, self.clock.wall()))
        if len(self._backlog) > MAX_BACKLOG:
            dropped = self._backlog.pop(0)[0]
            self.log.warning("history.dropped", slot=dropped.get("slot"))
        if self.elector.phase is not Phase.LEADING:
            self._flush()  # no leader path to protect

    def _flush(self) -> None:
        """Write queued history records while the budget allows; the leader then prunes the
        oldest beyond the limit (a bounded batch per cycle)."""
        wrote = False
        while self._backlog and self._may_bookkeep():
            entry, at = self._backlog[0]
            try:
                self.data.record(entry, at, timeout=self._io_timeout())
            except StoreError as exc:
                self._store_error(exc)
                return
            self._backlog.pop(0)
            wrote = True
        if wrote and self.elector.phase is Phase.LEADING:
            self._delete_old(
                lambda timeout: self.data.old_history(self.s.history_limit, timeout=timeout)
            )

    def _delete_old(self, find: Callable[[float], list[str]]) -> None:
        """Bookkeeping: find old keys, delete them fenced — each call only while the cycle has
        time to spare (what is left waits for a later cycle)."""
        own, token = self.elector.key, self.elector.machine.token
        if own is None or token is None or not self._may_bookkeep():
            return
        try:
            old = find(self._io_timeout())
            if old and self._may_bookkeep():
                self.data.delete_fenced(own, token, old, timeout=self._io_timeout())
        except StoreError as exc:
            self._store_error(exc)

    # -- starting -----------------------------------------------------------------------------

    def _start_due(self) -> Report | None:
        tenure = self.tenure
        if tenure is None:
            return None
        if self.s.mode == "once":
            if self.ran_once:
                return None
            report = self._start("lock", self.clock.wall(), 0)
            # A start skipped for the deadline did not happen: the tenure is ending (D − grace
            # is near), and the next one runs the command. Anything else was the one attempt.
            self.ran_once = report.action != "job_skipped"
            return report
        if self.s.mode == "service":
            if self.runs or self.clock.monotonic() < self.restart_at:
                return None
            return self._start("service", self.clock.wall(), 0)
        return self._start_scheduled(tenure)

    def _start_scheduled(self, tenure: Tenure) -> Report | None:
        """The schedule's share of one leading cycle, all its etcd calls within one budget."""
        self._budget_end = self.clock.monotonic() + self._cycle_budget()
        try:
            report = self._schedule_step(tenure)
            if not tenure.published and tenure.ready and self._may_bookkeep():
                self._publish_schedule(tenure)
            self._flush()
            return report
        finally:
            self._budget_end = None

    def _schedule_step(self, tenure: Tenure) -> Report | None:
        assert self.planner is not None
        now = self.clock.monotonic()
        wall, jumped = tenure.slot_clock.observe(self.clock.wall(), now)
        if self.metrics is not None:
            self.metrics.clock_step.labels(self.s.election).set(jumped)
        if jumped:
            self.log.warning(
                "schedule.clock_step",
                ahead_seconds=round(jumped, 3),
                planning_time=iso(wall),
                hint="the wall clock jumped ahead; slots follow the monotonic clock until the "
                "jump is undone or has held for 10 minutes",
            )
        if not tenure.ready and not self._begin_tenure(tenure, wall):
            return None
        self._check_skew(tenure, wall)
        if now >= tenure.control_at and self._may_call():
            report = self._poll_control(tenure)
            if report is not None:
                return report
        # Retries and replacements waiting for their time.
        for p in list(tenure.pending):
            if now >= p.not_before and not self._blocked() and self._may_call():
                tenure.pending.remove(p)
                if p.fire is not None:
                    return self._fire(tenure, p.fire)
                return self._start_pending(tenure, p)
        if not self._may_call():
            return None  # the slot stays due: claimed next cycle, after the keepalive
        slot, expired = self.planner.due(wall)
        if expired:
            # A stall or a forward wall-clock step can expire thousands of slots at once: claim
            # and record only the newest (it moves state/last_slot on) and count the others, so
            # this cycle stays short and the lease keeps being renewed.
            self._skip(tenure, expired[-1], "deadline", claim=True, also=len(expired) - 1)
        if slot is None:
            return None
        return self._fire(tenure, slot)

    def _blocked(self) -> bool:
        """A pending run must wait: another run is active and runs may not overlap."""
        return bool(self.runs) and self.s.concurrency != "allow"

    def _start_pending(self, tenure: Tenure, p: Pending) -> Report | None:
        """Start a claimed retry or replacement, if the election is not suspended meanwhile and
        (a replacement) its starting deadline has not passed while the old run was stopping."""
        assert self.planner is not None
        planning = tenure.slot_clock.peek(self.clock.wall(), self.clock.monotonic())
        if p.replacing is not None and planning - p.replacing.start_time > self.planner.deadline:
            return self._skip(tenure, p.replacing, "deadline", claim=False)
        try:
            suspended = self.data.is_suspended(timeout=self._io_timeout())
        except StoreError as exc:
            self._store_error(exc)  # unknown means "don't start": try again shortly
            p.not_before = self.clock.monotonic() + self._cycle_budget()
            tenure.pending.append(p)
            return None
        self._note_suspended(tenure, suspended)
        if suspended:
            if p.replacing is not None:
                return self._skip(tenure, p.replacing, "suspended", claim=False)
            self.log.info("slot.skipped", slot=p.slot, attempt=p.attempt, reason="suspended")
            return Report("slot_skipped", {"slot": p.slot, "reason": "suspended"})
        if p.replacing is not None:
            return self._start(p.slot, p.scheduled, 0, lag_from=p.replacing.start_time)
        return self._start(p.slot, p.scheduled, p.attempt)

    def _note_suspended(self, tenure: Tenure, suspended: bool) -> None:
        if suspended != tenure.suspended:
            if suspended or tenure.suspended is not None:
                self.log.info("election.suspended" if suspended else "election.resumed")
            tenure.suspended = suspended

    def _begin_tenure(self, tenure: Tenure, wall: datetime) -> bool:
        """Catch-up, once per tenure, from the newest slot anyone claimed (a linearizable read)."""
        assert self.planner is not None
        try:
            last = self.data.last_slot(timeout=self._io_timeout())
        except StoreError as exc:
            self._store_error(exc)
            return False
        plan = self.planner.begin_tenure(last, wall)
        tenure.ready = True
        tenure.last_claimed = last
        tenure.pending = [p for p in tenure.pending if p.fire is None]  # a re-plan replaces these
        if plan.skipped or plan.expired or plan.run:
            self.log.info(
                "schedule.catch_up",
                policy=self.s.catch_up,
                last_claimed=iso(last),
                missed_skipped=plan.skipped,
                expired=plan.expired.id if plan.expired else None,
                run=plan.run.id if plan.run else None,
            )
        if self.metrics is not None:
            reason = "catch_up_skip"
            self.metrics.slots_skipped.labels(self.s.election, reason).inc(plan.skipped)
            if plan.expired is not None:
                self.metrics.slots_skipped.labels(self.s.election, "deadline").inc()
        if plan.run is not None:
            tenure.pending.append(
                Pending(plan.run.id, plan.run.fire_time, 0, 0.0, tenure.token, plan.run)
            )
        return True

    def _check_skew(self, tenure: Tenure, wall: datetime) -> None:
        """A newest claim ahead of our clock: a replica whose clock ran fast claimed it, and no
        slot runs until our clock gets there (slots only move forward past the newest claim —
        the alternative, trusting our own clock, would re-run pruned slots if *ours* is slow).
        Logged every cycle and exported; ``leaderjob repair-schedule`` moves it back."""
        assert self.planner is not None
        ahead = 0.0
        if tenure.last_claimed is not None:
            ahead = max(0.0, (tenure.last_claimed - wall).total_seconds())
        if self.metrics is not None:
            self.metrics.clock_skew.labels(self.s.election).set(ahead)
        if ahead > self.planner.deadline.total_seconds():
            self.log.warning(
                "schedule.clock_skew",
                last_claimed=iso(tenure.last_claimed),
                ahead_seconds=round(ahead, 3),
                hint="a replica's clock ran ahead; fix it, then `leaderjob repair-schedule`",
            )

    def _skewed(self, tenure: Tenure) -> bool:
        assert self.planner is not None
        planning = tenure.slot_clock.peek(self.clock.wall(), self.clock.monotonic())
        return tenure.last_claimed is not None and (
            tenure.last_claimed - planning > self.planner.deadline
        )

    def _publish_schedule(self, tenure: Tenure) -> None:
        if self.s.schedule is None or self.elector.key is None:
            return
        info = {
            "expr": self.s.schedule.expr,
            "timezone": self.s.schedule.timezone,
            "leader": self.s.identity,
            "token": tenure.token,
            "concurrency": self.s.concurrency,
            "catch_up": self.s.catch_up,
            "jitter": self.s.jitter,
        }
        try:
            tenure.published = self.data.publish_schedule(
                self.elector.key, tenure.token, info, timeout=self._io_timeout()
            )
        except StoreError as exc:
            self._store_error(exc)

    def _poll_control(self, tenure: Tenure) -> Report | None:
        """Read the trigger switches (and the suspension, for status) once per renewal interval.

        While the newest claim lies ahead of our clock, also re-read it: an operator's repair
        takes effect at once (a re-plan from the repaired claim).
        """
        tenure.control_at = self.clock.monotonic() + self.s.timing.renew_interval
        try:
            control = self.data.control(timeout=self._io_timeout())
            if self._skewed(tenure):
                last = self.data.last_slot(timeout=self._io_timeout())
                if last != tenure.last_claimed:
                    self.log.info("schedule.repaired", last_claimed=iso(last))
                    tenure.ready = False
                    return None
        except StoreError as exc:
            self._store_error(exc)
            return None
        self._note_suspended(tenure, control.suspended)
        if not control.triggers or tenure.suspended:
            return None
        if self._blocked():
            return None  # a trigger waits for the current run; it is not lost
        key, request = control.triggers[0]
        return self._run_trigger(tenure, key, request)

    def _run_trigger(self, tenure: Tenure, key: str, request: dict[str, Any]) -> Report | None:
        own = self.elector.key
        if own is None:
            return None
        claim = {
            "token": tenure.token,
            "identity": self.s.identity,
            "request": request,
            "claimed_at": iso(self.clock.wall()),
        }
        try:
            ok, slot = self.data.claim_trigger(
                own, tenure.token, key, claim, timeout=self._io_timeout()
            )
            result = "claimed" if ok else self._why_refused()
        except StoreError as exc:
            self._store_error(exc)
            return None
        if result == "suspended":
            self._note_suspended(tenure, True)  # the trigger waits for `resume`
            return None
        if result == "rejected":
            self.log.warning("trigger.claim_failed", trigger=key)
            self.elector.recheck()
            return None
        self.log.info("trigger.claimed", slot=slot, requested_by=request.get("by"))
        tenure.control_at = self.clock.monotonic()  # look for more triggers soon
        report = self._start(slot, self.clock.wall(), 0)
        self._prune_slots(tenure, triggers=True)
        return report

    def _fire(self, tenure: Tenure, slot: Slot) -> Report | None:
        """A slot is due: apply the overlap policy, claim it (the claim itself is refused while
        the election is suspended), start it."""
        if tenure.last_claimed is not None and slot.fire_time <= tenure.last_claimed:
            # Claimed before (its key may since have been pruned): never a second run.
            self.log.info("slot.skipped", slot=slot.id, reason="already_claimed")
            return Report("slot_skipped", {"slot": slot.id, "reason": "already_claimed"})
        if self.runs and self.s.concurrency == "forbid":
            return self._skip(tenure, slot, "overlap", claim=True)
        replacing = bool(self.runs) and self.s.concurrency == "replace"
        result = self._claim(tenure, slot, "replacing" if replacing else "running")
        if result == "suspended":
            self._note_suspended(tenure, True)
            return self._skip(tenure, slot, "suspended", claim=True)
        if result != "claimed":
            return Report("claim_failed", {"slot": slot.id})
        if replacing:
            for active in self.runs:
                active.run.stop("replaced")
            # Only the newest replacement waits: an older one still waiting is superseded.
            for p in list(tenure.pending):
                if p.replacing is not None:
                    tenure.pending.remove(p)
                    self._skip(tenure, p.replacing, "superseded", claim=False)
            tenure.pending.append(
                Pending(slot.id, slot.fire_time, 0, 0.0, tenure.token, replacing=slot)
            )
            self._prune_slots(tenure)
            return Report("job_replacing", {"slot": slot.id})
        report = self._start(slot.id, slot.fire_time, 0, lag_from=slot.start_time)
        self._prune_slots(tenure)
        return report

    def _claim(self, tenure: Tenure, slot: Slot, status: str) -> str:
        """Claim ``slot`` (S3). "claimed", "suspended" (a run refused while suspended),
        "rejected" (deposed, or claimed before) or "unknown" (the call failed)."""
        own = self.elector.key
        if own is None:
            return "rejected"
        claim = {
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": tenure.token,
            "identity": self.s.identity,
            "status": status,
            "claimed_at": iso(self.clock.wall()),
        }
        run = status in ("running", "replacing")
        try:
            ok = self.data.claim_slot(
                own, tenure.token, slot.id, claim, run=run, timeout=self._io_timeout()
            )
        except StoreError as exc:
            # Unknown whether it applied: do not run (at most once per slot).
            self._store_error(exc)
            self.log.warning("slot.claim_unknown", slot=slot.id)
            tenure.last_claimed = max(tenure.last_claimed or slot.fire_time, slot.fire_time)
            return "unknown"
        result = "claimed" if ok else (self._why_refused() if run else "rejected")
        if result == "claimed":
            tenure.last_claimed = max(tenure.last_claimed or slot.fire_time, slot.fire_time)
        elif result == "rejected":
            # Either we were deposed (our key changed) or the slot was claimed before us.
            self.log.warning("slot.claim_rejected", slot=slot.id)
            if self.metrics is not None:
                self.metrics.slots_skipped.labels(self.s.election, "claim_rejected").inc()
            self.elector.recheck()
        return result

    def _why_refused(self) -> str:
        """A claim to run was refused: "suspended", or "rejected" (deposed, or claimed before).
        The Txn cannot say which compare failed; a read can (unknown counts as rejected)."""
        if not self._may_call():
            return "rejected"
        try:
            return "suspended" if self.data.is_suspended(timeout=self._io_timeout()) else "rejected"
        except StoreError as exc:
            self._store_error(exc)
            return "rejected"

    def _prune_slots(self, tenure: Tenure, *, triggers: bool = False) -> None:
        """Keep the slot claims bounded: after every claim, each kind by its own time, a bounded
        batch, fenced — bookkeeping, so only while the cycle has time to spare."""
        keep = max(10, self.s.history_limit)
        cutoff = tenure.last_claimed
        if cutoff is None:
            if not triggers:
                return
            cutoff = self.clock.wall()
        elif self.s.schedule is not None:
            cutoff -= self.s.schedule.interval() * keep
        self._delete_old(
            lambda timeout: self.data.old_claims(cutoff, keep, triggers=triggers, timeout=timeout)
        )

    def _skip(
        self, tenure: Tenure, slot: Slot, reason: str, *, claim: bool, also: int = 0
    ) -> Report:
        """Skip ``slot`` (and count ``also`` older slots skipped with it, unclaimed).

        With ``claim``, the skip is recorded only if the claim made the slot ours: a deposed
        leader records nothing for a slot its successor may have run.
        """
        if claim:
            if self._claim(tenure, slot, f"skipped_{reason}") != "claimed":
                return Report("claim_failed", {"slot": slot.id})
            self._prune_slots(tenure)
        if also:
            self.log.info("slot.skipped", slot=slot.id, reason=reason, also_skipped=also)
        else:
            self.log.info("slot.skipped", slot=slot.id, reason=reason)
        if self.metrics is not None:
            self.metrics.slots_skipped.labels(self.s.election, reason).inc(1 + also)
        self._record(
            {
                "run_id": None,
                "slot": slot.id,
                "scheduled_time": iso(slot.fire_time),
                "token": tenure.token,
                "identity": self.s.identity,
                "outcome": f"skipped_{reason}",
            }
        )
        return Report("slot_skipped", {"slot": slot.id, "reason": reason})

    def _start(
        self, slot: str, scheduled: datetime, attempt: int, lag_from: datetime | None = None
    ) -> Report:
        now = self.clock.monotonic()
        machine = self.elector.machine
        token = machine.token
        if not machine.can_start_work(now) or token is None or self.elector.lease_id is None:
            self.log.warning("job.skipped", reason="deadline", slot=slot)
            if self.metrics is not None:
                self.metrics.slots_skipped.labels(self.s.election, "deadline").inc()
            return Report("job_skipped", {"reason": "deadline"})
        deadline, term_at = machine.deadline, machine.term_at
        assert deadline is not None and term_at is not None
        run_id = uuid.uuid4().hex[:12]
        env = job_environment(self.environ)
        env.update(
            LEADERJOB_FENCING_TOKEN=str(token),
            LEADERJOB_ELECTION=self.s.election,
            LEADERJOB_IDENTITY=self.s.identity,
            LEADERJOB_LEASE_ID=f"{self.elector.lease_id:x}",
            LEADERJOB_SCHEDULED_TIME=iso(scheduled) or "",
            LEADERJOB_SLOT=slot,
            LEADERJOB_RUN_ID=run_id,
            LEADERJOB_ATTEMPT=str(attempt),
            # For writes guarded by our key (leaderjob.fencing.etcd, `leaderjob fenced put`).
            LEADERJOB_LEADER_KEY=self.elector.key or "",
            LEADERJOB_ENDPOINTS=",".join(self.s.endpoints) or self.environ.get(
                "LEADERJOB_ENDPOINTS", ""
            ),
        )
        run = Run(
            argv=self.s.command,
            env=env,
            deadline=deadline,
            grace=self.s.timing.grace,
            wakeup=self.wakeup,
            run_id=run_id,
            token=token,
        )
        # The wait is bounded by the lease budget: at D − grace the watchdog refuses to exec.
        run.start(now, wait=term_at - now)
        if not run.confirmed:
            if not run.done:
                # Given up for certain (the watchdog can no longer exec it), but its watchdog
                # still exists and may have just started the job: track it until it exits, so
                # that nothing overlaps it — no second copy, no campaign, no revoke (S1, S6).
                self.runs.append(ActiveRun(run, slot, scheduled, attempt, None))
            run.close()  # already closed by start(); said again here because S1 rests on it
            self.log.error("job.failed_to_start", run_id=run_id, slot=slot, error=run.error)
            if self.metrics is not None:
                self.metrics.job_runs.labels(self.s.election, "failed_to_start").inc()
            self.restart_at = now + SERVICE_RESTART_DELAY
            if self.s.mode == "once":
                self.exit_code = 127
                self.leaving = "lock_done"
            self._record(
                {
                    "run_id": run_id,
                    "slot": slot,
                    "scheduled_time": iso(scheduled),
                    "token": token,
                    "identity": self.s.identity,
                    "outcome": "failed_to_start",
                    "error": run.error,
                }
            )
            return Report("job_failed_to_start", {"error": run.error})
        timeout_at = now + self.s.timeout if self.s.timeout else None
        self.runs.append(ActiveRun(run, slot, scheduled, attempt, timeout_at))
        lag = (self.clock.wall() - (lag_from or scheduled)).total_seconds()
        self.log.info(
            "job.started",
            run_id=run_id,
            pid=run.pid,
            slot=slot,
            scheduled_time=env["LEADERJOB_SCHEDULED_TIME"],
            attempt=attempt,
            lag_seconds=round(lag, 4),
        )
        if self.metrics is not None:
            self.metrics.job_running.labels(self.s.election).set(1)
            if self.s.mode == "schedule" and attempt == 0 and lag_from is not None:
                self.metrics.schedule_lag.labels(self.s.election).observe(max(0.0, lag))
        return Report("job_started", {"run_id": run_id, "pid": run.pid, "slot": slot})

    # -- what others see ------------------------------------------------------------------------

    def _publish(self, action: str) -> None:
        """Swap in a fresh snapshot for the HTTP endpoints (read from other threads)."""
        machine = self.elector.machine
        lease = machine.lease
        leader = self.elector.phase is Phase.LEADING
        next_slot = self.planner.peek() if self.planner is not None and leader else None
        self.snapshot = {
            "election": self.s.election,
            "identity": self.s.identity,
            "phase": self.elector.phase.value,
            "action": action,
            "leader": leader,
            "token": machine.token,
            "lease_id": f"{lease.lease_id:x}" if lease is not None else None,
            "leading_since": iso(self.leading_since),
            "last_contact": self.last_contact,
            "connected_within": self.s.timing.renew_deadline,
            "healthy": None if self.health is None else self.health.healthy,
            "idle_reason": self.leaving,
            "mode": self.s.mode,
            "schedule": self.s.schedule.expr if self.s.schedule else None,
            "timezone": self.s.schedule.timezone if self.s.schedule else None,
            "next_fire": iso(next_slot.start_time) if next_slot is not None else None,
            "suspended": self.tenure.suspended if self.tenure is not None else None,
            "running": [
                {"run_id": a.run.run_id, "pid": a.run.pid, "slot": a.slot} for a in self.runs
            ],
            "last_run": self.last_run,
            "loop_at": self.clock.monotonic(),
            "renewed_at": lease.last_ok_sent if lease is not None else None,
            "deadline": machine.deadline,
            "renew_interval": self.s.timing.renew_interval,
        }

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: object) -> None:
            del frame
            self.request_stop(signal.Signals(signum).name)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
