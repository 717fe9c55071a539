"""Per-job health gates (``health-cmd`` / ``health-url`` of a job in the jobs file).

The daemon's own health gate stays global: a sick replica leads nothing. A job's gate closes
that job only: its run is stopped, then it leaves its queue (its key deleted: the next in line
takes over and claims the next slot) and does not queue again until the check passes; the
daemon's other jobs carry on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leaderjob.daemon.loop import Daemon


class Gates:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.down: set[str] = set()
        self._started: set[str] = set()

    def tick(self) -> None:
        d = self.daemon
        for name, r in list(d.runners.items()):
            h = r.health
            if h is None:
                continue
            if name not in self._started:
                self._started.add(name)
                h.start()
            if h.healthy:
                if name in self.down:
                    self.down.discard(name)
                    r.log.info("health.job_recovered")
                continue
            if name not in self.down:
                self.down.add(name)
                r.log.warning(
                    "health.job_failed", failures=h.consecutive_failures, error=h.last_error
                )
            for active in r.runs:
                active.run.stop("unhealthy")
            if not r.runs and name in d.session.group.keys:
                t = d.session.group.requeue(name)  # held out of the queue while down
                if t is not None:
                    d._on_transition(t)

    def stop(self) -> None:
        for r in self.daemon.runners.values():
            if r.health is not None:
                r.health.stop()
