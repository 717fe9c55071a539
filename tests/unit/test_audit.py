"""The slot ledger check, pure: fire times x records x claims -> one verdict each (L3: every slot
of the schedule is accounted for — ran, or did not run with a reason — and a hole is found)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leaderjob.history.audit import MAX_FIRE_TIMES, WindowTooLarge, audit, fire_times, summary
from leaderjob.schedule import parse_schedule, slot_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_10S = parse_schedule("@every 10s", "UTC")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def s(seconds: int) -> str:
    return slot_id(at(seconds))


def ran(seconds: int, run_id: str = "r") -> dict[str, Any]:
    return {"run_id": f"{run_id}{seconds}", "slot": s(seconds), "outcome": "succeeded"}


def not_run(seconds: int, reason: str, **kw: Any) -> dict[str, Any]:
    return {"run_id": None, "slot": s(seconds), "outcome": reason, "not_run": reason, **kw}


def statuses(records: list[dict[str, Any]], claims: Any = None, **kw: Any) -> dict[int, str]:
    fires = fire_times(EVERY_10S, at(0), at(100))
    verdicts = audit(fires, records, claims or {}, **kw)
    return {int((v.fire_time - T0).total_seconds()): v.status for v in verdicts}


def test_fire_times_are_the_window_exclusive_of_its_start() -> None:
    assert fire_times(EVERY_10S, at(0), at(30)) == [at(10), at(20), at(30)]
    with pytest.raises(WindowTooLarge):
        fire_times(
            parse_schedule("@every 1s", "UTC"), T0, T0 + timedelta(seconds=MAX_FIRE_TIMES + 5)
        )


def test_a_fire_time_with_no_record_between_records_is_missing_L3() -> None:
    records = [ran(t) for t in (10, 20, 30, 50, 60, 70, 80, 90, 100)]  # :40 has nothing
    got = statuses(records)
    assert [t for t, v in got.items() if v == "missing"] == [40]
    assert summary(audit(fire_times(EVERY_10S, at(0), at(100)), records, {})) == {
        "ran": 9,
        "missing": 1,
    }


def test_not_run_records_and_their_ranges_account_for_slots_L3() -> None:
    records = [
        ran(10),
        not_run(20, "skipped"),
        not_run(60, "missed", first_slot=s(30), count=4),  # :30 .. :60
        ran(70),
        not_run(80, "suspended"),
        {**ran(90), "not_run": "failed_to_start", "outcome": "failed_to_start"},
        ran(100),
    ]
    got = statuses(records)
    assert got == {10: "ran", 20: "not_run", 30: "not_run", 40: "not_run", 50: "not_run",
                   60: "not_run", 70: "ran", 80: "not_run", 90: "not_run", 100: "ran"}  # fmt: skip


def test_fire_times_older_than_every_record_are_unknown_not_missing() -> None:
    """The history keeps only the newest records: what lies before them cannot be judged."""
    got = statuses([ran(t) for t in (60, 70, 80, 90, 100)])
    assert {t: got[t] for t in (10, 50)} == {10: "unknown", 50: "unknown"}
    assert not [v for v in got.values() if v == "missing"]
    # Unless the records are known to be the whole history.
    complete = statuses([ran(t) for t in (60, 70, 80, 90, 100)], complete=True)
    assert complete[10] == "missing"


def test_the_leaders_run_in_progress_is_running_and_a_dead_runs_claim_is_missing() -> None:
    claims = {
        s(40): {"status": "running", "token": 5, "identity": "old"},  # its replica died
        s(100): {"status": "running", "token": 9, "identity": "new"},  # in progress
        s(50): {"status": "skipped_overlap", "token": 5},  # record not written yet
    }
    records = [ran(t) for t in (10, 20, 30, 60, 70, 80, 90)]
    got = statuses(records, claims, leader_token=9)
    assert (got[40], got[50], got[100]) == ("missing", "not_run", "running")
    # With nobody leading, the newest claim is not a run in progress either.
    assert statuses(records, claims, leader_token=None)[100] == "missing"


@pytest.mark.parametrize("run_first", [True, False])
def test_a_run_record_wins_over_a_not_run_record_of_the_same_slot(run_first: bool) -> None:
    """A leader deposed as it re-planned may record a slot missed that its successor ran."""
    pair = [ran(10), not_run(10, "missed")]
    got = statuses([*(pair if run_first else pair[::-1]), *[ran(t) for t in range(20, 101, 10)]])
    assert got[10] == "ran"


def test_trigger_records_are_not_slots() -> None:
    trigger = {"run_id": "t", "slot": "trigger-20260101T000005-abcd", "outcome": "succeeded"}
    got = statuses([trigger, *[ran(t) for t in range(10, 101, 10)]])
    assert set(got.values()) == {"ran"}
