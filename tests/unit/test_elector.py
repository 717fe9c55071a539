"""Elector + MemoryStore + FakeClock: several replicas on one in-memory etcd, stepped by hand.

Timing: ttl 3 s (renew every 1 s with a 0.5 s keepalive timeout, retry a failed keepalive every
0.25 s, give up 2.544 s after the last answered one, grace 0.3 s, margin 0.12 s). The server
expires a lease 3 s after it last received a keepalive; a replica's deadline D is 2.874 s after
it last *sent* one.

MemoryStore faults fail a call at once. :class:`Blackhole` models the other kind: a request that
never arrives hangs for its whole timeout (the FakeClock jumps by it), then fails.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.election.elector import Elector, Outcome
from leaderjob.election.machine import Phase, Reason
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import Grant, KeyInfo, Standing, Store, StoreUnavailable, Watch
from tests.unit.slowstore import SlowStore

TIMING = Timing.from_ttl(3)
PREFIX = "/leaderjob/test/leader"
T = 1.0


class CountingEvent(threading.Event):
    """The elector's wakeup event, counting how often a watch callback set it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def set(self) -> None:
        self.count += 1
        super().set()


class Blackhole:
    """A client of the shared in-memory etcd on a network path that can silently drop packets.

    While the hole is open, a call (of ``ops`` only, if given) never reaches the server: with
    ``hang`` it waits out its whole timeout, the FakeClock jumping by it, then fails, as a gRPC
    call into a blackhole does; without, it fails at once. :meth:`open_after` opens the hole
    just after the next successful call of one operation (e.g. between a keepalive and the
    confirm read that follows it in the same step).
    """

    def __init__(self, store: MemoryStore, clock: FakeClock) -> None:
        self.inner = store.client()
        self.clock = clock
        self.until = -math.inf
        self.ops: frozenset[str] | None = None
        self.hang = True
        self._armed: tuple[str, float] | None = None

    def open(self, seconds: float, ops: Sequence[str] | None = None, *, hang: bool = True) -> None:
        self.until = self.clock.monotonic() + seconds
        self.ops = None if ops is None else frozenset(ops)
        self.hang = hang

    def open_after(self, operation: str, seconds: float) -> None:
        self._armed = (operation, seconds)

    def heal(self) -> None:
        self.until = -math.inf

    def _enter(self, operation: str, timeout: float) -> None:
        if self.clock.monotonic() < self.until and (self.ops is None or operation in self.ops):
            if self.hang:
                self.clock.advance(timeout)
            raise StoreUnavailable(operation, "blackholed")

    def _done(self, operation: str) -> None:
        if self._armed is not None and self._armed[0] == operation:
            self.open(self._armed[1])
            self._armed = None

    def grant(self, ttl: int, *, timeout: float) -> Grant:
        self._enter("grant", timeout)
        grant = self.inner.grant(ttl, timeout=timeout)
        self._done("grant")
        return grant

    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        self._enter("keepalive", timeout)
        ttl = self.inner.keepalive(lease_id, timeout=timeout)
        self._done("keepalive")
        return ttl

    def revoke(self, lease_id: int, *, timeout: float) -> None:
        self._enter("revoke", timeout)
        self.inner.revoke(lease_id, timeout=timeout)

    def create(self, key: str, value: bytes, lease_id: int, *, timeout: float) -> KeyInfo:
        self._enter("create", timeout)
        info = self.inner.create(key, value, lease_id, timeout=timeout)
        self._done("create")
        return info

    def standing(
        self, prefix: str, key: str, create_revision: int, *, timeout: float, **kw: Any
    ) -> Standing:
        self._enter("standing", timeout)
        standing = self.inner.standing(prefix, key, create_revision, timeout=timeout, **kw)
        self._done("standing")
        return standing

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> Watch:
        self._enter("watch", 0.0)  # the stream cannot be opened; the elector re-reads instead
        return self.inner.watch_deletes(keys, start_revision, on_fire)

    # The rest of the Store protocol, which the elector does not use: delegated the same way.

    def lease_remaining(self, lease_id: int, *, timeout: float) -> int:
        self._enter("lease_remaining", timeout)
        return self.inner.lease_remaining(lease_id, timeout=timeout)

    def candidates(self, prefix: str, *, timeout: float) -> list[KeyInfo]:
        self._enter("candidates", timeout)
        return self.inner.candidates(prefix, timeout=timeout)

    def get(self, key: str, *, timeout: float) -> KeyInfo | None:
        self._enter("get", timeout)
        return self.inner.get(key, timeout=timeout)

    def get_prefix(
        self, prefix: str, *, timeout: float, limit: int = 0, newest_first: bool = False
    ) -> list[KeyInfo]:
        self._enter("get_prefix", timeout)
        return self.inner.get_prefix(
            prefix, timeout=timeout, limit=limit, newest_first=newest_first
        )

    def put(self, key: str, value: bytes, *, timeout: float) -> None:
        self._enter("put", timeout)
        self.inner.put(key, value, timeout=timeout)

    def delete(self, key: str, *, timeout: float, prefix: bool = False) -> int:
        self._enter("delete", timeout)
        return self.inner.delete(key, timeout=timeout, prefix=prefix)

    def guarded_put(
        self,
        guard_key: str,
        guard_revision: int,
        puts: Sequence[tuple[str, bytes]],
        *,
        absent: Sequence[str] = (),
        deletes: Sequence[str] = (),
        timeout: float,
    ) -> bool:
        self._enter("guarded_put", timeout)
        return self.inner.guarded_put(
            guard_key, guard_revision, puts, absent=absent, deletes=deletes, timeout=timeout
        )

    def close(self) -> None:
        self.inner.close()


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore(self.clock)
        self.electors: list[Elector] = []

    def blackhole(self) -> Blackhole:
        return Blackhole(self.store, self.clock)

    def add(self, store: Store | None = None) -> Elector:
        name = f"replica-{len(self.electors)}"
        e = Elector(store or self.store, TIMING, PREFIX, name, self.clock, CountingEvent())
        self.electors.append(e)
        return e

    def step_all(self) -> None:
        for e in self.electors:
            e.step(may_campaign=True)
            assert len(self.leaders()) <= 1

    def run(self, seconds: float, tick: float = 0.1) -> None:
        """Advance time in ticks, stepping every replica each tick; never two leaders."""
        for _ in range(round(seconds / tick)):
            self.clock.advance(tick)
            self.step_all()

    def leaders(self) -> list[Elector]:
        now = self.clock.monotonic()
        return [e for e in self.electors if e.machine.is_leader(now)]

    def leader(self) -> Elector:
        leaders = self.leaders()
        assert len(leaders) == 1, f"{len(leaders)} leaders"
        return leaders[0]


