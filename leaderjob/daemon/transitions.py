"""What the election's transitions do to the jobs: a tenure begins or ends, and it is logged.

``election.acquired`` begins the job's tenure (its token bound to its log lines, the leader
metric set); ``election.lost`` ends it (a planned handover is logged as routine, only an
unplanned loss warns); ``lease.granted`` and ``lease.lost`` are logged. A group's transitions
name their job; the single-job form's concern its one runner and the daemon's own logger, and
say since when this replica leads.

The loop hands each transition here and publishes its snapshot after; nothing here decides.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock
from leaderjob.daemon.runner import Runner
from leaderjob.election.machine import Reason, Transition

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


class Transitions:
    def __init__(
        self,
        runners: dict[str, Runner],
        runner: Callable[[], Runner],
        *,
        grouped: bool,
        election: str,
        clock: Clock,
        log: Callable[[], Any],
        set_log: Callable[[Any], None],
        metrics: Metrics | None = None,
    ) -> None:
        """``runners`` is the daemon's own dict (it changes as jobs come and go); ``runner``
        gives the single-job form's one runner; ``log`` and ``set_log`` read and rebind the
        daemon's logger (a tenure's token is bound to it)."""
        self.runners = runners
        self.runner = runner
        self.grouped = grouped
        self.election = election
        self.clock = clock
        self.log = log
        self.set_log = set_log
        self.metrics = metrics
        #: The single-job form's tenure began then (None while not leading).
        self.leading_since: datetime | None = None

    def apply(self, t: Transition) -> None:
        if t.event == "lease.granted":
            self.log().info("lease.granted", lease_id=f"{t.lease_id:x}")
        elif t.event == "election.acquired" and self.grouped:
            assert t.token is not None
            r = self.runners[t.job]  # a job acquires only while it campaigns: it has a runner
            r.log = r.log.bind(token=t.token)
            r.begin(t.token)
            r.log.info("election.acquired", lease_id=f"{t.lease_id:x}")
            if self.metrics is not None:
                self.metrics.transitions.labels(self.election, r.s.election, "acquired").inc()
                self.metrics.set_leader(t.token, r.s.election)
        elif t.event == "election.lost" and self.grouped:
            assert t.reason is not None
            log = self.log()
            level = log.info if t.reason is Reason.RESIGNED else log.warning
            for job in [j for j, _ in t.ended] or [t.job]:
                r = self.runners[job]  # removed only after its tenure ended
                level("election.lost", job=job, reason=t.reason.value, lease_id=f"{t.lease_id:x}")
                r.log = r.log.try_unbind("token")
                if self.metrics is not None:
                    self.metrics.transitions.labels(self.election, r.s.election, "lost").inc()
                    self.metrics.set_leader(None, r.s.election)
                r.end()
        elif t.event == "election.acquired":
            assert t.token is not None
            self.set_log(self.log().bind(token=t.token))
            self.leading_since = self.clock.wall()
            self.runner().begin(t.token)
            self.log().info("election.acquired", lease_id=f"{t.lease_id:x}")
            if self.metrics is not None:
                self.metrics.transitions.labels(self.election, self.election, "acquired").inc()
                self.metrics.set_leader(t.token)
        elif t.event == "election.lost":
            assert t.reason is not None
            # A planned handover (shutdown, lock done, unhealthy) is routine: a rolling deploy must
            # not look like trouble to log-based alerting. Only an unplanned loss warns.
            log = self.log()
            level = log.info if t.reason is Reason.RESIGNED else log.warning
            level("election.lost", reason=t.reason.value, lease_id=f"{t.lease_id:x}")
            self.set_log(self.log().unbind("token"))
            self.leading_since = None
            if self.metrics is not None:
                self.metrics.transitions.labels(self.election, self.election, "lost").inc()
                self.metrics.set_leader(None)
            self.runner().end()
        elif t.event == "lease.lost":
            assert t.reason is not None
            self.log().warning("lease.lost", reason=t.reason.value, lease_id=f"{t.lease_id:x}")
