"""The daylight-saving rules for every shape of schedule, in Europe/Berlin and America/New_York.

The rules (docs/scheduling.md, "Time zones and DST"):

* spring forward: a wall time in the gap fires once, at the first instant after it;
* fall back: a schedule whose hour field matches more than one hour (`*`, `*/2`, `1-3`, @hourly)
  keeps its real interval through the repeated hour, firing in both passes; a schedule with a
  single hour (`30 2 * * *`) fires once, in the first pass.

Transitions used: Berlin 2026-03-29 01:00Z (02:00 CET -> 03:00 CEST) and 2026-10-25 01:00Z
(03:00 CEST -> 02:00 CET); New York 2026-03-08 07:00Z (02:00 EST -> 03:00 EDT) and 2026-11-01
06:00Z (02:00 EDT -> 01:00 EST); Berlin 2027-10-31 01:00Z.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from leaderjob.schedule import parse_schedule, slot_id

TRANSITIONS = [
    ("Europe/Berlin", datetime(2026, 3, 29, 1, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 10, 25, 1, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2027, 10, 31, 1, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 8, 7, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 6, tzinfo=UTC)),
]
IDS = [f"{zone}-{at:%Y-%m-%d}" for zone, at in TRANSITIONS]


def fires_between(expr: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    schedule = parse_schedule(expr, zone)
    out: list[datetime] = []
    t = schedule.next_after(start)
    while t <= end:
        out.append(t)
        t = schedule.next_after(t)
    return out


@pytest.mark.parametrize(("zone", "transition"), TRANSITIONS, ids=IDS)
@pytest.mark.parametrize(
    ("expr", "interval"),
    [
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 * * * *", timedelta(hours=1)),
        ("@hourly", timedelta(hours=1)),
        ("*/30 1-3 * * *", timedelta(minutes=30)),
    ],
)
def test_multi_hour_schedules_have_no_gap_longer_than_their_interval(
    zone: str, transition: datetime, expr: str, interval: timedelta
) -> None:
    """No lost runs at a clock change (L3: every slot of the schedule runs): within one night's
    run of fire times, consecutive firings are never further apart than the interval."""
    six_hours = timedelta(hours=6)
    got = fires_between(expr, zone, transition - six_hours, transition + six_hours)
    assert len(got) >= 2
    for a, b in pairwise(got):
        assert timedelta(0) < b - a <= interval, (a, b)
    if expr == "*/30 1-3 * * *":
        # 01:00..03:30 wall is 6 firings; the repeated hour adds 2, the spring gap removes 2.
        assert len(got) == (8 if transition.month in (10, 11) else 4)


@pytest.mark.parametrize(("zone", "transition"), TRANSITIONS, ids=IDS)
@pytest.mark.parametrize("expr", ["30 2 * * *", "30 1 * * *", "0 2 * * *", "*/15 1 * * *"])
def test_a_fixed_hour_fires_once_per_wall_time(zone: str, transition: datetime, expr: str) -> None:
    """Never the same job twice for one local time (S3 at the schedule level): a schedule with a
    single hour fires each wall time at most once through the clock change, and no day loses it."""
    got = fires_between(expr, zone, transition - timedelta(days=2), transition + timedelta(days=2))
    tz = parse_schedule(expr, zone).zone
    walls = [t.astimezone(tz).replace(tzinfo=None, fold=0) for t in got]
    assert len(set(walls)) == len(walls), walls  # no wall time twice
    days = sorted({w.date() for w in walls})
    assert len(days) >= 3 and all((b - a).days == 1 for a, b in pairwise(days))  # no day lost
    per_day = {day: sum(w.date() == day for w in walls) for day in days[1:-1]}
    # Four quarters a day; on the spring day, quarters in the gap collapse into one firing.
    expected = 4 if expr.startswith("*/15") else 1
    assert all(n == expected or (transition.month == 3 and n == 1) for n in per_day.values())


@pytest.mark.parametrize(
    ("zone", "expr", "after", "expected"),
    [
        # Berlin 02:30 happens at 00:30Z (CEST) and 01:30Z (CET); the fixed hour fires once.
        (
            "Europe/Berlin",
            "30 2 * * *",
            datetime(2026, 10, 24, 12, tzinfo=UTC),
            ["20261025T003000Z", "20261026T013000Z"],
        ),
        # A wildcard hour fires both 02:30s: two slots, two distinct ids (UTC fire times).
        (
            "Europe/Berlin",
            "30 * * * *",
            datetime(2026, 10, 25, 0, tzinfo=UTC),
            ["20261025T003000Z", "20261025T013000Z"],
        ),
        (
            "America/New_York",
            "30 * * * *",
            datetime(2026, 11, 1, 5, tzinfo=UTC),
            ["20261101T053000Z", "20261101T063000Z"],
        ),
    ],
)
def test_slot_ids_stay_unique_for_the_two_passes_of_a_repeated_wall_time(
    zone: str, expr: str, after: datetime, expected: list[str]
) -> None:
    """S3 (a slot runs at most once) relies on one slot id per instant: the two 02:30s of a
    repeated hour are two slots with different ids, because ids are built from the UTC time."""
    schedule = parse_schedule(expr, zone)
    first = schedule.next_after(after)
    second = schedule.next_after(first)
    assert [slot_id(first), slot_id(second)] == expected
    assert first.astimezone(schedule.zone).replace(tzinfo=None) == second.astimezone(
        schedule.zone
    ).replace(tzinfo=None) or expr == "30 2 * * *"


def test_the_worked_example_of_the_docs() -> None:
    """docs/scheduling.md: `*/15 * * * *` in Berlin on 2027-10-31: 02:45 CEST, then 02:00 CET."""
    got = fires_between(
        "*/15 * * * *",
        "Europe/Berlin",
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
        datetime(2027, 10, 31, 1, 15, tzinfo=UTC),
    )
    berlin = parse_schedule("@daily", "Europe/Berlin").zone
    assert [f"{t.astimezone(berlin):%H:%M %Z}" for t in got] == [
        "02:45 CEST",
        "02:00 CET",
        "02:15 CET",
    ]


def spring_transitions(zone: str, years: range) -> list[tuple[datetime, timedelta]]:
    """(instant, gap length) of each clock change forward, found by bisecting the offset."""
    tz = ZoneInfo(zone)
    found = []
    day = datetime(years.start, 1, 1, tzinfo=UTC)
    while day.year < years.stop:
        nxt = day + timedelta(days=1)
        before, after = day.astimezone(tz).utcoffset(), nxt.astimezone(tz).utcoffset()
        if before is not None and after is not None and after > before:
            lo, hi = day, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if mid.astimezone(tz).utcoffset() == before else (lo, mid)
            found.append((hi.replace(microsecond=0), after - before))
        day = nxt
    return found


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Antarctica/Troll",
        "America/Havana",
        "America/Santiago",
    ],
)
def test_every_time_in_a_gap_fires_at_the_instant_of_the_change(zone: str) -> None:
    """Spring forward, every minute of every gap in 2020-2029: the firing is at the change itself,
    on the whole second, for 30-minute, 1-hour and 2-hour gaps alike."""
    tz = ZoneInfo(zone)
    for change, length in spring_transitions(zone, range(2020, 2030)):
        gap_start = (change - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
        gap_start += timedelta(seconds=1)
        for minute in range(int(length / timedelta(minutes=1))):
            wall = gap_start + timedelta(minutes=minute)
            expr = f"{wall.minute} {wall.hour} {wall.day} {wall.month} *"
            schedule = parse_schedule(expr, zone)
            assert schedule.next_after(change - timedelta(hours=3)) == change, (zone, wall)
