"""The daemon loop: one cycle = deadline check → job reports → election → job ↔ leadership →
schedule → wait.

Each :meth:`Daemon.cycle` returns a :class:`Report` that says what it decided; the log and the
tests read those. The loop waits on one ``threading.Event`` that everything wakes: the predecessor
watch, the watchdog's reports, the signal handlers. Stop is therefore prompt, and no thread but the
main one logs or decides.

Modes: ``schedule`` (run the command at each fire time while leading), ``service`` (no schedule:
keep the command running while leading, restart it when it exits), and ``once`` (``leaderjob
lock``: run it once under leadership, release, exit with its exit code).
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from leaderjob.clock import Clock, SystemClock
from leaderjob.config import Timing
from leaderjob.election.elector import Elector
from leaderjob.election.machine import Phase, Transition
from leaderjob.election.store import Store, StoreError, StoreRejected
from leaderjob.log import get_logger
from leaderjob.metrics import Metrics
from leaderjob.schedule import Schedule
from leaderjob.supervisor import Run

Mode = Literal["schedule", "service", "once"]

#: Exit code of `leaderjob lock` when leadership was lost before the command finished.
EXIT_LOST = 4
#: Exit code when etcd rejects us (credentials, permissions, TLS).
EXIT_REJECTED = 1
#: Wait before restarting a service-mode command that exited.
SERVICE_RESTART_DELAY = 1.0


@dataclass(frozen=True)
class Settings:
    election: str
    election_prefix: str  # where candidate keys live (see config.election_prefix)
    identity: str
    timing: Timing
    command: tuple[str, ...]
    mode: Mode = "schedule"
    schedule: Schedule | None = None
    rpc_timeout: float = 5.0


@dataclass(frozen=True)
class Report:
    """What one cycle decided, in one word, with a few facts."""

    action: str
    detail: Mapping[str, Any] | None = None


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
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.s = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.environ = dict(os.environ if environ is None else environ)
        self.wakeup = threading.Event()
        self.elector = Elector(
            store,
            settings.timing,
            settings.election_prefix,
            settings.identity,
            self.clock,
            self.wakeup,
            rpc_timeout=settings.rpc_timeout,
        )
        self.log = get_logger(election=settings.election, identity=settings.identity)
        self.run: Run | None = None
        self.next_fire: datetime | None = None
        self.restart_at = 0.0
        self.stopping = False
        self.stop_signals = 0
        self.exit_code = 0
        self.ran_once = False
        self.ever_connected = False
        self.fatal: str | None = None
        self._last_error: tuple[str, float] | None = None
        self.leading_since_wall: datetime | None = None

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
            prefix=self.s.election_prefix,
        )
        try:
            while True:
                report = self.cycle()
                if report.action == "exited":
                    return self.exit_code
                self._wait()
        finally:
            if self.run is not None:
                self.run.kill("daemon_exit")
                self.run.wait(2.0)
            self.elector.close()

    def request_stop(self, reason: str = "signal") -> None:
        """Graceful stop: finish or stop the job, release leadership, exit. Safe in a handler."""
        self.stop_signals += 1
        if not self.stopping:
            self.stopping = True
            self.stop_reason = reason
        self.wakeup.set()

    def cycle(self) -> Report:
        self.wakeup.clear()
        # 1. The deadline first: after a freeze, step down before any other I/O.
        t = self.elector.check(self.clock.monotonic())
        if t is not None:
            self._on_transition(t)
        # 2. What the job's watchdog reported.
        finished = self._collect_run()
        if self.fatal is not None:
            return self._shutdown("fatal")
        if self.stopping:
            return self._shutdown(getattr(self, "stop_reason", "signal"))
        # 3. Election: campaign, renew, confirm.
        out = self.elector.step(may_campaign=self._may_campaign())
        self._note_election(out)
        if self.fatal is not None:
            return self._shutdown("fatal")
        for t in out.transitions:
            self._on_transition(t)
        if self.s.mode == "once" and self.ran_once and self.run is None:
            return self._shutdown("lock_done")
        if self.elector.phase is not Phase.LEADING:
            if self.run is None and self.elector.to_revoke:
                self.elector.release()
            return Report("job_finished" if finished else self.elector.phase.value)
        # 4. Leading: keep the watchdog's deadline in step with the lease.
        deadline = self.elector.machine.deadline
        assert deadline is not None
        if self.run is not None:
            self.run.extend(deadline)
        if self.metrics is not None:
            remaining = deadline - self.clock.monotonic()
            self.metrics.deadline_remaining.labels(self.s.election).set(max(0.0, remaining))
        # 5. Schedule.
        started = self._maybe_start()
        if started is not None:
            return started
        return Report("job_finished" if finished else "leading")

    def _wait(self) -> None:
        now = self.clock.monotonic()
        until = self.elector.next_wakeup(now, self._may_campaign())
        if self.elector.phase is Phase.LEADING and self.run is None:
            if self.s.mode == "schedule" and self.next_fire is not None:
                gap = (self.next_fire - self.clock.wall()).total_seconds()
                until = min(until, now + gap)
            elif self.s.mode == "service":
                until = min(until, self.restart_at)
            elif self.s.mode == "once" and not self.ran_once:
                until = now
        if self.stopping:
            until = min(until, now + 0.05)
        self.clock.wait(self.wakeup, max(0.0, until - now))

    # -- election -----------------------------------------------------------------------------

    def _may_campaign(self) -> bool:
        # Never campaign while a job of a lost tenure still runs: its lease must stay ours
        # until the job is dead, and a new tenure would overlap it.
        return (
            not self.stopping and self.run is None and not (self.s.mode == "once" and self.ran_once)
        )

    def _note_election(self, out: Any) -> None:
        for err in out.errors:
            if isinstance(err, StoreRejected) and not self.ever_connected:
                self.fatal = f"etcd rejected leaderjob: {err}"
                self.log.error("etcd.rejected", operation=err.operation, error=err.detail)
                return
            self._log_store_error(err)
        if out.keepalive_result is not None and self.metrics is not None:
            self.metrics.keepalives.labels(self.s.election, out.keepalive_result).inc()
            if out.keepalive_latency is not None:
                self.metrics.keepalive_latency.labels(self.s.election).observe(
                    out.keepalive_latency
                )
        if out.transitions or out.renewed:
            if not self.ever_connected:
                self.log.info("etcd.connected")
            self.ever_connected = True

    def _log_store_error(self, err: StoreError) -> None:
        if self.metrics is not None:
            self.metrics.etcd_errors.labels(self.s.election, err.operation).inc()
        now = self.clock.monotonic()
        key = f"{err.operation}:{err.detail}"
        if self._last_error is None or self._last_error[0] != key or now - self._last_error[1] > 5:
            self._last_error = (key, now)
            self.log.warning(
                "etcd.unavailable" if not isinstance(err, StoreRejected) else "etcd.rejected",
                operation=err.operation,
                error=err.detail,
            )

    def _on_transition(self, t: Transition) -> None:
        if t.event == "lease.granted":
            self.log.info("lease.granted", lease_id=f"{t.lease_id:x}")
        elif t.event == "election.acquired":
            self.log = self.log.bind(token=t.token)
            self.leading_since_wall = self.clock.wall()
            self.log.info("election.acquired", lease_id=f"{t.lease_id:x}")
            if self.metrics is not None:
                self.metrics.transitions.labels(self.s.election, "acquired").inc()
                self.metrics.set_leader(t.token)
            self.next_fire = (
                self.s.schedule.next_after(self.clock.wall()) if self.s.schedule else None
            )
            self.restart_at = 0.0
        elif t.event == "election.lost":
            assert t.reason is not None
            self.log.warning("election.lost", reason=t.reason.value, lease_id=f"{t.lease_id:x}")
            self.log = self.log.unbind("token")
            self.leading_since_wall = None
            self.next_fire = None
            if self.metrics is not None:
                self.metrics.transitions.labels(self.s.election, "lost").inc()
                self.metrics.set_leader(None)
            if self.run is not None:
                self.run.stop("leadership_lost")
        elif t.event == "lease.lost":
            assert t.reason is not None
            self.log.warning("lease.lost", reason=t.reason.value, lease_id=f"{t.lease_id:x}")

    # -- the job ------------------------------------------------------------------------------

    def _maybe_start(self) -> Report | None:
        if self.run is not None:
            return None
        wall = self.clock.wall()
        scheduled: datetime | None = None
        if self.s.mode == "schedule":
            if self.next_fire is None or wall < self.next_fire or self.s.schedule is None:
                return None
            scheduled = self.next_fire
            # Never a burst: after a stall, the next fire time counts from now.
            self.next_fire = self.s.schedule.next_after(max(wall, scheduled))
        elif self.s.mode == "service":
            if self.clock.monotonic() < self.restart_at:
                return None
        elif self.ran_once:
            return None
        return self._start(scheduled or wall, wall)

    def _start(self, scheduled: datetime, wall: datetime) -> Report:
        now = self.clock.monotonic()
        machine = self.elector.machine
        if not machine.can_start_work(now) or machine.token is None:
            self.log.warning("job.skipped", reason="deadline", scheduled_time=scheduled.isoformat())
            if self.metrics is not None:
                self.metrics.slots_skipped.labels(self.s.election, "deadline").inc()
            return Report("job_skipped", {"reason": "deadline"})
        deadline = machine.deadline
        assert deadline is not None and self.elector.lease_id is not None
        run_id = uuid.uuid4().hex[:12]
        env = dict(self.environ)
        env.update(
            LEADERJOB_FENCING_TOKEN=str(machine.token),
            LEADERJOB_ELECTION=self.s.election,
            LEADERJOB_IDENTITY=self.s.identity,
            LEADERJOB_LEASE_ID=f"{self.elector.lease_id:x}",
            LEADERJOB_SCHEDULED_TIME=scheduled.isoformat().replace("+00:00", "Z"),
            LEADERJOB_RUN_ID=run_id,
        )
        run = Run(
            argv=self.s.command,
            env=env,
            deadline=deadline,
            grace=self.s.timing.grace,
            wakeup=self.wakeup,
            run_id=run_id,
            token=machine.token,
        )
        run.start(now)
        if self.s.mode == "once":
            self.ran_once = True
        if run.pid is None:
            self.log.error("job.failed_to_start", run_id=run_id, error=run.error)
            if self.metrics is not None:
                self.metrics.job_runs.labels(self.s.election, "failed_to_start").inc()
            self.restart_at = now + SERVICE_RESTART_DELAY
            if self.s.mode == "once":
                self.exit_code = 127
            return Report("job_failed_to_start", {"error": run.error})
        self.run = run
        lag = (self.clock.wall() - scheduled).total_seconds()
        self.log.info(
            "job.started",
            run_id=run_id,
            pid=run.pid,
            scheduled_time=env["LEADERJOB_SCHEDULED_TIME"],
            lag_seconds=round(lag, 4),
        )
        if self.metrics is not None:
            self.metrics.job_running.labels(self.s.election).set(1)
            if self.s.mode == "schedule":
                self.metrics.schedule_lag.labels(self.s.election).observe(max(0.0, lag))
        return Report("job_started", {"run_id": run_id, "pid": run.pid})

    def _collect_run(self) -> bool:
        """Absorb the watchdog's reports; True if the run finished in this call."""
        run = self.run
        if run is None:
            return False
        for ev in run.take_events():
            if "signal" in ev:
                self.log.warning(
                    "job.signalled", run_id=run.run_id, signal=ev["signal"], reason=ev["reason"]
                )
                if self.metrics is not None:
                    self.metrics.job_kills.labels(self.s.election, ev["signal"], ev["reason"]).inc()
        if not run.done:
            return False
        self.run = None
        run.close()
        duration = self.clock.monotonic() - run.started_at
        rc = run.returncode
        outcome = run.outcome
        self.log.info(
            "job.finished",
            run_id=run.run_id,
            token=run.token,
            exit_code=rc if rc is not None and rc >= 0 else None,
            signal=_signal_name(rc) if rc is not None else None,
            outcome=outcome,
            duration_seconds=round(duration, 3),
        )
        if self.metrics is not None:
            m = self.metrics
            m.job_running.labels(self.s.election).set(0)
            m.job_runs.labels(self.s.election, outcome).inc()
            m.job_duration.labels(self.s.election).observe(duration)
            if outcome == "succeeded":
                m.last_success.labels(self.s.election).set(self.clock.wall().timestamp())
        self.restart_at = self.clock.monotonic() + SERVICE_RESTART_DELAY
        if self.s.mode == "once":
            if run.stop_reason == "leadership_lost":
                self.exit_code = EXIT_LOST
            elif rc is not None:
                self.exit_code = rc if rc >= 0 else 128 - rc
        return True

    # -- shutdown -----------------------------------------------------------------------------

    def _shutdown(self, reason: str) -> Report:
        """Stop the job, then resign and revoke: the successor starts only after our job died."""
        if self.run is not None:
            self.run.stop("shutdown")
            if self.stop_signals > 1:
                self.run.kill("shutdown")
            # Keep renewing while the job winds down, so we do not lose the lease mid-grace.
            self._note_election(self.elector.step(may_campaign=False))
            return Report("stopping_job")
        t = self.elector.resign()
        if t is not None and t.event == "election.lost":
            self._on_transition(t)
        for err in self.elector.release():
            self._log_store_error(err)
        if self.fatal is not None:
            self.exit_code = EXIT_REJECTED
        self.log.info("daemon.stopped", reason=reason, exit_code=self.exit_code)
        return Report("exited", {"reason": reason})

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: object) -> None:
            del frame
            self.request_stop(signal.Signals(signum).name)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)


def store_error_message(err: StoreError) -> str:
    return f"etcd {err.operation} failed: {err.detail}"


__all__ = ["Daemon", "Report", "Sequence", "Settings"]
