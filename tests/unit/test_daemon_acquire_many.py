"""A group daemon's snapshot (what the HTTP endpoints read) covers every job: built once for a
step's transitions, not once each, and not every cycle of a busy loop (in-memory etcd, fake
clock)."""

from __future__ import annotations

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
    built = _counted(monkeypatch)
    clock = Clock()
    jobs = tuple(f"j{i:02d}" for i in range(40))
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=jobs)
    built.clear()
    d.cycle()
    assert sorted(d.session.group.leading()) == sorted(jobs)
    assert built.count("election.acquired") == 1, built
    assert len(built) < 5, built
    assert all(job["leader"] for job in d.snapshot["jobs"].values()), d.snapshot["jobs"]


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []
    real = snapshot_mod.snapshot

    def counting(daemon: Any, action: str) -> dict[str, Any]:
        built.append(action)
        return real(daemon, action)

    monkeypatch.setattr(snapshot_mod, "snapshot", counting)
    return built


def test_a_busy_loop_builds_a_group_s_snapshot_whole_at_most_every_publish_every_l4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """L4 in a burst: cycles that follow one another without a wait (the guardian's reports of a
    thousand starts) refresh the snapshot's liveness fields only; it is built whole once
    PUBLISH_EVERY has passed, and by the cycle before the loop waits."""
    built = _counted(monkeypatch)
    clock = Clock()
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=("j1", "j2"))
    d.cycle()
    d._publish("whole")
    jobs = d.snapshot["jobs"]
    built.clear()
    clock.advance(0.05)
    d._publish("busy", busy=True)
    assert built == []
    assert d.snapshot["action"] == "busy" and d.snapshot["loop_at"] == clock.monotonic()
    assert d.snapshot["jobs"] is jobs
    clock.advance(snapshot_mod.PUBLISH_EVERY)
    d._publish("busy again", busy=True)
    assert built == ["busy again"]
    d._publish("idle", busy=False)
    assert built == ["busy again", "idle"]


def test_the_loop_says_it_is_busy_when_it_was_woken_again_during_the_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller's half: ``serve`` hands ``_publish`` whether the waker is set already. Five
    cycles each woken again during the cycle build nothing whole; the last, before the loop
    would wait, does."""
    built = _counted(monkeypatch)
    clock = Clock()
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=("j1", "j2"))
    d.cycle()
    d._publish("whole")
    built.clear()
    left = iter(range(5, -1, -1))

    def cycle() -> Report:
        if next(left):
            d.wakeup.set()
            return Report("leading")
        d.wakeup.clear()
        return Report("exited")

    monkeypatch.setattr(d, "cycle", cycle)
    monkeypatch.setattr(d, "_wait", lambda: None)
    monkeypatch.setattr(d.process, "start", lambda *a: None)
    monkeypatch.setattr(d.process, "stop", lambda *a: None)
    monkeypatch.setattr(d, "_install_signal_handlers", lambda: None)
    d.serve()
    assert built == ["exited"], built
