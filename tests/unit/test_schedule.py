"""Fire-time math: cron fields, macros, @every, time zones and DST, slot ids and jitter.

Calendar notes for reading the expectations: 2026-01-01 is a Thursday, so Sun 2026-01-04,
Mon 2026-01-05. DST 2026: Europe/Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST
(01:00Z) and falls back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z); America/New_York springs
forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z) and falls back 2026-11-01 02:00 EDT -> 01:00 EST
(06:00Z).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leaderjob.schedule import (
    SUPPORTED_UNTIL,
    Schedule,
    ScheduleError,
    parse_schedule,
    slot_id,
    slot_jitter,
)


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def fires(expr: str, after: datetime, count: int, timezone: str = "UTC") -> list[datetime]:
    """The next ``count`` fire times after ``after``, by chaining next_after."""
    schedule = parse_schedule(expr, timezone)
    out: list[datetime] = []
    for _ in range(count):
        after = schedule.next_after(after)
        out.append(after)
    return out


# --- fields, ranges, steps, lists, names --------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # single values
        ("7 * * * *", utc(2026, 1, 1, 12, 0), utc(2026, 1, 1, 12, 7)),
        ("7 * * * *", utc(2026, 1, 1, 12, 8), utc(2026, 1, 1, 13, 7)),
        ("0 9 * * *", utc(2026, 1, 1, 10, 0), utc(2026, 1, 2, 9, 0)),
        ("0 0 15 * *", utc(2026, 1, 20), utc(2026, 2, 15)),
        ("0 0 1 6 *", utc(2026, 7, 1), utc(2027, 6, 1)),
        ("* * * * *", utc(2026, 1, 1, 23, 59, 30), utc(2026, 1, 2, 0, 0)),
        # ranges
        ("10-12 * * * *", utc(2026, 1, 1, 12, 11), utc(2026, 1, 1, 12, 12)),
        ("10-12 * * * *", utc(2026, 1, 1, 12, 12), utc(2026, 1, 1, 13, 10)),
        ("0 22-23 * * *", utc(2026, 1, 1, 23, 0), utc(2026, 1, 2, 22, 0)),
        # steps: */n, a-b/n, a/n (a/n runs from a to the end of the field)
        ("*/20 * * * *", utc(2026, 1, 1, 12, 41), utc(2026, 1, 1, 13, 0)),
        ("*/7 * * * *", utc(2026, 1, 1, 12, 57), utc(2026, 1, 1, 13, 0)),  # 56 is the last
        ("10-30/10 * * * *", utc(2026, 1, 1, 12, 30), utc(2026, 1, 1, 13, 10)),
        ("50/5 * * * *", utc(2026, 1, 1, 12, 51), utc(2026, 1, 1, 12, 55)),
        ("50/5 * * * *", utc(2026, 1, 1, 12, 55), utc(2026, 1, 1, 13, 50)),
        ("0 */6 * * *", utc(2026, 1, 1, 13, 0), utc(2026, 1, 1, 18, 0)),
        ("0 0 */10 * *", utc(2026, 1, 21), utc(2026, 1, 31)),
        # lists, including ranges and steps inside lists
        ("5,35 * * * *", utc(2026, 1, 1, 12, 5), utc(2026, 1, 1, 12, 35)),
        ("1,10-11,50/5 * * * *", utc(2026, 1, 1, 12, 11), utc(2026, 1, 1, 12, 50)),
        ("0 0 1 1,7 *", utc(2026, 2, 1), utc(2026, 7, 1)),
    ],
)
def test_fields_ranges_steps_and_lists(expr: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expr).next_after(after) == expected


@pytest.mark.parametrize(
    ("by_name", "by_number"),
    [
        ("0 0 1 JAN *", "0 0 1 1 *"),
        ("0 0 1 jun-Aug *", "0 0 1 6-8 *"),
        ("0 0 1 mar,DEC *", "0 0 1 3,12 *"),
        ("0 9 * * MON-FRI", "0 9 * * 1-5"),
        ("0 9 * * sun", "0 9 * * 0"),
        ("0 9 * * Sat,SUN", "0 9 * * 6,0"),
        ("0 9 * * MON/2", "0 9 * * 1/2"),
    ],
)
def test_month_and_day_names_match_numbers_case_insensitively(by_name: str, by_number: str) -> None:
    assert fires(by_name, utc(2026, 1, 1), 20) == fires(by_number, utc(2026, 1, 1), 20)
    assert parse_schedule(by_name).expr == by_name  # the expression is kept as written


def test_weekday_range_fires_only_on_weekdays() -> None:
    got = fires("0 9 * * MON-FRI", utc(2026, 1, 1), 6)  # Thu 1st
    assert [d.day for d in got] == [1, 2, 5, 6, 7, 8]


@pytest.mark.parametrize("sunday", ["0", "7", "SUN", "sun"])
def test_sunday_is_both_0_and_7(sunday: str) -> None:
    got = fires(f"0 12 * * {sunday}", utc(2026, 1, 1), 3)
    assert got == [utc(2026, 1, 4, 12), utc(2026, 1, 11, 12), utc(2026, 1, 18, 12)]


def test_range_ending_on_7_includes_sunday() -> None:
    got = fires("0 12 * * 5-7", utc(2026, 1, 1), 4)  # Fri, Sat, Sun, then next Fri
    assert [d.day for d in got] == [2, 3, 4, 9]


def test_day_of_week_step_does_not_fire_sunday_twice() -> None:
    # */1 over day-of-week spans 0-6; 7 is only an alias and must not produce a second Sunday.
    got = fires("0 12 * * */1", utc(2026, 1, 1), 7)
    assert [d.day for d in got] == [1, 2, 3, 4, 5, 6, 7]


# --- the day-of-month / day-of-week rule ----------------------------------------------------------


def test_dom_and_dow_both_restricted_fire_on_either() -> None:
    # "the 13th OR any Friday", not "Friday the 13th". Jan 2026 Fridays: 2, 9, 16, 23, 30.
    got = fires("0 0 13 * FRI", utc(2026, 1, 1), 6)
    assert [d.day for d in got] == [2, 9, 13, 16, 23, 30]


def test_dom_restricted_dow_star_needs_dom() -> None:
    assert [d.day for d in fires("0 0 13 * *", utc(2026, 1, 1), 2)] == [13, 13]


def test_dow_restricted_dom_star_needs_dow() -> None:
    assert [d.day for d in fires("0 0 * * 5", utc(2026, 1, 1), 2)] == [2, 9]


def test_dom_step_counts_as_restricted_like_kubernetes() -> None:
    # A step above 1 restricts (robfig/cron, which Kubernetes uses; Vixie cron differs): */10
    # with a restricted day-of-week means "days 1, 11, 21, 31 OR Mondays".
    got = fires("0 0 */10 * MON", utc(2026, 1, 1), 5)
    assert [d.day for d in got] == [5, 11, 12, 19, 21]


@pytest.mark.parametrize(
    ("expr", "days"),
    [
        # `*/1` and a `*` list item are wildcards (robfig/cron): the other field alone decides.
        ("0 0 1 * */1", [1, 1, 1]),
        ("0 0 1,15 * *,1", [1, 15, 1]),
        ("0 0 1,15 * 1,*", [1, 15, 1]),
        ("0 0 */1 * MON", [5, 12, 19]),
        ("0 0 *,13 * FRI", [2, 9, 16]),
        ("0 0 1 * */01", [1, 1, 1]),
        # `?` is `*` in the day fields.
        ("0 0 ? * MON", [5, 12, 19]),
        ("0 0 1 * ?", [1, 1, 1]),
        # Not wildcards: a step above 1, or a range that happens to cover every day: OR rule.
        ("0 0 1 * */2", [1, 3, 4]),  # the 1st (a Thursday) or Sun, Tue, Thu, Sat
        ("0 0 1-31 * MON", [1, 2, 3]),
    ],
)
def test_day_rule_wildcards_follow_robfig_cron(expr: str, days: list[int]) -> None:
    """The day-of-month/day-of-week OR rule applies only when neither field is a wildcard."""
    assert [d.day for d in fires(expr, utc(2025, 12, 31, 12), 3)] == days


@pytest.mark.parametrize(
    ("with_question_mark", "with_star"),
    [("0 0 ? * MON", "0 0 * * MON"), ("0 0 1 * ?", "0 0 1 * *"), ("0 0 ?/2 * ?", "0 0 */2 * *")],
)
def test_question_mark_is_a_star_in_the_day_fields(
    with_question_mark: str, with_star: str
) -> None:
    after = utc(2026, 1, 1)
    assert fires(with_question_mark, after, 20) == fires(with_star, after, 20)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 * * 7/2", r"day-of-week field '7/2': '7/2' starts after .* like 0/2"),
        ("0 0 1 * 7/2", r"day-of-week field '7/2': '7/2' starts after"),
        ("0 0 * * 1,7/3", r"day-of-week field '1,7/3': '7/3' starts after"),
        ("@every 3000000d", r"@every duration '3000000d' is longer than 2920d \(8 years\)"),
        ("@every 2921d", r"longer than 2920d"),
    ],
)
def test_expressions_that_would_never_fire_are_rejected_at_parse_time(
    expr: str, message: str
) -> None:
    """A parsed schedule always has a next fire time: these used to parse and then crash (an
    empty weekday set, an @every past year 9999) or silently drop a field."""
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(expr)


def test_the_longest_every_fires() -> None:
    schedule = parse_schedule("@every 2920d")
    assert schedule.next_after(SUPPORTED_UNTIL) > SUPPORTED_UNTIL


@pytest.mark.parametrize(
    ("expr", "zone", "after"),
    [
        ("@daily", "UTC", utc(9999, 12, 31, 12)),
        ("@every 1h", "UTC", utc(9999, 12, 31, 23, 30)),
        ("@every 2920d", "UTC", utc(9999, 1, 1)),
        ("0 0 29 2 *", "UTC", utc(9996, 3, 1)),
        ("0 0 * * *", "America/New_York", utc(9999, 12, 31, 6)),  # next would be 10000-01-01Z
        ("0 0 * * *", "Asia/Tokyo", utc(9999, 12, 31, 20)),  # local time is past year 9999
        ("* * * * *", "Asia/Tokyo", utc(9999, 12, 31, 23, 59, 59, 999999)),
    ],
)
def test_the_end_of_the_calendar_is_a_schedule_error(expr: str, zone: str, after: datetime) -> None:
    """Past the supported range next_after raises ScheduleError, never OverflowError."""
    with pytest.raises(ScheduleError, match=r"no fire time after .* before the end of the year"):
        parse_schedule(expr, zone).next_after(after)


def test_the_last_fire_times_before_the_end_of_the_calendar() -> None:
    assert parse_schedule("0 0 * * *", "America/New_York").next_after(
        utc(9999, 12, 30, 6)
    ) == utc(9999, 12, 31, 5)
    assert parse_schedule("@every 1h").next_after(utc(9999, 12, 31, 22, 30)) == utc(
        9999, 12, 31, 23
    )


# --- macros -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
        ("@monthly", utc(2026, 2, 1)),
        ("@weekly", utc(2026, 1, 4)),  # Sunday midnight
        ("@daily", utc(2026, 1, 2)),
        ("@midnight", utc(2026, 1, 2)),
        ("@hourly", utc(2026, 1, 1, 13)),
        ("@DAILY", utc(2026, 1, 2)),
    ],
)
def test_macros(macro: str, expected: datetime) -> None:
    schedule = parse_schedule(macro)
    assert schedule.next_after(utc(2026, 1, 1, 12, 30)) == expected
    assert schedule.expr == macro


# --- @every ---------------------------------------------------------------------------------------


def test_every_is_anchored_to_the_unix_epoch() -> None:
    assert parse_schedule("@every 5m").next_after(utc(2026, 1, 1, 12, 3, 10)) == utc(
        2026, 1, 1, 12, 5
    )


def test_every_is_strictly_after_an_exact_fire_time() -> None:
    schedule = parse_schedule("@every 5m")
    assert schedule.next_after(utc(2026, 1, 1, 12, 5)) == utc(2026, 1, 1, 12, 10)
    just_before = utc(2026, 1, 1, 12, 4, 59) + timedelta(microseconds=999_999)
    assert schedule.next_after(just_before) == utc(2026, 1, 1, 12, 5)


def test_every_odd_interval_lands_on_multiples_of_epoch_seconds() -> None:
    # 7h does not divide a day: fire times are k * 25200 s since the epoch, not "every 7h from
    # midnight", so any replica computes the same instants.
    for t in fires("@every 7h", utc(2026, 1, 1), 10):
        assert int(t.timestamp()) % 25200 == 0
    for t in fires("@every 1h30m", utc(2026, 1, 1), 10):
        assert int(t.timestamp()) % 5400 == 0


def test_every_ignores_time_zone_and_dst() -> None:
    # Across Berlin's spring-forward night the gaps stay exactly one hour.
    got = fires("@every 1h", utc(2026, 3, 28, 23, 30), 4, "Europe/Berlin")
    assert got == [utc(2026, 3, 29, h) for h in range(4)]
    assert fires("CRON_TZ=Asia/Tokyo @every 1h", utc(2026, 1, 1), 1) == [utc(2026, 1, 1, 1)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2h", 7200), ("1000ms", 1)],
)
def test_every_interval(text: str, seconds: int) -> None:
    assert parse_schedule(f"@every {text}").interval() == timedelta(seconds=seconds)


def test_every_accepts_an_after_in_any_zone() -> None:
    tokyo = datetime(2026, 1, 1, 21, 3, 10, tzinfo=ZoneInfo("Asia/Tokyo"))  # 12:03:10Z
    assert parse_schedule("@every 5m").next_after(tokyo) == utc(2026, 1, 1, 12, 5)


# --- results are aware UTC, whole seconds ---------------------------------------------------------


@pytest.mark.parametrize("expr", ["*/5 * * * *", "@every 7s", "30 2 * * *"])
def test_next_after_returns_utc_with_no_microseconds(expr: str) -> None:
    after = datetime(2026, 3, 28, 12, 0, 1, 123456, tzinfo=ZoneInfo("America/New_York"))
    got = parse_schedule(expr, "Europe/Berlin").next_after(after)
    assert got.tzinfo is UTC
    assert got.microsecond == 0
    assert got > after


def test_next_after_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * *").next_after(datetime(2026, 1, 1))


def test_cron_is_strictly_after_an_exact_fire_time() -> None:
    schedule = parse_schedule("0 * * * *")
    assert schedule.next_after(utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 13)
    assert schedule.next_after(utc(2026, 1, 1, 11, 59, 59, 999999)) == utc(2026, 1, 1, 12)


# --- time zones -----------------------------------------------------------------------------------


def test_tokyo_is_evaluated_in_local_time() -> None:
    # 09:00 JST is 00:00Z; Tokyo has no DST.
    assert fires("0 9 * * *", utc(2026, 1, 1, 1), 2, "Asia/Tokyo") == [
        utc(2026, 1, 2, 0),
        utc(2026, 1, 3, 0),
    ]


def test_local_day_boundaries_follow_the_zone() -> None:
    # Monday 00:30 in Tokyo is Sunday 15:30Z.
    assert parse_schedule("30 0 * * MON", "Asia/Tokyo").next_after(utc(2026, 1, 1)) == utc(
        2026, 1, 4, 15, 30
    )


def test_lord_howe_half_hour_spring_forward_gap() -> None:
    # 2026-10-04 02:00 +10:30 -> 02:30 +11:00: 02:15 does not exist, it fires at 02:30 LHDT.
    got = fires("15 2 * * *", utc(2026, 10, 2, 12), 3, "Australia/Lord_Howe")
    assert got == [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)]


def test_lord_howe_half_hour_fall_back_fires_once() -> None:
    # 2026-04-05 02:00 +11:00 -> 01:30 +10:30: 01:45 happens twice; only the first fires.
    got = fires("45 1 * * *", utc(2026, 4, 4, 0), 2, "Australia/Lord_Howe")
    assert got == [utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)]


# --- DST: spring forward ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timezone", "night", "expected"),
    [
        # day before (CET / EST), the gap day (fires at the gap's end), day after (CEST / EDT)
        (
            "Europe/Berlin",
            utc(2026, 3, 28),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        ),
        (
            "America/New_York",
            utc(2026, 3, 7),
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
        ),
    ],
)
def test_spring_forward_daily_fires_once_at_gap_end(
    timezone: str, night: datetime, expected: list[datetime]
) -> None:
    assert fires("30 2 * * *", night, 3, timezone) == expected


@pytest.mark.parametrize(
    ("timezone", "after", "expected"),
    [
        # Berlin: 01:00 CET = 00:00Z, 02:00 missing -> 03:00 CEST = 01:00Z (once), 04:00 CEST
        (
            "Europe/Berlin",
            utc(2026, 3, 28, 23, 30),
            [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
        ),
        # New York: 01:00 EST = 06:00Z, 02:00 missing -> 03:00 EDT = 07:00Z (once), 04:00 EDT
        (
            "America/New_York",
            utc(2026, 3, 8, 5, 30),
            [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)],
        ),
    ],
)
def test_spring_forward_hourly_has_no_duplicate(
    timezone: str, after: datetime, expected: list[datetime]
) -> None:
    assert fires("0 * * * *", after, 3, timezone) == expected


@pytest.mark.parametrize(
    ("timezone", "after", "gap_end", "next_day"),
    [
        ("Europe/Berlin", utc(2026, 3, 27, 12), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)),
        ("America/New_York", utc(2026, 3, 6, 12), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6)),
    ],
)
def test_spring_forward_quarter_hours_in_the_gap_collapse_into_one_firing(
    timezone: str, after: datetime, gap_end: datetime, next_day: datetime
) -> None:
    got = fires("*/15 2 * * *", after, 6, timezone)
    # The day before fires 4 times; the gap day once (no burst); then 02:00 of the next day.
    quarter = timedelta(minutes=15)
    assert got[1:4] == [got[0] + i * quarter for i in (1, 2, 3)]
    assert got[4:] == [gap_end, next_day]
    assert len(set(got)) == len(got)


def test_spring_forward_every_minute_jumps_over_the_gap() -> None:
    got = fires("* * * * *", utc(2026, 3, 29, 0, 58), 4, "Europe/Berlin")
    # 01:59 CET = 00:59Z, then the whole 02:xx hour collapses into 03:00 CEST = 01:00Z.
    assert got == [
        utc(2026, 3, 29, 0, 59),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 29, 1, 1),
        utc(2026, 3, 29, 1, 2),
    ]


# --- DST: fall back -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timezone", "expr", "after", "expected"),
    [
        # Berlin 02:30 happens at 00:30Z (CEST) and 01:30Z (CET); only the first fires.
        (
            "Europe/Berlin",
            "30 2 * * *",
            utc(2026, 10, 24, 12),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        # New York 01:30 happens at 05:30Z (EDT) and 06:30Z (EST); only the first fires.
        (
            "America/New_York",
            "30 1 * * *",
            utc(2026, 10, 31, 12),
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
    ],
)
def test_fall_back_daily_fires_once_at_first_occurrence(
    timezone: str, expr: str, after: datetime, expected: list[datetime]
) -> None:
    assert fires(expr, after, 2, timezone) == expected


@pytest.mark.parametrize(
    ("timezone", "after", "expected"),
    [
        # Berlin: 01:00 CEST 23:00Z, 02:00 CEST 00:00Z, 02:00 CET 01:00Z, 03:00 CET 02:00Z
        (
            "Europe/Berlin",
            utc(2026, 10, 24, 22, 30),
            [
                utc(2026, 10, 24, 23),
                utc(2026, 10, 25, 0),
                utc(2026, 10, 25, 1),
                utc(2026, 10, 25, 2),
            ],
        ),
        # New York: 00:00 EDT 04:00Z, 01:00 EDT 05:00Z, 01:00 EST 06:00Z, 02:00 EST 07:00Z
        (
            "America/New_York",
            utc(2026, 11, 1, 3, 30),
            [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)],
        ),
    ],
)
def test_fall_back_hourly_keeps_its_interval_through_the_repeated_hour(
    timezone: str, after: datetime, expected: list[datetime]
) -> None:
    """L3 (every slot runs): an hourly job runs every hour, also in the repeated hour."""
    assert fires("0 * * * *", after, 4, timezone) == expected


@pytest.mark.parametrize(
    ("timezone", "expr", "after", "first"),
    [
        ("Europe/Berlin", "*/15 2 * * *", utc(2026, 10, 24, 12), utc(2026, 10, 25, 0)),
        ("America/New_York", "*/15 1 * * *", utc(2026, 10, 31, 12), utc(2026, 11, 1, 5)),
    ],
)
def test_fall_back_quarter_hours_fire_once_each(
    timezone: str, expr: str, after: datetime, first: datetime
) -> None:
    got = fires(expr, after, 5, timezone)
    quarter = timedelta(minutes=15)
    assert got[:4] == [first + i * quarter for i in range(4)]
    assert got[4] - got[3] > timedelta(hours=20)  # next day, no second round in the repeat


def test_after_inside_the_repeated_hour_continues_in_the_repeat() -> None:
    # 01:10Z is 02:10 CET, the second 02:10 in Berlin: a quarter-hourly job goes on at 02:15 CET.
    assert parse_schedule("*/15 * * * *", "Europe/Berlin").next_after(
        utc(2026, 10, 25, 1, 10)
    ) == utc(2026, 10, 25, 1, 15)


def test_after_in_the_first_pass_of_the_repeat_still_sees_the_second_pass() -> None:
    # 00:40Z is 02:40 CEST (first pass); 02:45 CEST comes next, then 02:00 CET = 01:00Z.
    got = fires("*/15 * * * *", utc(2026, 10, 25, 0, 40), 2, "Europe/Berlin")
    assert got == [utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 1, 0)]
    # A range of hours: 02:00 fires in both passes, also when asked from inside the first pass.
    got = fires("0 1-3 * * *", utc(2026, 10, 25, 0, 30), 2, "Europe/Berlin")
    assert got == [utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]


def test_a_single_hour_does_not_fire_again_in_the_repeat() -> None:
    # 02:10 CET (second pass): `*/15 2 * * *` ran its quarters in the first pass; next is tomorrow.
    assert parse_schedule("*/15 2 * * *", "Europe/Berlin").next_after(
        utc(2026, 10, 25, 1, 10)
    ) == utc(2026, 10, 26, 1, 0)


# --- DST cross-check against a minute-by-minute reference ----------------------------------------


def reference_fires(
    matches: Callable[[datetime], bool],
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
    repeats: bool,
) -> list[datetime]:
    """Walk UTC minute by minute and apply the DST rules literally: a wall time fires at its
    first occurrence (fold 0), and at its second (fold 1) too when the schedule's hour field has
    more than one hour (``repeats``); wall times skipped by a spring-forward jump fire once, at
    the first instant after the jump."""
    out: list[datetime] = []
    minute = timedelta(minutes=1)
    u = start + minute
    while u <= end:
        here, before = u.astimezone(zone), (u - minute).astimezone(zone)
        wall = here.replace(tzinfo=None, fold=0)
        skipped_wall = before.replace(tzinfo=None) + minute
        skipped: list[datetime] = []
        while skipped_wall < wall:  # only non-empty right after a spring-forward jump
            skipped.append(skipped_wall)
            skipped_wall += minute
        if ((here.fold == 0 or repeats) and matches(wall)) or any(matches(w) for w in skipped):
            out.append(u)
        u += minute
    return out


@pytest.mark.parametrize(
    ("timezone", "start"),
    [
        ("Europe/Berlin", utc(2026, 3, 28, 12)),
        ("Europe/Berlin", utc(2026, 10, 24, 12)),
        ("America/New_York", utc(2026, 3, 7, 18)),
        ("America/New_York", utc(2026, 10, 31, 18)),
        ("Australia/Lord_Howe", utc(2026, 4, 4, 0)),
        ("Australia/Lord_Howe", utc(2026, 10, 3, 0)),
    ],
)
@pytest.mark.parametrize(
    ("expr", "repeats", "matches"),
    [
        ("*/15 2 * * *", False, lambda w: w.hour == 2 and w.minute % 15 == 0),
        ("30 1 * * *", False, lambda w: w.hour == 1 and w.minute == 30),
        ("30 1-3 * * *", True, lambda w: 1 <= w.hour <= 3 and w.minute == 30),
        ("0 * * * *", True, lambda w: w.minute == 0),
        ("*/10 * * * *", True, lambda w: w.minute % 10 == 0),
        ("45 0-3 * * SUN", True, lambda w: w.hour <= 3 and w.minute == 45 and w.isoweekday() == 7),
    ],
)
def test_dst_matches_minute_by_minute_reference(
    timezone: str,
    start: datetime,
    expr: str,
    repeats: bool,
    matches: Callable[[datetime], bool],
) -> None:
    end = start + timedelta(days=2)
    expected = reference_fires(matches, ZoneInfo(timezone), start, end, repeats)
    got = [t for t in fires(expr, start, len(expected) + 1, timezone) if t <= end]
    assert got == expected


# --- long spans -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (utc(2027, 1, 1), utc(2028, 2, 29)),
        (utc(2028, 2, 29), utc(2032, 2, 29)),  # strictly after
        (utc(2097, 1, 1), utc(2104, 2, 29)),  # 2100 is not a leap year: an 8-year wait
    ],
)
def test_leap_day_skips_ahead_by_field(after: datetime, expected: datetime) -> None:
    # The search jumps month by month and day by day rather than minute by minute; a minute-by-
    # minute search of 7 years would be millions of steps.
    assert parse_schedule("0 0 29 2 *").next_after(after) == expected


def test_leap_day_in_a_zone() -> None:
    assert parse_schedule("0 0 29 FEB *", "Asia/Tokyo").next_after(utc(2027, 1, 1)) == utc(
        2028, 2, 28, 15
    )


def test_last_minute_of_the_year() -> None:
    assert parse_schedule("59 23 31 12 *").next_after(utc(2026, 1, 1)) == utc(2026, 12, 31, 23, 59)


# --- interval() -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "timezone", "expected"),
    [
        ("* * * * *", "UTC", timedelta(minutes=1)),
        ("*/5 * * * *", "UTC", timedelta(minutes=5)),
        ("*/7 * * * *", "UTC", timedelta(minutes=4)),  # 56 -> 00 is the shortest gap
        ("0,45 * * * *", "UTC", timedelta(minutes=15)),
        ("*/15 2 * * *", "Europe/Berlin", timedelta(minutes=15)),
        ("@hourly", "UTC", timedelta(hours=1)),
        ("0 */6 * * *", "UTC", timedelta(hours=6)),
        ("@daily", "America/New_York", timedelta(days=1)),  # not 23h: wall-clock gaps
        ("0 9 * * MON-FRI", "UTC", timedelta(days=1)),
        ("@weekly", "UTC", timedelta(days=7)),
        ("@monthly", "UTC", timedelta(days=28)),
        ("@yearly", "UTC", timedelta(days=365)),
        ("0 0 29 2 *", "UTC", timedelta(days=1461)),
        ("@every 90s", "UTC", timedelta(seconds=90)),
    ],
)
def test_interval(expr: str, timezone: str, expected: timedelta) -> None:
    schedule = parse_schedule(expr, timezone)
    assert schedule.interval() == expected
    assert schedule.interval() == expected, "the same when asked again"


def test_interval_walks_the_calendar_once_per_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifty fire times of a yearly cron are fifty years of days: worked out at the first ask,
    then kept (the schedule is immutable). A schedule equal to it compares equal whether or not
    either was asked."""
    from leaderjob.schedule.cron import Cron

    walks: list[int] = []
    real = Cron.walls_from

    def counted(self: Cron, *args: Any, **kwargs: Any) -> Any:
        walks.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Cron, "walls_from", counted)
    yearly = parse_schedule("@yearly", "UTC")
    assert [yearly.interval() for _ in range(100)] == [timedelta(days=365)] * 100
    assert len(walks) == 1
    assert yearly == parse_schedule("@yearly", "UTC")
    assert hash(yearly) == hash(parse_schedule("@yearly", "UTC"))


