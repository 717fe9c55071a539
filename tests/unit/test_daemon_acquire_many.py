"""A group daemon whose many jobs change leadership in one step: the snapshot the HTTP endpoints
read is built once for the step's transitions, not once each (in-memory etcd, fake clock)."""

from __future__ import annotations

from typing import Any

import pytest

import leaderjob.daemon.loop as loop_mod
from leaderjob.election.memory import MemoryStore
from tests.unit.test_daemon_jobs import group_daemon
from tests.unit.test_daemon_schedule import Clock


def test_many_jobs_acquired_in_one_step_publish_one_snapshot_l4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """L4: the snapshot covers every job, so building it per transition costs jobs² work in
    the step that acquires them all (a thousand jobs: seconds with the lease unrenewed). The
    step's transitions are applied, then published once, and probes see every job leading."""
    built: list[str] = []
    real = loop_mod.snapshot

    def counting(daemon: Any, action: str) -> dict[str, Any]:
        built.append(action)
        return real(daemon, action)

    monkeypatch.setattr(loop_mod, "snapshot", counting)
    clock = Clock()
    jobs = tuple(f"j{i:02d}" for i in range(40))
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=jobs)
    built.clear()
    d.cycle()
    assert sorted(d.session.group.leading()) == sorted(jobs)
    assert built.count("election.acquired") == 1, built
    assert len(built) < 5, built
    assert all(job["leader"] for job in d.snapshot["jobs"].values()), d.snapshot["jobs"]
