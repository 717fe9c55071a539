"""Where reload, per-job health gates, service mode, claims ahead and signals meet, on the fake
clock: several replicas of a group over one in-memory etcd (see test_daemon_jobs).

Each test names the defect it pins down: a job handed over by its health gate gives back a slot
claimed ahead (L2, S3); a reload starts, stops and replaces per-job health checkers; a reload
republishes the fingerprint (no conflict with itself); a removed or changed service-mode job is
stopped gracefully; SIGHUP without a jobs file hands over; /status shows only current jobs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

import leaderjob.daemon.gates as gates_mod
import leaderjob.daemon.runner as runner_mod
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import iso
from leaderjob.ops.health import HealthSettings
from leaderjob.schedule import parse_schedule
from tests.unit.test_daemon_jobs import GROUP, PREFIX, TICK, TIMING, Group, fake_runs, runs_by_slot
from tests.unit.test_daemon_schedule import FakeRun, Job

JOBS_PREFIX = f"{PREFIX}/{GROUP}/jobs"


class FakeChecker:
    """A job's health checker: no thread; the test flips ``healthy``."""

    made: ClassVar[list[FakeChecker]] = []

    def __init__(self, settings: HealthSettings, on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.healthy = True
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.started = False
        self.stopped = False
        FakeChecker.made.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def set(self, healthy: bool) -> None:
        self.healthy = healthy
        self.consecutive_failures = 0 if healthy else 3
        self.last_error = None if healthy else "command exited 1"
        self.on_change()

    def fail(self) -> None:
        self.set(False)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Group, list[FakeRun]]]:
    FakeChecker.made = []
    for module in (runner_mod, gates_mod):
        monkeypatch.setattr(module, "HealthChecker", FakeChecker, raising=False)
    with fake_runs(monkeypatch) as (clock, started):
        yield Group(clock, MemoryStore(clock)), started


def job(
    identity: str,
    name: str,
    expr: str | None = "@every 1s",
    *,
    command: tuple[str, ...] | None = None,
    health: str | None = None,
    mode: str = "schedule",
) -> Settings:
    return Settings(
        election=name,
        prefix=JOBS_PREFIX,
        identity=identity,
        timing=TIMING,
        command=command or ("job", name),
        mode=mode,  # type: ignore[arg-type]
        schedule=parse_schedule(expr, "UTC") if expr is not None else None,
        rpc_timeout=1.0,
        health=HealthSettings(command=health) if health else None,
    )


def replica(
    g: Group,
    identity: str,
    files: list[list[Settings]],
    metrics: Any = None,
    timing: Timing = TIMING,
) -> Daemon:
    """A replica whose jobs file is ``files[-1]`` (append to it, then ``reloader.request()``)."""
    settings = Settings(
        election=GROUP, prefix=PREFIX, identity=identity, timing=timing, command=(), rpc_timeout=1.0
    )
    d = Daemon(
        settings,
        g.store.client(),
        clock=g.clock,
        environ={},
        metrics=metrics,
        jobs=files[-1],
        reload=lambda: files[-1],
    )
    g.daemons[identity] = d
    return d


def reload(d: Daemon) -> None:
    assert d.reloader is not None
    d.reloader.request()


def checkers_of(command: str) -> list[FakeChecker]:
    return [c for c in FakeChecker.made if c.settings.command == command]


def queued(g: Group, name: str) -> list[int]:
    return [k.lease_id for k in g.store.candidates(f"{JOBS_PREFIX}/{name}/leader", timeout=1)]


# -- a gate's hand-over gives back a slot claimed ahead --------------------------------------------