# --- slot ids and jitter --------------------------------------------------------------------------


def test_slot_id_is_the_utc_fire_time() -> None:
    assert slot_id(utc(2026, 1, 1, 12)) == "20260101T120000Z"
    berlin = datetime(2026, 7, 1, 14, 5, 9, tzinfo=ZoneInfo("Europe/Berlin"))
    assert slot_id(berlin) == "20260701T120509Z"


def test_slot_ids_sort_like_fire_times() -> None:
    times = fires("17 */5 * * *", utc(2026, 12, 30), 20)
    assert sorted(slot_id(t) for t in times) == [slot_id(t) for t in times]


def test_slot_id_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_id(datetime(2026, 1, 1))


def test_slot_jitter_is_deterministic_per_election_and_slot() -> None:
    t = utc(2026, 1, 1, 12)
    same_instant_other_zone = t.astimezone(ZoneInfo("Asia/Tokyo"))
    assert slot_jitter("backup", t, 30.0) == slot_jitter("backup", same_instant_other_zone, 30.0)
    others = {slot_jitter(f"job-{i}", t, 30.0) for i in range(20)}
    assert len(others) == 20  # the election name takes part
    slots = {slot_jitter("backup", t + timedelta(minutes=i), 30.0) for i in range(20)}
    assert len(slots) == 20  # and so does the slot