def wakeups(e: Elector) -> int:
    assert isinstance(e.wakeup, CountingEvent)
    return e.wakeup.count


def events(out: Outcome) -> list[tuple[str, Reason | None]]:
    return [(t.event, t.reason) for t in out.transitions]


@pytest.fixture
def world() -> World:
    return World()


def test_exactly_one_leads(world: World) -> None:
    for _ in range(3):
        world.add()
    world.step_all()
    world.run(10)
    assert world.leader() is world.electors[0]
    assert [e.phase for e in world.electors[1:]] == [Phase.CAMPAIGNING] * 2


def test_lowest_create_revision_wins_not_the_first_to_confirm(world: World) -> None:
    first, second = world.add(), world.add()
    world.store.fail_next(1, "standing")
    first.step(may_campaign=True)  # key created, but its standing read failed
    second.step(may_campaign=True)  # sees first's key before its own
    assert world.leaders() == []
    assert first.create_revision < second.create_revision
    first.step(may_campaign=True)
    assert world.leader() is first
    assert first.token == first.create_revision


def test_l2_handover_after_resign_and_release_takes_one_step(world: World) -> None:
    old, nxt = world.add(), world.add()
    world.step_all()
    old_token = old.token
    assert old_token is not None
    old.resign()
    assert world.leaders() == []
    old.release()
    assert nxt.wakeup.is_set()
    out = nxt.step(may_campaign=True)
    assert events(out) == [("election.acquired", None)]
    assert world.leader() is nxt
    assert nxt.token is not None
    assert nxt.token > old_token  # S2


