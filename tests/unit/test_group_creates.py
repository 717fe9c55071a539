"""A group's keys created in batches: one Txn of nested creates per batch of jobs
(:meth:`~leaderjob.election.store.Store.creates`), on the in-memory etcd and the fake clock.

Timing as in test_group.py: ttl 3 s, renew every 1 s, so a step's budget is 0.5 s.
"""

from __future__ import annotations

import math

import pytest

from leaderjob.election.store import MAX_CREATES
from tests.unit.test_group import TICK, TIMING, World, prefix, slow_replica


@pytest.fixture
def world() -> World:
    return World()


def test_a_large_group_creates_its_keys_in_batches_and_every_job_leads_l1(world: World) -> None:
    """L1: a campaign's keys go in one request per MAX_CREATES jobs, not one each (a thousand
    jobs made one by one outlast a 10 s lease), and every job leads on that lease."""
    jobs = [f"job{i:03d}" for i in range(2 * MAX_CREATES + 3)]
    g = world.replica(jobs)
    world.step(g)
    calls = world.clients[0].calls
    assert calls["creates"] == 3 and calls["create"] == 0
    world.run(TIMING.renew_interval)
    assert len(g.leading()) == len(jobs)
    assert {g.machine.token_of(j) for j in jobs[:MAX_CREATES]} == {g.revisions[jobs[0]]}


def test_a_key_that_exists_refuses_none_of_the_others_s2(world: World) -> None:
    """S2: jobs that join while others lead are created together; one whose key is already there
    (a leftover of ours on this lease) is read back, and the others are created beside it."""
    g = world.replica(["a", "b"])
    world.step(g)
    lease = g.lease_id
    assert lease is not None
    there = world.store.create(f"{prefix('d')}/{lease:x}", b"left", lease, timeout=1.0)
    for job in "cde":
        g.want(job, prefix(job))
    world.clients[0].calls.clear()
    world.run(TICK)
    assert world.clients[0].calls["creates"] == 1
    assert g.revisions["d"] == there.create_revision
    assert g.revisions["c"] == g.revisions["e"] > there.create_revision
    world.run(2 * TIMING.renew_interval)
    assert sorted(g.leading()) == list("abcde")


def test_a_batch_whose_reply_is_lost_is_read_back_at_the_next_step_s2(world: World) -> None:
    """S2, the unknown outcome: a batch applied whose reply was lost leaves its jobs out of
    their queues for this step; the next step's create reads back the keys it made (one
    candidacy per queue, not two), and they lead with those keys' revisions as tokens."""
    g = world.replica(["a", "b"])
    world.step(g)
    for job in "cde":
        g.want(job, prefix(job))
    world.clients[0].inner.lose_reply_next(1, "creates")
    out = world.step(g)
    assert [e.operation for e in out.errors] == ["creates"]
    assert not {"c", "d", "e"} & set(g.keys)
    made = {j: world.store.candidates(prefix(j), timeout=1.0) for j in "cde"}
    world.run(2 * TIMING.renew_interval)
    assert sorted(g.leading()) == list("abcde")
    for job in "cde":
        assert world.store.candidates(prefix(job), timeout=1.0) == made[job]
        assert g.machine.token_of(job) == made[job][0].create_revision


def test_batches_that_do_not_fit_the_step_wait_for_the_next_l4(world: World) -> None:
    """L4 and the step's deadline: on an etcd that answers each call at 90 % of its timeout,
    jobs that join while others lead are created a batch a step (a batch needs room for the
    confirmation after it), every step ends within its budget, no tenure ends, and every job
    joins within a few steps."""
    g, slow = slow_replica(world, ["a", "b"])
    world.step(g)
    world.run(TIMING.renew_interval)
    joining = [f"job{i:03d}" for i in range(2 * MAX_CREATES + 3)]
    for job in joining:
        g.want(job, prefix(job))
    slow.answer_at = 0.9
    slow.calls.clear()
    until = world.clock.monotonic() + 3 * TIMING.ttl
    while world.clock.monotonic() < until:
        world.clock.advance(TICK)
        started = world.clock.monotonic()
        out = world.step(g)
        assert world.clock.monotonic() - started <= TIMING.renew_interval / 2 + 1e-9
        assert not any(t.lost_leadership for t in out.transitions), out.transitions
    creates = [t for op, t in slow.calls if op == "creates"]
    assert len(creates) == math.ceil(len(joining) / MAX_CREATES)
    assert all(t <= TIMING.renew_interval / 4 + 1e-9 for t in creates), "half the budget at most"
    assert set(joining) <= set(g.keys)
    slow.answer_at = None
    world.run(2 * TIMING.renew_interval)
    assert sorted(g.leading()) == sorted(["a", "b", *joining])


def test_a_blackholed_batch_costs_half_the_step_and_no_tenure_l4(world: World) -> None:
    """L4: a batch lost in a blackhole waits out half the step's budget at most; the confirmation
    of the keys held still fits, and the jobs join at a later step."""
    g, slow = slow_replica(world, ["a", "b"])
    world.step(g)
    world.run(TIMING.renew_interval)
    for job in "cde":
        g.want(job, prefix(job))
    slow.slow_next("creates", 10.0)
    started = world.clock.monotonic()
    out = world.step(g)
    assert world.clock.monotonic() - started <= TIMING.renew_interval / 2 + 1e-9
    assert not any(t.lost_leadership for t in out.transitions)
    world.run(2 * TIMING.renew_interval)
    assert sorted(g.leading()) == list("abcde")