@pytest.mark.parametrize("jitter", [0.001, 1.0, 30.0, 3600.0])
def test_slot_jitter_stays_in_range(jitter: float) -> None:
    values = [
        slot_jitter("job", utc(2026, 1, 1) + timedelta(minutes=i), jitter) for i in range(500)
    ]
    assert all(0.0 <= v < jitter for v in values)
    assert max(values) > jitter * 0.9  # spread over the range, not stuck near 0
    assert min(values) < jitter * 0.1


@pytest.mark.parametrize("jitter", [0.0, -5.0, float("nan")])
def test_slot_jitter_is_zero_without_jitter(jitter: float) -> None:
    assert slot_jitter("job", utc(2026, 1, 1), jitter) == 0.0


def test_slot_jitter_rejects_infinite_jitter() -> None:
    with pytest.raises(ValueError, match="finite"):
        slot_jitter("job", utc(2026, 1, 1), float("inf"))


# --- CRON_TZ= / TZ= prefixes --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["CRON_TZ", "TZ"])
def test_prefix_sets_the_zone(key: str) -> None:
    schedule = parse_schedule(f"{key}=Asia/Tokyo 0 9 * * *")
    assert schedule.expr == "0 9 * * *"
    assert schedule.timezone == "Asia/Tokyo"
    assert schedule.next_after(utc(2026, 1, 1, 1)) == utc(2026, 1, 2, 0)


