"""Spreading, the driver: tells the pure :class:`~leaderjob.spread.Spreader` what this replica
sees, and carries out its decision through the group's queues.

Membership (M, the live replicas of the group) is the number of candidates in one job's queue —
every replica queues for every job — read once per renew interval: one cheap request for the
whole group. A release hands an idle job over (its runner has no run and no retry pending: a job
moves only between runs) by deleting our key of it; the next in line takes over and claims the
next slot (L2); our key is re-created at the back. A step-back does the same for a standby key.
A candidate at the head of a queue always leads at once: spreading acts afterwards, between runs.

The count lags: read once per renew interval, it can still include a replica that just crashed or
stopped. Its jobs come to the survivors at once (L1, L2), and a survivor judging its new load
against the old, smaller share would release a job the fair share does not require — passed back
and forth between survivors, or handed to itself when it is the last one. So a job coming to this
replica makes the count stale: it is read again before the rules see anything, and nothing is
decided until that read succeeds. (A join only lowers the share: a late count of it delays moves,
it never adds one.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from leaderjob.election.store import StoreError
from leaderjob.spread import Spreader, View

if TYPE_CHECKING:
    from leaderjob.daemon.loop import Daemon


class Spreading:
    def __init__(self, daemon: Daemon, spreader: Spreader) -> None:
        self.daemon = daemon
        self.spreader = spreader
        self.members = 1
        self._read_at = 0.0
        self._leading: frozenset[str] = frozenset()  # as of the last tick
        self._stale = False  # a job came to us since the last count

    def tick(self) -> None:
        d = self.daemon
        group = d.session.group
        if group.lease_id is None or not self.spreader.enabled:
            return
        now = d.clock.monotonic()
        runners = {n: r for n, r in d.runners.items() if not r.retiring}
        leading = frozenset(n for n, r in runners.items() if r.seat.leading)
        if leading - self._leading:
            self._stale = True  # a failover to us: the count may still hold the one that left
            self._read_at = now  # so read it now (a failed read waits a renew interval)
        self._leading = leading
        if now >= self._read_at and d.session.may_call():
            self._read_at = now + d.s.timing.renew_interval
            if self._count_members():
                self._stale = False
        if self._stale:
            return  # no move on a member count that may be one leave behind
        idle = frozenset(n for n in leading if runners[n].idle)
        standby = frozenset(n for n in runners if n in group.keys and n not in leading)
        view = View(self.members, frozenset(runners), leading, idle, standby)
        decision = self.spreader.decide(view, now)
        if decision.release is not None:
            d.log.info("spread.released", job=decision.release, reason=decision.reason)
            t = group.requeue(decision.release)
            if t is not None:
                d._on_transition(t)
        elif decision.step_back is not None:
            d.log.info("spread.stepped_back", job=decision.step_back, reason=decision.reason)
            group.requeue(decision.step_back)

    def _count_members(self) -> bool:
        """Read M; False if it could not be read now."""
        d = self.daemon
        group = d.session.group
        queued = sorted(n for n in group.keys if n in group.prefixes)
        if not queued:
            return False
        try:
            keys = d.session.store.candidates(
                group.prefixes[queued[0]], timeout=d.session.io_timeout()
            )
        except StoreError as exc:
            d.session.store_error(exc)
            return False
        self.members = max(1, len({k.lease_id for k in keys}))
        return True
