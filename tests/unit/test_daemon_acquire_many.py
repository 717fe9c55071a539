"""A group daemon's snapshot (what the HTTP endpoints read) covers every job: built once for a
step's transitions, not once each, and not every cycle of a busy loop (in-memory etcd, fake
clock)."""

from __future__ import annotations

import math
from typing import Any

import pytest

import leaderjob.daemon.snapshot as snapshot_mod
from leaderjob.daemon.model import Report
from leaderjob.election.memory import MemoryStore
from tests.unit.test_daemon_jobs import group_daemon
from tests.unit.test_daemon_schedule import Clock


def test_many_jobs_acquired_in_one_step_publish_one_snapshot_l4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """L4: the snapshot covers every job, so building it per transition costs jobs² work in
    the step that acquires them all (a thousand jobs: seconds with the lease unrenewed). The
    step's transitions are applied, then published once, and probes see every job leading."""
    built = counted_snapshots(monkeypatch)
    clock = Clock()
    jobs = tuple(f"j{i:02d}" for i in range(40))
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=jobs)
    built.clear()
    d.cycle()
    assert sorted(d.session.group.leading()) == sorted(jobs)
    assert built.count("election.acquired") == 1, built
    assert len(built) < 5, built
    assert all(job["leader"] for job in d.snapshot["jobs"].values()), d.snapshot["jobs"]


#: A group big enough for its snapshot to be throttled.
_BIG = tuple(f"j{i:02d}" for i in range(snapshot_mod.THROTTLE_FROM))


def counted_snapshots(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every snapshot built from now on, by the action it was built for."""
    built: list[str] = []
    real = snapshot_mod.snapshot

    def counting(daemon: Any, action: str) -> dict[str, Any]:
        built.append(action)
        return real(daemon, action)

    monkeypatch.setattr(snapshot_mod, "snapshot", counting)
    return built


def test_after_each_cycle_a_group_s_snapshot_is_built_whole_at_most_every_publish_every_l4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """L4 in a burst: cycles that follow one another (the guardian's reports of a thousand
    starts) refresh the snapshot's liveness fields only; it is built whole once PUBLISH_EVERY
    has passed, and the loop wakes by CATCH_UP should nothing else wake it. A leadership change,
    or a caller that asks, builds it whole at once. A small group is built whole every cycle."""
    built = counted_snapshots(monkeypatch)
    clock = Clock()
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=_BIG)
    d.cycle()
    d._publish("whole")
    jobs = d.snapshot["jobs"]
    built.clear()
    clock.advance(0.05)
    d._publish("cycled", throttled=True)
    assert built == []
    assert d.snapshot["action"] == "cycled" and d.snapshot["loop_at"] == clock.monotonic()
    assert d.snapshot["jobs"] is jobs
    whole_by = clock.monotonic() - 0.05 + snapshot_mod.CATCH_UP
    assert d.next_wakeup(clock.monotonic()) <= whole_by, "the loop would sleep past it"
    clock.advance(snapshot_mod.PUBLISH_EVERY)
    d._publish("cycled again", throttled=True)
    assert built == ["cycled again"]
    d._publish("asked")
    assert built == ["cycled again", "asked"]
    small = group_daemon(MemoryStore(clock), clock, "b", jobs=("j1", "j2"))
    small.cycle()
    small._publish("whole")
    built.clear()
    small._publish("cycled", throttled=True)
    assert built == ["cycled"]
    assert small.publisher.due() == math.inf, "no catch-up wake: nothing was left behind"


def test_the_loop_throttles_the_snapshot_it_publishes_after_each_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller's half: ``serve`` publishes after each cycle through the throttle. Six
    cycles 0.1 s apart build the snapshot whole twice (at 0.25 s and 0.5 s), not six times."""
    built = counted_snapshots(monkeypatch)
    clock = Clock()
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=_BIG)
    d.cycle()
    d._publish("whole")
    built.clear()
    left = iter(range(5, -1, -1))

    def cycle() -> Report:
        clock.advance(0.1)
        return Report("leading" if next(left) else "exited")

    monkeypatch.setattr(d, "cycle", cycle)
    monkeypatch.setattr(d, "_wait", lambda: None)
    monkeypatch.setattr(d.process, "start", lambda *a: None)
    monkeypatch.setattr(d.process, "stop", lambda *a: None)
    monkeypatch.setattr(d, "_install_signal_handlers", lambda: None)
    d.serve()
    assert len(built) == 2, built