def test_prefix_agreeing_with_the_timezone_argument_is_fine() -> None:
    schedule = parse_schedule("CRON_TZ=Europe/Berlin 0 3 * * *", "Europe/Berlin")
    assert schedule.timezone == "Europe/Berlin"


def test_prefix_and_a_different_timezone_argument_conflict() -> None:
    with pytest.raises(ScheduleError, match="give the zone once"):
        parse_schedule("CRON_TZ=Asia/Tokyo 0 9 * * *", "Europe/Berlin")


def test_timezone_argument_without_prefix() -> None:
    schedule = parse_schedule("  0 9 * * *  ", "Asia/Tokyo")
    assert (schedule.expr, schedule.timezone) == ("0 9 * * *", "Asia/Tokyo")


def test_schedules_compare_by_expression_and_zone() -> None:
    assert parse_schedule("TZ=Asia/Tokyo @daily") == Schedule("@daily", "Asia/Tokyo")
    assert parse_schedule("@daily") != parse_schedule("@daily", "Asia/Tokyo")
    assert repr(parse_schedule("@daily")) == "Schedule(expr='@daily', timezone='UTC')"


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        # emptiness and shape
        ("", "empty schedule"),
        ("   ", "empty schedule"),
        ("* * * *", r"found 4 fields .* but 5 are expected .*@hourly"),
        ("0 * * * * *", r"found 6 fields .* but 5 are expected"),
        # out of range, per field
        ("61 * * * *", r"minute field '61': .*values must be 0-59"),
        ("0 24 * * *", r"hour field '24': .*values must be 0-23"),
        ("0 0 0 * *", r"day-of-month field '0': .*values must be 1-31"),
        ("0 0 32 * *", r"day-of-month field '32': .*values must be 1-31"),
        ("0 0 1 13 *", r"month field '13': .*values must be 1-12 or JAN-DEC"),
        ("0 0 * * 8", r"day-of-week field '8': .*values must be 0-7 \(0 and 7 are Sunday\)"),
        ("0-60 * * * *", r"minute field '0-60': 60 is out of range"),
        ("1,2,99 * * * *", r"minute field '1,2,99': 99 is out of range"),
        # steps
        ("*/0 * * * *", r"minute field '\*/0': step 0"),
        ("0 1-5/0 * * *", r"hour field '1-5/0': step 0"),
        ("*/x * * * *", r"minute field '\*/x': step 'x' is not a number"),
        ("*/ * * * *", r"minute field '\*/': step '' is not a number"),
        ("*/2/3 * * * *", r"minute field '\*/2/3': step '2/3' is not a number"),
        # ranges
        ("30-10 * * * *", r"minute field '30-10': range '30-10' is reversed"),
        ("0 0 * DEC-JAN *", r"month field 'DEC-JAN': range 'DEC-JAN' is reversed"),
        ("0 0 * * SAT-SUN", r"day-of-week field 'SAT-SUN': .*reversed.*use 7, e\.g\. 5-7"),
        ("1-2-3 * * * *", r"minute field '1-2-3': cannot read range"),
        ("-5 * * * *", r"minute field '-5': cannot read range"),
        # names and non-numbers
        ("0 0 1 FOO *", r"month field 'FOO': unknown name 'FOO'"),
        ("0 0 * * FUNDAY", r"day-of-week field 'FUNDAY': unknown name"),
        ("MON * * * *", r"minute field 'MON': 'MON' is not a number"),
        ("0 0 JAN * *", r"day-of-month field 'JAN': 'JAN' is not a number"),
        ("? * * * *", r"minute field '\?'"),
        ("0 ? * * *", r"hour field '\?'"),
        ("0 0 * ? *", r"month field '\?'"),
        ("1,,2 * * * *", r"minute field '1,,2': empty list item"),
        # days that never exist under the AND rule
        ("0 0 30 2 *", r"schedule never fires: day-of-month field '30' never occurs in month"),
        ("0 0 31 4,6,9,11 *", r"schedule never fires"),
        ("0 0 30-31 FEB *", r"schedule never fires"),
        # macros and @every
        ("@fortnightly", r"unknown macro '@fortnightly': use @yearly"),
        ("@daily 0", r"macro '@daily' takes nothing after it"),
        ("@every", r"@every needs a duration"),
        ("@every 1h 30m", r"@every duration '1h 30m' has spaces"),
        ("@every soon", r"@every duration 'soon': cannot read duration"),
        ("@every 0s", r"@every duration '0s' is shorter than 1s"),
        ("@every 500ms", r"@every duration '500ms' is shorter than 1s"),
        ("@every 1.5s", r"@every duration '1.5s' has a fraction of a second"),
        ("@every 1500ms", r"@every duration '1500ms' has a fraction of a second"),
        # prefixes and zones
        ("CRON_TZ=Mars/Base 0 9 * * *", r"unknown time zone 'Mars/Base': use an IANA name"),
        ("TZ= 0 9 * * *", r"TZ= prefix has no zone"),
        ("CRON_TZ=Asia/Tokyo", r"nothing after the CRON_TZ=Asia/Tokyo prefix"),
        ("cron_tz=Asia/Tokyo 0 9 * * *", r"unexpected 'cron_tz=Asia/Tokyo'.*CRON_TZ=<zone>"),
    ],
)
def test_bad_expressions_name_the_problem(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(expr)


@pytest.mark.parametrize("zone", ["Mars/Base", "", "America", "../etc/passwd", "america"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ScheduleError, match=r"unknown time zone .*: use an IANA name like"):
        parse_schedule("0 9 * * *", zone)


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("utc", "UTC"),
        ("Utc", "UTC"),
        ("UTC", "UTC"),
        ("europe/berlin", "Europe/Berlin"),
        ("AMERICA/NEW_YORK", "America/New_York"),
        ("Europe/Berlin", "Europe/Berlin"),
    ],
)
def test_time_zone_names_are_matched_case_insensitively(given: str, name: str) -> None:
    schedule = parse_schedule("30 2 * * *", given)
    assert schedule.timezone == name
    assert schedule == parse_schedule("30 2 * * *", name)
    assert parse_schedule(f"CRON_TZ={given} 30 2 * * *").timezone == name


