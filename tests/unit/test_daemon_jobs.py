"""Many jobs, one daemon, on the fake clock: several daemons of one group over one in-memory etcd,
each job with its own runner on the daemon's one lease.

Timing: ttl 3 s (renew every 1 s). Jobs fire ``@every 1s`` and run 0.1 s (FakeRun).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog

import leaderjob.daemon.starts as runner_mod
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.daemon.spread import Spreader
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import iso
from leaderjob.schedule import parse_schedule
from tests.unit.test_daemon_schedule import Clock, FakeRun, Job

TIMING = Timing.from_ttl(3)
PREFIX = "/lj"
GROUP = "shop"
JOBS = ("a", "b", "c", "d")
TICK = 0.05


def group_daemon(
    store: MemoryStore,
    clock: Clock,
    identity: str,
    jobs=JOBS,
    metrics: Any = None,
    spreader: Spreader | None = None,
) -> Daemon:
    """A replica of the group: one daemon running every job of ``jobs`` (``@every 1s``)."""
    settings = Settings(
        election=GROUP, prefix=PREFIX, identity=identity, timing=TIMING, command=(), rpc_timeout=1.0
    )
    specs = [
        Settings(
            election=job,
            prefix=f"{PREFIX}/{GROUP}/jobs",
            identity=identity,
            timing=TIMING,
            command=("job", job),
            schedule=parse_schedule("@every 1s", "UTC"),
            rpc_timeout=1.0,
        )
        for job in jobs
    ]
    return Daemon(
        settings,
        store.client(),
        clock=clock,
        environ={},
        jobs=specs,
        metrics=metrics,
        spreader=spreader,
    )


class Group:
    def __init__(self, clock: Clock, store: MemoryStore) -> None:
        self.clock = clock
        self.store = store
        self.daemons: dict[str, Daemon] = {}
        self.crashed: set[str] = set()

    def add(self, identity: str) -> Daemon:
        d = group_daemon(self.store, self.clock, identity)
        self.daemons[identity] = d
        return d

    def run(self, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        idle = threading.Event()
        while self.clock.monotonic() < end:
            for name, d in self.daemons.items():
                if name not in self.crashed:
                    d.cycle()
            step_end = self.clock.monotonic() + TICK
            while self.clock.monotonic() < step_end:
                self.clock.wait(idle, step_end - self.clock.monotonic())

    def leaders(self) -> dict[str, str]:
        """job → identity of the replica whose runner holds a tenure for it."""
        out = {}
        for name, d in self.daemons.items():
            if name in self.crashed:
                continue
            for job, r in d.runners.items():
                if r.tenure is not None:
                    assert job not in out, f"{job} led by {out[job]} and {name}"
                    out[job] = name
        return out


@contextmanager
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Clock, list[FakeRun]]]:
    """The fake clock, and every run started while it lasts: the daemons' runs are FakeRuns on
    that clock (logs captured, not printed)."""
    clock = Clock()
    started: list[FakeRun] = []
    FakeRun.clock, FakeRun.job, FakeRun.started = clock, Job(), started
    monkeypatch.setattr(runner_mod, "Run", FakeRun)
    with structlog.testing.capture_logs():
        yield clock, started


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Group, list[FakeRun]]]:
    with fake_runs(monkeypatch) as (clock, started):
        yield Group(clock, MemoryStore(clock)), started


def runs_by_slot(started: list[FakeRun]) -> Counter[tuple[str, str]]:
    return Counter((r.env["LEADERJOB_JOB"], r.env["LEADERJOB_SLOT"]) for r in started)


def test_every_job_runs_each_slot_once_on_one_lease_per_daemon_s3(world: Any) -> None:
    """S3 per job: two daemons, four jobs, one lease each; every (job, slot) runs at most once,
    each job gets its name and the group's in its environment, and its key lives in its own
    queue under the group."""
    g, started = world
    a = g.add("a")
    g.add("b")
    g.run(6.0)
    twice = [k for k, n in runs_by_slot(started).items() if n > 1]
    assert not twice, twice
    assert {r.env["LEADERJOB_JOB"] for r in started} == set(JOBS)
    assert {r.env["LEADERJOB_ELECTION"] for r in started} == {GROUP}
    assert set(g.leaders()) == set(JOBS)
    for job in JOBS:
        keys = g.store.candidates(f"{PREFIX}/{GROUP}/jobs/{job}/leader", timeout=1)
        assert len(keys) == 2  # both replicas queue for every job
    leases = {
        k.lease_id
        for job in JOBS
        for k in g.store.candidates(f"{PREFIX}/{GROUP}/jobs/{job}/leader", timeout=1)
    }
    assert len(leases) == 2, "one lease per daemon, whatever the number of jobs"
    assert a.session.group.lease_id in leases


def test_a_crashed_daemon_s_jobs_move_within_ttl_and_no_slot_runs_twice_l1(world: Any) -> None:
    """L1 + S3: kill one daemon (it stops, its lease expires at etcd): every job it led is led
    by the survivor within TTL + 1.5 s, and no (job, slot) runs twice across the move."""
    g, started = world
    g.add("a")
    g.run(2.0)
    g.add("b")
    g.run(3.0)
    assert set(g.leaders().values()) == {"a"}, "the first replica took every job"
    g.crashed.add("a")
    crashed_at = g.clock.monotonic()
    while set(g.leaders()) != set(JOBS):
        assert g.clock.monotonic() - crashed_at <= TIMING.ttl + 1.5, g.leaders()
        g.run(TICK)
    g.run(3.0)
    twice = [k for k, n in runs_by_slot(started).items() if n > 1]
    assert not twice, twice
    later = [r for r in started if r.started_at > crashed_at + TIMING.ttl + 1.5]
    assert {r.env["LEADERJOB_JOB"] for r in later} == set(JOBS)


def test_a_lost_key_moves_one_job_and_the_others_stay_l5(world: Any) -> None:
    """L5/S6: a key lost behind the leader's back ends that job's tenure only: its run is
    stopped, the job moves to the next in line; the daemon keeps its lease, its other jobs and
    their runs."""
    g, started = world
    FakeRun.job = Job(duration=None)  # every run lasts until it is stopped
    a = g.add("a")
    g.run(2.0)
    g.add("b")
    g.run(2.0)
    lease = a.session.group.lease_id
    g.store.delete(a.session.group.keys["c"], timeout=1)
    g.run(2 * TIMING.renew_interval)
    leaders = g.leaders()
    assert leaders["c"] == "b"
    assert all(leaders[j] == "a" for j in JOBS if j != "c")
    assert a.session.group.lease_id == lease
    stopped = {
        r.env["LEADERJOB_JOB"]: r.stop_reason for r in started if r.env["LEADERJOB_IDENTITY"] == "a"
    }
    assert stopped == {"a": None, "b": None, "c": "killed_on_leadership_loss", "d": None}
    twice = [k for k, n in runs_by_slot(started).items() if n > 1]
    assert not twice, twice


def test_status_shows_a_group_as_a_table_and_suspend_acts_on_every_job(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's view of a group: `status --election GROUP` is one row per job (leader,
    token, next fire, last outcome); `suspend` without --job suspends every job, `resume --job`
    one; `history --job` reads that job's runs."""
    import json

    from click.testing import CliRunner

    from leaderjob import cli
    from leaderjob.history.records import ElectionData

    g, _ = world
    g.add("a")
    g.run(3.0)
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: g.store.client())
    runner = CliRunner()
    out = runner.invoke(cli.main, ["status", "--election", GROUP, "--prefix", PREFIX])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == [
        "JOB", "LEADER", "TOKEN", "LEADS", "FOR", "NEXT", "FIRE", "RUNNING", "LAST", "SUCCESS",
        "LAST", "OUTCOME",
    ]  # fmt: skip
    assert [line.split()[:2] for line in lines[1:]] == [[job, "a"] for job in JOBS]
    doc = json.loads(
        runner.invoke(
            cli.main, ["status", "--election", GROUP, "--prefix", PREFIX, "--json"]
        ).output
    )
    assert [r["job"] for r in doc["jobs"]] == list(JOBS)
    assert all(r["last_outcome"] == "succeeded" and r["token"] for r in doc["jobs"])
    out = runner.invoke(cli.main, ["suspend", "--election", GROUP, "--prefix", PREFIX])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli.main, ["resume", "--election", GROUP, "--job", "b", "--prefix", PREFIX])
    assert out.exit_code == 0, out.output
    suspended = {
        job: ElectionData(g.store, f"{PREFIX}/{GROUP}/jobs", job).is_suspended(timeout=1)
        for job in JOBS
    }
    assert suspended == {"a": True, "b": False, "c": True, "d": True}
    out = runner.invoke(
        cli.main, ["history", "--election", GROUP, "--job", "c", "--prefix", PREFIX]
    )
    assert out.exit_code == 0 and "succeeded" in out.output, out.output


