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


def _publish(store: MemoryStore, identity: str, jobs: dict[str, str]) -> None:
    """A group candidate's fingerprint, as the daemon publishes it: each job's fields."""
    from leaderjob.ops.fingerprint import ConfigWatch, job_fields
    from tests.unit.test_cli_inputs import cli_log

    lease = store.grant(15, timeout=1).lease_id
    fields = {name: job_fields(["true"], "schedule", expr, "UTC") for name, expr in jobs.items()}
    watch = ConfigWatch(
        store, "/leaderjob", "grp", identity, command=(json.dumps(jobs),), mode="schedule",
        schedule=None, timezone=None, log=cli_log(), jobs=fields,
    )  # fmt: skip
    watch.tick(0.0, lease, leading=False, timeout=1, on_error=lambda exc: None)


def test_group_status_names_the_job_and_the_field_of_a_config_conflict(
    store: MemoryStore,
) -> None:
    """S3 across deployments, in a group: the table, its JSON and the job's own JSON name the job
    and the field that differs (not the mode, which agrees), and a job only one side runs."""
    _election(store, GROUP_PREFIX, "backup", running=False)
    _election(store, GROUP_PREFIX, "report", running=False)
    _publish(store, "prod-0", {"backup": "@daily", "report": "@hourly"})
    _publish(store, "staging-0", {"backup": "@weekly", "report": "@hourly", "extra": "@daily"})
    out = invoke("status", "--election", "grp")
    assert out.exit_code == 0, out.output
    assert (
        "CONFIG CONFLICT: job backup: schedule '@daily' (prod-0) vs '@weekly' (staging-0)"
        in out.output
    ), out.output
    assert "CONFIG CONFLICT: job extra: in the jobs of staging-0, not of prod-0" in out.output
    assert "job report" not in out.output and "mode" not in out.output
    doc = json.loads(invoke("status", "--election", "grp", "--json").output)
    assert doc["config_conflict"] is True
    assert {(d["job"], d["field"]) for d in doc["config_differences"]} == {
        ("backup", "schedule"),
        ("extra", "present"),
    }
    rows = {r["job"]: r["config_conflict"] for r in doc["jobs"]}
    assert rows == {"backup": ["schedule"], "report": []}
    one = json.loads(invoke("status", "--election", "grp", "--job", "backup", "--json").output)
    assert one["config_conflict"] is True
    assert [d["field"] for d in one["config_differences"]] == ["schedule"]
    other = json.loads(invoke("status", "--election", "grp", "--job", "report", "--json").output)
    assert other["config_conflict"] is False


def test_a_group_daemon_publishes_each_jobs_own_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller of `differences`: a group's daemon publishes every job's real command hash,
    mode, schedule and zone beside its fingerprint, so `status` can name what differs."""
    from leaderjob.ops.fingerprint import fingerprints_prefix, job_fields, parse_published
    from tests.unit.test_daemon_jobs import GROUP, JOBS, PREFIX, Group, fake_runs

    with fake_runs(monkeypatch) as (clock, _):
        g = Group(clock, MemoryStore(clock))
        g.add("a")
        g.run(1.0)
        keys = g.store.client().get_prefix(fingerprints_prefix(PREFIX, GROUP), timeout=1)
    [published] = parse_published(keys)
    assert published.jobs == {
        job: job_fields(("job", job), "schedule", "@every 1s", "UTC") for job in JOBS
    }


def test_status_says_since_when_the_leader_leads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 3 a.m. question "who leads job X, since when": the leader publishes its tenure's start
    with its schedule, and `status` (table, --json, --job) shows it, not null."""
    from leaderjob.history.records import ElectionData, iso
    from tests.unit.test_daemon_jobs import GROUP, PREFIX, Group, fake_runs

    with fake_runs(monkeypatch) as (clock, _):
        g = Group(clock, MemoryStore(clock))
        d = g.add("a")
        g.run(1.0)
        client = g.store.client()
        tenure = d.runners["b"].tenure
        assert tenure is not None and tenure.since is not None
        info = ElectionData(client, f"{PREFIX}/{GROUP}/jobs", "b").schedule_info(timeout=1)
        assert info is not None and info["since"] == iso(tenure.since)
        monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: client)
        args = ["--election", GROUP, "--prefix", PREFIX]
        doc = json.loads(invoke("status", *args, "--json").stdout)
        assert {r["job"]: r["since"] for r in doc["jobs"]}["b"] == iso(tenure.since)
        one = json.loads(invoke("status", *args, "--job", "b", "--json").stdout)
        assert one["leader"]["since"] == iso(tenure.since)
        text = invoke("status", *args, "--job", "b").stdout
        assert f"since {iso(tenure.since)[:19]}" in text, text
        table = invoke("status", *args).stdout
        assert "LEADS FOR" in table.splitlines()[0]