def test_no_thundering_herd_one_wakeup_per_leadership_change(world: World) -> None:
    for _ in range(5):
        world.add()
    world.step_all()
    leader, *waiting = world.electors
    assert [wakeups(e) for e in world.electors] == [0] * 5
    leader.resign()
    leader.release()
    assert [wakeups(e) for e in world.electors] == [0, 1, 0, 0, 0]
    world.step_all()
    assert world.leader() is waiting[0]
    assert [wakeups(e) for e in world.electors] == [0, 1, 0, 0, 0]


def test_each_candidate_watches_only_its_predecessor(world: World) -> None:
    for _ in range(4):
        world.add()
    world.step_all()
    keys = [e.key or "" for e in world.electors]
    world.store.delete(keys[2], timeout=T)  # a candidate in the middle leaves
    assert [wakeups(e) for e in world.electors] == [0, 0, 1, 1]  # its own watch and successor
    world.step_all()
    assert world.leader() is world.electors[0]
    follower = world.electors[3]
    standing = world.store.standing(PREFIX, keys[3], follower.create_revision, timeout=T)
    assert standing.predecessor is not None
    assert standing.predecessor.key == keys[1]


def test_l5_partitioned_leader_steps_down_by_its_deadline_and_rejoins_with_larger_token(
    world: World,
) -> None:
    cut, healthy = world.store.client(), world.store.client()
    old, other = world.add(cut), world.add(healthy)
    world.step_all()
    assert world.leader() is old
    old_lease, old_token = old.lease_id, old.token
    assert old_token is not None
    cut.partition()
    deadline = old.machine.deadline
    assert deadline is not None
    stepped_down_at = None
    while stepped_down_at is None:
        world.run(0.1)
        if old.phase is not Phase.LEADING:
            stepped_down_at = world.clock.monotonic()
    assert stepped_down_at <= deadline  # S6
    world.run(3)  # the server expires the lost lease; the other replica takes over
    assert world.leader() is other
    assert other.token is not None
    assert other.token > old_token
    cut.heal()
    world.run(5)  # campaign back-off during the outage is capped (renew interval, 5 s)
    assert old.lease_id not in (None, old_lease)  # a NEW lease ...
    assert old.create_revision > other.token > old_token  # ... and a larger place in the queue
    other.resign()
    other.release()
    world.step_all()
    assert world.leader() is old
    assert old.token == old.create_revision  # L5: never the stale token


def test_keepalive_answered_zero_loses_the_lease_and_campaigns_again(world: World) -> None:
    e = world.add()
    world.step_all()
    old_lease, old_token = e.lease_id, e.token
    assert old_lease is not None
    assert old_token is not None
    world.store.expire(old_lease)
    world.clock.advance(TIMING.renew_interval)
    out = e.step(may_campaign=True)
    assert out.keepalive_result == "expired"
    assert events(out) == [("election.lost", Reason.LEASE_EXPIRED)]
    assert old_lease not in e.to_revoke  # nothing left to revoke
    e.step(may_campaign=True)
    assert world.leader() is e
    assert e.lease_id != old_lease
    assert e.token is not None
    assert e.token > old_token


def test_leader_key_deleted_under_it_is_election_lost_at_next_confirm(world: World) -> None:
    e = world.add()
    world.step_all()
    assert e.key is not None
    world.store.delete(e.key, timeout=T)
    out = e.step(may_campaign=False)
    assert events(out) == [("election.lost", Reason.KEY_LOST)]
    assert world.leaders() == []


def test_leader_key_put_again_without_our_lease_is_removed_and_the_election_goes_on_s2_l1(
    world: World,
) -> None:
    """S2, L1: the leader's key put again by hand without a lease (``etcdctl put``) keeps its
    name and create revision but is no longer ours: the tenure ends at the next confirmation.
    No lease will ever remove that key, and it is first in the queue: left there it would
    hold the election for ever (every candidate waiting behind a key nobody renews). It is
    removed, that key alone, and a replica leads again within a TTL."""
    e = world.add()
    other = world.add()
    world.step_all()
    assert world.leader() is e and e.key is not None and e.token is not None
    key, token = e.key, e.token
    world.store.put(key, b"by hand", timeout=T)
    outs = []
    for _ in range(round((TIMING.renew_interval + 0.2) / 0.1)):
        world.clock.advance(0.1)
        outs.append(e.step(may_campaign=True))
        other.step(may_campaign=True)
    assert ("election.lost", Reason.KEY_LOST) in [ev for o in outs for ev in events(o)]
    world.run(TIMING.ttl)
    assert key not in [k.key for k in world.store.get_prefix(PREFIX, timeout=T)]
    leader = world.leader()
    assert leader.token is not None and leader.token > token


