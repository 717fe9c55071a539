"""The elector: one election on a lease of its own — a :class:`~.group.Group` of one job.

etcd's election recipe (``concurrency.Election``), with the fixes docs/safety.md asks for:

1. Grant a lease; create ``<prefix>/<lease-id-hex>`` with ``If(CreateRevision == 0) Then Put``.
   The key's create revision is our place in the queue and, if we win, the fencing token.
2. Read our key and the live key created just before ours, in one linearizable Txn. If there is
   one, watch it (and our own key) for deletion — only that one, so a leadership change wakes one
   candidate, not all of them.
3. When nothing is before us, that same read, made after winning, is the confirmation: our key is
   present, with our token, and no lower key exists (etcd #19597: a bare Campaign can report
   leadership after the candidate's own lease expired).
4. While leading, renew every renew interval and re-read our key once per renewal period, because
   keepalives alone are not trusted on old etcd versions (3.4 < .31/.38 lease bugs).
5. While waiting, re-read our standing once per renew interval too: a watch is trusted for no
   longer than that (it can sit on a member that lost its peers, silent, for as long as the
   partition lasts).

Abandoned leases are never renewed again; their revoke is deferred until the caller says the job
of that tenure is dead (:meth:`release`), so a successor can never start while our job still runs.
A lost key abandons the lease, so a rejoin always gets a new lease and a larger token.

The rules and the I/O are the group's (``group.py``), run with ``single=True``: this class only
names the one candidacy.
"""

from __future__ import annotations

from collections.abc import Collection

from leaderjob.clock import Clock, Wakeable
from leaderjob.config import Timing
from leaderjob.election.deadline import Deadline
from leaderjob.election.group import Group, Outcome
from leaderjob.election.machine import DEFAULT, Machine, Phase, Transition
from leaderjob.election.store import Store, StoreError

__all__ = ["Elector", "Outcome"]


class Elector:
    def __init__(
        self,
        store: Store,
        timing: Timing,
        prefix: str,
        identity: str,
        clock: Clock,
        wakeup: Wakeable,
        rpc_timeout: float = 5.0,
    ) -> None:
        self.group = Group(store, timing, identity, clock, wakeup, rpc_timeout, single=True)
        self.group.want(DEFAULT, prefix)
        self.store = store
        self.timing = timing
        self.prefix = prefix.rstrip("/")
        self.identity = identity
        self.clock = clock
        self.wakeup = wakeup
        self.rpc_timeout = rpc_timeout

    # -- queries ----------------------------------------------------------------------------

    @property
    def machine(self) -> Machine:
        return self.group.machine

    @property
    def key(self) -> str | None:
        return self.group.keys.get(DEFAULT)

    @property
    def create_revision(self) -> int:
        return self.group.revisions.get(DEFAULT, 0)

    @property
    def to_revoke(self) -> list[int]:
        return self.group.to_revoke

    @property
    def last_contact(self) -> float | None:
        return self.group.last_contact

    @property
    def phase(self) -> Phase:
        return self.group.phase

    @property
    def token(self) -> int | None:
        return self.machine.token

    @property
    def lease_id(self) -> int | None:
        return self.group.lease_id

    def next_wakeup(self, now: float, may_campaign: bool) -> float:
        return self.group.next_wakeup(now, may_campaign)

    # -- the step ---------------------------------------------------------------------------

    def check(self, now: float) -> Transition | None:
        """Deadline rules only, no I/O: the first thing after any wait or freeze."""
        return self.group.check(now)

    def step(
        self, may_campaign: bool, hold: Collection[str] = (), deadline: Deadline | None = None
    ) -> Outcome:
        return self.group.step(may_campaign, hold, deadline)

    def recheck(self) -> None:
        """Re-read our standing at the next step (e.g. after a fenced write was refused)."""
        self.group.recheck()

    def resign(self) -> Transition | None:
        """Give up the lease on purpose. Revoke it with :meth:`release` once the job is dead."""
        return self.group.resign()

    def release(self) -> list[StoreError]:
        """Best-effort revoke of abandoned leases (call only when their jobs are dead)."""
        return self.group.release()

    def close(self) -> None:
        self.group.close()