def test_prefix_and_timezone_argument_agree_case_insensitively() -> None:
    assert parse_schedule("CRON_TZ=Europe/Berlin @daily", "europe/berlin").timezone == (
        "Europe/Berlin"
    )


def test_schedule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="minute field"):
        parse_schedule("99 * * * *")


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 29 2 *",  # leap day: rare but real
        "0 0 31 2 MON",  # OR rule: every Monday in February
        "0 0 30,31 1,2 *",  # fires in January
    ],
)
def test_rare_but_possible_day_combinations_are_accepted(expr: str) -> None:
    assert parse_schedule(expr).next_after(utc(2026, 1, 1)) > utc(2026, 1, 1)


# --- edges found by mutation testing (docs/testing.md) ------------------------------------------


@pytest.mark.parametrize(
    ("expr", "after", "count", "minutes"),
    [
        ("0-30/10 * * * *", utc(2026, 1, 1, 12, 0), 4, [10, 20, 30, 0]),  # a range's own step
        ("55/2 * * * *", utc(2026, 1, 1, 12, 0), 3, [55, 57, 59]),  # `a/n` reaches the last value
        ("5-5 * * * *", utc(2026, 1, 1, 12, 0), 2, [5, 5]),  # a one-value range
    ],
)
def test_steps_and_ranges_at_their_ends(
    expr: str, after: datetime, count: int, minutes: list[int]
) -> None:
    assert [t.minute for t in fires(expr, after, count)] == minutes