def test_leader_key_deleted_is_noticed_by_confirm_read_even_without_watch(world: World) -> None:
    e = world.add()
    world.store.fail_next(1, "watch")  # no watch on its own key
    world.step_all()
    assert e.key is not None
    world.store.delete(e.key, timeout=T)
    assert events(e.step(may_campaign=False)) == []
    world.clock.advance(TIMING.renew_interval)
    out = e.step(may_campaign=False)
    assert ("election.lost", Reason.KEY_LOST) in events(out)


def test_resign_defers_the_revoke_until_release(world: World) -> None:
    e = world.add()
    world.step_all()
    lease, key = e.lease_id, e.key
    assert lease is not None
    assert key is not None
    t = e.resign()
    assert t is not None
    assert (t.event, t.reason) == ("election.lost", Reason.RESIGNED)
    assert world.store.get(key, timeout=T) is not None  # the job may still run: key held
    assert e.release() == []
    assert world.store.lease_remaining(lease, timeout=T) == -1
    assert world.store.get(key, timeout=T) is None
    assert e.to_revoke == []


def test_release_during_an_outage_reports_the_error(world: World) -> None:
    e = world.add()
    world.step_all()
    e.resign()
    world.store.partition()
    errors = e.release()
    assert len(errors) == 1
    assert isinstance(errors[0], StoreUnavailable)


def test_s6_frozen_leader_steps_down_first_thing_without_renewing(world: World) -> None:
    e = world.add()
    world.step_all()
    old_key, old_token = e.key, e.token
    assert old_token is not None
    world.clock.advance(2.9)  # frozen past D (2.874) but before the server expiry (3.0)
    out = e.step(may_campaign=True)
    assert out.transitions[0].event == "election.lost"
    assert out.transitions[0].reason is Reason.DEADLINE_PASSED
    assert out.keepalive_result is None  # no keepalive on the abandoned lease
    assert world.leaders() == []  # campaigning again, queued behind its own old key
    world.clock.advance(0.1)  # the old lease expires on the server
    world.store.get(old_key or "", timeout=T)
    e.step(may_campaign=True)
    assert world.leader() is e
    assert e.token is not None
    assert e.token > old_token


def test_l4_short_fault_changes_nothing(world: World) -> None:
    e, other = world.add(), world.add()
    world.step_all()
    token = e.token
    world.store.fail_next(1, "keepalive")
    world.clock.advance(TIMING.renew_interval)
    out = e.step(may_campaign=True)
    assert (out.keepalive_result, out.transitions) == ("failed", [])
    world.run(5)
    assert world.leader() is e
    assert e.token == token
    assert wakeups(other) == 0


def test_grant_failure_backs_off_then_campaigns(world: World) -> None:
    e = world.add()
    world.store.fail_next(1, "grant")
    out = e.step(may_campaign=True)
    assert len(out.errors) == 1
    assert e.step(may_campaign=True).errors == []  # still backing off: no call at all
    assert e.phase is Phase.IDLE
    world.clock.advance(0.2)
    e.step(may_campaign=True)
    assert world.leader() is e


def test_may_campaign_false_does_not_campaign(world: World) -> None:
    e = world.add()
    e.step(may_campaign=False)
    assert e.phase is Phase.IDLE
    assert world.store.candidates(PREFIX, timeout=T) == []


