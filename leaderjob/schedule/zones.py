"""Time zones: zone names, and the UTC instants a local wall time fires at across DST changes.

This module owns the daylight-saving rules of the package docstring as code: a wall time inside a
spring-forward gap fires at the first instant after the gap; a repeated wall time fires at its
first occurrence, and also at its second when the schedule repeats. It also reads the times a
user types (``--after``): without an offset they are wall times of a zone. It knows nothing of
cron fields. Pure: no I/O, and the clock only as ``parse_instant``'s "now" when no time is given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from leaderjob.schedule.errors import ScheduleError


def load_zone(name: str) -> tuple[str, tzinfo]:
    """The zone's name as the zone database spells it, and the zone. Names are matched
    case-insensitively (`utc`, `europe/berlin`)."""
    if name.upper() == "UTC":
        return "UTC", UTC  # works even without tzdata
    try:
        return name, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: malformed keys like '' or '../x'; OSError: directories like 'America'.
        pass
    # No two zone names differ only in case, so at most one matches.
    for known in available_timezones():
        if known.lower() == name.lower():
            return known, ZoneInfo(known)
    raise ScheduleError(f"unknown time zone {name!r}: use an IANA name like Europe/Berlin")


def parse_instant(text: str | None, zone: tzinfo) -> datetime:
    """An ISO 8601 time given by a user (``--after``), aware; now if ``text`` is None. A time
    without an offset is a wall time of ``zone``. Raises ValueError with a line to show."""
    if text is None:
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r}: not an ISO 8601 time, e.g. 2026-03-29T00:00:00+01:00"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=zone)


def offset(moment: datetime) -> timedelta:
    """The UTC offset of an aware datetime."""
    value = moment.utcoffset()
    assert value is not None, moment  # aware: made by astimezone
    return value


def instants(wall: datetime, zone: tzinfo, repeats: bool) -> tuple[datetime, datetime]:
    """The UTC instants a local wall time fires at, (first, last): its first occurrence (or the
    end of the gap that swallows it), and, when ``repeats``, its second occurrence if the wall
    time happens twice; otherwise last == first."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # fold=0: first of a repeated time
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        end = gap_end(wall, zone)
        return end, end
    if not repeats:
        return first, first
    return first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # fold=1: the second


def gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """First valid instant after the spring-forward gap that swallows ``wall``.

    Read with the offsets before and after the transition, ``wall`` gives two instants that
    straddle it; bisect between them on whole seconds (tz transitions are on whole seconds).
    """
    a = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    b = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    lo, hi = min(a, b), max(a, b)
    before = datetime.fromtimestamp(lo, zone).utcoffset()
    # Invariant: lo is before the transition (old offset), hi is at or after it.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)
