"""Reloading the jobs file: on SIGHUP, and when the file changes.

A change is seen by a ``stat`` of the path, following symlinks (Kubernetes swaps a ConfigMap's
``..data`` symlink: the resolved file changes, so does its inode), at most once a second. A new
file is read whole; if it is invalid it is refused — one log line per problem,
``leaderjob_config_reload_failures_total`` — and the jobs before it keep running. Else the
reloader compares it with the jobs as they are to be and returns decisions (carried out by
:mod:`.applier`): added jobs campaign at once; removed jobs start nothing more and resign when
their run is over (a service's run is stopped first: it never ends on its own); changed jobs take
their new settings between runs, at their next slot (a service is stopped and starts again with
them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from leaderjob.clock import Clock
from leaderjob.daemon.decisions import Add, Decision, Reconfigure, Retire
from leaderjob.daemon.model import Settings

#: How often the file is looked at (a stat: cheap, but not every cycle).
CHECK_INTERVAL = 1.0


class Reloader:
    def __init__(
        self,
        load: Callable[[], Sequence[Settings]],
        path: str | None,
        *,
        clock: Clock,
        wake: Callable[[], None],
        log: Any,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.load = load
        self.path = path
        self.clock = clock
        self.wake = wake
        self.log = log
        self.on_failure = on_failure
        self.requested = False  # set from the SIGHUP handler: no locks
        self._check_at = 0.0
        self._seen = self._signature()

    def request(self) -> None:
        """Reload at the next cycle. Safe in a signal handler."""
        self.requested = True
        self.wake()

    def tick(self, current: Callable[[], Mapping[str, Settings]]) -> list[Decision] | None:
        """Once per cycle: if asked, or the file changed, read it and compare it with the jobs
        as they are to be (``current()``, asked only then: with many jobs it is not free). None
        when nothing was read (or the file was refused)."""
        now = self.clock.monotonic()
        if self.path is not None and now >= self._check_at:
            self._check_at = now + CHECK_INTERVAL
            seen = self._signature()
            if seen != self._seen:
                self._seen = seen
                self.requested = True
        if not self.requested:
            return None
        self.requested = False
        return self._reload(current())

    def _signature(self) -> tuple[int, int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)  # follows symlinks: a swapped ConfigMap counts
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload(self, current: Mapping[str, Settings]) -> list[Decision] | None:
        try:
            jobs = {s.election: s for s in self.load()}
        except ValueError as exc:
            for problem in getattr(exc, "problems", None) or [str(exc)]:
                self.log.error("config.reload_failed", problem=problem, path=self.path)
            self.on_failure()
            return None
        decisions: list[Decision] = []
        added, removed, changed = [], [], []
        for name, spec in jobs.items():
            was = current.get(name)
            if was is None:
                decisions.append(Add(name, spec))
                added.append(name)
            elif spec != was:
                # A service's run never ends on its own: stop it, it starts again changed.
                decisions.append(Reconfigure(name, spec, stop=was.mode == "service"))
                changed.append(name)
        for name, was in current.items():
            if name not in jobs:
                decisions.append(Retire(name, "removed", stop=was.mode == "service"))
                removed.append(name)
        self.log.info("config.reloaded", added=added, removed=removed, changed=changed)
        return decisions
