"""Which of a group's jobs one pass of the loop looks at: those with something due.

A pass over a job (its schedule step: the switches, catch-up, the slot due, claims, records)
costs tens of microseconds even when nothing is due, and in a burst the loop passes for every
few answers of the guardian: with a thousand jobs, most of a burst's CPU went to jobs with
nothing to do. So a pass visits a job only when

* its own wake-up time has come (what the loop would sleep until for it alone: its next slot,
  its claim ahead, a retry, a control reading, a start's answer, a timeout — the runner's
  ``next_wakeup``, recorded after each pass by :meth:`Attention.woke`); or
* news came for it: a report of one of its runs (:meth:`Attention.note`); or
* something may have changed for every job: a leadership change, a policy's decision (reload,
  gates, spreading) or one under way, a read of the election's keys (the control switches ride
  on it) — :meth:`Attention.everyone`; or
* its wake-up time is not known: it was visited and not yet given a new one (a loop driven pass
  by pass, without its wait, visits every job every time, as before); or
* the last full pass is :data:`FULL_EVERY` old: whatever a source of news above misses waits
  that long at most.

The wake-up times are kept between passes, so the loop asks again only the jobs whose time may
have moved (:meth:`Attention.stale`: those visited or with news since, every job after a change
for all or a full pass) and takes the earliest of the others as it was (:meth:`Attention.earliest`).

Skipping a job only delays what it would start; nothing it enforces lives here (deadline
extensions, timeouts and the guardian's reports are handled for every job at every cycle).
Pure: the caller hands it the time and the names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: A full pass at least this often (seconds), whatever the jobs' wake-up times say.
FULL_EVERY = 1.0


class Attention:
    def __init__(self, full_every: float = FULL_EVERY) -> None:
        self.full_every = full_every
        #: Each job's wake-up time (monotonic), as recorded after the last pass.
        self._wake: dict[str, float] = {}
        self._news: set[str] = set()
        self._everyone = True
        self._full_at = -math.inf
        #: Jobs whose wake-up time may have moved since it was recorded (None: every job).
        self._stale: set[str] | None = None

    def note(self, job: str) -> None:
        """News for ``job`` (a report of one of its runs): the next pass visits it."""
        self._news.add(job)
        if self._stale is not None:
            self._stale.add(job)

    def everyone(self) -> None:
        """Something may have changed for every job: the next pass visits them all."""
        self._everyone = True
        self._stale = None

    def woke(self, job: str, at: float) -> None:
        """``job`` has nothing to do before ``at`` (monotonic), unless news comes."""
        self._wake[job] = at

    def stale(self, job: str) -> bool:
        """Whether ``job``'s wake-up time must be asked again (it may have moved)."""
        return self._stale is None or job in self._stale or job not in self._wake

    def settled(self) -> None:
        """Every stale wake-up time was asked again (:meth:`woke`)."""
        self._stale = set()

    def earliest(self, jobs: Iterable[str]) -> float:
        """The earliest wake-up time of ``jobs`` (-inf for one not known)."""
        wake = self._wake
        return min((wake.get(j, -math.inf) for j in jobs), default=math.inf)

    def visit(self, jobs: Iterable[str], now: float) -> list[str]:
        """The jobs (of ``jobs``, in their order) the pass at ``now`` visits. Each visited job's
        wake-up time is forgotten until :meth:`woke` gives it a new one."""
        names = list(jobs)
        self._news, news = set(), self._news
        if self._everyone or now >= self._full_at:
            self._everyone = False
            self._full_at = now + self.full_every
            self._wake.clear()  # a job retired since is forgotten here too
            self._stale = None
            return names
        wake = self._wake
        chosen = [j for j in names if j in news or wake.get(j, -math.inf) <= now]
        for job in chosen:
            wake.pop(job, None)
        if self._stale is not None:
            self._stale.update(chosen)
        return chosen