def test_keepalives_stop_after_step_down_so_the_old_lease_expires_on_time(world: World) -> None:
    hole = world.blackhole()
    e = world.add(hole)
    world.step_all()
    old_lease, old_token = e.lease_id, e.token
    assert old_lease is not None
    assert old_token is not None
    hole.open(2.6, ops=["keepalive"], hang=False)  # requests lost: server last renewed at t=0
    world.run(2.6, tick=0.05)
    assert e.lease_id != old_lease  # gave up at the renew deadline (2.544), campaigning anew
    hole.heal()  # from here on a keepalive on the old lease would get through
    world.run(0.3, tick=0.05)  # t=2.9: the old lease is left to run out, not renewed
    assert world.store.lease_remaining(old_lease, timeout=T) >= 0
    assert world.leaders() == []
    world.clock.advance(0.15)
    assert world.store.lease_remaining(old_lease, timeout=T) == -1  # expired at t=3, on time
    world.step_all()
    assert world.leader() is e
    assert e.token is not None
    assert e.token > old_token


@pytest.mark.parametrize("fault", [0.2, 0.4, 0.9])
def test_l4_fault_shorter_than_renew_interval_changes_nothing(world: World, fault: float) -> None:
    e = world.add()
    world.step_all()
    token = e.token
    world.run(0.95, tick=0.05)  # the fault starts just before the first renewal, at t=1
    world.store.partition()
    world.run(fault, tick=0.05)
    world.store.heal()
    world.run(3, tick=0.05)
    assert world.leader() is e
    assert e.token == token


@pytest.mark.parametrize(
    "fault",
    [0.2, 0.4, 0.9],
)
def test_l4_blackhole_shorter_than_renew_interval_changes_nothing(
    world: World, fault: float
) -> None:
    hole = world.blackhole()
    e = world.add(hole)
    world.step_all()
    token = e.token
    world.run(0.95, tick=0.05)  # the blackhole opens just before the first renewal, at t=1
    hole.open(fault)  # calls made while it is open hang for their timeout, then fail
    world.run(3, tick=0.05)
    assert world.leader() is e
    assert e.token == token


def test_l4_blackhole_between_keepalive_and_confirm_read_changes_nothing(world: World) -> None:
    hole = world.blackhole()
    e = world.add(hole)
    world.step_all()
    token = e.token
    world.run(0.95, tick=0.05)
    hole.open_after("keepalive", 0.1)  # the renewal at t=1 gets through; its confirm read not
    world.run(3, tick=0.05)
    assert world.leader() is e
    assert e.token == token


def test_leader_that_cannot_confirm_steps_down(world: World) -> None:
    e = world.add()
    world.step_all()
    confirmed = e.machine.confirmed_sent
    assert confirmed is not None
    world.store.fail_next(1000, "standing")  # keepalives still succeed
    lost: list[tuple[float, Reason | None]] = []
    for _ in range(round(TIMING.ttl / 0.1)):
        world.clock.advance(0.1)
        out = e.step(may_campaign=True)
        assert out.keepalive_result in (None, "ok")
        lost += [(world.clock.monotonic(), t.reason) for t in out.transitions if t.lost_leadership]
    assert e.phase is not Phase.LEADING
    assert len(lost) == 1
    at, reason = lost[0]
    assert reason is Reason.UNCONFIRMED
    assert confirmed + TIMING.renew_deadline <= at < confirmed + TIMING.renew_deadline + 0.1


@pytest.mark.parametrize(
    ("timing", "delays"),
    [
        (TIMING, {"create": 2.6}),
        (Timing.from_ttl(15, grace=3), {"grant": 4.0, "create": 4.9, "standing": 2.4}),
    ],
    ids=["ttl3-create-2.6s", "ttl15-grant-4.0s-create-4.9s-read-2.4s"],
)
def test_l1_slow_campaign_does_not_block_the_election(
    timing: Timing, delays: dict[str, float]
) -> None:
    """L1: a campaign whose grant, create and first read together outlast the renew deadline
    (each call inside its own timeout) cannot lead on that grant. It must not then sit first in
    the queue for ever, renewing its key with no read scheduled: someone leads within
    TTL + 1.5 s of the campaign's end."""
    clock = FakeClock()
    store = MemoryStore(clock)
    slow = SlowStore(store, clock)
    for operation, seconds in delays.items():
        slow.slow_next(operation, seconds)
    first = Elector(slow, timing, PREFIX, "slow", clock, CountingEvent())
    other = Elector(store.client(), timing, PREFIX, "other", clock, CountingEvent())
    started = clock.monotonic()
    first.step(may_campaign=True)
    ended = clock.monotonic()
    assert ended - started == pytest.approx(sum(delays.values()))
    assert first.phase is Phase.CAMPAIGNING  # too late to lead on this grant: declined
    other.step(may_campaign=True)  # queued behind the slow one
    assert other.phase is Phase.CAMPAIGNING
    leaders: list[Elector] = []
    while not leaders and clock.monotonic() < ended + timing.ttl + 1.5:
        clock.advance(0.1)
        for e in (first, other):
            e.step(may_campaign=True)
        leaders = [e for e in (first, other) if e.machine.is_leader(clock.monotonic())]
        assert len(leaders) <= 1
    assert leaders, f"nobody leads {clock.monotonic() - ended:.1f} s after the slow campaign"


