"""The pure slot planner: catch-up on election, starting deadline, jitter, and the due() stream.

Every test names the property it defends. The ones from docs/safety.md:

* L3 — every slot that fires during a stable tenure runs, exactly once, in order;
* catch-up never bursts (at most one missed slot runs), never duplicates (a slot claimed before
  never runs again, a caught-up slot is not also yielded by ``due``), and has no "too many
  missed" cliff (a long outage answers the same way as a short one, and quickly).

Time is passed in as explicit aware UTC datetimes; nothing reads a clock. Calendar notes:
2026-01-01 is a Thursday, so Fri 2026-01-09, Sat 01-10, Sun 01-11, Mon 01-12.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from leaderjob.schedule import parse_schedule, slot_id
from leaderjob.schedule.planner import (
    MAX_COUNTED,
    MAX_STARTING_DEADLINE,
    STEP_THRESHOLD,
    STEP_TRUST_AFTER,
    Planner,
    Slot,
    SlotClock,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday, 00:00:00Z; a fire time of every @every


def utc(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def planner(
    expr: str = "@every 10s",
    *,
    election: str = "job",
    catch_up: str = "once",
    starting_deadline: timedelta | None = None,
    jitter: float = 0.0,
    timezone: str = "UTC",
) -> Planner:
    return Planner(
        parse_schedule(expr, timezone),
        election,
        catch_up=catch_up,  # type: ignore[arg-type]
        starting_deadline=starting_deadline,
        jitter=jitter,
    )


def drain(p: Planner, start: datetime, stop: datetime, step: timedelta) -> list[Slot]:
    """Call ``due`` every ``step`` from ``start`` to ``stop``; return the slots it said to run.

    Asserts on the way that nothing expired (the caller never stalled past the deadline).
    """
    ran: list[Slot] = []
    now = start
    while now <= stop:
        while True:  # a caller runs every due slot before sleeping again
            slot, expired = p.due(now)
            assert expired == [], f"slot(s) expired at {now}: {[s.id for s in expired]}"
            if slot is None:
                break
            ran.append(slot)
        now += step
    return ran


# --- a new election -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "now", "first"),
    [
        ("@every 10s", at(7), at(10)),
        ("@every 10s", at(10), at(20)),  # strictly after now: a fire time at now is not "next"
        ("0 3 * * *", utc(1, 1, 3, 0, 1), utc(1, 2, 3)),
    ],
)
def test_new_election_catches_nothing_up_and_starts_at_the_next_fire(
    expr: str, now: datetime, first: datetime
) -> None:
    """Never duplicates / no burst: with no slot ever claimed there is nothing to catch up."""
    p = planner(expr)
    plan = p.begin_tenure(None, now)
    assert (plan.run, plan.skipped, plan.expired) == (None, 0, None)
    assert p.peek() == p.slot(first)
    assert p.due(now) == (None, [])


# --- catch-up after a failover --------------------------------------------------------------------


def test_catch_up_once_runs_only_the_newest_missed_slot() -> None:
    """No burst: of the slots missed while nobody led, only the newest runs (it is within the
    default starting deadline of one interval); the older ones are counted as skipped."""
    p = planner("@every 10s")
    plan = p.begin_tenure(at(0), at(35))  # missed :10, :20, :30
    assert plan.run == p.slot(at(30))
    assert plan.skipped == 2
    assert plan.expired is None
    assert p.peek() == p.slot(at(40))


def test_catch_up_skip_runs_nothing_and_counts_every_missed_slot() -> None:
    """catch_up=skip: every missed slot is skipped, none runs; the schedule resumes after now."""
    p = planner("@every 10s", catch_up="skip")
    plan = p.begin_tenure(at(0), at(35))
    assert (plan.run, plan.skipped, plan.expired) == (None, 3, None)
    assert p.peek() == p.slot(at(40))


def test_caught_up_slot_is_not_yielded_again_by_due() -> None:
    """Never duplicates: the slot run by catch-up is not handed out again by due()."""
    p = planner("@every 10s")
    plan = p.begin_tenure(at(0), at(35))
    assert plan.run is not None
    ran = drain(p, at(35), at(75), timedelta(seconds=1))
    assert [s.fire_time for s in ran] == [at(40), at(50), at(60), at(70)]
    assert plan.run not in ran


def test_slot_already_claimed_is_not_caught_up() -> None:
    """Never duplicates: the newest claimed slot (last_claimed) is never run again."""
    p = planner("@every 10s")
    plan = p.begin_tenure(at(30), at(35))
    assert (plan.run, plan.skipped, plan.expired) == (None, 0, None)
    assert p.peek() == p.slot(at(40))


def test_newest_missed_slot_older_than_the_deadline_expires() -> None:
    """Starting deadline: a missed slot that can no longer start in time is reported as expired,
    not run, and the older missed ones are skipped."""
    p = planner("@every 10s", starting_deadline=timedelta(seconds=3))
    plan = p.begin_tenure(at(0), at(38))  # newest missed :30 is 8 s old
    assert plan.run is None
    assert plan.expired == p.slot(at(30))
    assert plan.skipped == 2  # :10 and :20
    assert p.peek() == p.slot(at(40))


def test_explicit_larger_starting_deadline_lets_an_older_slot_run() -> None:
    """Starting deadline: an explicit value longer than the default (one interval) is honoured.

    `0,50 * * * *` fires at :00 and :50, so its interval (smallest gap) is 10 minutes.
    """
    last, now = utc(1, 1, 0, 50), utc(1, 1, 2, 45)  # missed 01:00, 01:50, 02:00 (45 min old)
    default = planner("0,50 * * * *")
    assert default.deadline == timedelta(minutes=10)
    plan = default.begin_tenure(last, now)
    assert (plan.run, plan.expired, plan.skipped) == (None, default.slot(utc(1, 1, 2)), 2)

    longer = planner("0,50 * * * *", starting_deadline=timedelta(minutes=50))
    plan = longer.begin_tenure(last, now)
    assert (plan.run, plan.expired, plan.skipped) == (longer.slot(utc(1, 1, 2)), None, 2)
    assert longer.peek() == longer.slot(utc(1, 1, 2, 50))


def test_starting_deadline_is_capped_at_one_hour() -> None:
    """No cliff the other way: catch-up never reaches back more than an hour, however configured."""
    assert timedelta(hours=1) == MAX_STARTING_DEADLINE
    assert planner("0 3 * * *").deadline == timedelta(hours=1)  # default: a day, capped
    p = planner("0 3 * * *", starting_deadline=timedelta(hours=5))
    assert p.deadline == timedelta(hours=1)
    plan = p.begin_tenure(utc(1, 1, 3), utc(1, 2, 4, 30))  # 03:00 is 90 min old
    assert (plan.run, plan.expired, plan.skipped) == (None, p.slot(utc(1, 2, 3)), 0)
    plan = p.begin_tenure(utc(1, 1, 3), utc(1, 2, 3, 59))  # 59 min old: still runs
    assert (plan.run, plan.expired, plan.skipped) == (p.slot(utc(1, 2, 3)), None, 0)


def test_daily_cron_catch_up_across_days() -> None:
    """No burst: a daily job down for two days runs only today's slot (if within the hour)."""
    p = planner("0 3 * * *")
    plan = p.begin_tenure(utc(1, 1, 3), utc(1, 3, 3, 20))  # missed Jan 2 and Jan 3 03:00
    assert (plan.run, plan.expired, plan.skipped) == (p.slot(utc(1, 3, 3)), None, 1)
    assert p.peek() == p.slot(utc(1, 4, 3))

    p = planner("0 3 * * *")
    plan = p.begin_tenure(utc(1, 1, 3), utc(1, 3, 5))  # today's 03:00 is two hours old
    assert (plan.run, plan.expired, plan.skipped) == (None, p.slot(utc(1, 3, 3)), 1)
    assert p.peek() == p.slot(utc(1, 4, 3))


