"""Many jobs of one daemon on one fire time claim their slots together (daemon/together.py), on
the fake clock and the in-memory etcd.

Every job fires ``@every 1s``; the loop passes every 50 ms, so each slot's claims are made
ahead of it in one pass, in one request. Properties: S3 (each claim fenced by its own job's key
and refused alone; every (job, slot) run at most once, with its job's own token), L3 (a batch
whose outcome is unknown loses no slot: each claim is read back), and the cost (one Txn per
batch, under etcd's --max-txn-ops; at most two revisions per run).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from leaderjob.daemon import together
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import Guarded, batches
from leaderjob.history.records import ElectionData
from tests.unit.test_daemon_jobs import GROUP, PREFIX, Group, fake_runs, group_daemon, runs_by_slot


class Spy:
    """Counts the daemon's claim requests; ``before`` runs once, just before the next batch."""

    def __init__(self, store: MemoryStore) -> None:
        self.batches: list[int] = []
        self.single = 0
        self.before: Callable[[], None] | None = None
        orig_many, orig_one = store.guarded_puts, store.guarded_put

        def many(writes: Sequence[Guarded], *, timeout: float) -> list[bool]:
            if self.before is not None:
                before, self.before = self.before, None
                before()
            self.batches.append(len(writes))
            return orig_many(writes, timeout=timeout)

        def one(*args: Any, **kwargs: Any) -> bool:
            self.single += 1
            return orig_one(*args, **kwargs)

        store.guarded_puts = many  # type: ignore[method-assign]
        store.guarded_put = one  # type: ignore[method-assign]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[Any]]]:
    with fake_runs(monkeypatch) as world:
        yield world


def burst(fake: tuple[Any, list[Any]], n: int) -> tuple[Group, Any, list[Any], Spy, list[str]]:
    clock, started = fake
    g = Group(clock, MemoryStore(clock))
    jobs = [f"j{i:03d}" for i in range(n)]
    d = group_daemon(g.store, clock, "a", jobs=jobs)
    g.daemons["a"] = d
    spy = Spy(d.store)  # type: ignore[arg-type]
    return g, d, started, spy, jobs


def revision(g: Group) -> int:
    return g.store.standing(f"{PREFIX}/none", "", 0, timeout=1).revision


def data(g: Group, job: str) -> ElectionData:
    return ElectionData(g.store, f"{PREFIX}/{GROUP}/jobs", job)


def claimed_in(g: Group, jobs: set[str], slot: str) -> set[int]:
    """The revisions in which ``jobs`` claimed ``slot``."""
    d = {job: data(g, job) for job in jobs}
    infos = [g.store.get(d[job].slot_key(slot), timeout=1) for job in jobs]
    assert all(i is not None for i in infos)
    return {i.mod_revision for i in infos if i is not None}


def slots_after(started: list[Any], t: float) -> set[str]:
    return {r.env["LEADERJOB_SLOT"] for r in started if r.started_at > t}


def test_jobs_due_at_once_claim_in_one_txn_each_with_its_own_token_s3(fake: Any) -> None:
    """S3, batched: 8 jobs on one fire time claim each slot in one request (one revision for
    the 8 claims), each claim carries its own job's token and is fenced by its own key; every
    (job, slot) runs once, with that token; at most two revisions per run."""
    g, d, started, spy, jobs = burst(fake, 8)
    g.run(2.0)  # campaign, catch-up
    before = len(started)
    r0 = revision(g)
    spy.batches.clear()
    spy.single = 0
    g.run(3.0)
    runs = started[before:]
    assert not [k for k, c in runs_by_slot(started).items() if c > 1]
    by_slot: dict[str, set[str]] = {}
    for r in runs:
        by_slot.setdefault(r.env["LEADERJOB_SLOT"], set()).add(r.env["LEADERJOB_JOB"])
    assert len(by_slot) >= 2 and all(v == set(jobs) for v in by_slot.values()), by_slot
    assert set(spy.batches) == {8}, spy.batches  # every slot: one request for the 8 claims
    assert spy.single == 0  # none claimed on its own
    for job in jobs:
        token = d.session.machine.token_of(job)
        for slot in by_slot:
            claim = data(g, job).claim(slot, timeout=1)
            assert claim is not None and claim["token"] == token and claim["status"] == "running"
        mine = [r for r in runs if r.env["LEADERJOB_JOB"] == job]
        assert {r.env["LEADERJOB_FENCING_TOKEN"] for r in mine} == {str(token)}
    assert revision(g) - r0 <= 2 * len(runs), (revision(g) - r0, len(runs))