def test_a_job_handed_over_by_its_gate_gives_back_its_slot_claimed_ahead_l2(world: Any) -> None:
    """L2/S3: a job whose own health gate fails while its next slot is claimed ahead (and not
    started) gives the claim back before its key goes: the successor runs that slot, once.
    Without the give-back the slot is lost with no record."""
    g, started = world
    a = replica(g, "a", [[job("a", "x", health="check-x")]])
    g.run(2.0)
    replica(g, "b", [[job("b", "x", health="check-x")]])
    g.run(1.0)
    assert g.leaders() == {"x": "a"}
    runner = a.runners["x"]
    for _ in range(200):
        tenure = runner.tenure
        if tenure is not None and tenure.ahead is not None and not runner.runs:
            break
        g.run(TICK / 5)
    assert runner.tenure is not None and runner.tenure.ahead is not None
    slot = runner.tenure.ahead.id
    (gate,) = [c for c in checkers_of("check-x") if c in _gates_of(a)]
    gate.fail()
    g.run(2.0)
    assert g.leaders() == {"x": "b"}
    assert runs_by_slot(started)[("x", slot)] == 1, "the slot claimed ahead ran once, by b"
    assert next(r for r in started if r.slot == slot).env["LEADERJOB_IDENTITY"] == "b"


def _gates_of(d: Daemon) -> list[Any]:
    """The checkers a replica's jobs use (wherever the daemon keeps them)."""
    found = []
    for c in FakeChecker.made:
        if c.on_change == d.wakeup.set:
            found.append(c)
    return found


# -- per-job health checkers across a reload -------------------------------------------------------


def test_a_removed_job_s_checker_stops_and_one_added_back_starts(world: Any) -> None:
    """A reload that removes a gated job stops its checker (no command run for ever); the same
    job added back later gets a checker that is started, and its gate works: when it fails, the
    job is handed over."""
    g, _ = world
    files = [[job("a", "x"), job("a", "y", health="check-y")]]
    d = replica(g, "a", files)
    g.run(2.0)
    (first,) = checkers_of("check-y")
    assert first.started and not first.stopped
    files.append([job("a", "x")])
    reload(d)
    g.run(2.0)
    assert "y" not in d.runners
    assert first.stopped, "a removed job's checker keeps running its command"
    files.append([job("a", "x"), job("a", "y", health="check-y")])
    reload(d)
    g.run(2.0)
    assert g.leaders() == {"x": "a", "y": "a"}
    second = [c for c in checkers_of("check-y") if c is not first]
    assert len(second) == 1 and second[0].started, "the job added back has no running gate"
    second[0].fail()
    g.run(1.0)
    assert g.leaders() == {"x": "a"}, "the gate of the job added back is off"
    assert d.session.group.lease_id not in queued(g, "y")


def test_a_changed_health_command_takes_effect_on_reload(world: Any) -> None:
    """A reload that changes a job's health-cmd replaces its checker: the old one stops, the new
    one runs the new command and gates the job."""
    g, _ = world
    files = [[job("a", "y", health="check-old")]]
    d = replica(g, "a", files)
    g.run(2.0)
    (old,) = checkers_of("check-old")
    files.append([job("a", "y", health="check-new")])
    reload(d)
    g.run(2.0)
    assert old.stopped, "the old command keeps being checked"
    (new,) = checkers_of("check-new")
    assert new.started
    new.fail()
    g.run(1.0)
    assert g.leaders() == {}


# -- a reload republishes the fingerprint ----------------------------------------------------------


def test_a_reload_republishes_the_fingerprint_and_flags_no_conflict_with_itself(
    world: Any,
) -> None:
    """A reload that changes the jobs publishes the new fingerprint under this lease (the key
    existed: create-if-absent kept the old one), so the replica does not flag a conflict with
    itself and the others compare against what it runs now."""
    from prometheus_client import CollectorRegistry

    from leaderjob.ops.fingerprint import fingerprints_prefix
    from leaderjob.ops.metrics import Metrics

    g, _ = world
    metrics = Metrics(CollectorRegistry(), GROUP)
    files = [[job("a", "x"), job("a", "y")]]
    d = replica(g, "a", files, metrics=metrics)
    g.run(3.0)
    conflict = {"election": GROUP}
    assert metrics.registry.get_sample_value("leaderjob_config_conflict", conflict) == 0
    files.append([job("a", "x", "@every 2s")])
    reload(d)
    g.run(3.0)
    keys = g.store.get_prefix(fingerprints_prefix(PREFIX, GROUP), timeout=1)
    assert len(keys) == 1 and d.config.fingerprint.encode() in keys[0].value
    assert metrics.registry.get_sample_value("leaderjob_config_conflict", conflict) == 0


