"""One behavioural suite for the Store port, run against MemoryStore and a real etcd.

Every test in the first part runs twice, ``[memory]`` and ``[etcd]``, with the same assertions:
that is what keeps the fake from drifting from etcd. Time-dependent behaviour (TTL expiry) cannot
be driven on a real server without waiting, so it lives in the MemoryStore-only part at the end,
next to the fault-injection API. Budget: the etcd half takes well under a second per test.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from leaderjob.clock import FakeClock
from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import (
    MAX_TXN_OPS,
    Guarded,
    KeyInfo,
    Query,
    Store,
    StoreError,
    StoreUnavailable,
    Watch,
    batches,
)
from tests.harness.proxy import FaultProxy

T = 5.0  # per-RPC timeout
#: How long to wait for an etcd watch event that must arrive / must not arrive.
FIRE_WAIT = 5.0
QUIET_WAIT = 0.3


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
def store(request: pytest.FixtureRequest, prefix: str) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(FakeClock())
        return
    server = request.getfixturevalue("etcd")
    etcd_store = EtcdStore(Connection(endpoints=(server.endpoint,)))
    try:
        yield etcd_store
    finally:
        with contextlib.suppress(StoreError):
            etcd_store.delete(prefix + "/", timeout=T, prefix=True)
        etcd_store.close()


@pytest.fixture
def election(prefix: str) -> str:
    return f"{prefix}/election"


def candidate(store: Store, election: str, ttl: int = 30) -> KeyInfo:
    """Grant a lease and create ``<election>/<lease-hex>`` on it, as the elector does."""
    lease = store.grant(ttl, timeout=T).lease_id
    return store.create(f"{election}/{lease:x}", b"me", lease, timeout=T)


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.event.set()


def fired(w: Watch, counter: Counter) -> bool:
    """Wait (briefly: memory fires synchronously) for the watch to fire and call back."""
    return w.fired.wait(FIRE_WAIT) and counter.event.wait(FIRE_WAIT)


def quiet(w: Watch) -> bool:
    return not w.fired.wait(QUIET_WAIT)


# --- leases ---------------------------------------------------------------------------------------


def test_grant_keepalive_revoke(store: Store) -> None:
    grant = store.grant(5, timeout=T)
    assert grant.ttl == 5
    assert grant.lease_id > 0
    assert store.keepalive(grant.lease_id, timeout=T) == 5  # the full granted TTL, not what's left
    assert 0 <= store.lease_remaining(grant.lease_id, timeout=T) <= 5
    store.revoke(grant.lease_id, timeout=T)
    assert store.lease_remaining(grant.lease_id, timeout=T) == -1


def test_keepalive_of_revoked_lease_answers_zero_not_an_error(store: Store) -> None:
    lease = store.grant(5, timeout=T).lease_id
    store.revoke(lease, timeout=T)
    assert store.keepalive(lease, timeout=T) == 0


def test_revoking_an_unknown_lease_is_not_an_error(store: Store) -> None:
    lease = store.grant(5, timeout=T).lease_id
    store.revoke(lease, timeout=T)
    store.revoke(lease, timeout=T)


def test_grants_are_distinct_leases(store: Store) -> None:
    a, b = store.grant(5, timeout=T), store.grant(5, timeout=T)
    assert a.lease_id != b.lease_id
    store.revoke(a.lease_id, timeout=T)
    assert store.keepalive(b.lease_id, timeout=T) == 5


# --- election keys --------------------------------------------------------------------------------


def test_create_is_idempotent_per_key(store: Store, election: str) -> None:
    lease = store.grant(30, timeout=T).lease_id
    first = store.create(f"{election}/k", b"first", lease, timeout=T)
    again = store.create(f"{election}/k", b"second", lease, timeout=T)
    assert again.create_revision == first.create_revision
    assert again.value == b"first"
    assert again.lease_id == lease
    assert first.mod_revision == first.create_revision


def test_create_revisions_strictly_increase_across_keys(store: Store, election: str) -> None:
    revisions = [candidate(store, election).create_revision for _ in range(4)]
    assert revisions == sorted(set(revisions))


def test_s2_recreated_key_gets_a_larger_revision(store: Store, election: str) -> None:
    lease = store.grant(30, timeout=T).lease_id
    key = f"{election}/same"
    old = store.create(key, b"x", lease, timeout=T)
    assert store.delete(key, timeout=T) == 1
    new = store.create(key, b"x", lease, timeout=T)
    assert new.create_revision > old.create_revision


def test_create_on_a_revoked_lease_fails(store: Store, election: str) -> None:
    lease = store.grant(30, timeout=T).lease_id
    store.revoke(lease, timeout=T)
    with pytest.raises(StoreUnavailable):
        store.create(f"{election}/k", b"x", lease, timeout=T)
    assert store.get(f"{election}/k", timeout=T) is None


def test_revoke_deletes_the_key(store: Store, election: str) -> None:
    me = candidate(store, election)
    store.revoke(me.lease_id, timeout=T)
    assert store.get(me.key, timeout=T) is None
    assert store.candidates(election, timeout=T) == []


def test_standing_returns_own_key_and_nearest_lower_predecessor(
    store: Store, election: str
) -> None:
    a, b, c = (candidate(store, election) for _ in range(3))
    st = store.standing(election, c.key, c.create_revision, timeout=T)
    assert st.own == c
    assert st.predecessor == b  # the nearest lower one, not the leader
    assert st.revision >= c.create_revision
    st = store.standing(election, b.key, b.create_revision, timeout=T)
    assert st.predecessor == a
    st = store.standing(election, a.key, a.create_revision, timeout=T)
    assert (st.own, st.predecessor) == (a, None)


def test_standing_skips_a_deleted_predecessor(store: Store, election: str) -> None:
    a, b, c = (candidate(store, election) for _ in range(3))
    store.revoke(b.lease_id, timeout=T)
    st = store.standing(election, c.key, c.create_revision, timeout=T)
    assert st.predecessor == a


def test_standing_reports_own_key_gone(store: Store, election: str) -> None:
    a, b = candidate(store, election), candidate(store, election)
    store.revoke(b.lease_id, timeout=T)
    st = store.standing(election, b.key, b.create_revision, timeout=T)
    assert st.own is None
    assert st.predecessor == a


def test_standings_reads_many_queues_in_one_read_on_one_lease(store: Store, election: str) -> None:
    """A group's confirm: every job's key and predecessor, one read, one revision; a key of one
    queue never counts as a predecessor in another."""
    other = store.grant(30, timeout=T).lease_id
    mine = store.grant(30, timeout=T).lease_id
    x, y = f"{election}/jobs/x/leader", f"{election}/jobs/y/leader"
    ahead = store.create(f"{x}/{other:x}", b"other", other, timeout=T)
    own_x = store.create(f"{x}/{mine:x}", b"me", mine, timeout=T)
    own_y = store.create(f"{y}/{mine:x}", b"me", mine, timeout=T)
    st = store.standings(
        [(x, own_x.key, own_x.create_revision), (y, own_y.key, own_y.create_revision)], timeout=T
    )
    assert [s.own.key if s.own else None for s in st] == [own_x.key, own_y.key]
    assert st[0].predecessor is not None and st[0].predecessor.key == ahead.key
    assert st[1].predecessor is None
    assert st[0].revision == st[1].revision >= own_y.create_revision
    store.delete(own_y.key, timeout=T)
    st = store.standings([(y, own_y.key, own_y.create_revision)], timeout=T)
    assert st[0].own is None


def test_a_leaders_confirm_reads_its_switches_in_the_same_read_s5(
    store: Store, election: str
) -> None:
    """S5 with one request per period: a ``first`` query shows our key only while it is the
    lowest under its prefix (a lower key, or our key gone: not the leader), and an ``also``
    prefix comes back in the same read, in key order, without keys of a neighbouring prefix."""
    x = f"{election}/jobs/x"
    me = store.grant(30, timeout=T).lease_id
    own = store.create(f"{x}/leader/{me:x}", b"me", me, timeout=T)
    store.put(f"{x}/control/triggers/2", b"{}", timeout=T)
    store.put(f"{x}/control/suspended", b"{}", timeout=T)
    store.put(f"{x}/controlx", b"not a switch", timeout=T)
    q = Query(f"{x}/leader", own.key, own.create_revision, first=True, also=f"{x}/control/")
    (st,) = store.standings([q], timeout=T)
    assert st.own == own and st.predecessor is None
    assert [k.key for k in st.also] == [f"{x}/control/suspended", f"{x}/control/triggers/2"]
    single = store.standing(q.prefix, q.key, q.create_revision, timeout=T, first=True, also=q.also)
    assert single.own == own and single.also == st.also
    # A query without a key reads only its prefix (the replicas' fingerprints): one operation.
    bare = Query("", "", 0, also=f"{x}/control/triggers/")
    assert bare.ops == 1
    (st,) = store.standings([bare], timeout=T)
    assert st.own is None and st.predecessor is None
    assert [k.key for k in st.also] == [f"{x}/control/triggers/2"]
    # A key created before ours (tampering): the lowest is not ours.
    lower = store.grant(30, timeout=T).lease_id
    store.delete(own.key, timeout=T)
    ahead = store.create(f"{x}/leader/{lower:x}", b"other", lower, timeout=T)
    again = store.create(f"{x}/leader/{me:x}", b"me", me, timeout=T)
    (st,) = store.standings(
        [Query(q.prefix, again.key, again.create_revision, first=True)], timeout=T
    )
    assert st.own is None and st.predecessor == ahead and st.also == ()
    # Our key gone, a later one left: not ours either.
    store.delete(again.key, timeout=T)
    (st,) = store.standings([q], timeout=T)
    assert st.own is None


def test_standings_refuses_more_operations_than_etcd_allows(store: Store, election: str) -> None:
    """etcd's --max-txn-ops (128): 64 leaders with their switches fit one read, 65 do not."""
    me = store.grant(30, timeout=T).lease_id
    qs = []
    for i in range(MAX_TXN_OPS // 2 + 1):
        k = store.create(f"{election}/jobs/{i}/leader/{me:x}", b"me", me, timeout=T)
        qs.append(Query(f"{election}/jobs/{i}/leader", k.key, k.create_revision, True,
                        f"{election}/jobs/{i}/control/"))  # fmt: skip
    assert len(store.standings(qs[:-1], timeout=T)) == MAX_TXN_OPS // 2
    with pytest.raises(StoreUnavailable):
        store.standings(qs, timeout=T)


def test_candidates_sorted_by_create_revision_not_key(store: Store, election: str) -> None:
    lease = store.grant(30, timeout=T).lease_id
    for name in ("c", "b", "a"):
        store.create(f"{election}/{name}", b"x", lease, timeout=T)
    store.create(f"{election}2/z", b"x", lease, timeout=T)  # a sibling prefix: not a candidate
    found = store.candidates(election, timeout=T)
    assert [k.key for k in found] == [f"{election}/c", f"{election}/b", f"{election}/a"]
    assert [k.create_revision for k in found] == sorted(k.create_revision for k in found)


def test_revision_moves_only_on_writes_that_change_something(
    store: Store, election: str, prefix: str
) -> None:
    me = candidate(store, election)

    def revision() -> int:
        return store.standing(election, me.key, me.create_revision, timeout=T).revision

    before = revision()
    store.create(me.key, b"again", me.lease_id, timeout=T)  # exists: a read
    store.get(me.key, timeout=T)
    store.delete(f"{prefix}/nothing", timeout=T)
    store.guarded_put(me.key, me.create_revision + 1, [(f"{prefix}/x", b"x")], timeout=T)
    store.keepalive(me.lease_id, timeout=T)
    assert revision() == before
    store.put(f"{prefix}/x", b"x", timeout=T)
    assert revision() == before + 1


# --- watches --------------------------------------------------------------------------------------


def test_watch_fires_on_predecessor_deletion(store: Store, election: str) -> None:
    pred, me = candidate(store, election), candidate(store, election)
    st = store.standing(election, me.key, me.create_revision, timeout=T)
    counter = Counter()
    w = store.watch_deletes([pred.key, me.key], st.revision + 1, counter)
    try:
        store.revoke(pred.lease_id, timeout=T)
        assert fired(w, counter)
        assert counter.calls == 1
    finally:
        w.cancel()


def test_watch_ignores_unrelated_deletes_and_puts(store: Store, election: str) -> None:
    pred, me, other = (candidate(store, election) for _ in range(3))
    st = store.standing(election, me.key, me.create_revision, timeout=T)
    counter = Counter()
    w = store.watch_deletes([pred.key], st.revision + 1, counter)
    try:
        store.revoke(other.lease_id, timeout=T)
        store.put(pred.key, b"changed", timeout=T)
        assert quiet(w)
        store.delete(pred.key, timeout=T)  # and the watch did work all along
        assert fired(w, counter)
    finally:
        w.cancel()


def test_watch_replays_a_deletion_at_or_after_start_revision(store: Store, election: str) -> None:
    pred = candidate(store, election)
    store.revoke(pred.lease_id, timeout=T)
    deleted_at = store.standing(election, pred.key, pred.create_revision, timeout=T).revision
    counter = Counter()
    w = store.watch_deletes([pred.key], deleted_at, counter)
    try:
        assert fired(w, counter)
    finally:
        w.cancel()


def test_watch_from_after_a_deletion_does_not_see_it(store: Store, election: str) -> None:
    pred = candidate(store, election)
    store.revoke(pred.lease_id, timeout=T)
    now = store.standing(election, pred.key, pred.create_revision, timeout=T).revision
    w = store.watch_deletes([pred.key], now + 1, Counter())
    try:
        assert quiet(w)
    finally:
        w.cancel()


def test_cancelled_watch_does_not_fire(store: Store, election: str) -> None:
    pred = candidate(store, election)
    st = store.standing(election, pred.key, pred.create_revision, timeout=T)
    counter = Counter()
    w = store.watch_deletes([pred.key], st.revision + 1, counter)
    w.cancel()
    store.revoke(pred.lease_id, timeout=T)
    assert quiet(w)
    assert counter.calls == 0


# --- fenced writes (S3 shape) -----------------------------------------------------------------


def test_s3_guarded_put_claims_a_slot_once(store: Store, election: str, prefix: str) -> None:
    me = candidate(store, election)
    slot = f"{prefix}/slots/0001"
    assert store.guarded_put(me.key, me.create_revision, [(slot, b"1")], absent=[slot], timeout=T)
    assert not store.guarded_put(
        me.key, me.create_revision, [(slot, b"2")], absent=[slot], timeout=T
    )
    claimed = store.get(slot, timeout=T)
    assert claimed is not None
    assert claimed.value == b"1"
    assert claimed.lease_id == 0  # records outlive the lease


def test_s3_guarded_put_refused_for_a_wrong_or_missing_guard(
    store: Store, election: str, prefix: str
) -> None:
    me = candidate(store, election)
    out = f"{prefix}/out"
    assert not store.guarded_put(me.key, me.create_revision + 1, [(out, b"x")], timeout=T)
    assert not store.guarded_put(f"{election}/nobody", me.create_revision, [(out, b"x")], timeout=T)
    store.revoke(me.lease_id, timeout=T)  # a deposed leader: its key is gone
    assert not store.guarded_put(me.key, me.create_revision, [(out, b"x")], timeout=T)
    assert store.get(out, timeout=T) is None


def test_s3_guarded_put_refused_for_a_recreated_guard(store: Store, election: str) -> None:
    lease = store.grant(30, timeout=T).lease_id
    key = f"{election}/k"
    old = store.create(key, b"x", lease, timeout=T)
    store.delete(key, timeout=T)
    store.create(key, b"x", lease, timeout=T)
    assert not store.guarded_put(key, old.create_revision, [(f"{election}-out", b"x")], timeout=T)


def test_guarded_put_applies_puts_and_deletes_together(
    store: Store, election: str, prefix: str
) -> None:
    me = candidate(store, election)
    store.put(f"{prefix}/old", b"x", timeout=T)
    assert store.guarded_put(
        me.key,
        me.create_revision,
        [(f"{prefix}/a", b"1"), (f"{prefix}/b", b"2")],
        deletes=[f"{prefix}/old"],
        timeout=T,
    )
    a, b = store.get(f"{prefix}/a", timeout=T), store.get(f"{prefix}/b", timeout=T)
    assert a is not None
    assert b is not None
    assert a.mod_revision == b.mod_revision  # one transaction, one revision
    assert store.get(f"{prefix}/old", timeout=T) is None


def _claims(store: Store, election: str, prefix: str, n: int) -> list[Guarded]:
    """``n`` jobs on one lease, each claiming its slot as the daemon does: fenced by its own
    leader key, the slot and the suspend switch absent, ``last_slot`` moved on."""
    lease = store.grant(30, timeout=T).lease_id
    out = []
    for i in range(n):
        me = store.create(f"{election}/jobs/{i}/leader/{lease:x}", b"me", lease, timeout=T)
        slot, base = f"{prefix}/jobs/{i}/slots/0001", f"{prefix}/jobs/{i}"
        out.append(Guarded(
            me.key, me.create_revision, ((slot, b"mine"), (f"{base}/last_slot", b"0001")),
            absent=(slot, f"{base}/suspended"),
        ))  # fmt: skip
    return out


def test_s3_guarded_puts_fences_each_write_by_its_own_guard(
    store: Store, election: str, prefix: str
) -> None:
    """S3 in a batch: a write whose guard changed (deposed), whose slot was claimed before, or
    whose job is suspended is refused alone; the others apply, in one revision."""
    w = _claims(store, election, prefix, 5)
    store.put(w[1].absent[0], b"theirs", timeout=T)  # claimed before
    store.put(w[2].absent[1], b"", timeout=T)  # suspended
    stale = Guarded(w[3].guard_key, w[3].guard_revision + 1, w[3].puts, w[3].absent)  # deposed
    assert store.guarded_puts([w[0], w[1], w[2], stale, w[4]], timeout=T) == [
        True, False, False, False, True,
    ]  # fmt: skip
    mine = [store.get(x.puts[0][0], timeout=T) for x in w]
    assert mine[0] is not None and mine[4] is not None
    assert mine[0].value == mine[4].value == b"mine"
    assert mine[0].mod_revision == mine[4].mod_revision  # one Txn, one revision
    assert mine[1] is not None and mine[1].value == b"theirs"
    assert mine[2] is None and mine[3] is None
    assert store.get(w[3].puts[1][0], timeout=T) is None  # nothing of a refused write
    # Claimed once: the same batch again applies nothing, and moves no revision.
    before = store.get(w[0].puts[0][0], timeout=T)
    assert store.guarded_puts([w[0], w[4]], timeout=T) == [False, False]
    assert store.get(w[0].puts[0][0], timeout=T) == before


def test_guarded_puts_deletes_with_its_own_write(store: Store, election: str, prefix: str) -> None:
    (w,) = _claims(store, election, prefix, 1)
    store.put(f"{prefix}/old", b"x", timeout=T)
    with_delete = Guarded(w.guard_key, w.guard_revision, w.puts, w.absent, (f"{prefix}/old",))
    assert store.guarded_puts([with_delete], timeout=T) == [True]
    assert store.get(f"{prefix}/old", timeout=T) is None
    # Alone, a write is a Txn of its own: as many operations as guarded_put takes.
    gone = tuple(f"{prefix}/gone/{i}" for i in range(MAX_TXN_OPS - len(w.puts)))
    wide = Guarded(w.guard_key, w.guard_revision, w.puts, (), gone)
    assert store.guarded_puts([wide], timeout=T) == [True]


def test_guarded_puts_batches_are_what_etcd_takes(store: Store, election: str, prefix: str) -> None:
    """etcd's --max-txn-ops (128) counts the nested writes plus the largest one's operations:
    the largest batch :func:`batches` makes is taken, one more write is not (refused before
    it is sent)."""
    w = _claims(store, election, prefix, MAX_TXN_OPS)
    chunks = batches(w)
    assert [len(c) for c in chunks] == [MAX_TXN_OPS - 3, 3]
    first = [w[i] for i in chunks[0]]
    with pytest.raises(StoreUnavailable):
        store.guarded_puts([*first, w[-1]], timeout=T)
    assert store.get(w[0].puts[0][0], timeout=T) is None  # nothing applied
    assert store.guarded_puts(first, timeout=T) == [True] * len(first)
    assert store.guarded_puts([w[i] for i in chunks[1]], timeout=T) == [True] * 3


# --- applied, but the reply was lost ---------------------------------------------------------
#
# A call that times out after the server committed it: the caller sees an error, yet the write
# happened. This is what makes slot claims and revokes interesting. On etcd, a proxy holds every
# reply (requests still flow) for the length of one call; on the fake, lose_reply_next().

LOST_T = 1.0  # the timeout of the call whose reply is lost


class Lossy:
    def __init__(
        self, store: Store, lose: Callable[[str], contextlib.AbstractContextManager[None]]
    ):
        self.store = store
        self.reply_lost = lose


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
def lossy(request: pytest.FixtureRequest, prefix: str) -> Iterator[Lossy]:
    if request.param == "memory":
        mem = MemoryStore(FakeClock())

        @contextlib.contextmanager
        def lose_memory(operation: str) -> Iterator[None]:
            mem.lose_reply_next(1, operation)
            yield

        yield Lossy(mem, lose_memory)
        return
    server = request.getfixturevalue("etcd")
    with FaultProxy(server.endpoint) as proxy:
        etcd_store = EtcdStore(Connection(endpoints=(proxy.endpoint,)))
        etcd_store.get(prefix, timeout=T)  # the connection is up before replies are held

        @contextlib.contextmanager
        def lose_etcd(operation: str) -> Iterator[None]:
            proxy.blackhole_responses()
            try:
                yield
            finally:
                proxy.heal()

        try:
            yield Lossy(etcd_store, lose_etcd)
        finally:
            with contextlib.suppress(StoreError):
                etcd_store.delete(prefix + "/", timeout=T, prefix=True)
            etcd_store.close()


def test_s3_slot_claim_applied_but_reply_lost_is_not_claimed_twice(
    lossy: Lossy, election: str, prefix: str
) -> None:
    """S3: the claimant saw an error, but its claim stands; a retry is refused (the slot is
    taken), so the claimant must read the slot to learn that the claim is its own."""
    store = lossy.store
    me = candidate(store, election)
    slot = f"{prefix}/slots/0001"
    with lossy.reply_lost("guarded_put"), pytest.raises(StoreUnavailable):
        store.guarded_put(
            me.key, me.create_revision, [(slot, b"mine")], absent=[slot], timeout=LOST_T
        )
    claimed = store.get(slot, timeout=T)
    assert claimed is not None
    assert claimed.value == b"mine"  # applied
    assert not store.guarded_put(
        me.key, me.create_revision, [(slot, b"again")], absent=[slot], timeout=T
    )
    again = store.get(slot, timeout=T)
    assert again is not None
    assert again.mod_revision == claimed.mod_revision  # never claimed twice


def test_s3_batch_applied_but_reply_lost_is_not_claimed_twice(
    lossy: Lossy, election: str, prefix: str
) -> None:
    """S3: a batch whose reply was lost applied every write whose guard held; sent again,
    each is refused (its slot is taken), so each claim's outcome must be read back."""
    store = lossy.store
    w = _claims(store, election, prefix, 3)
    with lossy.reply_lost("guarded_puts"), pytest.raises(StoreUnavailable):
        store.guarded_puts(w, timeout=LOST_T)
    claimed = [store.get(x.puts[0][0], timeout=T) for x in w]
    assert all(c is not None and c.value == b"mine" for c in claimed)
    assert store.guarded_puts(w, timeout=T) == [False, False, False]


def test_revoke_applied_but_reply_lost_and_the_retry_is_harmless(
    lossy: Lossy, election: str
) -> None:
    """L2: a revoke whose reply was lost still released the key; retrying it is not an error."""
    store = lossy.store
    me = candidate(store, election)
    with lossy.reply_lost("revoke"), pytest.raises(StoreUnavailable):
        store.revoke(me.lease_id, timeout=LOST_T)
    assert store.get(me.key, timeout=T) is None
    assert store.lease_remaining(me.lease_id, timeout=T) == -1
    store.revoke(me.lease_id, timeout=T)
    assert store.keepalive(me.lease_id, timeout=T) == 0


# --- lease expiry timing ----------------------------------------------------------------------

#: etcd sweeps expired leases every 500 ms; the rest is polling and a loaded machine.
SWEEP, SLACK = 0.5, 1.0


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
def timed(
    request: pytest.FixtureRequest, prefix: str
) -> Iterator[tuple[Store, Callable[[], float], Callable[[float], None]]]:
    """A store with the clock it is timed by: the fake clock, or the real one for etcd."""
    if request.param == "memory":
        clock = FakeClock()
        yield MemoryStore(clock), clock.monotonic, clock.advance
        return
    server = request.getfixturevalue("etcd")
    etcd_store = EtcdStore(Connection(endpoints=(server.endpoint,)))
    try:
        yield etcd_store, time.monotonic, time.sleep
    finally:
        with contextlib.suppress(StoreError):
            etcd_store.delete(prefix + "/", timeout=T, prefix=True)
        etcd_store.close()


def test_s6_lease_expires_no_sooner_than_ttl_after_the_last_keepalive_was_sent(
    timed: tuple[Store, Callable[[], float], Callable[[float], None]], election: str
) -> None:
    """S6 rests on this: the server cannot expire a lease before send time of its last answered
    keepalive + TTL. The fake expires it exactly then (the earliest etcd may); etcd within its
    sweep interval after."""
    store, now, sleep = timed
    me = candidate(store, election, ttl=2)
    sleep(1.0)
    sent = now()
    assert store.keepalive(me.lease_id, timeout=T) == 2
    while store.get(me.key, timeout=T) is not None:
        assert now() - sent < 2 + SWEEP + SLACK, "the lease outlived TTL + sweep"
        sleep(0.05)
    gone = now() - sent
    assert 2 <= gone < 2 + SWEEP + SLACK


# --- plain keys -------------------------------------------------------------------------------


def test_put_keeps_create_revision_and_bumps_mod_revision(store: Store, prefix: str) -> None:
    store.put(f"{prefix}/k", b"1", timeout=T)
    first = store.get(f"{prefix}/k", timeout=T)
    store.put(f"{prefix}/k", b"2", timeout=T)
    second = store.get(f"{prefix}/k", timeout=T)
    assert first is not None
    assert second is not None
    assert second.create_revision == first.create_revision
    assert second.mod_revision > first.mod_revision
    assert second.value == b"2"


def test_get_prefix_in_key_order_with_limit(store: Store, prefix: str) -> None:
    for name in ("b", "c", "a", "d"):
        store.put(f"{prefix}/runs/{name}", name.encode(), timeout=T)
    store.put(f"{prefix}/other", b"x", timeout=T)

    def names(infos: list[KeyInfo]) -> list[str]:
        return [i.key.rsplit("/", 1)[1] for i in infos]

    runs = f"{prefix}/runs/"
    assert names(store.get_prefix(runs, timeout=T)) == ["a", "b", "c", "d"]
    assert names(store.get_prefix(runs, timeout=T, limit=2)) == ["a", "b"]
    assert names(store.get_prefix(runs, timeout=T, limit=2, newest_first=True)) == ["d", "c"]
    assert names(store.get_prefix(runs, timeout=T, newest_first=True)) == ["d", "c", "b", "a"]


def test_delete_counts_and_prefix_delete(store: Store, prefix: str) -> None:
    for name in ("a", "b"):
        store.put(f"{prefix}/d/{name}", b"x", timeout=T)
    store.put(f"{prefix}/keep", b"x", timeout=T)
    assert store.delete(f"{prefix}/nothing", timeout=T) == 0
    assert store.delete(f"{prefix}/d/", timeout=T, prefix=True) == 2
    assert store.get_prefix(f"{prefix}/d/", timeout=T) == []
    assert store.get(f"{prefix}/keep", timeout=T) is not None


# --- MemoryStore only: time, and the fault-injection API ------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mem(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock)


def test_memory_raises_ttl_to_etcd_minimum(mem: MemoryStore) -> None:
    assert mem.grant(1, timeout=T).ttl == 2  # etcd's default minimum (the harness etcd's is 1)


def test_memory_lease_expires_at_renewal_plus_ttl(mem: MemoryStore, clock: FakeClock) -> None:
    me = mem.create("/e/a", b"x", mem.grant(3, timeout=T).lease_id, timeout=T)
    clock.advance(2)
    assert mem.keepalive(me.lease_id, timeout=T) == 3  # expiry now at +5
    clock.advance(2.999)
    assert mem.get("/e/a", timeout=T) is not None
    clock.advance(0.001)
    assert mem.get("/e/a", timeout=T) is None
    assert mem.keepalive(me.lease_id, timeout=T) == 0


def test_memory_expiry_fires_watches(mem: MemoryStore, clock: FakeClock) -> None:
    pred = mem.create("/e/a", b"x", mem.grant(3, timeout=T).lease_id, timeout=T)
    counter = Counter()
    w = mem.watch_deletes([pred.key], pred.create_revision + 1, counter)
    clock.advance(3)
    mem.candidates("/e", timeout=T)  # any access sweeps expired leases
    assert w.fired.is_set()
    assert counter.calls == 1


def test_memory_expire_now(mem: MemoryStore) -> None:
    me = mem.create("/e/a", b"x", mem.grant(30, timeout=T).lease_id, timeout=T)
    mem.expire(me.lease_id)
    assert mem.get("/e/a", timeout=T) is None
    assert mem.keepalive(me.lease_id, timeout=T) == 0


def test_memory_fail_next_any_operation(mem: MemoryStore) -> None:
    mem.fail_next(2)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            mem.get("/k", timeout=T)
    assert mem.get("/k", timeout=T) is None


def test_memory_fail_next_one_operation(mem: MemoryStore) -> None:
    lease = mem.grant(5, timeout=T).lease_id
    mem.fail_next(1, "keepalive")
    assert mem.get("/k", timeout=T) is None
    with pytest.raises(StoreUnavailable) as err:
        mem.keepalive(lease, timeout=T)
    assert err.value.operation == "keepalive"
    assert mem.keepalive(lease, timeout=T) == 5


def test_memory_partition_fails_every_call_until_healed(mem: MemoryStore) -> None:
    lease = mem.grant(5, timeout=T).lease_id
    mem.partition()
    with pytest.raises(StoreUnavailable):
        mem.keepalive(lease, timeout=T)
    with pytest.raises(StoreUnavailable):
        mem.watch_deletes(["/k"], 1, Counter())
    mem.heal()
    assert mem.keepalive(lease, timeout=T) == 5


def test_memory_leases_age_during_a_partition(mem: MemoryStore, clock: FakeClock) -> None:
    me = mem.create("/e/a", b"x", mem.grant(3, timeout=T).lease_id, timeout=T)
    mem.partition()
    clock.advance(3)
    mem.heal()
    assert mem.get(me.key, timeout=T) is None
    assert mem.keepalive(me.lease_id, timeout=T) == 0


def test_memory_partition_breaks_open_watches(mem: MemoryStore) -> None:
    counter = Counter()
    w = mem.watch_deletes(["/k"], 1, counter)
    mem.partition()
    assert w.fired.is_set()  # a broken stream fires: the caller re-reads
    assert counter.calls == 1


def test_memory_clients_share_the_server_not_the_faults(mem: MemoryStore) -> None:
    other = mem.client()
    other.put("/k", b"x", timeout=T)
    mem.partition()
    info = other.get("/k", timeout=T)
    assert info is not None
    assert info.value == b"x"
    with pytest.raises(StoreUnavailable):
        mem.get("/k", timeout=T)
