"""The read and control commands never answer "nothing" with exit 0, and know a group of jobs:
`status` and `history` of an election nobody campaigns in and with no record exit 1 with a hint
(the prefix, the endpoints, the name); `history` of a group without --job lists every job's runs
and `--run` finds a run in any job; `trigger` and `repair-schedule` of a group ask for --job and
name the jobs; a --job the group does not have is refused with the group's jobs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from leaderjob import cli
from leaderjob.clock import SystemClock
from leaderjob.election.memory import MemoryStore
from tests.unit.test_status_runs import _election

GROUP_PREFIX = "/leaderjob/grp/jobs"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    s = MemoryStore(SystemClock())
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: s)
    return s


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


@pytest.mark.parametrize("command", ["status", "history"])
def test_an_election_with_nobody_and_nothing_exits_1_with_a_hint(
    store: MemoryStore, command: str
) -> None:
    out = invoke(command, "--election", "nobody", "--prefix", "/elsewhere")
    assert out.exit_code == 1, out.output
    assert "nobody campaigns" in out.output and "'/elsewhere'" in out.output, out.output
    assert "--prefix (LEADERJOB_PREFIX)" in out.output and "--endpoints" in out.output


def test_status_of_records_without_candidates_shows_them_and_exits_1(store: MemoryStore) -> None:
    _election(store, "/leaderjob", "job", running=False)
    for key in store.get_prefix("/leaderjob/job/leader/", timeout=1):
        store.delete(key.key, timeout=1)
    out = invoke("status", "--election", "job")
    assert out.exit_code == 1
    assert "last success" in out.output and "nobody campaigns" in out.output, out.output


def test_group_history_lists_every_jobs_runs_with_a_job_column(store: MemoryStore) -> None:
    _election(store, GROUP_PREFIX, "backup", running=False)
    _election(store, GROUP_PREFIX, "report", running=False)
    out = invoke("history", "--election", "grp")
    assert out.exit_code == 0, out.output
    header, *rows = out.output.splitlines()
    assert header.split()[:2] == ["STARTED", "JOB"]
    assert sorted(r.split()[1] for r in rows) == ["backup", "backup", "report", "report"]
    records = json.loads(invoke("history", "--election", "grp", "--json").output)
    assert {r["job"] for r in records} == {"backup", "report"}
    times = [r["finished_at"] for r in records]
    assert times == sorted(times, reverse=True), "newest first across jobs"


def test_group_history_run_finds_a_run_in_any_job_and_last_is_the_newest(
    store: MemoryStore,
) -> None:
    _election(store, GROUP_PREFIX, "backup", running=False)
    out = invoke("history", "--election", "grp", "--run", "cccc")
    assert out.exit_code == 0, out.output
    assert out.output.startswith("run cccc2222dddd") and "job        backup" in out.output
    last = invoke("history", "--election", "grp", "--run", "last", "--json")
    assert json.loads(last.output)["run_id"] == "cccc2222dddd", last.output
    single = invoke("history", "--election", "grp", "--job", "backup", "--run", "last")
    assert single.output.startswith("run cccc2222dddd"), single.output


@pytest.mark.parametrize("command", ["trigger", "repair-schedule"])
def test_a_one_job_command_on_a_group_asks_for_job_and_names_the_jobs(
    store: MemoryStore, command: str
) -> None:
    _election(store, GROUP_PREFIX, "backup", running=False)
    _election(store, GROUP_PREFIX, "report", running=False)
    out = invoke(command, "--election", "grp")
    assert out.exit_code == 2, out.output
    assert "a group of jobs (backup, report): give --job" in out.output, out.output
    assert "nobody campaigns" not in out.output


@pytest.mark.parametrize("command", ["suspend", "resume", "trigger", "status", "history"])
def test_a_job_the_group_does_not_have_is_refused_with_its_jobs(
    store: MemoryStore, command: str
) -> None:
    _election(store, GROUP_PREFIX, "backup", running=False)
    out = invoke(command, "--election", "grp", "--job", "nope")
    assert out.exit_code == 2, out.output
    assert "has no job 'nope'; its jobs: backup" in out.output, out.output


def test_repair_schedule_with_no_claim_says_so_in_words(store: MemoryStore) -> None:
    _election(store, "/leaderjob", "job", running=False)
    out = invoke("repair-schedule", "--election", "job")
    assert out.exit_code == 0, out.output
    assert "None" not in out.output and "no slot claimed yet" in out.output, out.output