def test_l1_silent_watch_delays_the_successor_one_renew_interval_at_most(world: World) -> None:
    """L1: a waiting candidate whose watch never fires (it sits on a member that lost its peers,
    or froze) still notices its predecessor's key going within one renew interval, by its
    standing re-read, and so leads within TTL + 1.5 s of the leader's death."""
    silent = SlowStore(world.store, world.clock)
    silent.silent_watches = True
    leader, successor = world.add(), world.add(silent)
    world.step_all()
    world.run(1)
    assert world.leader() is leader
    assert successor.phase is Phase.CAMPAIGNING
    assert leader.key is not None
    world.electors.remove(leader)  # the leader crashes: it never steps again
    died = world.clock.monotonic()
    deleted_at = None
    while successor.phase is not Phase.LEADING:
        world.run(0.05, tick=0.05)
        if deleted_at is None and world.store.get(leader.key, timeout=T) is None:
            deleted_at = world.clock.monotonic()
        assert world.clock.monotonic() < died + TIMING.ttl + 1.5, "no successor in TTL + 1.5 s"
    assert deleted_at is not None
    assert world.clock.monotonic() <= deleted_at + TIMING.renew_interval + 0.05


def test_l1_after_an_etcd_outage_someone_leads_within_ttl_of_its_end(world: World) -> None:
    """L1: an outage long enough to push every candidate's campaign back-off to its cap must
    not add that cap to the failover once etcd is back: someone leads within TTL + 1.5 s."""
    for _ in range(3):
        world.add()
    world.store.fail_next(1000, "grant")  # etcd down for every replica
    world.run(6.5)  # longer than back-offs of 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s: any cap is reached
    assert world.leaders() == []
    world.store.clear_failures()
    back = world.clock.monotonic()
    while not world.leaders():
        assert world.clock.monotonic() - back < TIMING.ttl + 1.5, "no leader in TTL + 1.5 s"
        world.run(0.1)


def test_l4_a_leader_renews_through_an_etcd_election_that_fits_its_budget(world: World) -> None:
    """L4 (SAFETY.md §4): while etcd elects a new leader, keepalives to the leaderless members
    wait out their timeout. Each failed one is followed at once by the next (on the next
    endpoint), so a leader whose renewals fail for most of its renew deadline — timeout after
    timeout — still renews once etcd answers again, and keeps leading."""
    slow = SlowStore(world.store, world.clock)
    leader = world.add(slow)
    world.step_all()
    assert world.leader() is leader
    assert leader.machine.lease is not None
    # Up to the next keepalive; from then on every keepalive times out (half an interval each).
    world.clock.advance(leader.machine.lease.next_renew_at - world.clock.monotonic())
    timeout = TIMING.renew_interval / 2
    attempts: list[float] = []
    outage_end = leader.machine.lease.last_ok_sent + TIMING.renew_deadline - 0.1
    while world.clock.monotonic() + timeout < outage_end:
        slow.slow_next("keepalive", 10.0)
        attempts.append(world.clock.monotonic())
        leader.step(may_campaign=True)  # sends, waits out the timeout, fails
        assert leader.machine.renew_due(world.clock.monotonic()), "the retry waits for a tick"
    assert len(attempts) >= 2
    # etcd has a leader again: the very next step renews.
    leader.step(may_campaign=True)
    assert leader.machine.lease.failures == 0
    assert leader.phase is Phase.LEADING
    world.run(2 * TIMING.renew_interval)
    assert world.leader() is leader
