"""`status` says since when the leader of a service-mode job (or a lock's holder) leads: the 3
a.m. question "who leads job X, since when". Neither publishes a schedule, which is where a
scheduled job's leader puts its tenure's start: their leader publishes that start on its own
(state/tenure), fenced by its key, and `status` reads it when no schedule is there, for the
present leader's token only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from leaderjob import cli
from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData, iso
from leaderjob.schedule import parse_schedule
from tests.unit.test_daemon_jobs import GROUP, PREFIX, TIMING, Group, fake_runs
from tests.unit.test_daemon_schedule import FakeRun, Job

JOBS_PREFIX = f"{PREFIX}/{GROUP}/jobs"


def _daemon(store: MemoryStore, clock: object, identity: str) -> Daemon:
    def spec(job: str, **mode: object) -> Settings:
        return Settings(
            election=job, prefix=JOBS_PREFIX, identity=identity, timing=TIMING,
            command=("job", job), rpc_timeout=1.0, **mode,  # type: ignore[arg-type]
        )  # fmt: skip

    group = Settings(
        election=GROUP, prefix=PREFIX, identity=identity, timing=TIMING, command=(),
        rpc_timeout=1.0,
    )  # fmt: skip
    jobs = [spec("web", mode="service"), spec("b", schedule=parse_schedule("@every 1s", "UTC"))]
    return Daemon(group, store.client(), clock=clock, environ={}, jobs=jobs)  # type: ignore[arg-type]


def test_status_says_since_when_a_service_jobs_leader_leads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_runs(monkeypatch) as (clock, started):
        g = Group(clock, MemoryStore(clock))
        d = g.daemons["a"] = _daemon(g.store, clock, "a")
        g.run(1.0)
        assert any(r.env["LEADERJOB_JOB"] == "web" for r in started), "the service runs"
        tenure = d.runners["web"].tenure
        assert tenure is not None and tenure.since is not None
        client = g.store.client()
        data = ElectionData(client, JOBS_PREFIX, "web")
        assert data.schedule_info(timeout=1) is None, "a service publishes no schedule"
        info = data.tenure_info(timeout=1)
        assert info is not None and info["since"] == iso(tenure.since)
        assert info["token"] == tenure.token

        monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: client)
        args = ["--election", GROUP, "--prefix", PREFIX]
        doc = json.loads(CliRunner().invoke(cli.main, ["status", *args, "--json"]).stdout)
        assert {r["job"]: r["since"] for r in doc["jobs"]}["web"] == iso(tenure.since)
        one = CliRunner().invoke(cli.main, ["status", *args, "--job", "web", "--json"]).stdout
        assert json.loads(one)["leader"]["since"] == iso(tenure.since)
        text = CliRunner().invoke(cli.main, ["status", *args, "--job", "web"]).stdout
        assert f"since {iso(tenure.since)[:19]}" in text, text


def test_a_tenure_of_another_token_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale start (a former leader's) is not the present leader's "since"."""
    with fake_runs(monkeypatch) as (clock, _):
        g = Group(clock, MemoryStore(clock))
        g.daemons["a"] = _daemon(g.store, clock, "a")
        g.run(1.0)
        client = g.store.client()
        data = ElectionData(client, JOBS_PREFIX, "web")
        info = data.tenure_info(timeout=1)
        assert info is not None
        client.put(data.tenure_key, json.dumps({**info, "token": 1}).encode(), timeout=1)
        monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: client)
        args = ["--election", GROUP, "--prefix", PREFIX, "--job", "web", "--json"]
        one = json.loads(CliRunner().invoke(cli.main, ["status", *args]).stdout)
        assert one["leader"]["since"] is None


def test_status_says_since_when_a_locks_holder_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`leaderjob lock` (mode once) publishes no schedule either."""
    with fake_runs(monkeypatch) as (clock, started):
        FakeRun.job = Job(duration=None)  # holds the lock until stopped
        g = Group(clock, MemoryStore(clock))
        settings = Settings(
            election="lk", prefix=PREFIX, identity="a", timing=TIMING, command=("job",),
            rpc_timeout=1.0, mode="once",
        )  # fmt: skip
        d = g.daemons["a"] = Daemon(settings, g.store.client(), clock=clock, environ={})
        g.run(1.0)
        assert started, "the command runs"
        tenure = d.runner.tenure
        assert tenure is not None and tenure.since is not None
        client = g.store.client()
        monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: client)
        args = ["--election", "lk", "--prefix", PREFIX, "--json"]
        doc = json.loads(CliRunner().invoke(cli.main, ["status", *args]).stdout)
        assert doc["leader"]["since"] == iso(tenure.since)
