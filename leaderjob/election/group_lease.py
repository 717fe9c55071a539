"""A group's one lease (etcd's "session"): granted with back-off, renewed, revoked if abandoned.

A grant that fails backs off, doubling from 0.2 s up to the renew interval (5 s at most): an etcd
back from an outage is not stormed, and the failover grows by no more than that (L1). One
keepalive per renew interval keeps the lease, whatever the number of jobs on it.

Each answer reaches the machine with the send time of its request, read just before sending (S6):
the deadline counts from when the request left, never from when its answer came back.

An abandoned lease (resigned, or lost but not expired) is never renewed again; its revoke waits
until the caller says the jobs of that lease are dead (:meth:`GroupLease.release`), so a successor
can never start while our job still runs. An expired lease is not revoked.

Owns: the grant and its back-off, the keepalive and what its answer says, the leases to revoke,
the time of the last etcd call that succeeded. It must not know the keys, the confirmation or the
watch: the group (``group.py``) decides when to campaign and renew, and what a lost lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from leaderjob.clock import Clock
from leaderjob.config import Timing
from leaderjob.election.deadline import Deadline
from leaderjob.election.machine import Machine, Transition
from leaderjob.election.store import Store, StoreError


@dataclass
class Keepalive:
    """One keepalive as the step reports it, and the machine's transition on its answer."""

    result: str  # ok | failed | expired
    transition: Transition | None
    latency: float | None = None
    error: StoreError | None = None


class GroupLease:
    def __init__(
        self, store: Store, machine: Machine, timing: Timing, clock: Clock, rpc_timeout: float
    ) -> None:
        self.store = store
        self.machine = machine
        self.timing = timing
        self.clock = clock
        self.rpc_timeout = rpc_timeout
        #: Abandoned leases not revoked yet (their jobs may still run).
        self.to_revoke: list[int] = []
        #: When a grant may be tried again, after a failed campaign.
        self.next_grant_at = 0.0
        self._backoff = 0.0
        #: Monotonic time of the last etcd call that succeeded (for readiness).
        self.last_contact: float | None = None

    def grant(self, errors: list[StoreError]) -> Transition | None:
        """A new lease, handed to the machine with the grant's send time; None if the grant
        failed (the next try backs off)."""
        sent_at = self.clock.monotonic()
        try:
            # Bounded by the renew interval: a campaign stuck on a dead endpoint must not hold the
            # loop (signals, health) for the whole RPC timeout; the next try uses another member.
            grant = self.store.grant(
                int(self.timing.ttl), timeout=min(self.rpc_timeout, self.timing.renew_interval)
            )
        except StoreError as exc:
            errors.append(exc)
            self.back_off(sent_at)
            return None
        self.last_contact = self.clock.monotonic()
        return self.machine.granted(grant.lease_id, grant.ttl, sent_at)

    def keepalive(self, dl: Deadline) -> Keepalive:
        """Renew the lease by ``dl``; the machine takes the answer with the keepalive's send
        time."""
        lease = self.machine.lease
        assert lease is not None
        sent_at = self.clock.monotonic()  # read just before sending: the deadline counts from here
        try:
            # The step's budget, half an interval: a keepalive lost in a blackhole leaves time
            # for a retry.
            ttl = self.store.keepalive(
                lease.lease_id, timeout=dl.timeout("keepalive", self.rpc_timeout)
            )
        except StoreError as exc:
            failed_at = self.clock.monotonic()
            t = self.machine.renew_failed(failed_at, sent_at=sent_at)
            return Keepalive("failed", t, error=exc)
        now = self.clock.monotonic()
        self.last_contact = now
        t = self.machine.renewed(sent_at, ttl, now)
        return Keepalive("ok" if ttl > 0 else "expired", t, latency=now - sent_at)

    def back_off(self, now: float) -> None:
        """No grant before a back-off from ``now`` (a campaign failed)."""
        # Capped at the renew interval too (and so well under the TTL): once etcd is back after
        # an outage, a back-off must not add more than that to the failover (L1).
        cap = min(5.0, self.timing.renew_interval)
        self._backoff = min(cap, max(0.2, self._backoff * 2))
        self.next_grant_at = now + self._backoff

    def campaigned(self) -> None:
        """A campaign got its keys: the next failure backs off from the shortest wait again."""
        self._backoff = 0.0

    def release(self) -> list[StoreError]:
        """Best-effort revoke of abandoned leases (call only when their jobs are dead)."""
        errors: list[StoreError] = []
        while self.to_revoke:
            lease_id = self.to_revoke.pop()
            try:
                self.store.revoke(lease_id, timeout=min(1.0, self.rpc_timeout))
            except StoreError as exc:
                errors.append(exc)  # it expires on its own within the TTL
        return errors
