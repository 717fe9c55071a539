"""The elector: drives the pure :class:`Machine` with a :class:`Store`.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leaderjob.clock import Clock, Wakeable
from leaderjob.config import Timing
from leaderjob.election.machine import Machine, Phase, Reason, Transition
from leaderjob.election.store import Store, StoreError, Watch


@dataclass
class Outcome:
    """What one :meth:`Elector.step` did: state changes and the etcd errors it met."""

    transitions: list[Transition] = field(default_factory=list)
    errors: list[StoreError] = field(default_factory=list)
    renewed: bool = False
    keepalive_latency: float | None = None
    keepalive_result: str | None = None  # ok | failed | expired


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
        self.store = store
        self.timing = timing
        self.prefix = prefix.rstrip("/")
        self.identity = identity
        self.clock = clock
        self.wakeup = wakeup
        self.rpc_timeout = rpc_timeout
        self.machine = Machine(timing)
        self.key: str | None = None
        self.create_revision = 0
        self._watch: Watch | None = None
        self._watched: list[str] = []
        self._recheck = False
        self._confirm_at = 0.0
        self._next_campaign_at = 0.0
        self._backoff = 0.0
        self.to_revoke: list[int] = []
        #: Monotonic time of the last etcd call that succeeded (for readiness).
        self.last_contact: float | None = None

    # -- queries ----------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.machine.phase

    @property
    def token(self) -> int | None:
        return self.machine.token

    @property
    def lease_id(self) -> int | None:
        return None if self.machine.lease is None else self.machine.lease.lease_id

    def next_wakeup(self, now: float, may_campaign: bool) -> float:
        times = [now + self.timing.renew_interval]
        t = self.machine.next_wakeup(now)
        if t is not None:
            times.append(t)
        if self.machine.phase is not Phase.IDLE:
            times.append(self._confirm_at)
        if self.machine.lease is None and may_campaign:
            times.append(self._next_campaign_at)
        return min(times)

    # -- the step ---------------------------------------------------------------------------

    def check(self, now: float) -> Transition | None:
        """Deadline rules only, no I/O: the first thing after any wait or freeze."""
        return self._after(self.machine.check(now))

    def step(self, may_campaign: bool) -> Outcome:
        out = Outcome()
        now = self.clock.monotonic()
        self._note(out, self.check(now))
        if self.machine.lease is None:
            if may_campaign and now >= self._next_campaign_at:
                self._campaign(out)
            return out
        if self.machine.renew_due(now):
            self._renew(out)
        phase = self.machine.phase
        now = self.clock.monotonic()
        # A candidate re-reads its standing at least once per renew interval, watch or not: a
        # watch can sit silent on a member that lost its peers (or froze), and that must delay a
        # successor by one renew interval at most, not for as long as the partition lasts.
        due = now >= self._confirm_at or self._watch_fired()
        if (phase is Phase.CAMPAIGNING and (self._recheck or due)) or (
            phase is Phase.LEADING and due
        ):
            self._read_standing(out)
        return out

    def recheck(self) -> None:
        """Re-read our standing at the next step (e.g. after a fenced write was refused)."""
        self._recheck = True
        self._confirm_at = 0.0

    def resign(self) -> Transition | None:
        """Give up the lease on purpose. Revoke it with :meth:`release` once the job is dead."""
        return self._after(self.machine.resign())

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

    def close(self) -> None:
        self._cancel_watch()

    # -- internals --------------------------------------------------------------------------

    def _campaign(self, out: Outcome) -> None:
        sent_at = self.clock.monotonic()
        try:
            # Bounded by the renew interval: a campaign stuck on a dead endpoint must not hold the
            # loop (signals, health) for the whole RPC timeout; the next try uses another member.
            grant = self.store.grant(
                int(self.timing.ttl), timeout=min(self.rpc_timeout, self.timing.renew_interval)
            )
        except StoreError as exc:
            out.errors.append(exc)
            self._back_off(sent_at)
            return
        self.last_contact = self.clock.monotonic()
        out.transitions.append(self.machine.granted(grant.lease_id, grant.ttl, sent_at))
        self.key = f"{self.prefix}/{grant.lease_id:x}"
        try:
            info = self.store.create(
                self.key,
                self.identity.encode(),
                grant.lease_id,
                timeout=self.machine.rpc_deadline(self.clock.monotonic(), self.rpc_timeout),
            )
        except StoreError as exc:
            out.errors.append(exc)
            self._note(out, self._after(self.machine.key_lost()))
            self._back_off(self.clock.monotonic())
            return
        self._backoff = 0.0
        self.create_revision = info.create_revision
        self._recheck = True
        self._read_standing(out)

    def _renew(self, out: Outcome) -> None:
        lease = self.machine.lease
        assert lease is not None
        sent_at = self.clock.monotonic()  # read just before sending: the deadline counts from here
        # Half an interval: a keepalive lost in a blackhole leaves time for a retry.
        timeout = self.machine.rpc_deadline(sent_at, self.timing.renew_interval / 2)
        try:
            ttl = self.store.keepalive(lease.lease_id, timeout=timeout)
        except StoreError as exc:
            out.errors.append(exc)
            out.keepalive_result = "failed"
            self._note(out, self._after(self.machine.renew_failed(self.clock.monotonic())))
            return
        now = self.clock.monotonic()
        self.last_contact = now
        out.keepalive_latency = now - sent_at
        out.keepalive_result = "ok" if ttl > 0 else "expired"
        out.renewed = ttl > 0
        self._note(out, self._after(self.machine.renewed(sent_at, ttl, now)))

    def _read_standing(self, out: Outcome) -> None:
        assert self.key is not None
        now = sent_at = self.clock.monotonic()
        # Capped like a keepalive: a read lost in a blackhole must not block the next renewal.
        timeout = self.machine.rpc_deadline(
            now, min(self.rpc_timeout, self.timing.renew_interval / 2)
        )
        try:
            standing = self.store.standing(
                self.prefix, self.key, self.create_revision, timeout=timeout
            )
        except StoreError as exc:
            out.errors.append(exc)
            self.machine.confirm_failed()
            self._confirm_at = self.clock.monotonic() + self.timing.renew_interval / 4
            return
        self._recheck = False
        now = self.clock.monotonic()
        self.last_contact = now
        self._note(out, self.check(now))
        lease = self.machine.lease
        if lease is None:
            return
        own = standing.own
        if (
            own is None
            or own.create_revision != self.create_revision
            or own.lease_id != (lease.lease_id)
        ):
            self._note(out, self._after(self.machine.key_lost()))
            return
        self._confirm_at = now + self.timing.renew_interval
        self.machine.confirmed(sent_at)
        if standing.predecessor is not None:
            if self.machine.phase is Phase.LEADING:
                # Someone sits before the leader: keys were tampered with. Trust the store.
                self._note(out, self._after(self.machine.key_lost()))
                return
            self._watch_keys([standing.predecessor.key, self.key], standing.revision)
            return
        if self.machine.phase is Phase.CAMPAIGNING:
            self._note(out, self._after(self.machine.won(self.create_revision, now)))
            if self.machine.lease is None or self.key is None:
                return
            if self.machine.phase is Phase.CAMPAIGNING:
                # First in the queue, but the campaign was too slow to lead on its grant. Read
                # again after the next renewal (already due: renew_interval < renew_deadline);
                # without a re-read our key would stay first, kept alive, nobody leading.
                self._recheck = True
        self._watch_keys([self.key], standing.revision)

    def _watch_keys(self, keys: list[str], revision: int) -> None:
        if self._watch is not None and not self._watch.fired.is_set() and keys == self._watched:
            return  # the live watch already covers these keys since an earlier revision
        self._cancel_watch()
        self._watched = keys
        timeout = self.machine.rpc_deadline(
            self.clock.monotonic(), min(self.rpc_timeout, self.timing.renew_interval / 2)
        )
        try:
            self._watch = self.store.watch_deletes(
                keys, revision + 1, self.wakeup.set, timeout=timeout
            )
        except StoreError:
            self._watch = None
            self._recheck = True  # read again next cycle

    def _watch_fired(self) -> bool:
        return self._watch is not None and self._watch.fired.is_set()

    def _cancel_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _after(self, t: Transition | None) -> Transition | None:
        if t is not None and t.lease_id is not None and self.machine.lease is None:
            self._cancel_watch()
            self.key = None
            if t.reason is not Reason.LEASE_EXPIRED:
                self.to_revoke.append(t.lease_id)
        return t

    def _back_off(self, now: float) -> None:
        # Capped at the renew interval too (and so well under the TTL): once etcd is back after
        # an outage, a back-off must not add more than that to the failover (L1).
        cap = min(5.0, self.timing.renew_interval)
        self._backoff = min(cap, max(0.2, self._backoff * 2))
        self._next_campaign_at = now + self._backoff

    @staticmethod
    def _note(out: Outcome, t: Transition | None) -> None:
        if t is not None:
            out.transitions.append(t)