def test_a_deposed_job_s_claim_is_refused_alone_s3(fake: Any) -> None:
    """S3: a job's key replaced behind the leader's back just before the batch: its claim is
    refused (fenced by its own key), the others apply and run; the deposed job never runs that
    slot or any later one under its old token."""
    g, d, started, spy, jobs = burst(fake, 4)
    g.run(2.0)
    victim = jobs[2]
    key = d.session.group.keys[victim]
    old_token = d.session.machine.token_of(victim)

    def depose() -> None:
        info = g.store.get(key, timeout=1)
        assert info is not None
        g.store.delete(key, timeout=1)  # re-created at once: a new create revision
        g.store.create(key, info.value, info.lease_id, timeout=1)

    spy.before = depose
    t = g.clock.monotonic()
    g.run(1.0)
    assert spy.before is None, "the batch was sent"
    ran = {(r.env["LEADERJOB_JOB"], r.env["LEADERJOB_FENCING_TOKEN"]) for r in started}
    late = [r for r in started if r.started_at > t]
    assert {r.env["LEADERJOB_JOB"] for r in late} == set(jobs) - {victim}
    assert not [k for k, c in runs_by_slot(started).items() if c > 1]
    assert (victim, str(old_token)) in ran  # it ran before, under the old token
    assert all(
        r.env["LEADERJOB_FENCING_TOKEN"] != str(old_token)
        for r in late
        if r.env["LEADERJOB_JOB"] == victim
    )
    # Refused alone: no claim of the victim's for that slot; the others' in one Txn.
    first = min(slots_after(started, t))
    assert data(g, victim).claim(first, timeout=1) is None
    assert len(claimed_in(g, set(jobs) - {victim}, first)) == 1


def test_a_suspended_job_s_claim_is_refused_alone(fake: Any) -> None:
    """`suspend --job` between passes: that job's claim in the batch is refused (the switch is
    compared in its own claim), its slots are skipped with a record; the others run."""
    g, _, started, spy, jobs = burst(fake, 4)
    g.run(2.0)
    data(g, jobs[1]).suspend("op", timeout=1)
    t = g.clock.monotonic()
    g.run(2.0)
    assert {r.env["LEADERJOB_JOB"] for r in started if r.started_at > t} == set(jobs) - {jobs[1]}
    assert spy.batches and set(spy.batches) == {4}
    first = min(slots_after(started, t))
    assert len(claimed_in(g, set(jobs) - {jobs[1]}, first)) == 1  # the others: one Txn
    assert not [k for k, c in runs_by_slot(started).items() if c > 1]


@pytest.mark.parametrize("applied", [True, False], ids=["reply_lost", "not_applied"])
def test_a_batch_of_unknown_outcome_loses_no_slot_and_runs_none_twice_s3_l3(
    fake: Any, applied: bool
) -> None:
    """S3 + L3: the batch's request fails (applied and its reply lost, or not applied at all):
    every claim in it is unknown, read back before its slot could start — ours: run; absent:
    claimed again. Every job runs that slot exactly once."""
    g, d, started, spy, jobs = burst(fake, 4)
    g.run(2.0)
    client: MemoryStore = d.store  # type: ignore[assignment]
    if applied:
        client.lose_reply_next(1, "guarded_puts")
    else:
        client.fail_next(1, "guarded_puts")
    t = g.clock.monotonic()
    g.run(1.0)
    assert spy.batches, "a batch was sent"
    first = min(slots_after(started, t))
    ran = runs_by_slot(started)
    assert all(ran[(job, first)] == 1 for job in jobs), ran
    assert not [k for k, c in ran.items() if c > 1]
    for job in jobs:  # each run under a claim of its own job's, never on a guess
        claim = data(g, job).claim(first, timeout=1)
        assert claim is not None and claim["token"] == d.session.machine.token_of(job)


def test_more_claims_than_one_txn_takes_go_in_several(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd's --max-txn-ops: claims beyond what one Txn takes go in the next request (here a
    limit of 8 operations: 5 claims of 3 operations, then 3), and each job runs the slot once
    (the real limit, 125 claims, is the contract suite's, on etcd itself)."""
    monkeypatch.setattr(together, "batches", functools.partial(batches, limit=8))
    g, _, started, spy, jobs = burst(fake, 8)
    g.run(2.0)
    spy.batches.clear()
    t = g.clock.monotonic()
    g.run(1.0)
    assert spy.batches[:2] == [5, 3], spy.batches
    first = min(slots_after(started, t))
    ran = runs_by_slot(started)
    assert all(ran[(job, first)] == 1 for job in jobs)


def test_a_job_on_its_way_out_claims_nothing_together(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop hands the batch only the jobs that may start: one being handed over or retired
    (held by the applier) claims nothing ahead."""
    g, d, started, spy, jobs = burst(fake, 3)
    g.run(2.0)
    held = jobs[0]
    monkeypatch.setattr(d.applier, "holds", lambda job: job == held)
    t = g.clock.monotonic()
    g.run(2.0)
    assert set(spy.batches[-2:]) == {2}
    assert held not in {r.env["LEADERJOB_JOB"] for r in started if r.started_at > t}


def test_a_pass_that_comes_after_the_fire_time_still_claims_together_s3(fake: Any) -> None:
    """A long pass (a thousand jobs) can miss the 50 ms before a fire time: the slots then due
    are claimed together too (one request, each fenced by its own key), and each job runs each
    slot once."""
    g, d, started, spy, jobs = burst(fake, 6)
    g.run(2.0)
    spy.batches.clear()
    spy.single = 0
    idle = threading.Event()
    end = g.clock.monotonic() + 3.0
    while g.clock.monotonic() < end:  # a pass every 0.3 s: mostly after the fire time
        d.cycle()
        step_end = g.clock.monotonic() + 0.3
        while g.clock.monotonic() < step_end:
            g.clock.wait(idle, step_end - g.clock.monotonic())
    assert spy.single == 0, "every claim went with the others'"
    assert spy.batches and set(spy.batches) == {6}
    ran = runs_by_slot(started)
    assert not [k for k, c in ran.items() if c > 1]
    slots = {s for _, s in ran}
    assert all(ran[(job, s)] == 1 for job in jobs for s in slots if s > min(slots))