@pytest.mark.parametrize(
    ("last_claimed", "skipped"),
    [
        (utc(1, 8, 9), 0),  # Thursday's ran; Friday's missed
        (utc(1, 7, 9), 1),  # Wednesday's ran; Thursday's and Friday's missed
    ],
)
def test_weekday_schedule_monday_morning_after_weekend_outage(
    last_claimed: datetime, skipped: int
) -> None:
    """Starting deadline: Friday's slot is three days old on Monday 08:30, far past a 1 h
    deadline, so nothing runs; the weekend has no slots to count; Monday 09:00 is next."""
    p = planner("0 9 * * 1-5", starting_deadline=timedelta(hours=1))
    plan = p.begin_tenure(last_claimed, utc(1, 12, 8, 30))
    assert plan.run is None
    assert plan.expired == p.slot(utc(1, 9, 9))  # Friday
    assert plan.skipped == skipped
    assert p.peek() == p.slot(utc(1, 12, 9))


# --- no "too many missed" cliff -------------------------------------------------------------------


@pytest.mark.parametrize(
    "missed",
    [1, 2, 100, MAX_COUNTED - 1, MAX_COUNTED, MAX_COUNTED + 1, 3 * MAX_COUNTED, 3 * 86_400],
)
def test_long_outage_runs_exactly_the_newest_slot(missed: int) -> None:
    """No cliff: however many slots were missed, catch-up answers the same way — the newest one
    runs, and the skipped count is a lower bound that never goes down as the outage grows."""
    p = planner("@every 1s")
    now = at(missed + 0.5)
    plan = p.begin_tenure(T0, now)
    assert plan.run == p.slot(at(missed))
    assert plan.expired is None
    assert min(missed - 1, MAX_COUNTED - 1) <= plan.skipped <= missed - 1
    assert p.peek() == p.slot(at(missed + 1))


