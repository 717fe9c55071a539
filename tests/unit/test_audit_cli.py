"""`leaderjob audit` on the in-memory store: it prints the fire times with no record and exits 1,
0 once every fire time is accounted for, 2 on usage errors; per job of a group (L3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from leaderjob import cli
from leaderjob.clock import SystemClock
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData, iso
from leaderjob.schedule import parse_schedule, slot_id


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    s = MemoryStore(SystemClock())
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: s)
    return s


def _ledger(
    store: MemoryStore,
    prefix: str,
    name: str,
    *,
    hole: bool,
    newest: bool = True,
    expr: str = "@every 1m",
) -> tuple[ElectionData, str]:
    """An election whose leader published ``expr`` and ran every slot of the last 12 minutes
    but (``hole``) the 5th from last and (not ``newest``) the newest. Returns its data and the
    hole's slot id."""
    data = ElectionData(store, prefix, name)
    info = json.dumps({"expr": expr, "timezone": "UTC"}).encode()
    store.put(data.schedule_key, info, timeout=1)
    schedule = parse_schedule(expr, "UTC")
    now = datetime.now(UTC)
    fires, t = [], schedule.next_after(now - timedelta(minutes=12))
    while t <= now:
        fires.append(t)
        t = schedule.next_after(t)
    gap = fires[-5]
    for fire in fires:
        if (fire != gap or not hole) and (fire != fires[-1] or newest):
            record = {"run_id": f"r{slot_id(fire)}", "slot": slot_id(fire), "outcome": "succeeded",
                      "scheduled_time": iso(fire)}  # fmt: skip
            data.record(record, fire, timeout=1)
    return data, slot_id(gap)


def audit(*args: str) -> Result:
    return CliRunner().invoke(cli.main, ["audit", *args])


def test_audit_prints_a_fire_time_with_no_record_and_exits_1_L3(store: MemoryStore) -> None:
    data, gap = _ledger(store, "/leaderjob", "job", hole=True)
    out = audit("--election", "job", "--since", "10m")
    assert out.exit_code == 1, out.output
    assert "MISSING" in out.output and gap in out.output
    doc = json.loads(audit("--election", "job", "--since", "10m", "--json").output)
    assert [m["slot"] for m in doc["missing"]] == [gap]
    # The leader that re-planned recorded it as missed: accounted for, exit 0.
    data.record({"run_id": None, "slot": gap, "outcome": "missed", "not_run": "missed"},
                datetime.now(UTC), timeout=1)  # fmt: skip
    out = audit("--election", "job", "--since", "10m")
    assert out.exit_code == 0, out.output
    assert "0 missing" in out.output and "1 missed" in out.output


def test_audit_says_what_it_cannot_know_instead_of_calling_it_missing(store: MemoryStore) -> None:
    _ledger(store, "/leaderjob", "job", hole=False)
    out = audit("--election", "job", "--since", "1h")
    assert out.exit_code == 0, out.output
    assert "unknown" in out.output and "--history-limit" in out.output


def test_audit_checks_every_job_of_a_group(store: MemoryStore) -> None:
    _, gap = _ledger(store, "/leaderjob/grp/jobs", "backup", hole=True)
    _ledger(store, "/leaderjob/grp/jobs", "report", hole=False)
    out = audit("--election", "grp", "--since", "10m")
    assert out.exit_code == 1, out.output
    assert out.output.count("MISSING") == 1 and gap in out.output
    assert "backup:" in out.output and "report:" in out.output
    assert audit("--election", "grp", "--job", "report", "--since", "10m").exit_code == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "soon"], "--since"),
        (["--since", "0"], "--since"),
        (["--schedule", "61 * * * *"], "--schedule"),
        ([], "--schedule"),  # nothing published
    ],
)
def test_audit_usage_errors_exit_2(store: MemoryStore, args: list[str], says: str) -> None:
    out = audit("--election", "nothing", *args)
    assert out.exit_code == 2, out.output
    assert says in out.output


def test_a_slot_that_just_fired_is_not_judged_yet(store: MemoryStore) -> None:
    """Its claim and record may be a cycle away: the newest seconds are left out, not missing."""
    _ledger(store, "/leaderjob", "job", hole=False, newest=False, expr="@every 2s")
    out = audit("--election", "job", "--since", "10m")
    assert out.exit_code == 0, out.output
