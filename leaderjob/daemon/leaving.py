"""Leaving on purpose: why this replica hands its jobs over, and the order it does it in.

Why: a stop asked for (SIGTERM, SIGINT, a hang-up without a jobs file), a failing health check
(the daemon's own: ``--health-cmd``/``--health-url``), the lock's command done, or etcd rejecting
us. The health gate starts a leave when the check fails and ends it once the check passes again
and the stopped runs are over.

How, always in this order: stop the jobs while the lease is still renewed (the applier's
``leave_all``; a second stop signal kills instead of waiting for the grace) → resign → revoke
→ write the records queued meanwhile. The successor can only start after our runs are dead (L2,
S6). Unhealthy, the replica then idles and does not campaign; otherwise the daemon exits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from leaderjob.daemon.applier import Applier
from leaderjob.daemon.model import EXIT_REJECTED, Report
from leaderjob.daemon.runner import Runner
from leaderjob.daemon.session import Session
from leaderjob.election.machine import Transition
from leaderjob.ops.health import HealthChecker

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


class Leaving:
    def __init__(
        self,
        applier: Applier,
        session: Session,
        runners: Mapping[str, Runner],
        runner: Callable[[], Runner],
        on_transition: Callable[[Transition], None],
        wake: Callable[[], None],
        *,
        election: str,
        log: Callable[[], Any],
        metrics: Metrics | None = None,
    ) -> None:
        """``runners`` is the daemon's own dict; ``runner`` gives the one whose exit code is the
        daemon's; ``log`` reads the daemon's logger (a tenure's token is bound to it)."""
        self.applier = applier
        self.session = session
        self.runners = runners
        self.runner = runner
        self.on_transition = on_transition
        self.wake = wake
        self.election = election
        self.log = log
        self.metrics = metrics
        #: Why we are handing over: shutdown, unhealthy, lock_done, fatal (None: we stay).
        self.reason: str | None = None
        self.stop_signals = 0
        #: What asked for the stop (a signal's name), for the last log line.
        self.stop_reason: str | None = None

    def request_stop(self, reason: str = "signal") -> None:
        """Graceful stop: stop the job, release leadership, exit 0. Safe in a signal handler."""
        self.stop_signals += 1
        if self.reason not in ("shutdown", "fatal"):
            self.reason = "shutdown"
            self.stop_reason = reason
        self.wake()

    def lock_done(self) -> None:
        if self.reason is None:
            self.reason = "lock_done"

    def apply_health(self, health: HealthChecker | None, running: bool) -> None:
        """The daemon's health gate: unhealthy hands over; healthy again (and no run of ours
        left), it campaigns again."""
        h = health
        if h is None:
            return
        if not h.healthy and self.reason is None:
            self.log().warning("health.failed", failures=h.consecutive_failures, error=h.last_error)
            if self.metrics is not None:
                self.metrics.health_transitions.labels(self.election, "unhealthy").inc()
                self.metrics.healthy.labels(self.election).set(0)
            self.reason = "unhealthy"
        elif h.healthy and self.reason == "unhealthy" and not running:
            self.log().info("health.recovered")
            if self.metrics is not None:
                self.metrics.health_transitions.labels(self.election, "healthy").inc()
                self.metrics.healthy.labels(self.election).set(1)
            self.reason = None

    def step(self) -> Report:
        """Stop the job while still renewing, then resign and revoke (then say so), then exit or
        idle."""
        reason = self.reason or "shutdown"
        if not self.applier.leave_all(reason, kill=self.stop_signals > 1):
            out = self.session.step(may_campaign=False)
            self.session.note(out)
            for t in out.transitions:
                self.on_transition(t)
            for r in self.runners.values():
                r.reconcile_runs()
            return Report("stopping_job", {"reason": reason})
        gone = self.session.elector.resign()
        # The revoke before the lost tenure is logged and published: the successor waits for
        # our key to go (L2); our runs are dead, so it may go now (S1).
        self.session.release()
        if gone is not None and gone.event == "election.lost":
            self.on_transition(gone)
        elif gone is not None:
            self.log().info("election.withdrawn", reason=reason, lease_id=f"{gone.lease_id:x}")
        # History records queued while leading (the stopped run's outcome) are written now, after
        # the handover: else that slot stays claimed with no record.
        for r in self.runners.values():
            r.flush()
        if reason == "unhealthy":
            return Report("unhealthy")
        if reason == "fatal":
            self.runner().exit_code = EXIT_REJECTED
        self.log().info(
            "daemon.stopped",
            reason=self.stop_reason or reason,
            exit_code=self.runner().exit_code,
        )
        return Report("exited", {"reason": reason})