def test_schedule_missed_for_days_answers_quickly_and_runs_at_most_one() -> None:
    """No cliff: `@every 1s` missed for three days (259 200 slots) is planned in well under a
    second, runs only the newest slot, and due() then continues with the next one."""
    p = planner("@every 1s")
    now = at(3 * 86_400 + 0.25)
    started = time.perf_counter()
    plan = p.begin_tenure(T0, now)
    assert time.perf_counter() - started < 0.5
    assert plan.run == p.slot(at(3 * 86_400))
    assert plan.expired is None
    assert plan.skipped >= MAX_COUNTED - 1
    assert p.due(now) == (None, [])
    assert p.due(at(3 * 86_400 + 1)) == (p.slot(at(3 * 86_400 + 1)), [])

    skip = planner("@every 1s", catch_up="skip")
    plan = skip.begin_tenure(T0, now)
    assert (plan.run, plan.expired) == (None, None)
    assert plan.skipped >= MAX_COUNTED


def test_capped_count_with_catch_up_once_reports_at_least_max_counted() -> None:
    """No cliff: a capped count reads as "at least MAX_COUNTED skipped" under either policy."""
    p = planner("@every 1s")
    plan = p.begin_tenure(T0, at(3 * 86_400 + 0.25))
    assert plan.run is not None
    assert plan.skipped >= MAX_COUNTED

    fires = [at(k) for k in range(10, 1010, 10)]
    a, b = planner(jitter=5.0, election="cleanup"), planner(jitter=5.0, election="cleanup")
    other = planner(jitter=5.0, election="report")
    delays_a = [a.slot(f).start_time - f for f in fires]
    delays_b = [b.slot(f).start_time - f for f in fires]
    delays_other = [other.slot(f).start_time - f for f in fires]
    assert all(timedelta(0) <= d < timedelta(seconds=5) for d in delays_a + delays_other)
    assert delays_a == delays_b
    assert delays_a != delays_other
    assert len(set(delays_a)) > 90  # actually spread, not a constant
    assert [a.slot(f).id for f in fires] == [other.slot(f).id for f in fires]  # ids: fire time


def test_no_jitter_means_start_equals_fire_time() -> None:
    p = planner()
    assert p.slot(at(10)).start_time == at(10)


def _jittered_start(p: Planner, fire: datetime) -> datetime:
    start = p.slot(fire).start_time
    assert start > fire, "test needs a positive jitter for this slot; pick another election"
    return start


def test_fired_slot_with_pending_jitter_is_next_not_missed() -> None:
    """Never duplicates / no loss: a slot that fired but whose jittered start is still ahead at
    begin_tenure is not missed — due() runs it at its start — and is not counted as skipped."""
    p = planner("@every 10s", jitter=5.0, starting_deadline=timedelta(seconds=30))
    start30 = _jittered_start(p, at(30))
    now = at(30) + (start30 - at(30)) / 2
    plan = p.begin_tenure(at(0), now)  # fired since: :10, :20, :30 (:30 not yet started)
    assert plan.run == p.slot(at(20))
    assert plan.skipped == 1  # :10
    assert plan.expired is None
    assert p.peek() == p.slot(at(30))
    assert p.due(now) == (None, [])
    assert p.due(start30) == (p.slot(at(30)), [])


