"""Properties of the schedule, searched by Hypothesis over generated expressions, zones and times.

* every expression that parses has a next fire time (within the search horizon), and parsing or
  asking never raises anything but ScheduleError;
* fire times are strictly increasing;
* in zones without a clock change in the window, the fire times equal those of an independent
  implementation (cronsim, Vixie/Debian-compatible) once the day fields are rewritten to mean the
  same under both day rules (leaderjob decides wildcards as robfig/cron does, see to_vixie);
* across real clock changes, the fire times equal the documented DST rules applied literally to
  the wall times cronsim matches (a wall time in a gap fires once at the gap's end; a repeated
  wall time fires in its first pass, and in its second too when the hour field has several hours).

Derandomized, with no example database and fixed example counts, so the run is the same every
time and takes a few seconds; docs/testing.md says how to search further.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leaderjob.schedule import SUPPORTED_UNTIL, Schedule, ScheduleError, parse_schedule

# LEADERJOB_HYPOTHESIS_SCALE=50 (and derandomize off, see docs/testing.md) searches further.
SCALE = int(os.environ.get("LEADERJOB_HYPOTHESIS_SCALE", "1"))
SETTINGS = settings(
    derandomize=os.environ.get("LEADERJOB_HYPOTHESIS_RANDOM") is None,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
HORIZON = timedelta(days=366 * 8 + 1)
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

# --- generated expressions ------------------------------------------------------------------------


def field(
    low: int, high: int, names: tuple[str, ...] = (), question: bool = False
) -> st.SearchStrategy[str]:
    numbers = st.integers(low, high).map(str) | st.sampled_from((str(low), str(high)))
    value = (
        numbers | st.sampled_from(names) | st.sampled_from(names).map(str.lower)
        if names
        else numbers
    )
    star = st.sampled_from(("*", "?")) if question else st.just("*")
    step = st.integers(1, high - low + 2).map(str) | st.sampled_from(("0", "01"))
    item = st.one_of(
        star,
        st.builds("{}/{}".format, star, step),
        value,
        st.builds("{}-{}".format, value, value),
        st.builds("{}-{}/{}".format, value, value, step),
        st.builds("{}/{}".format, value, step),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


CRON = st.builds(
    "{} {} {} {} {}".format,
    field(0, 59),
    field(0, 23),
    field(1, 31, question=True),
    field(1, 12, MONTHS),
    field(0, 7, DAYS, question=True),
)
# Mostly few-valued fields, so that rare days and DST-sensitive hours come up often.
SIMPLE_CRON = st.builds(
    "{} {} {} {} {}".format,
    st.sampled_from(("0", "30", "*/15", "*/20", "45", "0,30", "*", "5-10", "59")),
    st.sampled_from(("*", "2", "1", "0", "1-3", "*/2", "0-3", "2,3", "23", "1/2", "0,2")),
    st.sampled_from(("*", "?", "1", "13", "29", "31", "*/10", "1-7", "*/1", "15,*")),
    st.sampled_from(("*", "2", "2,3", "10,11", "FEB", "3-4", "*/6", "10-12", "1/5")),
    st.sampled_from(("*", "?", "0", "7", "MON-FRI", "SUN", "*/2", "5/1", "1,*", "6-7", "7/2")),
)
# Every day of every month, mostly: what fires on the night of a clock change.
NIGHTLY_CRON = st.builds(
    "{} {} {} * {}".format,
    st.sampled_from(("0", "30", "*/15", "*/20", "45", "0,30", "*", "5-10", "59", "*/7")),
    st.sampled_from(("*", "2", "1", "0", "1-3", "*/2", "0-3", "2,3", "23", "1/2", "0,2", "0-5")),
    st.sampled_from(("*", "?", "*/1")),
    st.sampled_from(("*", "?", "*/1", "SUN", "0,6", "SAT")),
)
EXPRESSIONS = st.one_of(
    CRON,
    SIMPLE_CRON,
    st.sampled_from(sorted(MACROS)),
    st.builds("@every {}s".format, st.integers(0, 10**9)),
    st.builds("@every {}d".format, st.integers(1, 4000)),
)
ALL_ZONES = st.sampled_from(
    (
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Antarctica/Troll",
        "Asia/Tokyo",
        "Pacific/Chatham",
    )
)
INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=SUPPORTED_UNTIL.replace(tzinfo=None)
).map(lambda d: d.replace(tzinfo=UTC))


def parsed(expr: str, zone: str = "UTC") -> Schedule:
    try:
        return parse_schedule(expr, zone)
    except ScheduleError:
        assume(False)  # a rejected expression: only ScheduleError may say so
        raise


# --- every expression that parses fires, in increasing order -----------------------------------


@settings(SETTINGS, max_examples=150 * SCALE)
@given(EXPRESSIONS, ALL_ZONES, INSTANTS)
def test_every_expression_that_parses_fires_in_increasing_order(
    expr: str, zone: str, after: datetime
) -> None:
    """A parsed schedule never crashes the replica that leads (S3's claim needs a slot to claim):
    next_after answers within the horizon, strictly after `after`, and chained answers increase."""
    schedule = parsed(expr, zone)
    t = after
    for _ in range(4):
        nxt = schedule.next_after(t)
        assert nxt.tzinfo is UTC and nxt.microsecond == 0
        assert t < nxt <= t + HORIZON
        if t < SUPPORTED_UNTIL - HORIZON:
            t = nxt
        else:
            break


# --- equal to the oracle where no clock changes ----------------------------------------------


def robfig_wildcard(text: str) -> bool:
    """robfig/cron: a day field is a wildcard if an item is `*` or `?`, with no step or step 1."""
    for item in text.split(","):
        base, _, step = item.partition("/")
        if base in ("*", "?") and (not step or int(step) == 1):
            return True
    return False


def number(text: str) -> int:
    upper = text.upper()
    if upper in MONTHS:
        return MONTHS.index(upper) + 1
    return DAYS.index(upper) if upper in DAYS else int(text)


def one_value_ranges(text: str) -> str:
    """cronsim reads a stepped one-value range `5-5/2` as `5/2` (5 to the end); it is just 5."""
    items = []
    for item in text.split(","):
        base, slash, _ = item.partition("/")
        low, dash, high = base.partition("-")
        items.append(low if slash and dash and number(low) == number(high) else item)
    return ",".join(items)


def to_vixie(expr: str) -> str:
    """The same schedule for cronsim, which follows Vixie cron: there a day field starting with
    `*` is a wildcard, and a day-of-week `a/n` runs to 7. Rewrite so both read the same sets."""
    minute, hour, dom, month, dow = (one_value_ranges(f) for f in expr.split())
    fields = []
    for text, low, high in ((dom, 1, 31), (dow, 0, 6)):
        if robfig_wildcard(text):
            fields.append("*")
            continue
        items = []
        for item in text.split(","):
            base, slash, step = item.partition("/")
            if base in ("*", "?"):
                base = f"{low}-{high}"  # a stepped star restricts under robfig's rule
            elif slash and "-" not in base:
                base = f"{base}-{high}"  # `a/n`: from a to the end of the field (6 for weekdays)
            items.append(f"{base}{slash}{step}")
        fields.append(",".join(items))
    return " ".join((minute, hour, fields[0], month, fields[1]))


def oracle(expr: str, zone: str, after: datetime, count: int) -> list[datetime] | None:
    try:
        it = CronSim(to_vixie(MACROS.get(expr, expr)), after.astimezone(ZoneInfo(zone)))
        return [next(it).astimezone(UTC) for _ in range(count)]
    except (CronSimError, StopIteration):
        return None  # cronsim rejects it, or finds nothing within its own 50-year limit


def chain(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    out = []
    for _ in range(count):
        after = schedule.next_after(after)
        out.append(after)
    return out


FIXED_ZONES = st.sampled_from(("UTC", "Asia/Tokyo", "Asia/Kolkata", "Etc/GMT+5", "Etc/GMT-14"))
MODERN = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(SETTINGS, max_examples=150 * SCALE)
@given(st.one_of(CRON, SIMPLE_CRON, st.sampled_from(sorted(MACROS))), FIXED_ZONES, MODERN)
def test_equal_to_the_oracle_where_the_clock_does_not_change(
    expr: str, zone: str, after: datetime
) -> None:
    schedule = parsed(expr, zone)
    expected = oracle(expr, zone, after, 6)
    assume(expected is not None)
    assert chain(schedule, after, 6) == expected


# --- across real clock changes: the documented rules ----------------------------------------


DST_ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute change
    "America/Santiago",  # changes at midnight
    "America/Havana",  # changes at midnight and 01:00
    "Antarctica/Troll",  # a 2-hour change
    "Pacific/Chatham",  # +12:45 / +13:45
)


@functools.cache
def transitions(zone: str) -> tuple[datetime, ...]:
    """The instants (UTC, whole seconds) at which the zone's offset changed in 2020-2030."""
    tz = ZoneInfo(zone)
    found = []
    day = datetime(2020, 1, 1, tzinfo=UTC)
    while day.year < 2031:
        nxt = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = day, nxt  # bisect: offset(lo) is the old one, offset(hi) the new
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(microsecond=0))
        day = nxt
    return tuple(found)