def _job(identity: str, name: str, expr: str = "@every 1s") -> Settings:
    return Settings(
        election=name,
        prefix=f"{PREFIX}/{GROUP}/jobs",
        identity=identity,
        timing=TIMING,
        command=("job", name),
        schedule=parse_schedule(expr, "UTC"),
        rpc_timeout=1.0,
    )


def _series_of(metrics: Any, job: str) -> dict[str, list[dict[str, str]]]:
    """Every series in the registry of ``job`` (by ``job_name``): name → label sets."""
    out: dict[str, list[dict[str, str]]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.labels.get("job_name") == job:
                out.setdefault(sample.name, []).append(sample.labels)
    return out


def test_reload_adds_removes_and_changes_jobs_and_refuses_an_invalid_file(world: Any) -> None:
    """Reload: an added job campaigns and runs; a removed one resigns (its key goes, so its
    queue moves on); a changed one runs on its new schedule; an invalid file is refused, counted,
    and the jobs before it keep running."""
    from prometheus_client import CollectorRegistry

    from leaderjob.ops.metrics import Metrics

    g, started = world
    files: list[Any] = [[_job("a", "a"), _job("a", "b")]]

    def load() -> list[Settings]:
        current = files[-1]
        if isinstance(current, Exception):
            raise current
        return current

    settings = Settings(
        election=GROUP, prefix=PREFIX, identity="a", timing=TIMING, command=(), rpc_timeout=1.0
    )
    metrics = Metrics(CollectorRegistry(), GROUP)
    d = Daemon(
        settings,
        g.store.client(),
        clock=g.clock,
        environ={},
        metrics=metrics,
        jobs=files[0],
        reload=load,
    )
    g.daemons["a"] = d
    g.run(2.0)
    assert set(g.leaders()) == {"a", "b"}
    assert {"leaderjob_job_info", "leaderjob_job_runs_total"} <= set(_series_of(metrics, "b"))
    info_before = _series_of(metrics, "a")["leaderjob_job_info"]
    files.append([_job("a", "a", "@every 2s"), _job("a", "c")])
    assert d.reloader is not None
    before = d.config.fingerprint
    d.reloader.request()
    g.run(3.0)
    assert d.config.fingerprint != before, "the fingerprint follows the jobs (no false conflict)"
    assert set(d.runners) == {"a", "c"}
    assert set(g.leaders()) == {"a", "c"}
    # A removed job's series go with it (its "no leader" and "not succeeding" would page for
    # ever); a changed job's leaderjob_job_info is replaced, not doubled.
    assert not _series_of(metrics, "b"), "a removed job leaves no series"
    info_after = _series_of(metrics, "a")["leaderjob_job_info"]
    assert len(info_after) == 1 and info_after != info_before
    assert _series_of(metrics, "c")["leaderjob_is_leader"], "an added job has its series"
    assert g.store.candidates(f"{PREFIX}/{GROUP}/jobs/b/leader", timeout=1) == []
    reloaded = g.clock.monotonic()
    g.run(4.0)
    late = [r for r in started if r.started_at > reloaded]
    assert {r.env["LEADERJOB_JOB"] for r in late} == {"a", "c"}
    assert sum(r.env["LEADERJOB_JOB"] == "a" for r in late) <= 2, "a runs every 2 s now"
    bad = ValueError("jobs.toml:3: unknown key 'shedule'")
    bad.problems = ["jobs.toml:3: unknown key 'shedule'"]  # type: ignore[attr-defined]
    files.append(bad)
    d.reloader.request()
    g.run(1.0)
    assert set(d.runners) == {"a", "c"}
    failures = metrics.registry.get_sample_value(
        "leaderjob_config_reload_failures_total", {"election": GROUP}
    )
    assert failures == 1


def test_a_job_whose_lost_tenure_still_runs_does_not_queue_again_s1(world: Any) -> None:
    """S1 per job: after a job's key is lost its run is told to stop; until that run is dead the
    daemon does not queue for the job again (a new tenure would overlap it). Its other jobs keep
    their places."""
    g, started = world
    FakeRun.job = Job(duration=None, term_delay=2.0)  # runs until stopped, then 2 s to die
    a = g.add("a")
    g.run(2.0)
    c_queue = f"{PREFIX}/{GROUP}/jobs/c/leader"
    g.store.delete(a.session.group.keys["c"], timeout=1)
    g.run(TIMING.renew_interval + 0.2)
    run_c = next(r for r in started if r.env["LEADERJOB_JOB"] == "c")
    assert run_c.stop_reason == "killed_on_leadership_loss" and not run_c.done
    assert g.store.candidates(c_queue, timeout=1) == [], "queued again while its run lives"
    g.run(2.5)
    assert run_c.done
    assert [k.lease_id for k in g.store.candidates(c_queue, timeout=1)] == [
        a.session.group.lease_id
    ], "queues again once the run is dead"


def test_run_with_a_jobs_file_builds_one_settings_per_job_and_checks_grace(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --jobs`: each job's settings under <prefix>/<group>/jobs; a job's own grace must
    fit the daemon's (the watchdog kills by D) - refused with every other problem at once."""
    from click.testing import CliRunner

    from leaderjob import cli

    calls: list[Any] = []
    monkeypatch.setattr("leaderjob.cli.daemon._serve", lambda *a, **_: calls.append(a) or 0)
    monkeypatch.setattr("leaderjob.log.configure", lambda *a, **k: None)
    for name in [n for n in os.environ if n.startswith("LEADERJOB_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "jobs.toml"
    path.write_text(
        '[jobs.a]\nschedule = "@every 10s"\ncommand = ["true"]\ngrace = "100ms"\n\n'
        '[jobs.b]\ncommand = ["serve"]\n'
    )
    base = ["run", "--election", "shop", "--jobs", str(path), "--metrics-addr", "off"]
    out = CliRunner().invoke(cli.main, base)
    assert out.exit_code == 0, out.output
    jobs = calls[0][5]
    assert [(j.election, j.prefix, j.mode) for j in jobs] == [
        ("a", "/leaderjob/shop/jobs", "schedule"),
        ("b", "/leaderjob/shop/jobs", "service"),
    ]
    assert jobs[0].timing.grace == 0.1 and jobs[1].timing.grace == calls[0][0].timing.grace
    path.write_text('[jobs.a]\nschedule = "@every 10s"\ncommand = ["true"]\ngrace = "1m"\n')
    out = CliRunner().invoke(cli.main, [*base, "--schedule", "@daily"])
    assert out.exit_code == 2
    assert "grace 1m does not fit" in out.output and "--jobs and --schedule" in out.output


class _Gate:
    """A job's health checker, flipped by the test."""

    def __init__(self) -> None:
        self.healthy = True
        self.consecutive_failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_failing_job_gate_hands_that_job_over_and_only_that_one(world: Any) -> None:
    """A job's own health gate: when it fails, the job's run is stopped and the job leaves its
    queue (the next in line leads it); the daemon keeps its other jobs; once the check passes,
    the job queues again."""
    g, started = world
    FakeRun.job = Job(duration=None)  # runs until stopped
    a = g.add("a")
    g.run(2.0)
    g.add("b")
    g.run(1.0)
    gate = _Gate()
    a.checkers.by_job["b"] = gate
    g.run(0.5)
    gate.healthy = False
    g.run(1.0)
    run_b = next(r for r in started if r.env["LEADERJOB_JOB"] == "b")
    assert run_b.stop_reason == "unhealthy"
    leaders = g.leaders()
    assert leaders["b"] == "b" and all(leaders[j] == "a" for j in JOBS if j != "b")
    queue = f"{PREFIX}/{GROUP}/jobs/b/leader"
    assert a.session.group.lease_id not in {
        k.lease_id for k in g.store.candidates(queue, timeout=1)
    }
    gate.healthy = True
    g.run(1.0)
    keys = [k.lease_id for k in g.store.candidates(queue, timeout=1)]
    assert keys[-1] == a.session.group.lease_id, "queues again, at the back"


def test_every_command_has_its_help_text() -> None:
    """Each command says what it does in `leaderjob --help` (a statement before a docstring
    would silently drop it)."""
    from leaderjob import cli

    for name, command in cli.main.loaded().items():
        assert command.help, f"`leaderjob {name}` has no help text"


def test_each_job_of_a_group_has_its_leader_and_token_series(world: Any) -> None:
    """Alerts on leaderjob_is_leader work per job: a group's daemon exports one series per job
    (the group in ``election``, the job in ``job_name``), from the start, set while it leads that
    job, cleared when it ends - and none for the group's own name, which "no leader" would flag
    for ever."""
    from prometheus_client import CollectorRegistry

    from leaderjob.ops.metrics import Metrics

    g, _ = world
    metrics = Metrics(CollectorRegistry(), GROUP)
    d = group_daemon(g.store, g.clock, "a", metrics=metrics)

    def sample(name: str, job: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"election": GROUP, "job_name": job})

    assert sample("leaderjob_is_leader", GROUP) is None, "the group is no job: no series"
    assert metrics.registry.get_sample_value("leaderjob_is_leader", {"election": GROUP}) is None
    assert all(sample("leaderjob_is_leader", job) == 0 for job in JOBS), "exist from the start"
    g.daemons["a"] = d
    g.run(1.0)

    for job in JOBS:
        assert sample("leaderjob_is_leader", job) == 1
        assert sample("leaderjob_fencing_token", job) == d.runners[job].seat.token
    g.store.delete(d.session.group.keys["b"], timeout=1)
    d.session.group.prefixes.pop("b")  # it does not queue again: b's series stays cleared
    g.run(TIMING.renew_interval + 0.2)
    assert sample("leaderjob_is_leader", "b") == 0 and sample("leaderjob_fencing_token", "b") == 0
    assert sample("leaderjob_is_leader", "a") == 1


def test_leader_endpoint_of_a_group_gives_each_job_s_leadership_and_token_s2(world: Any) -> None:
    """/leader on a group's daemon: no one token (a group holds one per job, S2), so it lists
    job → {leading, token}; 200 while it leads any job. ``?job=NAME`` answers for one job, so a
    load balancer can route to that job's leader."""
    import json

    from prometheus_client import CollectorRegistry

    from leaderjob.ops.http import Server

    g, _ = world
    a = g.add("a")
    g.run(1.0)
    b = g.add("b")  # queues behind a in every job (no spreading here)
    g.run(1.0)

    def leader(d: Daemon, target: str) -> tuple[int, dict[str, Any]]:
        d._publish("test")
        server = Server(("127.0.0.1", 0), CollectorRegistry(), lambda: d.snapshot)
        try:
            code, _, body = server.route(target)
        finally:
            server.httpd.server_close()  # never started: nothing to shut down
        return code, json.loads(body)

    code, body = leader(a, "/leader")
    assert code == 200 and body["leader"] is True and body["token"] is None
    # Since when: the wall time each tenure began (the fake clock's, here).
    since = {job: iso(a.runners[job].tenure.since) for job in JOBS}  # type: ignore[union-attr]
    assert all(since.values())
    assert body["jobs"] == {
        job: {"leading": True, "token": a.runners[job].seat.token, "since": since[job]}
        for job in JOBS
    }
    assert all(isinstance(j["token"], int) and j["token"] > 0 for j in body["jobs"].values())
    code, body = leader(b, "/leader")
    assert code == 503 and body["leader"] is False
    assert body["jobs"] == {job: {"leading": False, "token": None, "since": None} for job in JOBS}

    code, body = leader(a, "/leader?job=c")
    assert (code, body["job"], body["token"]) == (200, "c", a.runners["c"].seat.token)
    assert body["since"] == since["c"], "group mode says since when, not null"
    code, body = leader(b, "/leader?job=c")
    assert (code, body["leader"], body["token"]) == (503, False, None)
    assert leader(a, "/leader?job=nope")[0] == 404