def test_only_missed_slot_with_pending_jitter_is_simply_next() -> None:
    p = planner("@every 10s", jitter=5.0)
    start30 = _jittered_start(p, at(30))
    now = at(30) + (start30 - at(30)) / 2
    plan = p.begin_tenure(at(20), now)
    assert (plan.run, plan.skipped, plan.expired) == (None, 0, None)
    assert p.peek() == p.slot(at(30))
    assert p.due(start30) == (p.slot(at(30)), [])


def test_catch_up_and_due_agree_on_whether_a_jittered_slot_is_late() -> None:
    """Starting deadline is one rule: a slot, at one instant, is either still in time or not,
    whether the leader was there all along (due) or just took over (catch-up)."""
    # Election "jobA": with 5 s of jitter, :20 starts at ~21.96 s and :30 at ~32.71 s.
    stable = planner("@every 10s", jitter=5.0, election="jobA")
    start20, start30 = _jittered_start(stable, at(20)), _jittered_start(stable, at(30))
    now = at(31)
    assert start30 > now
    assert timedelta(0) < now - start20 <= stable.deadline < now - at(20)
    stable.begin_tenure(None, at(19))
    assert stable.due(now) == (stable.slot(at(20)), [])  # a stable leader runs :20 now

    failover = planner("@every 10s", jitter=5.0, election="jobA")
    plan = failover.begin_tenure(at(10), now)  # :10 claimed, then the leader died
    assert plan.expired is None
    assert plan.run == failover.slot(at(20))


def test_new_leader_with_a_slow_clock_starts_after_the_newest_claim() -> None:
    """S3: a replica whose wall clock runs behind the one that claimed last never offers a slot
    at or before that claim (its key may have been pruned since)."""
    planner = Planner(parse_schedule("@every 10s"), "e")
    last = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    planner.begin_tenure(last, last - timedelta(minutes=5))  # our clock: 5 minutes behind
    nxt = planner.peek()
    assert nxt is not None
    assert nxt.fire_time == last + timedelta(seconds=10)


# -- SlotClock: planning time robust to wall-clock jumps -----------------------------------------


def test_slot_clock_follows_the_wall_clock_and_its_slew() -> None:
    c = SlotClock()
    for i in range(1000):  # 1 ms of slew per second: never mistaken for a jump
        planning, ahead = c.observe(at(i * 1.001), 100.0 + i)
        assert planning == at(i * 1.001) and ahead == 0.0


def test_slot_clock_holds_back_a_forward_jump_until_undone_L3() -> None:
    """+1 day on the wall clock: slots are planned by the monotonic count, never by tomorrow."""
    c = SlotClock()
    c.observe(at(0), 100.0)
    planning, ahead = c.observe(at(10) + timedelta(days=1), 110.0)
    assert planning == at(10) and ahead == 86_400
    assert c.peek(at(20) + timedelta(days=1), 120.0) == at(20)
    planning, ahead = c.observe(at(30), 130.0)  # undone
    assert planning == at(30) and ahead == 0.0


def test_slot_clock_accepts_a_jump_that_holds() -> None:
    c = SlotClock()
    c.observe(at(0), 100.0)
    c.observe(at(1) + timedelta(hours=1), 101.0)
    planning, _ = c.observe(at(STEP_TRUST_AFTER) + timedelta(hours=1), 100.0 + STEP_TRUST_AFTER)
    assert planning == at(STEP_TRUST_AFTER)  # still held: trust counts from the first sight
    planning, ahead = c.observe(
        at(STEP_TRUST_AFTER + 2) + timedelta(hours=1), 102.0 + STEP_TRUST_AFTER
    )
    assert planning == at(STEP_TRUST_AFTER + 2) + timedelta(hours=1) and ahead == 0.0


def test_slot_clock_answers_the_earlier_time_after_a_backward_jump() -> None:
    """Backward: the wall clock (behind), so a slot claimed before is never due again (S3)."""
    c = SlotClock()
    c.observe(at(0), 100.0)
    planning, ahead = c.observe(at(10) - timedelta(days=1), 110.0)
    assert planning == at(10) - timedelta(days=1) and ahead == 0.0
    planning, _ = c.observe(at(20), 120.0)
    assert planning == at(20)


