"""Every slot that did not run is recorded with why (L3: slots in a leaderless window follow the
declared catch-up policy — and the operator can see which did not run, and why).

The daemon on the pure core (MemoryStore, fake clock, fake runs), as in test_daemon_schedule: a
not-run record (``not_run``: skipped, missed, suspended, late, failed_to_start) is written only
when a slot did not run, bounded however long the outage, and counted in
``leaderjob_slots_not_run_total{reason}``.
"""

from __future__ import annotations

from datetime import timedelta

from leaderjob.history.records import NOT_RUN_REASONS, is_run
from leaderjob.schedule.planner import MISSED_RECORDS
from tests.unit.test_daemon_schedule import (
    T0,
    FakeRun,
    Job,
    World,
    lead,
    metric,
    run_for,
    slot_at,
    world,
)

__all__ = ["world"]  # the fixture


def not_run(w: World, reason: str | None = None) -> list[dict[str, object]]:
    return [
        r
        for r in w.data.history(1000, timeout=1)
        if r.get("not_run") and (reason is None or r["not_run"] == reason)
    ]


def counted(d: object, reason: str) -> float:
    return metric(d, "leaderjob_slots_not_run_total", reason=reason)  # type: ignore[arg-type]


def test_runs_that_happen_write_no_not_run_record_L3(world: World) -> None:
    """A stable tenure: one history record per run, none for slots (no extra write per run)."""
    d = world.daemon("@every 1s", history_limit=100)
    lead(world, d)
    run_for(d, 10.5)
    history = world.data.history(1000, timeout=1)
    assert len(history) == len([r for r in world.started if r.done]) >= 9
    assert all(is_run(r) for r in history)
    assert all(counted(d, reason) == 0 for reason in NOT_RUN_REASONS)


def test_overlap_skips_are_recorded_as_skipped_L3(world: World) -> None:
    FakeRun.job = Job(duration=2.5)
    d = world.daemon("@every 1s", history_limit=100)
    lead(world, d)
    run_for(d, 10.5)
    skipped = not_run(world, "skipped")
    assert skipped and all(r["outcome"] == "skipped_overlap" for r in skipped)
    assert not any(is_run(r) for r in skipped)
    assert counted(d, "skipped") == len(skipped)
    ran = {r.slot for r in world.started}
    assert ran.isdisjoint(r["slot"] for r in skipped)
    # Every slot is accounted for: run or recorded as not run.
    assert ran | {r["slot"] for r in skipped} >= {slot_at(s) for s in range(1, 10)}


def test_suspended_slots_are_recorded_as_suspended_L3(world: World) -> None:
    d = world.daemon("@every 1s", history_limit=100)
    lead(world, d)
    world.data.suspend("ops", timeout=1)
    run_for(d, 5.5)
    suspended = not_run(world, "suspended")
    assert {r["slot"] for r in suspended} >= {slot_at(s) for s in range(2, 6)}
    assert counted(d, "suspended") == len(suspended)


def test_a_successor_records_the_slots_nobody_ran_as_missed_L3(world: World) -> None:
    """Nobody led from :00 to :35 (catch-up once): :30 runs, :10 and :20 are recorded missed."""
    world.store.put(world.data.last_slot_key, slot_at(0).encode(), timeout=1)
    world.clock.advance(35)
    d = world.daemon("@every 10s", history_limit=100)
    lead(world, d)
    run_for(d, 1)
    assert [r.slot for r in world.started] == [slot_at(30)]
    missed = not_run(world, "missed")
    assert sorted(r["slot"] for r in missed) == [slot_at(10), slot_at(20)]
    assert counted(d, "missed") == 2