# -- service-mode jobs across a reload -------------------------------------------------------------


def test_a_removed_service_job_is_stopped_and_retired(world: Any) -> None:
    """A service-mode job removed by a reload: its run (which never ends on its own) is stopped
    gracefully, then the job resigns (its key goes) and is forgotten. The other jobs carry on."""
    g, started = world
    FakeRun.job = Job(duration=None)  # a service runs until it is stopped
    files = [[job("a", "x"), job("a", "svc", None, mode="service")]]
    d = replica(g, "a", files)
    g.run(2.0)
    (svc,) = [r for r in started if r.env["LEADERJOB_JOB"] == "svc"]
    assert not svc.done
    files.append([job("a", "x")])
    reload(d)
    g.run(2.0)
    assert svc.stop_reason == "removed" and svc.done
    assert set(d.runners) == {"x"}
    assert queued(g, "svc") == []
    assert g.leaders() == {"x": "a"}


def test_a_changed_service_job_restarts_with_its_new_command(world: Any) -> None:
    """A service-mode job changed by a reload: its run is stopped gracefully and the service
    starts again with the new settings, still led here."""
    g, started = world
    FakeRun.job = Job(duration=None)
    files = [[job("a", "svc", None, mode="service", command=("serve", "v1"))]]
    d = replica(g, "a", files)
    g.run(2.0)
    (v1,) = started
    files.append([job("a", "svc", None, mode="service", command=("serve", "v2"))])
    reload(d)
    g.run(3.0)
    assert v1.stop_reason == "reconfigured" and v1.done
    live = [r for r in started if not r.done]
    assert [r.env["LEADERJOB_JOB"] for r in live] == ["svc"]
    assert live[0] is not v1 and d.runners["svc"].s.command == ("serve", "v2")
    assert g.leaders() == {"svc": "a"}


# -- SIGHUP without a jobs file --------------------------------------------------------------------


def test_sighup_without_a_jobs_file_hands_over_instead_of_killing_the_daemon(
    world: Any,
) -> None:
    """A single-job daemon has nothing to reload: SIGHUP (a terminal hang-up, `kill -HUP`) is a
    graceful stop, a handover, not the default action that kills the process (a TTL wait)."""
    g, _ = world
    settings = Settings(
        election="one",
        prefix=PREFIX,
        identity="a",
        timing=TIMING,
        command=("job",),
        schedule=parse_schedule("@every 1s", "UTC"),
        rpc_timeout=1.0,
    )
    d = Daemon(settings, g.store.client(), clock=g.clock, environ={})
    assert threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        d._install_signal_handlers()
        handler = signal.getsignal(signal.SIGHUP)
        assert callable(handler), "SIGHUP keeps its default action: the daemon dies"
        handler(signal.SIGHUP, None)
        assert d.leaving == "shutdown"
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


# -- /status after a reload removes the first job --------------------------------------------------


def test_status_shows_only_current_jobs_after_the_first_one_is_removed(world: Any) -> None:
    """/status of a group after a reload removed its first job: no last run nor next fire time
    of the job that is gone."""
    g, _ = world
    files = [[job("a", "gone"), job("a", "kept", "@every 3s")]]
    d = replica(g, "a", files)
    g.run(3.0)
    gone = d.runners["gone"]
    assert gone.last_run is not None
    files.append([job("a", "kept", "@every 3s")])
    reload(d)
    g.run(2.0)
    assert set(d.runners) == {"kept"}
    d._publish("test")
    snap = d.snapshot
    kept = d.runners["kept"]
    assert snap["last_run"] is kept.last_run, "the last run of a job that is gone"
    assert set(snap["jobs"]) == {"kept"}
    assert kept.planner is not None
    nxt = kept.planner.peek()
    assert snap["next_fire"] == (iso(nxt.start_time) if nxt is not None else None)