# -- edges found by mutation testing --------------------------------------------------------------


def test_a_slot_is_identified_by_its_fire_time_s3() -> None:
    """S3: the slot's id is the fire time's id, the key every replica claims it under."""
    p = planner(jitter=5.0)
    assert p.slot(at(10)).id == slot_id(at(10))


def test_catch_up_at_the_instant_of_a_fire_time_runs_that_slot_once_L3() -> None:
    """L3, no burst: a slot whose start is exactly ``now`` fired while nobody led (it is in
    (last_claimed, now]): catch-up runs it, not the one before, and due() does not repeat it."""
    p = planner("@every 10s")
    plan = p.begin_tenure(at(0), at(20))
    assert (plan.run, plan.skipped, plan.expired) == (p.slot(at(20)), 1, None)
    assert p.peek() == p.slot(at(30))
    assert p.due(at(20)) == (None, [])


def test_a_slot_exactly_the_starting_deadline_late_still_runs_L3() -> None:
    """L3: the starting deadline is the latest a slot may start; at exactly that lateness it runs,
    whether the leader just took over (catch-up) or led all along (due)."""
    deadline = timedelta(seconds=3)
    failover = planner("@every 10s", starting_deadline=deadline)
    plan = failover.begin_tenure(at(0), at(13))
    assert (plan.run, plan.expired) == (failover.slot(at(10)), None)

    stable = planner("@every 10s", starting_deadline=deadline)
    stable.begin_tenure(None, at(5))
    assert stable.due(at(13)) == (stable.slot(at(10)), [])


def test_due_after_a_stall_reports_the_expired_slots_and_runs_the_one_in_time_L3() -> None:
    """L3: one look after a stall returns every slot that expired meanwhile (for the record) and
    the slot still within its starting deadline, to run now."""
    p = planner("@every 10s", starting_deadline=timedelta(seconds=3))
    p.begin_tenure(None, at(5))
    assert p.due(at(31)) == (p.slot(at(30)), [p.slot(at(10)), p.slot(at(20))])
    assert p.peek() == p.slot(at(40))


def test_due_after_a_very_long_stall_reports_at_most_max_counted_and_resumes_L3() -> None:
    """L3, no cliff: a stall of three days of `@every 1s` reports MAX_COUNTED expired slots, not
    259 200, and the planner continues with the next fire time after now."""
    p = planner("@every 1s")
    p.begin_tenure(None, T0)
    now = at(3 * 86_400 + 0.5)
    slot, expired = p.due(now)
    assert slot is None
    assert len(expired) == MAX_COUNTED
    assert expired[0] == p.slot(at(1))
    assert p.peek() == p.slot(at(3 * 86_400 + 1))
    assert p.due(at(3 * 86_400 + 1)) == (p.slot(at(3 * 86_400 + 1)), [])


def test_a_capped_count_is_max_counted_walked_slots_plus_the_newest() -> None:
    """No cliff: counting walks at most MAX_COUNTED fire times; a longer outage adds only the
    newest, so the reported numbers are the same for any outage past the cap."""
    for missed in (MAX_COUNTED + 2, 3 * MAX_COUNTED):
        plan = planner("@every 1s").begin_tenure(T0, at(missed + 0.5))
        assert plan.skipped == MAX_COUNTED  # plus the one that runs
        plan = planner("@every 1s", catch_up="skip").begin_tenure(T0, at(missed + 0.5))
        assert plan.skipped == MAX_COUNTED + 1


def test_an_ended_tenure_plans_nothing() -> None:
    """A replica that lost leadership hands out no slot until it begins a new tenure."""
    p = planner("@every 10s")
    p.begin_tenure(None, at(5))
    p.end_tenure()
    assert p.peek() is None
    assert p.due(at(100)) == (None, [])


def test_slot_clock_peek_follows_the_slewed_wall_clock_while_no_jump_is_held() -> None:
    """Slewing is followed, also between looks: without a held jump, peek is the wall clock even
    when it has run a little ahead of the monotonic count."""
    c = SlotClock()
    c.observe(at(0), 100.0)
    assert c.peek(at(10.5), 110.0) == at(10.5)