def test_a_long_outage_costs_a_bounded_number_of_missed_records_L3(world: World) -> None:
    """Two hours without a leader on a per-second schedule: MISSED_RECORDS records one by one and
    one for the rest, whose range and count cover every missed slot (7 199: the newest runs)."""
    world.store.put(world.data.last_slot_key, slot_at(0).encode(), timeout=1)
    world.clock.advance(7200.5)
    d = world.daemon("@every 1s", history_limit=100)
    lead(world, d)
    run_for(d, 0.2)
    missed = not_run(world, "missed")
    assert len(missed) == MISSED_RECORDS + 1
    summary = [r for r in missed if r.get("count")]
    assert len(summary) == 1
    assert summary[0]["first_slot"] == slot_at(1)
    assert summary[0]["count"] + MISSED_RECORDS == 7199
    assert counted(d, "missed") == 7199


def test_slots_a_correction_jumped_over_are_one_late_record_with_their_range_L3(
    world: World,
) -> None:
    """A forward step held for 10 minutes: the slots it jumped over are not run (late), and their
    one record names the first of them and how many."""
    d = world.daemon("@every 10s", history_limit=100)
    lead(world, d)
    run_for(d, 5)
    world.clock.step_wall(3600)
    run_for(d, 620)
    late = [r for r in not_run(world, "late") if r.get("count")]
    assert late, not_run(world)
    assert late[0]["first_slot"] < late[0]["slot"]
    assert counted(d, "late") >= late[0]["count"] > 300
    assert T0 + timedelta(hours=1) > T0  # the schedule's time zone is UTC throughout


def test_not_run_series_exist_at_zero_from_the_start_so_the_first_missed_slot_alerts() -> None:
    """`increase()` of a series that appears with its first increment sees nothing: the alert on
    `missed` would miss a new leader's first count. Every reason exists at 0 from the start, per
    job of a group too."""
    from prometheus_client import CollectorRegistry

    from leaderjob.ops.metrics import Metrics

    m = Metrics(CollectorRegistry(), "group")
    for job in ("cleanup", "backup"):
        m.track(job, mode="schedule", fingerprint="f")
    for job in ("cleanup", "backup"):
        for reason in NOT_RUN_REASONS:
            labels = {"election": "group", "job_name": job, "reason": reason}
            assert m.registry.get_sample_value("leaderjob_slots_not_run_total", labels) == 0.0
    m.forget("backup")
    labels = {"election": "group", "job_name": "backup", "reason": "missed"}
    assert m.registry.get_sample_value("leaderjob_slots_not_run_total", labels) is None


def test_the_run_a_graceful_stop_ends_keeps_its_record_L3(world: World) -> None:
    """SIGTERM stops the run (outcome `shutdown`) while the daemon still leads: its record is
    queued then, and must still be written before the daemon exits — else the slot is claimed
    with no record, and `audit` reports it missing."""
    FakeRun.job = Job(duration=30)
    d = world.daemon("@every 10s", history_limit=100)
    lead(world, d)
    run_for(d, 10.5)
    assert len(world.started) == 1
    d.request_stop("SIGTERM")
    for _ in range(100):
        if d.cycle().action == "exited":
            break
        d._wait()
    else:
        raise AssertionError("the daemon did not exit")
    records = world.data.history(10, timeout=1)
    assert [r["outcome"] for r in records] == ["shutdown"], records


def test_a_re_plan_in_the_same_tenure_records_no_missed_slot_twice_L3(world: World) -> None:
    """A jobs-file reload (or a repair) re-plans from the newest claim: the slots already
    recorded as missed are not recorded, nor counted, again."""
    world.store.put(world.data.last_slot_key, slot_at(0).encode(), timeout=1)
    world.clock.advance(35)
    d = world.daemon("@every 10s", history_limit=100, catch_up="skip")
    lead(world, d)
    run_for(d, 1)
    assert len(not_run(world, "missed")) == 3
    d.runner.reconfigure(d.runner.s)
    run_for(d, 1)
    assert sorted(r["slot"] for r in not_run(world, "missed")) == [
        slot_at(10),
        slot_at(20),
        slot_at(30),
    ]
    assert counted(d, "missed") == 3
