"""The pure decisions of an ``@leaderjob.singleton`` tenure
(leaderjob/inprocess/singleton_rules.py), each checked on its own;
tests/unit/test_singleton_policies.py checks them driven, on the fake clock and MemoryStore.

The overlap rule and the retry rule keep a slot from running twice at once or after its tenure
(the daemon's rules, S3 for the claim that precedes every start); the wake-up rule keeps a due
slot from being late (L3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leaderjob.inprocess.singleton_rules import (
    blocked,
    outcome,
    overlap,
    replacement_late,
    retry_backoff,
    run_record,
    wakeup,
)
from leaderjob.inprocess.singleton_run import RETRY_CAP, Concurrency, SlotRun

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("running", "concurrency", "expected"),
    [
        (False, "forbid", "start"),
        (False, "replace", "start"),
        (False, "allow", "start"),
        (True, "forbid", "skip"),
        (True, "replace", "replace"),
        (True, "allow", "start"),
    ],
)
def test_overlap_policy_decides_a_due_slot_while_a_run_is_active(
    running: bool, concurrency: Concurrency, expected: str
) -> None:
    """S3 (no second run of the job at once unless ``allow``): forbid skips, replace replaces."""
    assert overlap(running, concurrency) == expected


def test_a_waiting_run_is_blocked_only_by_an_active_run_and_not_under_allow() -> None:
    assert blocked(True, "forbid")
    assert blocked(True, "replace")
    assert not blocked(True, "allow")
    assert not blocked(False, "forbid")


def test_a_replacement_is_late_only_past_the_starting_deadline() -> None:
    deadline = timedelta(seconds=10)
    assert not replacement_late(T0 + deadline, T0, deadline)
    assert replacement_late(T0 + deadline + timedelta(microseconds=1), T0, deadline)


@pytest.mark.parametrize(
    ("reason", "error", "expected"),
    [
        (None, None, "succeeded"),
        (None, "ValueError()", "failed"),
        ("timed_out", None, "timed_out"),
        ("replaced", "ValueError()", "replaced"),
        ("lost", None, "succeeded"),  # a lost tenure or stop(): the function's own result
        ("stopping", "ValueError()", "failed"),
    ],
)
def test_outcome_of_a_run_from_its_cancel_reason_and_error(
    reason: str | None, error: str | None, expected: str
) -> None:
    assert outcome(reason, error) == expected


def test_retry_backoff_doubles_to_its_cap_and_only_while_attempts_remain() -> None:
    assert [retry_backoff("failed", a, 10, True) for a in range(3)] == [1.0, 2.0, 4.0]
    assert retry_backoff("timed_out", 9, 10, True) == RETRY_CAP
    assert retry_backoff("failed", 2, 2, True) is None, "attempts used up"


@pytest.mark.parametrize("result", ["succeeded", "replaced", "skipped_overlap"])
def test_only_failed_or_timed_out_runs_are_retried(result: str) -> None:
    assert retry_backoff(result, 0, 3, True) is None


def test_a_run_is_retried_only_in_the_tenure_that_claimed_its_slot() -> None:
    """S3: a deposed leader (or a new tenure) does not run its predecessor's slot again."""
    assert retry_backoff("failed", 0, 3, same_tenure=False) is None


def test_run_records_have_the_daemons_shape() -> None:
    run = SlotRun("20260101T000000Z", T0, 7, "abc", None, attempt=1)
    record = run_record(
        run,
        identity="a",
        started=T0,
        finished=T0 + timedelta(seconds=2),
        duration=2.0004,
        outcome="failed",
        error="ValueError()",
    )
    assert record["exit_code"] == 1
    assert record["duration_seconds"] == 2.0
    assert record["attempt"] == 1
    assert record["finished_at"] != record["started_at"]
    assert (
        run_record(
            run, identity="a", started=T0, finished=T0, duration=0, outcome="succeeded", error=None
        )["exit_code"]
        == 0
    )


def test_wakeup_is_the_earliest_thing_to_do_and_never_in_the_past() -> None:
    """L3: the tenure wakes for the next slot's start, not a renew interval later."""

    def at(
        next_slot_in: float | None, deadlines: tuple[float, ...] = (), ready: bool = True
    ) -> float:
        return wakeup(
            10.0,
            control_at=100.0,
            renew_interval=1.0,
            deadlines=deadlines,
            next_slot_in=next_slot_in,
            ready=ready,
        )

    assert at(None) == 11.0, "a renew interval at the latest"
    assert at(0.25) == 10.25
    assert at(-5.0) == 10.0, "overdue: now"
    assert at(None, deadlines=(10.5, 12.0)) == 10.5
    assert at(None, ready=False) == 10.2
