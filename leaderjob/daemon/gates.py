"""Per-job health gates (``health-cmd`` / ``health-url`` of a job in the jobs file).

The daemon's own health gate stays global: a sick replica leads nothing. A job's gate closes
that job only: the gate decides to hand it over (:class:`~.decisions.HandOver`: its run
stopped, then its key deleted — the next in line takes over and claims the next slot) and holds
it out of its queue until its check passes; the daemon's other jobs carry on.

:class:`Checkers` owns the checkers' threads, one per gated job, in step with the jobs: started
when a job comes (at start or by a reload), replaced when its check changes, stopped when it
goes. :class:`Gates` is the policy: it reads them and returns decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from leaderjob.daemon.decisions import HandOver, JobView
from leaderjob.ops.health import HealthChecker, HealthSettings


class Check(Protocol):
    healthy: bool
    consecutive_failures: int
    last_error: str | None

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Checkers:
    """Each gated job's checker (its own thread), kept in step with the jobs."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.by_job: dict[str, Check] = {}
        self._settings: dict[str, HealthSettings] = {}
        self.running = False  # checkers start with the daemon (serve), not when built

    def sync(self, job: str, settings: HealthSettings | None) -> None:
        """``job``'s gate is ``settings`` from now on: a new checker if its check changed."""
        if settings is not None and not settings.enabled:
            settings = None
        if self._settings.get(job) == settings:
            return
        self.drop(job)
        if settings is None:
            return
        checker: Check = HealthChecker(settings, self.wake)
        self.by_job[job] = checker
        self._settings[job] = settings
        if self.running:
            checker.start()

    def drop(self, job: str) -> None:
        """``job`` is gone (or its check changed): its checker stops."""
        checker = self.by_job.pop(job, None)
        self._settings.pop(job, None)
        if checker is not None:
            checker.stop()

    def start(self) -> None:
        """Start every checker (once: the first cycle; later ones start when synced)."""
        if self.running:
            return
        self.running = True
        for checker in self.by_job.values():
            checker.start()

    def stop(self) -> None:
        for job in list(self.by_job):
            self.drop(job)

    def get(self, job: str) -> Check | None:
        return self.by_job.get(job)


class Gates:
    """The policy: a job whose check fails is handed over and held out of its queue."""

    def __init__(self, checkers: Checkers, log: Any) -> None:
        self.checkers = checkers
        self.log = log
        self.down: set[str] = set()

    def decide(self, jobs: Mapping[str, JobView]) -> list[HandOver]:
        self.down &= set(jobs)  # a job that is gone is not down
        decisions = []
        for name, view in jobs.items():
            h = self.checkers.get(name)
            if h is None or h.healthy:
                if name in self.down:
                    self.down.discard(name)
                    self.log.info("health.job_recovered", job=name)
                continue
            if name not in self.down:
                self.down.add(name)
                self.log.warning(
                    "health.job_failed",
                    job=name,
                    failures=h.consecutive_failures,
                    error=h.last_error,
                )
            if (view.running or view.queued) and not view.leaving:
                decisions.append(HandOver(name, "unhealthy"))
        return decisions

    def held(self, jobs: Iterable[str]) -> list[str]:
        """Jobs that may not queue now: their check fails."""
        return [j for j in jobs if j in self.down]
