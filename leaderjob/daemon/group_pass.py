"""A group's pass over its jobs, and when the loop must wake for them.

Every cycle collects what the guardian reported for each job (a job with news is visited in
the next pass); the pass itself takes the jobs in turn, so that no job keeps the others
waiting cycle after cycle, and visits only those with something due (:mod:`.attention`); after
it, each job's wake-up time is asked again only where it may have moved. The single-job form
uses the same collection and wake-up (every time: its one job is always asked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leaderjob.clock import Clock
from leaderjob.daemon.attention import Attention
from leaderjob.daemon.model import Report
from leaderjob.daemon.runner import Runner
from leaderjob.daemon.session import Session
from leaderjob.daemon.together import start_together


class GroupPass:
    def __init__(self, runners: dict[str, Runner], clock: Clock) -> None:
        self.runners = runners  # the daemon's own dict: a reload changes it in place
        self.clock = clock
        self.attention = Attention()
        self._turn = -1  # which job a pass starts with: each in turn

    def collect(self) -> bool:
        """Absorb every job's reports (every job, not up to the first that finished); whether
        a run finished."""
        finished = False
        for name, r in self.runners.items():
            ended, news = r.collect_runs()
            finished = finished or ended
            if news:
                self.attention.note(name)
        return finished

    def start(
        self, may_start: Callable[[Runner], bool], session: Session, log: Any
    ) -> dict[str, Report]:
        """One pass: the jobs with something due, in turn, claim and start together."""
        self._turn = (self._turn + 1) % len(self.runners)
        names = list(self.runners)
        names = names[self._turn :] + names[: self._turn]
        visit = self.attention.visit(names, self.clock.monotonic())
        return start_together([(n, self.runners[n]) for n in visit], may_start, session, log)

    def wakeup(self, now: float, staying: bool, every: bool) -> float:
        """The earliest time a job needs the loop (monotonic). ``staying``: the replica is not
        leaving (a job's starts count only then); ``every``: ask every job (while leaving, or a
        single job, whose pass is not the attention's)."""
        a = self.attention
        for name, r in self.runners.items():
            if every or a.stale(name):
                a.woke(name, r.next_wakeup(now, r.seat.leading and staying))
        a.settled()
        return a.earliest(self.runners)