def test_suspend_reason_is_shown_by_status_with_who_and_when(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Who suspended a job, when and why: one command each (`suspend --reason`, `status`)."""
    _election(store, GROUP_PREFIX, "backup", running=False)
    _election(store, GROUP_PREFIX, "report", running=False)
    monkeypatch.setenv("USER", "alice")
    out = invoke(
        "suspend", "--election", "grp", "--job", "backup", "--reason", "db migration", "--json"
    )
    assert out.exit_code == 0, out.output
    [body] = json.loads(out.output)
    assert body["election"] == "backup" and body["reason"] == "db migration"
    assert body["by"].startswith("alice@") and body["at"]
    table = invoke("status", "--election", "grp").output
    assert f"SUSPENDED job backup by {body['by']} at {body['at'][:19]}" in table, table
    assert table.rstrip().endswith(": db migration"), table
    one = invoke("status", "--election", "grp", "--job", "backup")
    assert f"SUSPENDED by {body['by']}" in one.output and "db migration" in one.output
    doc = json.loads(invoke("status", "--election", "grp", "--job", "backup", "--json").output)
    assert doc["suspension"]["reason"] == "db migration"
    resumed = json.loads(invoke("resume", "--election", "grp", "--json").output)
    assert resumed == [
        {"election": "backup", "resumed": True},
        {"election": "report", "resumed": False},
    ]


def test_trigger_json_names_the_request_and_its_slot(store: MemoryStore) -> None:
    _election(store, GROUP_PREFIX, "backup", running=False)
    out = invoke("trigger", "--election", "grp", "--job", "backup", "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["election"] == "backup" and doc["slot"] == f"trigger-{doc['request']}"


@pytest.mark.parametrize(
    ("run", "words"),
    [
        ({"exit_code": 3, "duration_seconds": 1.5}, "exit 3, 1.50s"),
        ({"exit_code": None, "signal": "SIGKILL"}, "signal SIGKILL"),
        ({"exit_code": None, "error": "no such file"}, "no exit code: no such file"),
    ],
)
def test_a_waited_runs_summary_never_says_exit_none(run: dict[str, object], words: str) -> None:
    from leaderjob.cli.control import run_summary

    text = run_summary({"token": 7, "identity": "a", **run})
    assert text.startswith(words) and "None" not in text, text


def test_history_slot_says_why_a_slot_did_or_did_not_run(store: MemoryStore) -> None:
    """ "Why didn't it run at 02:00": one command, by slot id or by a time in any zone; a slot in
    a range of missed slots finds the range; a time the schedule never fires at says so, exit 1."""
    from datetime import UTC, datetime

    from leaderjob.history.records import ElectionData

    data = ElectionData(store, "/leaderjob", "nightly")
    store.put(data.schedule_key, b'{"expr": "0 * * * *", "timezone": "UTC"}', timeout=1)
    t = datetime(2026, 11, 30, 2, tzinfo=UTC)
    data.record(
        {"run_id": "aaaa1111bbbb", "slot": "20261130T020000Z", "outcome": "failed",
         "exit_code": 1, "identity": "app-1", "token": 5},
        t,
        timeout=1,
    )  # fmt: skip
    data.record(
        {"run_id": None, "slot": "20261130T060000Z", "first_slot": "20261130T030000Z",
         "count": 4, "outcome": "missed", "not_run": "missed", "token": 9},
        t,
        timeout=1,
    )  # fmt: skip
    ran = invoke("history", "--election", "nightly", "--slot", "2026-11-30T03:00:00+01:00")
    assert ran.exit_code == 0, ran.output
    assert ran.output.startswith("slot 20261130T020000Z: recorded: failed (by app-1)"), ran.output
    assert "fires then" in ran.output and "aaaa1111" in ran.output
    missed = invoke("history", "--election", "nightly", "--slot", "20261130T040000Z", "--json")
    doc = json.loads(missed.output)
    assert [r["outcome"] for r in doc["records"]] == ["missed"] and doc["fires_then"] is True
    never = invoke("history", "--election", "nightly", "--slot", "2026-11-30T02:30:00Z")
    assert never.exit_code == 1
    assert "does NOT fire then" in never.output and "time zone" in never.output, never.output
    bad = invoke("history", "--election", "nightly", "--slot", "2am")
    assert bad.exit_code == 2 and "time with a zone" in bad.output


def test_status_shows_the_database_against_etcds_own_quota(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _election(store, "/leaderjob", "job", running=False)
    monkeypatch.setattr(store, "db_status", lambda timeout: (60 * 1024**2, 64 * 1024**2), False)
    out = invoke("status", "--election", "job")
    assert "etcd database: NEAR ITS QUOTA: 60.0 MiB of 64.0 MiB (93.8%, etcd's own quota)" in (
        out.output
    ), out.output
    doc = json.loads(invoke("status", "--election", "job", "--json").output)
    assert doc["etcd_db"]["quota_from"] == "etcd" and doc["etcd_db"]["used"] == 0.9375
    monkeypatch.setattr(store, "db_status", lambda timeout: (1024**2, None), False)
    out = invoke("status", "--election", "job")
    assert "1.0 MiB of 2.0 GiB (0.0%, etcd's default quota; this etcd does not" in out.output
    assert "None" not in out.output, "a record without an identity leaves `by` out"


def test_group_status_shows_a_key_put_by_hand_as_no_leader(store: MemoryStore) -> None:
    """A job whose queue starts with a key put by hand (no lease): the group table names no
    leader for it and says what holds its queue; the JSON row says the same."""
    _election(store, GROUP_PREFIX, "backup", running=False)
    _election(store, GROUP_PREFIX, "report", running=False)
    (held,) = store.get_prefix(f"{GROUP_PREFIX}/report/leader/", timeout=1)
    store.put(held.key, b"by hand", timeout=1)  # no lease: a stray at the front
    out = invoke("status", "--election", "grp")
    assert out.exit_code == 0, out.output
    assert f"NO LEADER for job report: {held.key} holds the front" in out.output
    doc = json.loads(invoke("status", "--election", "grp", "--json").output)
    rows = {r["job"]: (r["leader"], r["stray_key"]) for r in doc["jobs"]}
    assert rows == {"backup": ("app-1", None), "report": (None, held.key)}
