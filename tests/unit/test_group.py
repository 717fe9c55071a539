"""One lease, many elections: Group + MemoryStore + FakeClock, replicas stepped by hand.

Timing as in test_elector.py: ttl 3 s, renew every 1 s. Each job's queue is
``<group>/jobs/<job>/leader``; a job's token is the create revision of its key there.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.election.confirm_read import MAX_PER_READ
from leaderjob.election.group import Group, Outcome
from leaderjob.election.machine import Phase, Reason
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import Watch
from tests.unit.slowstore import SlowStore

TIMING = Timing.from_ttl(3)
GROUP = "/leaderjob/shop"
T = 1.0
TICK = 0.05


def prefix(job: str) -> str:
    return f"{GROUP}/jobs/{job}/leader"


class Counting:
    """A client of the shared in-memory etcd that counts its calls; with ``silent``, its watches
    never fire (a member that lost its peers and keeps the stream open)."""

    def __init__(self, store: MemoryStore) -> None:
        self.inner = store.client()
        self.calls: Counter[str] = Counter()
        self.silent = False

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> Watch:
        self.calls["watch"] += 1
        if self.silent:
            return self.inner.watch_deletes(["/nothing"], start_revision, lambda: None)
        return self.inner.watch_deletes(keys, start_revision, on_fire, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if callable(attr):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


class World:
    def __init__(self) -> None:
        self.clock = FakeClock(start=1000.0)
        self.store = MemoryStore(self.clock)
        self.replicas: list[Group] = []
        self.clients: list[Counting] = []

    def replica(self, jobs: Sequence[str], name: str | None = None) -> Group:
        client = Counting(self.store)
        g = Group(
            client,
            TIMING,
            name or f"replica-{len(self.replicas)}",
            self.clock,
            threading.Event(),
        )
        for job in jobs:
            g.want(job, prefix(job))
        self.replicas.append(g)
        self.clients.append(client)
        return g

    def step(self, g: Group, may_campaign: bool = True) -> Outcome:
        out = g.step(may_campaign)
        g.release()  # no job runs here: an abandoned lease is revoked at once
        return out

    def run(self, seconds: float, only: Sequence[Group] | None = None) -> list[Outcome]:
        outs = []
        for _ in range(round(seconds / TICK)):
            self.clock.advance(TICK)
            for g in only if only is not None else self.replicas:
                outs.append(self.step(g))
        return outs


@pytest.fixture
def world() -> World:
    return World()


JOBS = ("a", "b", "c", "d", "e", "f")


class _Far:
    """A step deadline far away."""

    budget = 60.0

    def fits(self, need: float = 0.0) -> bool:
        return True

    def timeout(self, operation: str, ceiling: float | None = None) -> float:
        return 5.0


def test_one_lease_carries_every_candidacy_and_tokens_are_per_job(world: World) -> None:
    g = world.replica(JOBS)
    world.step(g)
    assert sorted(g.leading()) == sorted(JOBS)
    leases = {
        info.lease_id for job in JOBS for info in world.store.candidates(prefix(job), timeout=T)
    }
    assert leases == {g.lease_id}, "one lease for the whole group"
    tokens = [g.machine.token_of(job) for job in JOBS]
    assert tokens == [g.revisions[job] for job in JOBS]  # the create revision of the job's key
    # S2: a token is never reused, not even by another job of the same group — so each job's key
    # is created in a Txn of its own (keys created together in one Txn would share a revision).
    assert len(set(tokens)) == len(JOBS)


def test_a_deleted_key_ends_one_tenure_and_the_job_rejoins_with_a_larger_token_l5(
    world: World,
) -> None:
    """L5/S2: a lost key ends that job's tenure only; the lease and the other tenures stay, and
    the job campaigns again with a new key — a larger token."""
    g = world.replica(JOBS)
    world.step(g)
    lease, old = g.lease_id, g.machine.token_of("c")
    assert old is not None
    world.store.delete(g.keys["c"], timeout=T)
    outs = world.run(TIMING.renew_interval + 0.1)
    lost = [t for o in outs for t in o.transitions if t.event == "election.lost"]
    assert [(t.job, t.reason) for t in lost] == [("c", Reason.KEY_LOST)]
    assert g.lease_id == lease, "the lease outlives one lost key"
    assert sorted(g.leading()) == sorted(JOBS), "the job campaigned again and leads again"
    new = g.machine.token_of("c")
    assert new is not None and new > old
    assert all(g.machine.token_of(j) == g.revisions[j] for j in JOBS)


def test_a_key_deleted_and_made_again_between_two_reads_is_not_ours_any_more_s2(
    world: World,
) -> None:
    """S2: a job's token is its key's create revision. Its key deleted and put again under the
    same name and lease (by hand, between two confirmations) is another key: the next read
    ends that tenure, and the job's next tenure carries that key's revision, a larger token —
    it never goes on under its old token with a key that is not the one it was granted."""
    g = world.replica(JOBS)
    world.step(g)
    old = g.machine.token_of("c")
    key, lease = g.keys["c"], g.lease_id
    assert old is not None and lease is not None
    world.store.delete(key, timeout=T)
    again = world.store.create(key, b"by hand", lease, timeout=T)
    assert again.create_revision > old
    outs = world.run(TIMING.renew_interval + 0.1)
    lost = [t for o in outs for t in o.transitions if t.event == "election.lost"]
    assert [(t.job, t.reason) for t in lost] == [("c", Reason.KEY_LOST)]
    new = g.machine.token_of("c")
    assert new is not None and new > old
    assert g.revisions["c"] == new


def test_a_key_put_again_without_our_lease_is_not_ours_any_more_s2_s6(world: World) -> None:
    """S2, S6: our key is the one we made *on our lease*. Put again by hand without a lease
    (``etcdctl put`` of the leader's key, say), it keeps its create revision but no longer
    goes when our lease does: a leader that crashed would leave it behind, and one that went on
    under it would lead on a key its lease does not hold. The next read ends that tenure, and
    the group hands the rule the lease it holds, not the one the read shows."""
    g = world.replica(JOBS)
    world.step(g)
    old = g.machine.token_of("c")
    key, lease = g.keys["c"], g.lease_id
    assert old is not None and lease is not None
    world.store.put(key, b"by hand", timeout=T)  # no lease: detached, create revision kept
    outs = world.run(TIMING.renew_interval + 0.1)
    lost = [t for o in outs for t in o.transitions if t.event == "election.lost"]
    assert [(t.job, t.reason) for t in lost] == [("c", Reason.KEY_LOST)]
    assert g.machine.token_of("c") != old
    assert all(g.machine.token_of(j) is not None for j in JOBS if j != "c"), "the others lead on"
    # The stray key (our name, no lease) would hold the queue for ever, and our create would
    # keep finding it: it is removed, that key alone, and the job leads again on a new key.
    outs += world.run(2 * TIMING.renew_interval)
    assert [r for o in outs for r in o.removed] == [(key, old)]
    # The tenure ended at the read that showed the key off our lease, before the key was
    # removed: not one step later, once it was gone.
    ended = next(i for i, o in enumerate(outs) if o.transitions)
    assert ended < next(i for i, o in enumerate(outs) if o.removed)
    new = g.machine.token_of("c")
    assert new is not None and new > old
    info = world.store.standing(g.prefixes["c"], key, new, timeout=T).own
    assert info is not None and info.lease_id == lease


def test_a_stray_key_of_our_name_is_removed_only_as_it_was_read(world: World) -> None:
    """The removal of a stray key of our name is guarded by the create revision it was read
    with: a key made again meanwhile is not removed blindly (it is read, and judged, again)."""
    g = world.replica(("c",))
    world.step(g)
    key, lease = g.keys["c"], g.lease_id
    assert lease is not None
    world.store.put(key, b"by hand", timeout=T)
    found = world.store.standing(g.prefixes["c"], key, 0, timeout=T).own
    assert found is not None and found.lease_id == 0
    world.store.delete(key, timeout=T)
    world.store.put(key, b"by hand again", timeout=T)  # another key under the same name
    g.candidacies.strays.append(found)
    removed: list[tuple[str, int]] = []
    g.candidacies.remove_strays(_Far(), [], removed)
    assert removed == [] and world.store.standing(g.prefixes["c"], key, 0, timeout=T).own


def test_a_stray_key_whose_removal_failed_is_removed_at_a_later_step(world: World) -> None:
    """L1: the removal of a stray key is not given up on a failed call (etcd unreachable for a
    moment): the error is reported like any other, the key is kept for a later step, and it
    goes then; until it does, the job does not take it as its candidacy."""
    g = world.replica(("c",))
    world.step(g)
    key, old = g.keys["c"], g.machine.token_of("c")
    assert old is not None
    world.store.put(key, b"by hand", timeout=T)
    world.clients[0].inner.fail_next(3, "guarded_put")
    outs = world.run(TIMING.renew_interval + 0.1)
    assert any(e.operation == "guarded_put" for o in outs for e in o.errors)
    assert not [r for o in outs for r in o.removed]
    assert g.candidacies.strays and g.revisions.get("c") != old
    outs = world.run(2 * TIMING.renew_interval)
    assert [r for o in outs for r in o.removed] == [(key, old)]
    new = g.machine.token_of("c")
    assert new is not None and new > old


def test_a_job_that_finds_a_stray_key_of_its_name_at_its_create_never_takes_it_s2(
    world: World,
) -> None:
    """S2: a job's create that finds a key under its name off our lease (put by hand before
    the job joined) does not take it as its candidacy — its create revision is not a token we
    were granted. The stray is removed, and the job joins on a key of its own."""
    g = world.replica(("a",))
    world.step(g)
    lease = g.lease_id
    assert lease is not None
    key = f"{prefix('c')}/{lease:x}"
    world.store.put(key, b"by hand", timeout=T)
    stray = world.store.standing(prefix("c"), key, 0, timeout=T).own
    assert stray is not None and stray.lease_id == 0
    g.want("c", prefix("c"))
    outs = []
    for _ in range(round(2 * TIMING.renew_interval / TICK)):
        world.clock.advance(TICK)
        outs.append(world.step(g))
        assert g.revisions.get("c") != stray.create_revision
    assert [r for o in outs for r in o.removed] == [(key, stray.create_revision)]
    assert g.machine.token_of("c") is not None and g.revisions["c"] > stray.create_revision


def _held_steps(world: World, g: Group, seconds: float, hold: set[str]) -> list[Outcome]:
    outs = []
    for _ in range(round(seconds / TICK)):
        world.clock.advance(TICK)
        outs.append(g.step(True, hold))
    return outs


def test_a_stray_key_is_removed_while_its_job_is_held_and_the_queue_moves_on_l1(
    world: World,
) -> None:
    """Strays × hold, L1: the key put by hand ends our tenure while the run of that tenure
    still lives, so the daemon holds the job back from its queue. The stray goes all the same
    (the hold keeps our *create* back, not the removal), so the replica behind us leads; our job
    joins again only once the hold is lifted, behind it."""
    g, h = world.replica(("c",)), world.replica(("c",))
    world.step(g)
    world.step(h)
    key, old = g.keys["c"], g.machine.token_of("c")
    assert old is not None and h.machine.token_of("c") is None
    world.store.put(key, b"by hand", timeout=T)
    outs: list[Outcome] = []
    for _ in range(round(2 * TIMING.renew_interval / TICK)):
        world.clock.advance(TICK)
        outs.append(g.step(True, {"c"}))  # the lost tenure's run still lives
        world.step(h)
        if g.machine.token_of("c") is None:
            assert "c" not in g.keys, "a held job does not join its queue"
    assert [r for o in outs for r in o.removed] == [(key, old)]
    successor = h.machine.token_of("c")
    assert successor is not None and successor > old, "the one behind leads on"
    outs = _held_steps(world, g, TIMING.renew_interval, set())  # the run is dead: hold lifted
    assert "c" in g.keys and g.revisions["c"] > successor and g.machine.token_of("c") is None
    assert not [r for o in outs for r in o.removed], "its own key is no stray"


def test_a_key_given_up_on_purpose_is_deleted_as_ours_and_never_taken_for_a_stray(
    world: World,
) -> None:
    """Strays × give-up: a key handed over on purpose (a spread move, a reload's change) is on
    our lease; it goes through its own delete, not the stray removal, and the job joins again at
    the back of the queue on a new key. A key put by hand and then given up in the same
    interval is deleted once, and never reported as a stray removed."""
    g, h = world.replica(("c",)), world.replica(("c",))
    world.step(g)
    world.step(h)
    key, old = g.keys["c"], g.machine.token_of("c")
    assert old is not None
    g.requeue("c")
    outs = world.run(2 * TIMING.renew_interval)
    assert not [r for o in outs for r in o.removed]
    assert not g.candidacies.strays and not h.candidacies.strays
    successor = h.machine.token_of("c")
    assert successor is not None and successor > old
    assert g.revisions["c"] > successor
    # The same after a put by hand: the key is given up before any read judged it.
    key, mine = h.keys["c"], h.revisions["c"]
    world.store.put(key, b"by hand", timeout=T)
    h.requeue("c")
    outs = world.run(2 * TIMING.renew_interval)
    again = world.store.standing(prefix("c"), key, 0, timeout=T).own  # our name, rejoined
    assert again is not None and again.lease_id == h.lease_id and again.create_revision > mine
    assert not [r for o in outs for r in o.removed], "as a key given up, not as a stray"
    leader = g.machine.token_of("c")
    assert leader is not None and leader > successor


def test_a_stray_found_in_a_queue_is_removed_after_its_job_is_withdrawn_l1(
    world: World,
) -> None:
    """Strays × reload, L1: a reload that removes a job on this replica alone (the others have
    not reloaded yet) must not leave a stray key it found in that queue: the removal goes on
    after the withdraw, and the replica that still wants the job leads it."""
    g, h = world.replica(("c",)), world.replica(("c",))
    world.step(g)
    world.step(h)
    key, old = g.keys["c"], g.machine.token_of("c")
    assert old is not None
    world.store.put(key, b"by hand", timeout=T)
    # The read that judges the key: our tenure ends and the key is kept as a stray...
    while not g.candidacies.strays:
        world.clock.advance(TICK)
        world.step(g)
    assert g.machine.token_of("c") is None
    # ... and the reload withdraws the job before the next step could remove it.
    g.withdraw("c")
    world.clock.advance(TICK)
    assert world.step(g).removed == [(key, old)], "removed by the replica that found it, at once"
    outs = world.run(2 * TIMING.renew_interval)
    assert not [r for o in outs for r in o.removed]
    assert "c" not in g.keys
    successor = h.machine.token_of("c")
    assert successor is not None and successor > old


@pytest.mark.parametrize("watch", ["live", "silent"])
def test_a_lost_lease_ends_every_tenure_at_once_s6(world: World, watch: str) -> None:
    """S6: the lease is the session; when it is gone, no job of it leads on. With a live watch
    the vanished keys are seen first (each tenure ends on its key); with a silent one the
    keepalive's TTL 0 ends them all in one transition."""
    g = world.replica(("a", "b", "c"))
    world.clients[0].silent = watch == "silent"
    world.step(g)
    tokens = {j: g.machine.token_of(j) for j in ("a", "b", "c")}
    lease = g.lease_id
    assert lease is not None
    world.store.expire(lease)
    outs = world.run(TIMING.renew_interval + 0.1)
    ends = [t for o in outs for t in o.transitions if t.event == "election.lost"]
    assert dict(e for t in ends for e in t.ended) == tokens
    if watch == "silent":
        assert len(ends) == 1 and ends[0].reason is Reason.LEASE_EXPIRED
    assert g.lease_id != lease, "the expired lease is abandoned"
    assert all(g.machine.token_of(j) != tokens[j] for j in tokens)


def test_the_leader_confirms_all_its_keys_in_one_read_per_renew_interval(world: World) -> None:
    """Keepalive and confirm traffic per replica do not grow with the number of jobs: one
    keepalive and one `standings` Txn per renew interval, whatever N."""
    counts = {}
    for n in (1, 6):
        w = World()
        g = w.replica(JOBS[:n])
        w.step(g)
        assert len(g.leading()) == n
        w.clients[0].calls.clear()
        w.run(10 * TIMING.renew_interval)
        calls = w.clients[0].calls
        assert calls["standing"] == 0, "no per-key reads in a group"
        counts[n] = (calls["keepalive"], calls["standings"])
    assert counts[1] == counts[6]
    keepalives, reads = counts[6]
    assert 9 <= keepalives <= 11 and 9 <= reads <= 11


def test_a_standby_replica_watches_the_whole_group_with_one_watch(world: World) -> None:
    """Nothing per job is polled while idle: one watch stream covers every predecessor, and
    the cheap re-read per renew interval is one request for the whole group."""
    leader = world.replica(JOBS, "leader")
    world.step(leader)
    standby = world.replica(JOBS, "standby")
    world.step(standby)
    assert standby.leading() == []
    client = world.clients[1]
    client.calls.clear()
    world.run(10 * TIMING.renew_interval)
    assert client.calls["watch"] == 0, "the watch opened at the first read stays"
    assert 9 <= client.calls["standings"] <= 11
    assert client.calls["get"] == client.calls["get_prefix"] == client.calls["standing"] == 0
    assert len(standby.watch.keys) == 2 * len(JOBS)  # each predecessor and our key, one stream


def test_a_silent_group_watch_delays_each_takeover_by_one_renew_interval_at_most_l1(
    world: World,
) -> None:
    """L1: the bound "never trust a silent watch for more than one renew interval" holds for
    the whole group with one read per interval: every job moves within that of its release."""
    leader = world.replica(JOBS, "leader")
    world.step(leader)
    standby = world.replica(JOBS, "standby")
    world.clients[1].silent = True  # from its first watch on
    world.step(standby)
    world.run(0.5)
    for job in JOBS:
        t = leader.withdraw(job)
        assert t is not None and t.event == "election.lost" and t.reason is Reason.RESIGNED
    released = world.clock.monotonic()
    while sorted(standby.leading()) != sorted(JOBS):
        assert world.clock.monotonic() - released <= TIMING.renew_interval + 2 * TICK, (
            f"only {standby.leading()} moved"
        )
        world.run(TICK)


def test_requeue_hands_one_job_to_the_next_in_line_and_queues_again_at_the_back(
    world: World,
) -> None:
    """The mechanism the spreader drives: release deletes our key of one job (the next in line
    takes over, L2), the next step re-creates it behind the new leader."""
    a = world.replica(("x", "y"), "a")
    world.step(a)
    b = world.replica(("x", "y"), "b")
    world.step(b)
    assert sorted(a.leading()) == ["x", "y"] and b.leading() == []
    t = a.requeue("x")
    assert t is not None and t.event == "election.lost" and t.job == "x"
    world.run(2 * TICK)
    assert b.leading() == ["x"] and a.leading() == ["y"]
    assert a.machine.phase_of("x") is Phase.CAMPAIGNING, "a queues again for x, at the back"
    keys = [k.key for k in world.store.candidates(prefix("x"), timeout=T)]
    assert keys == [b.keys["x"], a.keys["x"]]


def test_a_group_larger_than_one_read_confirms_in_as_few_reads_as_fit(world: Any) -> None:
    """etcd caps a Txn's operations: 130 jobs are confirmed in two reads per interval (a
    leader's key is one range: the lowest under its prefix must be ours), and all of them
    lead."""
    jobs = [f"job{i:03d}" for i in range(2 * MAX_PER_READ + 2)]
    g = world.replica(jobs)
    world.step(g)
    assert len(g.leading()) == len(jobs)
    world.clients[0].calls.clear()
    world.run(TIMING.renew_interval + TICK)
    assert world.clients[0].calls["standings"] == 2


def slow_replica(world: World, jobs: Sequence[str]) -> tuple[Group, SlowStore]:
    slow = SlowStore(world.store, world.clock)
    g = Group(slow, TIMING, "slow", world.clock, threading.Event())
    for job in jobs:
        g.want(job, prefix(job))
    world.replicas.append(g)
    return g, slow


def test_a_blackholed_create_for_a_rejoining_job_costs_one_step_budget_not_the_tenures_l4(
    world: World,
) -> None:
    """L4: the key of a job that joins its queue while others lead (added by a reload, handed
    back, its key lost) is created within the step's budget, like the keepalive: a blackhole
    that catches that create delays the job, and no tenure of the lease ends."""
    g, slow = slow_replica(world, ["a", "b"])
    world.step(g)
    assert g.leading() == ["a", "b"]
    world.run(TIMING.renew_interval)
    g.want("c", prefix("c"))
    slow.slow_next("create", 10.0)  # lost in a blackhole: waits out whatever timeout it has
    started = world.clock.monotonic()
    out = world.step(g)
    assert world.clock.monotonic() - started <= TIMING.renew_interval / 2 + 1e-9
    assert not any(t.lost_leadership for t in out.transitions)
    assert sorted(g.leading()) == ["a", "b"]
    world.run(2 * TIMING.renew_interval)
    assert sorted(g.leading()) == ["a", "b", "c"], "c joins at a later step, and leads"


def test_a_confirmation_split_into_several_txns_shares_the_steps_budget_l4(world: World) -> None:
    """L4: a group too large for one Txn confirms in several; on an etcd that answers each call
    at 90 % of its timeout, the step still ends within its budget (the chunks share it, with a
    check between them), the rest of the confirmation is read first at the next steps, and
    every job keeps leading through several TTLs."""
    jobs = [f"job{i:03d}" for i in range(5 * MAX_PER_READ)]
    g, slow = slow_replica(world, jobs)
    for job in jobs:
        g.read_along(job, f"{GROUP}/jobs/{job}/control/")
    world.step(g)
    world.run(TIMING.renew_interval)
    assert len(g.leading()) == len(jobs)
    slow.answer_at = 0.9
    reads = 0
    until = world.clock.monotonic() + 3 * TIMING.ttl
    while world.clock.monotonic() < until:
        world.clock.advance(TICK)
        started = world.clock.monotonic()
        before = len(slow.calls)
        out = world.step(g)
        took = world.clock.monotonic() - started
        assert took <= TIMING.renew_interval / 2 + 1e-9, slow.calls[before:]
        assert not any(t.lost_leadership for t in out.transitions), out.transitions
        reads += sum(op == "standings" for op, _ in slow.calls[before:])
    assert len(g.leading()) == len(jobs)
    assert reads >= 3 * TIMING.ttl / TIMING.renew_interval, "a confirming read each interval"
