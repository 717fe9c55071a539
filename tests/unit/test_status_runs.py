"""`status` shows the run in progress (slot, for how long; pid on the leader's /status) and the
time since the last success — single election, group table, --json — so "is it running, and when
did it last work?" needs no log search."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from leaderjob import cli
from leaderjob.clock import SystemClock
from leaderjob.daemon.snapshot import snapshot
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData, in_progress, iso
from tests.unit.test_daemon_schedule import FakeRun, Job, World, lead, run_for, world

__all__ = ["world"]  # the fixture


def claim(token: int, fired: str, status: str = "running") -> dict[str, Any]:
    return {"token": token, "status": status, "scheduled_time": fired, "claimed_at": fired}


def test_in_progress_is_the_leaders_newest_claim_to_run_that_has_no_record() -> None:
    claims = {
        "A": claim(7, "2026-01-01T00:00:10Z"),
        "B": claim(7, "2026-01-01T00:00:20Z", "skipped_overlap"),  # a skip while A runs
        "old": claim(3, "2026-01-01T00:00:30Z"),  # a former leader's claim
    }
    assert in_progress(claims, [], 7, full=False) == ("A", claims["A"])
    assert in_progress(claims, [{"slot": "A"}], 7, full=False) is None  # A ended
    assert in_progress(claims, [], 9, full=False) is None  # nothing claimed by this leader
    # Records full and all newer than the claim: its record may have been pruned, not running.
    newer = [{"slot": "X", "scheduled_time": "2026-01-01T00:00:40Z"}]
    assert in_progress(claims, newer, 7, full=True) is None
    assert in_progress(claims, newer, 7, full=False) == ("A", claims["A"])


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    s = MemoryStore(SystemClock())
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: s)
    return s


def _election(store: MemoryStore, prefix: str, name: str, *, running: bool) -> None:
    """A leader whose run 5 minutes ago succeeded, 2 minutes ago failed, and, if ``running``, one
    started 90 s ago is still going."""
    lease = store.grant(15, timeout=1).lease_id
    key = store.create(f"{prefix}/{name}/leader/{lease:x}", b"app-1", lease, timeout=1)
    token = key.create_revision
    data = ElectionData(store, prefix, name)
    now = datetime.now(UTC)
    ran = now - timedelta(minutes=5)
    data.record(
        {"run_id": "aaaa1111bbbb", "slot": "S1", "outcome": "succeeded", "token": token,
         "scheduled_time": iso(ran), "finished_at": iso(ran)},
        ran,
        timeout=1,
    )  # fmt: skip
    failed = now - timedelta(minutes=2)  # a newer run that failed: not the last success
    data.record(
        {"run_id": "cccc2222dddd", "slot": "S0", "outcome": "failed", "token": token,
         "scheduled_time": iso(failed), "finished_at": iso(failed)},
        failed,
        timeout=1,
    )  # fmt: skip
    if running:
        fired = iso(now - timedelta(seconds=90))
        body = {**claim(token, str(fired)), "identity": "app-1"}
        store.put(data.slot_key("S2"), json.dumps(body).encode(), timeout=1)


def test_status_shows_the_run_in_progress_and_the_time_since_the_last_success(
    store: MemoryStore,
) -> None:
    _election(store, "/leaderjob", "job", running=True)
    runner = CliRunner()
    out = runner.invoke(cli.main, ["status", "--election", "job"])
    assert out.exit_code == 0, out.output
    assert "running: slot S2 by app-1 for 1m3" in out.output, out.output
    assert "last success: 5m0" in out.output and "aaaa1111bbbb" in out.output
    doc = json.loads(runner.invoke(cli.main, ["status", "--election", "job", "--json"]).output)
    assert doc["current_run"]["slot"] == "S2"
    assert 85 < doc["current_run"]["running_for_seconds"] < 150
    assert 295 < doc["last_success"]["seconds_ago"] < 360


def test_group_status_has_running_and_last_success_columns(store: MemoryStore) -> None:
    _election(store, "/leaderjob/grp/jobs", "backup", running=True)
    _election(store, "/leaderjob/grp/jobs", "report", running=False)
    out = CliRunner().invoke(cli.main, ["status", "--election", "grp"])
    assert out.exit_code == 0, out.output
    header, *rows = out.output.splitlines()
    assert "RUNNING" in header and "LAST SUCCESS" in header
    backup = next(r for r in rows if r.startswith("backup"))
    report = next(r for r in rows if r.startswith("report"))
    assert "S2 (1m3" in backup and "5m0" in backup
    assert " - " in report and "5m0" in report


def test_http_status_shows_pid_running_for_and_last_success(world: World) -> None:
    FakeRun.job = Job(duration=0.5)
    d = world.daemon("@every 10s")
    lead(world, d)
    run_for(d, 10.7)  # slot :10 ran and succeeded
    FakeRun.job = Job(duration=30)
    run_for(d, 12)  # slot :20 started and keeps running
    snap = snapshot(d, "test")
    (current,) = snap["running"]
    assert current["pid"] is not None and current["slot"].endswith("T000020Z")
    began = world.started[-1].started_at
    assert current["running_for_seconds"] == round(d.clock.monotonic() - began, 3) > 1.0
    assert snap["last_success"]["slot"].endswith("T000010Z")
    finished = datetime.fromisoformat(snap["last_success"]["finished_at"].replace("Z", "+00:00"))
    assert snap["last_success"]["seconds_ago"] == round(
        (d.clock.wall() - finished).total_seconds(), 3
    )
    assert snap["last_success"]["seconds_ago"] > 10
