"""Knobs users bring from Kubernetes CronJob and Dkron, in the jobs file: `suspend = true` (a
GitOps pause: the job keeps its leader, no slot and no trigger starts a run, each slot is
recorded as suspended, and `status` says the file did it) and a per-job `env` (under the run's
LEADERJOB_* context, which it cannot override)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from leaderjob import cli
from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from leaderjob.jobsfile import JobsFileError, parse_jobs
from tests.unit.test_daemon_jobs import GROUP, PREFIX, TIMING, Group, fake_runs

FILE = """\
[jobs.paused]
schedule = "@every 1s"
command = ["true"]
suspend = true

[jobs.live]
schedule = "@every 1s"
command = ["true"]
env = { REGION = "eu-1", LOG_LEVEL = "debug" }
"""


def test_the_file_reads_suspend_and_env() -> None:
    paused, live = parse_jobs(FILE, "jobs.toml").jobs
    assert paused.suspend is True and live.suspend is False
    assert live.env == (("LOG_LEVEL", "debug"), ("REGION", "eu-1"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('suspend = "yes"', "suspend: expected true or false"),
        ('env = { LEADERJOB_SLOT = "x" }', "LEADERJOB_* is the run's context"),
        ("env = { PORT = 8080 }", 'PORT: expected a string, got 8080 (write "8080")'),
        ('env = { "A-B" = "x" }', "'A-B' is not a variable name"),
    ],
)
def test_bad_knobs_are_refused_with_what_to_write(line: str, message: str) -> None:
    text = f'[jobs.a]\nschedule = "@hourly"\ncommand = ["true"]\n{line}\n'
    with pytest.raises(JobsFileError) as info:
        parse_jobs(text, "jobs.toml")
    assert message in str(info.value), info.value


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Group, list[Any], Daemon]]:
    from leaderjob.cli.daemon_settings import job_settings

    with fake_runs(monkeypatch) as (clock, started):
        g = Group(clock, MemoryStore(clock))
        settings = Settings(
            election=GROUP, prefix=PREFIX, identity="a", timing=TIMING, command=(),
            rpc_timeout=1.0,
        )  # fmt: skip
        # The CLI's own mapping from a spec to a runner's settings: the caller hands them over.
        jobs = [job_settings(settings, spec, None) for spec in parse_jobs(FILE, "f").jobs]
        d = Daemon(settings, g.store.client(), clock=clock, environ={"HOME": "/h"}, jobs=jobs)
        g.daemons["a"] = d
        yield g, started, d


def test_a_paused_job_leads_but_runs_nothing_and_records_its_slots_as_suspended(
    group: tuple[Group, list[Any], Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    g, started, d = group
    g.run(1.0)
    client = g.store.client()
    ElectionData(client, f"{PREFIX}/{GROUP}/jobs", "paused").trigger("ops", timeout=1)
    g.run(4.0)
    assert d.runners["paused"].tenure is not None, "a paused job still leads"
    ran = {r.env["LEADERJOB_JOB"] for r in started}
    assert ran == {"live"}, "neither a slot nor a trigger of the paused job ran"
    records = ElectionData(client, f"{PREFIX}/{GROUP}/jobs", "paused").history(50, timeout=1)
    assert records and {r.get("not_run") for r in records} == {"suspended"}, records
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: client)
    args = ["status", "--election", GROUP, "--prefix", PREFIX]
    table = CliRunner().invoke(cli.main, args).output
    assert "SUSPENDED job paused by its jobs file: suspend = true" in table, table
    doc = json.loads(CliRunner().invoke(cli.main, [*args, "--job", "paused", "--json"]).output)
    assert doc["suspended"] is True and doc["suspension"]["by"] == "its jobs file"


def test_a_jobs_env_reaches_its_run_under_the_leaderjob_context(
    group: tuple[Group, list[Any], Daemon],
) -> None:
    g, started, _ = group
    g.run(2.5)
    live = [r for r in started if r.env["LEADERJOB_JOB"] == "live"]
    assert live, "the live job ran"
    env = live[0].env
    assert env["REGION"] == "eu-1" and env["LOG_LEVEL"] == "debug" and env["HOME"] == "/h"
    assert env["LEADERJOB_JOB"] == "live" and env["LEADERJOB_FENCING_TOKEN"]


def test_reloading_a_file_that_unpauses_a_job_lets_it_run(
    group: tuple[Group, list[Any], Daemon],
) -> None:
    g, started, d = group
    g.run(1.5)
    runner = d.runners["paused"]
    runner.reconfigure(replace(runner.s, paused=False))
    g.run(3.0)
    assert any(r.env["LEADERJOB_JOB"] == "paused" for r in started)


def test_a_jobs_workdir_is_where_its_command_runs(tmp_path: Any) -> None:
    """Through the real watchdog: the command runs in `workdir`; a workdir that does not exist
    fails the start with a message naming it."""
    import os
    import threading
    import time

    from leaderjob.guard.run import Run

    def run_in(cwd: str) -> Run:
        run = Run(
            argv=["sh", "-c", "pwd"], env=dict(os.environ), deadline=time.monotonic() + 60,
            grace=1.0, wakeup=threading.Event(), cwd=cwd,
        )  # fmt: skip
        run.start(time.monotonic(), wait=10.0)
        return run

    ok = run_in(str(tmp_path))
    try:
        assert ok.confirmed and ok.wait(10) and ok.returncode == 0, ok.error
        assert ok.tails["stdout_tail"].strip() == str(tmp_path)
    finally:
        ok.close()
    missing = run_in(str(tmp_path / "nope"))
    try:
        assert not missing.confirmed
        assert f"in {tmp_path / 'nope'}" in str(missing.error), missing.error
    finally:
        missing.close()
        missing.wait(10)


def test_the_file_hands_workdir_to_the_run(group: tuple[Group, list[Any], Daemon]) -> None:
    g, started, d = group
    runner = d.runners["live"]
    runner.reconfigure(replace(runner.s, workdir="/srv/app"))
    g.run(2.5)
    assert {r.cwd for r in started if r.env["LEADERJOB_JOB"] == "live"} == {"/srv/app"}
    assert parse_jobs(FILE.replace("suspend = true", 'workdir = "/srv"'), "f").jobs[0].workdir
    with pytest.raises(JobsFileError, match="give an absolute path"):
        parse_jobs(FILE.replace("suspend = true", 'workdir = "srv"'), "f")