def test_slot_clock_follows_a_step_of_exactly_the_threshold() -> None:
    """A divergence of exactly STEP_THRESHOLD is a small step, followed at once."""
    c = SlotClock()
    c.observe(at(0), 100.0)
    assert c.observe(at(10 + STEP_THRESHOLD), 110.0) == (at(10 + STEP_THRESHOLD), 0.0)


def test_slot_clock_trusts_a_jump_held_for_exactly_step_trust_after_L3() -> None:
    """L3: a jump that has held for exactly STEP_TRUST_AFTER is the new time."""
    c = SlotClock()
    c.observe(at(0), 100.0)
    c.observe(at(1) + timedelta(hours=1), 101.0)
    wall = at(1 + STEP_TRUST_AFTER) + timedelta(hours=1)
    assert c.observe(wall, 101.0 + STEP_TRUST_AFTER) == (wall, 0.0)


# --- the record of missed slots (L3: every slot that did not run is accounted for) ---------------


def _covered(plan: object, p: Planner) -> set[datetime]:
    """Every fire time the plan's not-run records cover: one each, plus the summarised range."""
    from leaderjob.schedule.planner import CatchUpPlan

    assert isinstance(plan, CatchUpPlan)
    fires = {s.fire_time for s in plan.missed}
    if plan.missed_range is not None:
        first, last = plan.missed_range
        t = first
        while t <= last:
            fires.add(t)
            t = p.schedule.next_after(t)
    return fires


@pytest.mark.parametrize(
    ("catch_up", "deadline", "not_run"),
    [
        ("once", None, [10, 20]),  # :30 runs
        ("skip", None, [10, 20, 30]),
        ("once", timedelta(seconds=3), [10, 20, 30]),  # :30 expired
    ],
)
def test_catch_up_lists_every_missed_slot_that_does_not_run_L3(
    catch_up: str, deadline: timedelta | None, not_run: list[int]
) -> None:
    """L3: the slots a catch-up does not run are listed (for their not-run records), newest
    first, and only those: never the one it runs."""
    p = planner("@every 10s", catch_up=catch_up, starting_deadline=deadline)
    plan = p.begin_tenure(at(0), at(38))
    assert [s.fire_time for s in plan.missed] == [at(s) for s in reversed(not_run)]
    assert plan.missed_range is None and plan.missed_more == 0
    assert plan.run is None or plan.run not in plan.missed


def test_a_long_outage_lists_the_newest_missed_slots_and_summarises_the_rest_L3() -> None:
    """L3, bounded: a day of a per-minute schedule missed gives MISSED_RECORDS slots one by one and
    one range for the rest, which together cover every missed fire time exactly once."""
    from leaderjob.schedule.planner import MISSED_RECORDS

    p = planner("* * * * *", catch_up="skip")
    plan = p.begin_tenure(T0, T0 + timedelta(days=1, seconds=30))
    assert len(plan.missed) == MISSED_RECORDS
    assert plan.missed_range is not None
    assert plan.missed_more == plan.skipped - MISSED_RECORDS == 24 * 60 - MISSED_RECORDS
    covered = _covered(plan, p)
    assert len(covered) == plan.skipped
    assert min(covered) == T0 + timedelta(minutes=1)
    assert max(covered) == T0 + timedelta(days=1)


def test_a_new_election_and_a_fresh_claim_list_nothing_missed() -> None:
    p = planner("@every 10s")
    assert p.begin_tenure(None, at(35)).missed == []
    assert p.begin_tenure(at(30), at(35)).missed == []


def test_a_slot_may_be_claimed_ahead_only_within_the_lead_and_before_its_start_L3() -> None:
    """L3 without a round trip on the fire path: the next slot may be claimed at most ``lead``
    before its (jittered) start, not earlier, and not once its start has come (then it is
    ``due``, claimed on the fire path as before). Peeking does not consume it."""
    p = Planner(parse_schedule("@every 10s", "UTC"), "job")
    p.begin_tenure(None, at(0.5))
    lead = timedelta(milliseconds=50)
    assert p.claimable(at(9.9), lead) is None  # too early
    slot = p.claimable(at(9.95), lead)
    assert slot is not None and slot.fire_time == at(10)
    assert p.claimable(at(9.999), lead) == slot
    assert p.claimable(at(10), lead) is None  # its start has come: due() yields it
    assert p.due(at(10)) == (slot, [])
    assert p.claimable(at(19.96), lead) == p.slot(at(20))
