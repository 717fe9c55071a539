"""What lives as long as the daemon's process, around its loop: started before the first cycle,
torn down after the last (or a crash), and the signals that ask the loop to stop or reload.

Started: the daemon's health checker, the jobs' health checkers, and the guardian (up before the
first run, so a start is one fork + exec; kept up, and replaced if it died). Torn down: runs left
only by a crash are killed and the guardian closed (it kills whatever still runs, so every job
is dead even if our message did not get through); the lease is not revoked, it expires after the
jobs are dead (S6). Then the checkers, the notifier and the elector.

Signal handlers only set state and wake the loop: they take no lock.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from leaderjob.daemon.gates import Checkers
from leaderjob.daemon.model import ActiveRun, Settings
from leaderjob.daemon.reload import Reloader
from leaderjob.election.elector import Elector
from leaderjob.election.group import Group
from leaderjob.guard.supervisor import Guardian
from leaderjob.ops.health import HealthChecker
from leaderjob.ops.notify import Notifier


class Process:
    def __init__(
        self,
        guardian: Guardian,
        checkers: Checkers,
        notifier: Notifier,
        elector: Elector | Group,
        health: Callable[[], HealthChecker | None],
        *,
        log: Callable[[], Any],
    ) -> None:
        """``health``: the daemon's own health checker as it is when the process starts and stops
        (the CLI hands it to the daemon after construction, since it wakes the daemon's loop)."""
        self.guardian = guardian
        self.checkers = checkers
        self.notifier = notifier
        self.elector = elector
        self.health = health
        self.log = log
        #: Guardians lost so far, as last logged.
        self.guardians_lost = 0

    def start(self, s: Settings, now: float) -> None:
        """The daemon starts serving, with the settings ``s``."""
        self.log().info(
            "daemon.started",
            mode=s.mode,
            ttl=s.timing.ttl,
            renew_interval=round(s.timing.renew_interval, 3),
            grace=round(s.timing.grace, 3),
            schedule=s.schedule.expr if s.schedule else None,
            timezone=s.schedule.timezone if s.schedule else None,
            concurrency=s.concurrency,
            prefix=s.election_prefix,
        )
        health = self.health()
        if health is not None:
            health.start()
        self.checkers.start()
        self.guardian.enabled = True
        self.keep_guardian(now)  # up before the first run

    def keep_guardian(self, now: float) -> None:
        """The guardian is up; one that died (its runs ended as failed) is replaced."""
        error = self.guardian.ensure(now)
        if self.guardian.lost > self.guardians_lost:
            self.guardians_lost = self.guardian.lost
            self.log().error("guardian.lost", lost=self.guardian.lost, restarted=error is None)
        if error is not None:
            self.log().warning("guardian.start_failed", error=error)

    def stop(self, runs: Callable[[], list[ActiveRun]]) -> None:
        # Only reached with runs on a crash: kill them, and close the control pipe so that the
        # guardian kills every job even if the message did not get through. The lease is not
        # revoked: it expires after the job is dead (S6).
        for active in runs():
            active.run.kill("daemon_exit")
        self.guardian.close()  # it kills whatever still runs, and exits
        for active in runs():
            active.run.wait(2.0)
        health = self.health()
        if health is not None:
            health.stop()
        self.notifier.close()
        self.checkers.stop()
        self.elector.close()


def install_signal_handlers(request_stop: Callable[[str], None], reloader: Reloader | None) -> None:
    """SIGTERM and SIGINT stop gracefully; SIGHUP reloads the jobs file, or without one stops
    gracefully too. Only from the main thread (Python's rule for signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        del frame
        request_stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    if reloader is not None:
        signal.signal(signal.SIGHUP, lambda signum, frame: reloader.request())
    else:  # nothing to reload: a hang-up is a graceful stop (a handover, not a TTL wait)
        signal.signal(signal.SIGHUP, handler)
