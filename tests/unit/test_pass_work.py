"""What a pass of the loop does not redo when its inputs did not change (CPU per run).

A pass woken by a job's report (a start answered, a run ended) runs the whole cycle; work whose
inputs that report cannot have changed is skipped, each skip pinned here with a counting fake
next to a check that the work is still done when its input is there. On the fake clock and the
in-memory store.
"""

from __future__ import annotations

from typing import Any

import pytest

from leaderjob.clock import FakeClock
from leaderjob.daemon.applier import Applier
from leaderjob.daemon.reload import Reloader
from leaderjob.daemon.spread import Spreader
from tests.unit.test_daemon_jobs import _Gate, group_daemon, world

__all__ = ["world"]  # the fake-clock group world of test_daemon_jobs, a fixture


def test_a_group_without_gates_or_spreading_builds_no_job_views_per_pass(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health gates and spreading read every job's view; without either, a pass builds
    none (a view per job per pass, a thousand jobs). With a gate, the gate gets them again."""
    g, started = world
    calls = []
    views = Applier.views

    def counted(self: Applier) -> Any:
        calls.append(1)
        return views(self)

    monkeypatch.setattr(Applier, "views", counted)
    a = g.add("a")
    g.run(3.0)
    assert started and not calls
    gate = _Gate()
    a.checkers.by_job["b"] = gate
    gate.healthy = False
    g.run(0.5)
    assert calls, "a gated job's view not built: its gate cannot decide"
    assert a.applier.holds("b") or g.leaders().get("b") != "a"


def test_spreading_off_builds_no_job_views_per_pass(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--spread off`` (a spreader that never moves a job) reads no job's view either; spreading
    on reads them every pass, as it must to see a job come or go idle."""
    g, started = world
    calls: list[int] = []
    views = Applier.views

    def counted(self: Applier) -> Any:
        calls.append(1)
        return views(self)

    monkeypatch.setattr(Applier, "views", counted)
    d = group_daemon(g.store, g.clock, "a", spreader=Spreader(enabled=False))
    g.daemons["a"] = d
    g.run(3.0)
    assert started and not calls
    g.daemons["b"] = group_daemon(g.store, g.clock, "b", spreader=Spreader())
    g.run(1.0)
    assert calls


def test_the_reloader_asks_for_the_jobs_only_when_it_reloads() -> None:
    """The jobs as they are to be (a dict over every job) are built when a reload compares a
    new file with them, not at every pass."""
    asked = []

    def current() -> dict[str, Any]:
        asked.append(1)
        return {}

    r = Reloader(lambda: [], None, clock=FakeClock(), wake=lambda: None, log=_Log())
    for _ in range(5):
        assert r.tick(current) is None
    assert not asked
    r.request()
    assert r.tick(current) == []
    assert asked == [1]


class _Log:
    def info(self, *_: Any, **__: Any) -> None:
        pass

    def error(self, *_: Any, **__: Any) -> None:
        pass
