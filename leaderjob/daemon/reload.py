"""Reloading the jobs file: on SIGHUP, and when the file changes.

A change is seen by a ``stat`` of the path, following symlinks (Kubernetes swaps a ConfigMap's
``..data`` symlink: the resolved file changes, so does its inode), at most once a second. A new
file is read whole; if it is invalid it is refused — one log line per problem,
``leaderjob_config_reload_failures_total`` — and the jobs before it keep running. Else: added
jobs campaign at once; removed jobs start nothing more and resign their election when their
current run is over; changed jobs take their new settings between runs, at their next slot.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from leaderjob.daemon.model import Settings

if TYPE_CHECKING:
    from leaderjob.daemon.loop import Daemon

#: How often the file is looked at (a stat: cheap, but not every cycle).
CHECK_INTERVAL = 1.0


class Reloader:
    def __init__(
        self, daemon: Daemon, load: Callable[[], Sequence[Settings]], path: str | None
    ) -> None:
        self.daemon = daemon
        self.load = load
        self.path = path
        self.requested = False  # set from the SIGHUP handler: no locks
        self._check_at = 0.0
        self._seen = self._signature()

    def request(self) -> None:
        """Reload at the next cycle. Safe in a signal handler."""
        self.requested = True
        self.daemon.wakeup.set()

    def tick(self) -> None:
        """Once per cycle: reload if asked or the file changed; then retire and reconfigure the
        jobs that are between runs."""
        now = self.daemon.clock.monotonic()
        if self.path is not None and now >= self._check_at:
            self._check_at = now + CHECK_INTERVAL
            seen = self._signature()
            if seen != self._seen:
                self._seen = seen
                self.requested = True
        if self.requested:
            self.requested = False
            self._reload()
        self._settle()

    def _signature(self) -> tuple[int, int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)  # follows symlinks: a swapped ConfigMap counts
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload(self) -> None:
        d = self.daemon
        try:
            jobs = {s.election: s for s in self.load()}
        except ValueError as exc:
            for problem in getattr(exc, "problems", None) or [str(exc)]:
                d.log.error("config.reload_failed", problem=problem, path=self.path)
            if d.metrics is not None:
                d.metrics.config_reload_failures.labels(d.s.election).inc()
            return
        added, removed, changed = [], [], []
        for name, spec in jobs.items():
            r = d.runners.get(name)
            if r is None:
                d._add_runner(name, spec)  # its series exist from now (Runner)
                d.session.group.want(name, spec.election_prefix)
                added.append(name)
                continue
            if r.retiring:  # removed, then back before it retired
                r.retiring = False
                d.session.group.want(name, spec.election_prefix)
                added.append(name)
            if spec != r.s:
                r.pending_settings = spec
                changed.append(name)
        for name, r in d.runners.items():
            if name not in jobs and not r.retiring:
                r.retiring = True
                removed.append(name)
        if added or removed or changed:
            d.config = d._config_watch(list(jobs.values()))  # compared anew with the others'
        d.log.info("config.reloaded", added=added, removed=removed, changed=changed)

    def _settle(self) -> None:
        """Between runs: apply new settings, and let removed jobs go (resign, then forget)."""
        d = self.daemon
        for name, r in list(d.runners.items()):
            if r.runs:
                continue
            if r.pending_settings is not None or r.retiring:
                r.give_back_ahead()  # claimed under the old settings, or by a job that goes
            if r.pending_settings is not None:
                r.reconfigure(r.pending_settings)
                r.pending_settings = None
            if r.retiring:
                t = d.session.group.withdraw(name)
                if t is not None:
                    d._on_transition(t)
                del d.runners[name]
                if d.metrics is not None:
                    d.metrics.forget(name)
                d.log.info("job.retired", job=name)
