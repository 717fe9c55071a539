"""Spreading, the driver: tells the pure :class:`~leaderjob.daemon.spread.Spreader` what this
replica sees, and carries out its decision through the group's queues.

Membership (M, the live replicas of the group) is the number of candidates in one job's queue —
every replica queues for every job — read in the confirmation of our keys, once per renew
interval: one more operation in that Txn, no request of its own. A release hands an idle job
over (its runner has no run and no retry pending: a job moves only between runs) by deleting our
key of it; the next in line takes over and claims the next slot (L2); our key is re-created at
the back. A step-back does the same for a standby key. A candidate at the head of a queue always
leads at once: spreading acts afterwards, between runs.

The count lags: read once per renew interval, it can still include a replica that just crashed or
stopped. Its jobs come to the survivors at once (L1, L2), and a survivor judging its new load
against the old, smaller share would release a job the fair share does not require — passed back
and forth between survivors, or handed to itself when it is the last one. So a job coming to this
replica makes the count stale: a confirmation is asked for at once, and nothing is decided until
a count sent after the job came has been read. (A join only lowers the share: a late count of it
delays moves, it never adds one.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leaderjob.clock import Clock
from leaderjob.daemon.decisions import HandOver, JobView
from leaderjob.daemon.spread import Spreader, View
from leaderjob.election.group import Group


class Spreading:
    """The policy: which job to hand over (or which standby key to step back), if any. It reads
    the group's member count through the confirmations of our keys; the applier moves the job."""

    def __init__(self, group: Group, spreader: Spreader, *, clock: Clock, log: Any) -> None:
        self.group = group
        self.clock = clock
        self.log = log
        self.spreader = spreader
        self.members = 1
        self._read_at = float("-inf")  # send time of the newest reading counted
        self._leading: frozenset[str] = frozenset()  # as of the last tick
        #: When a job last came to us: no move until a count sent after it was read.
        self._stale_since: float | None = None

    def active(self) -> bool:
        """Whether :meth:`decide` reads the jobs now: spreading is on and we hold a lease."""
        return self.group.lease_id is not None and self.spreader.enabled

    def decide(self, jobs: Mapping[str, JobView]) -> HandOver | None:
        group = self.group
        if not self.active():
            return None
        now = self.clock.monotonic()
        current = {n: v for n, v in jobs.items() if not v.leaving}
        leading = frozenset(n for n, v in current.items() if v.leading)
        if leading - self._leading:
            self._stale_since = now  # a failover to us: the count may still hold the one that left
            group.recheck()  # so count again now, in a confirmation of its own
        self._leading = leading
        self._count_members()
        if self._stale_since is not None:
            if self._read_at < self._stale_since:
                return None  # no move on a member count that may be one leave behind
            self._stale_since = None
        idle = frozenset(n for n in leading if current[n].idle)
        standby = frozenset(n for n, v in current.items() if v.queued and n not in leading)
        view = View(self.members, frozenset(current), leading, idle, standby)
        decision = self.spreader.decide(view, now)
        if decision.release is not None:
            self.log.info("spread.released", job=decision.release, reason=decision.reason)
            return HandOver(decision.release, "spread")
        if decision.step_back is not None:
            self.log.info("spread.stepped_back", job=decision.step_back, reason=decision.reason)
            return HandOver(decision.step_back, "spread_step_back")
        return None

    def _count_members(self) -> None:
        group = self.group
        queued = sorted(n for n in group.keys if n in group.prefixes)
        if not queued:
            return
        group.read_while_leading("members", group.prefixes[queued[0]] + "/", always=True)
        reading = group.shared_readings.get("members")
        if reading is None or reading.sent_at <= self._read_at:
            return
        self._read_at = reading.sent_at
        self.members = max(1, len({k.lease_id for k in reading.keys}))