def test_weekday_a_slash_n_may_start_on_saturday() -> None:
    # 6/2 is Saturday only (the field ends at 6); 2026-01-03 and -10 are Saturdays.
    assert [t.day for t in fires("0 0 * * 6/2", utc(2026, 1, 1), 2)] == [3, 10]


def test_a_two_hour_field_repeats_through_the_fall_back() -> None:
    # `30 1-2` in Berlin on 2026-10-25: 01:30 CEST, 02:30 CEST, 02:30 CET.
    got = fires("30 1-2 * * *", utc(2026, 10, 24, 12), 3, "Europe/Berlin")
    assert got == [utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]


def test_2000_was_a_leap_year() -> None:
    assert parse_schedule("0 0 29 2 *").next_after(utc(1999, 3, 1)) == utc(2000, 2, 29)


def test_every_with_microseconds_near_the_supported_end_is_exact() -> None:
    # 2.5e11 seconds and a microsecond do not fit a float: the count must stay in integers.
    after = utc(9989, 12, 31, 23, 59, 59, 999999)
    assert parse_schedule("@every 1s").next_after(after) == utc(9990, 1, 1)


class _NoOffset(tzinfo):
    """A tzinfo that knows no offset: such a datetime is naive in all but name."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_a_tzinfo_without_an_offset_counts_as_naive() -> None:
    unknown = datetime(2026, 1, 1, tzinfo=_NoOffset())
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("@hourly").next_after(unknown)
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_id(unknown)


@pytest.fixture
def host_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's own zone (TZ) set to Asia/Tokyo for the test."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("host_in_tokyo")
def test_the_host_zone_changes_nothing() -> None:
    """S3 needs every replica to name a slot alike, whatever zone its host is set to."""
    berlin = ZoneInfo("Europe/Berlin")
    assert slot_id(datetime(2026, 1, 1, 1, tzinfo=berlin)) == "20260101T000000Z"
    got = fires("30 * * * *", utc(2026, 10, 25, 0), 2, "Europe/Berlin")
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]
    assert all(t.tzinfo is UTC for t in got)


def test_utc_needs_no_zone_database() -> None:
    assert parse_schedule("@daily", "utc").zone is UTC


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "minute field '61': 61 is out of range; values must be 0-59"),
        (
            "30-10 * * * *",
            "minute field '30-10': range '30-10' is reversed; write the low end first",
        ),
        (
            "0 0 * * SAT-SUN",
            "day-of-week field 'SAT-SUN': range 'SAT-SUN' is reversed; write the low end first "
            "(for a range ending on Sunday use 7, e.g. 5-7)",
        ),
        (
            "0 0 * * FOO-MON",
            "day-of-week field 'FOO-MON': unknown name 'FOO'; values must be 0-7 "
            "(0 and 7 are Sunday) or SUN-SAT",
        ),
        (
            "",
            "empty schedule: write 5 cron fields like '*/5 * * * *' or a macro like @hourly or "
            "'@every 5m'",
        ),
        ("@every", "@every needs a duration, like '@every 5m' or '@every 1h30m'"),
        ("TZ= 0 9 * * *", "TZ= prefix has no zone; write it like TZ=Europe/Berlin 0 3 * * *"),
    ],
)
def test_whole_error_messages(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expr)
    assert str(caught.value) == message


def test_infinite_jitter_message() -> None:
    with pytest.raises(ValueError, match=r"^jitter must be a finite number of seconds$"):
        slot_jitter("cleanup", utc(2026, 1, 1), float("inf"))