def walls(expr: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """The naive wall times in (start, end] that the fields match: cronsim without a zone."""
    for wall in CronSim(expr, start):
        if wall > end:
            return
        yield wall


def gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant whose local time is later than a wall time that does not exist."""
    t = min(wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    while t.astimezone(tz).replace(tzinfo=None) < wall:
        t += timedelta(minutes=1)
    return t


def documented_fires(expr: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    vixie = to_vixie(MACROS.get(expr, expr))
    tz = ZoneInfo(zone)
    repeats = len(CronSim(vixie, datetime(2000, 1, 1)).hours) > 1
    margin = timedelta(hours=4)
    first_wall = (start - margin).astimezone(tz).replace(tzinfo=None)
    last_wall = (end + margin).astimezone(tz).replace(tzinfo=None)
    out = set()
    for wall in walls(vixie, first_wall, last_wall):
        first = wall.replace(tzinfo=tz, fold=0)
        if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
            out.add(gap_end(wall, tz))  # in a spring-forward gap
            continue
        out.add(first.astimezone(UTC))
        if repeats:
            out.add(wall.replace(tzinfo=tz, fold=1).astimezone(UTC))  # == first unless repeated
    return sorted(t for t in out if start < t <= end)


@settings(SETTINGS, max_examples=100 * SCALE)
@given(
    st.one_of(NIGHTLY_CRON, SIMPLE_CRON, CRON, st.sampled_from(sorted(MACROS))),
    st.sampled_from(DST_ZONES),
    st.integers(0, 10**6),
    st.integers(-6 * 3600, 3 * 3600),
)
def test_across_clock_changes_the_documented_rules_hold(
    expr: str, zone: str, pick: int, offset: int
) -> None:
    schedule = parsed(expr, zone)
    changes = transitions(zone)
    start = changes[pick % len(changes)] + timedelta(seconds=offset)
    end = start + timedelta(hours=8)
    try:
        expected = documented_fires(expr, zone, start, end)
    except CronSimError:
        assume(False)
        raise
    got = []
    t = schedule.next_after(start)
    while t <= end:
        got.append(t)
        t = schedule.next_after(t)
    assert got == expected
