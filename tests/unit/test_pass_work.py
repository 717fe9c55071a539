"""What a pass of the loop does not redo when its inputs did not change (CPU per run).

A pass woken by a job's report (a start answered, a run ended) runs the whole cycle; work whose
inputs that report cannot have changed is skipped, each skip pinned here with a counting fake
next to a check that the work is still done when its input is there. On the fake clock and the
in-memory store.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import leaderjob.daemon as daemon_pkg
from leaderjob import cli
from leaderjob.clock import FakeClock
from leaderjob.daemon.applier import Applier
from leaderjob.daemon.reload import Reloader
from leaderjob.daemon.spread import Spreader
from tests.unit.test_daemon_acquire_many import counted_snapshots
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

    def counted(self: Applier, *only: Any) -> Any:
        calls.append(1)
        return views(self, *only)

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

    def counted(self: Applier, *only: Any) -> Any:
        calls.append(1)
        return views(self, *only)

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


def test_a_daemon_nobody_observes_builds_no_snapshot(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot is what the HTTP endpoints read; with ``--metrics-addr off`` there are none,
    and a pass builds no snapshot (a tenth of a pass's CPU). Observed, every pass builds one."""
    g, started = world
    built = counted_snapshots(monkeypatch)
    d = group_daemon(g.store, g.clock, "a")
    d.observed = False
    g.daemons["a"] = d
    g.run(2.0)
    for _ in range(3):
        d._publish(d.cycle().action, throttled=True)
    assert started and built == ["starting"]
    d.observed = True
    d._publish(d.cycle().action)
    assert len(built) == 2 and d.snapshot["jobs"]


class _Built(Exception):
    pass


@pytest.mark.parametrize(("addr", "observed"), [("off", False), ("127.0.0.1:0", True)])
def test_the_cli_says_whether_the_snapshot_has_a_reader(
    monkeypatch: pytest.MonkeyPatch, addr: str, observed: bool
) -> None:
    """The caller hands the real value: ``run`` builds its daemon observed exactly when it
    serves the HTTP endpoints."""
    seen: list[bool] = []

    def fake_daemon(*_: Any, observed: bool = True, **__: Any) -> Any:
        seen.append(observed)
        raise _Built

    monkeypatch.setattr(daemon_pkg, "Daemon", fake_daemon)
    argv = ["run", "--election", "e", "--endpoints", "127.0.0.1:1", "--metrics-addr", addr]
    out = CliRunner().invoke(cli.main, [*argv, "--", "true"])
    assert isinstance(out.exception, _Built), out.output
    assert seen == [observed]
