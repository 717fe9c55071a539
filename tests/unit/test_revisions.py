"""What a run costs etcd in revisions, on the pure core (Daemon + MemoryStore + FakeClock).

etcd keeps every revision until it is compacted, so revisions per run are what a schedule costs
in database growth (docs/benchmarks.md "Capacity"). MemoryStore counts them as etcd does: one
per Txn that changes something, whatever the number of its operations.

Steady state, once the history and the slot claims are at their bounds: one revision for the
slot claim (which moves ``state/last_slot`` and deletes the claim that fell out of the bound)
and one for the history record (with its output tails, and the record that fell out of the
bound). The bounds themselves stay exact (L4 "bounded etcd use", docs/scheduling.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import KeyInfo
from tests.unit.test_daemon_schedule import World, lead, run_for, world

__all__ = ["world"]


def revision(w: World) -> int:
    return w.store._server.revision


def test_a_pruning_run_costs_two_revisions_L4(world: World) -> None:
    """200 runs of ``@every 1s`` past ``history_limit=10``: at most 2 revisions per run on
    average (the claim and the record, each carrying its prune), and the bounds hold."""
    d = world.daemon("@every 1s", history_limit=10)
    lead(world, d)
    run_for(d, 30)  # both bounds reached: pruning has started
    assert len(world.keys("history/")) == 10
    before, runs = revision(world), len(world.started)
    run_for(d, 200)
    runs = len(world.started) - runs
    assert runs >= 195
    per_run = (revision(world) - before) / runs
    assert per_run <= 2.0, f"{per_run:.2f} revisions per run"
    assert len(world.keys("history/")) == 10
    timed = [k for k in world.keys("slots/") if "trigger-" not in k]
    assert len(timed) <= 10 + 1
    assert d.tenure is not None


def test_revisions_before_the_bound_are_two_per_run(world: World) -> None:
    """Below the bounds there is nothing to prune: a claim and a record per run."""
    d = world.daemon("@every 1s", history_limit=1000)
    lead(world, d)
    run_for(d, 2)
    before, runs = revision(world), len(world.started)
    run_for(d, 50)
    assert (revision(world) - before) / (len(world.started) - runs) <= 2.0


def test_a_deposed_leaders_record_is_written_and_deletes_nothing_S3() -> None:
    """A record carries its prune only fenced by our key: once deposed, the record is still
    written (history is kept after a tenure too), and the old records it carried stay."""
    from datetime import UTC, datetime

    from leaderjob.clock import FakeClock
    from leaderjob.election.memory import MemoryStore
    from leaderjob.history.records import ElectionData

    store = MemoryStore(FakeClock())
    data = ElectionData(store, "/lj", "job")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    data.record({"run_id": "old"}, at, timeout=1)
    (old,) = [k.key for k in store.get_prefix(data.history_prefix, timeout=1)]
    store.put("/lj/job/leader/1", b"a", timeout=1)
    token = store.get("/lj/job/leader/1", timeout=1).create_revision  # type: ignore[union-attr]
    deposed = data.record(
        {"run_id": "new"}, at, timeout=1, fence=("/lj/job/leader/1", token + 1), deletes=[old]
    )
    assert not deposed
    assert len(data.history(10, timeout=1)) == 2
    leading = data.record(
        {"run_id": "newer"}, at, timeout=1, fence=("/lj/job/leader/1", token), deletes=[old]
    )
    assert leading
    assert [r["run_id"] for r in data.history(10, timeout=1)] == ["newer", "new"]


def test_pruning_reads_once_every_few_runs_and_the_bounds_hold_L4(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reads that look for old records and claims are made once every
    :data:`~leaderjob.history.runs.PRUNE_EVERY` writes, not after each: at most 0.25 range
    reads of ``history/`` or ``slots/`` per run (two per run before), while the bounds still
    hold at every cycle: ``history_limit`` records, timed claims for ``history_limit``
    intervals and the one being claimed."""
    reads: list[str] = []
    get_prefix = MemoryStore.get_prefix

    def counting(self: MemoryStore, prefix: str, **kw: Any) -> list[KeyInfo]:
        if "/history/" in prefix or "/slots/" in prefix:
            reads.append(prefix)
        return get_prefix(self, prefix, **kw)

    d = world.daemon("@every 1s", history_limit=10)
    lead(world, d)
    run_for(d, 30)  # both bounds reached: pruning has started
    runs = len(world.started)
    for _ in range(200):
        with monkeypatch.context() as m:
            m.setattr(MemoryStore, "get_prefix", counting)
            run_for(d, 1)
        assert len(world.keys("history/")) == 10
        assert 10 <= len([k for k in world.keys("slots/") if "trigger-" not in k]) <= 10 + 1
    runs = len(world.started) - runs
    assert runs >= 195
    for kind in ("/history/", "/slots/"):
        per_run = sum(kind in r for r in reads) / runs
        assert per_run <= 0.125, f"{per_run:.2f} reads of {kind} per run"


def test_one_read_finds_what_each_of_the_next_records_pushes_out_L4() -> None:
    """``old_history(ahead=n)``: for each of the next n records, in order, the record it pushes
    out of the bound — the oldest kept first; nothing for the writes that only fill it up."""
    from datetime import UTC, datetime, timedelta

    from leaderjob.clock import FakeClock
    from leaderjob.history.records import ElectionData

    store = MemoryStore(FakeClock())
    data = ElectionData(store, "/lj", "job")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(8):
        data.record({"run_id": f"r{i}"}, at + timedelta(seconds=i), timeout=1)
    names = [k.key for k in store.get_prefix(data.history_prefix, timeout=1)]
    assert data.old_history(10, timeout=1, ahead=4) == ([], [[], [], names[0:1], names[1:2]])
    assert data.old_history(5, timeout=1, ahead=4) == (names[:3], [names[3:4]])  # a backlog
    assert data.old_history(8, timeout=1) == ([], [names[0:1]])
