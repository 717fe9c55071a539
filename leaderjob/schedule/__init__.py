"""Fire-time math: when does a schedule fire next, and how is one firing named.

This package owns cron expressions (5 fields, macros, ``@every``), their time zone, the
daylight-saving rules, slot ids and per-slot jitter. It is pure: it knows nothing about etcd,
processes, logging or the clock. Callers pass ``now`` in; every replica that asks the same question
gets the same answer, which is what lets replicas agree on a slot without talking to each other.

The package's modules, one idea each: ``fields`` (one cron field's syntax), ``cron`` (five fields
and the day rule into matching wall times), ``every`` (``@every``), ``zones`` (zone names, the
DST rules below, user-typed times), ``slots`` (slot ids and jitter). This module holds the
``Schedule`` that combines them and the search for the next fire time; import from here.

Time-zone rules (cron fields are evaluated in the zone's local wall time):

* A local fire time inside a spring-forward gap does not exist; it fires once, at the first valid
  instant after the gap. Several fire times in one gap collapse into that single firing.
* A local fire time inside a fall-back repeated hour fires at its first occurrence (fold=0). It
  fires again at its second occurrence (fold=1) only if the hour field matches more than one hour
  (``*``, ``*/2``, ``1-3``, ``@hourly``): such a schedule keeps its real interval through the
  repeat. A schedule with a single hour (``30 2 * * *``, ``*/15 2 * * *``) fires once per wall time.
* ``@every`` intervals are absolute time anchored to the Unix epoch; zones and DST do not apply.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, datetime, timedelta, tzinfo

from leaderjob.schedule.cron import MACRO_HINT, MACROS, Cron, parse_cron
from leaderjob.schedule.errors import ScheduleError
from leaderjob.schedule.every import Every, parse_every
from leaderjob.schedule.slots import slot_id, slot_jitter
from leaderjob.schedule.zones import instants, load_zone, offset, parse_instant

__all__ = [
    "SUPPORTED_UNTIL",
    "Schedule",
    "ScheduleError",
    "parse_instant",
    "parse_schedule",
    "slot_id",
    "slot_jitter",
]

# How far ahead next_after looks. A leap-day schedule can wait 8 years (2096-02-29 → 2104-02-29,
# as 2100 is not a leap year); impossible day/month combos are rejected at parse time, so running
# out of horizon means an `after` near year 9999. The longest @every is bounded by it too.
_SEARCH_YEARS = 8
# Every schedule that parses has a fire time within the horizon after any `after` before this
# instant; next_after raises ScheduleError only past it (the calendar ends with year 9999).
SUPPORTED_UNTIL = datetime(MAXYEAR - _SEARCH_YEARS - 1, 1, 1, tzinfo=UTC)
# interval() samples this many fire times after a fixed reference, so the answer never depends on
# when it is asked.
_INTERVAL_SAMPLES = 50
_INTERVAL_REFERENCE = datetime(2001, 1, 1)  # a Monday; naive local wall time
_PREFIX = re.compile(r"(CRON_TZ|TZ)=(\S*)\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. Build it with :func:`parse_schedule` (which also reads CRON_TZ=)."""

    expr: str  # as given, without any CRON_TZ=/TZ= prefix
    timezone: str  # IANA name actually used (as the zone database spells it, e.g. `utc` -> UTC)
    _plan: Cron | Every = field(init=False, repr=False, compare=False)
    _zone: tzinfo = field(init=False, repr=False, compare=False)
    _interval: timedelta | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the derived fields are set once here, and the schedule validates itself.
        name, zone = load_zone(self.timezone)
        object.__setattr__(self, "timezone", name)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_plan", _parse_expr(self.expr))

    @property
    def zone(self) -> tzinfo:
        """The time zone cron fields are evaluated in."""
        return self._zone

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after``: aware UTC, microsecond 0.

        Every schedule that parses has one for any ``after`` before :data:`SUPPORTED_UNTIL`;
        past it, a fire time beyond the year 9999 raises ScheduleError (never another error).
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError(f"next_after needs a timezone-aware datetime, got naive {after!r}")
        try:
            if isinstance(self._plan, Every):
                return self._plan.next_after(after)
            return self._next_cron(self._plan, after)
        except OverflowError:
            raise self._exhausted(after) from None

    def interval(self) -> timedelta:
        """The typical gap between fire times (used for defaults like a starting deadline).

        For ``@every`` the interval itself. For cron, the smallest gap between consecutive fire
        times among the first 50 after a fixed reference date, measured in local wall time so a
        DST shift does not make a daily job look 23 hours apart.

        Worked out once per schedule: the daemon asks for it at every pass over a job (its
        starting deadline), and fifty fire times of a monthly cron take about a millisecond.
        """
        interval = self._interval
        if interval is None:
            interval = self._first_interval()
            object.__setattr__(self, "_interval", interval)
        return interval

    def _first_interval(self) -> timedelta:
        if isinstance(self._plan, Every):
            return timedelta(seconds=self._plan.seconds)
        walls: list[datetime] = []
        stop = _INTERVAL_REFERENCE.year + _SEARCH_YEARS * _INTERVAL_SAMPLES
        for wall in self._plan.walls_from(_INTERVAL_REFERENCE, stop):
            walls.append(wall)
            if len(walls) == _INTERVAL_SAMPLES:
                break
        return min(b - a for a, b in itertools.pairwise(walls))

    def _next_cron(self, plan: Cron, after: datetime) -> datetime:
        # A wall time fires at `first` (its first occurrence, or the end of the gap that swallows
        # it) and, for a schedule that repeats, also at `last` (its second occurrence; equal to
        # `first` unless the wall time is repeated). Both maps are monotonic non-decreasing in
        # the wall time, so the answer is the smaller of: the first `first` strictly after
        # `after`, and the first `last` strictly after it. Walls are visited in increasing order
        # from a start whose instants are all at most `after` (walls_from drops the earlier ones
        # of the start's own hour); collapsed gap times are skipped because their shared instant
        # is not strictly after the firing that already happened.
        local = after.astimezone(self._zone)
        start = local.replace(tzinfo=None)
        if plan.repeats:
            # In the first pass of a repeated time, wall times just before `after` come round
            # again: start from `after` as the second pass reads it (elsewhere the same wall).
            start -= offset(local) - offset(local.replace(fold=1))
        stop_year = min(start.year + _SEARCH_YEARS, MAXYEAR)
        repeat: datetime | None = None  # the first second occurrence after `after`
        for wall in plan.walls_from(start, stop_year):
            first, last = instants(wall, self._zone, plan.repeats)
            if first > after:
                return first if repeat is None else min(first, repeat)
            if repeat is None and last > after:
                repeat = last
        raise self._exhausted(after)

    def _exhausted(self, after: datetime) -> ScheduleError:
        # Only reachable for `after` past SUPPORTED_UNTIL: parsing rejects schedules that never
        # fire, and every other one fires within the search horizon.
        return ScheduleError(
            f"{self.expr!r} has no fire time after {after.isoformat()} before the end of the "
            f"year {MAXYEAR}"
        )


def parse_schedule(expr: str, timezone: str = "UTC") -> Schedule:
    """Parse ``expr`` (5-field cron, a macro or ``@every``), optionally prefixed by CRON_TZ=/TZ=."""
    text = expr.strip()
    prefix = _PREFIX.fullmatch(text)
    if prefix is None:
        return Schedule(text, timezone)
    key, zone, rest = prefix.groups()
    if not zone:
        example = f"{key}=Europe/Berlin 0 3 * * *"
        raise ScheduleError(f"{key}= prefix has no zone; write it like {example}")
    if not rest:
        raise ScheduleError(f"nothing after the {key}={zone} prefix; add a cron expression")
    # The default UTC means "not given"; names compare as the zone database spells them.
    if load_zone(timezone)[0] not in ("UTC", load_zone(zone)[0]):
        raise ScheduleError(
            f"time zone given twice: {key}={zone} in the expression and {timezone!r} as the time "
            f"zone; give the zone once"
        )
    return Schedule(rest, zone)


def _parse_expr(expr: str) -> Cron | Every:
    words = expr.split()
    if not words:
        raise ScheduleError(
            "empty schedule: write 5 cron fields like '*/5 * * * *' or a macro like @hourly "
            "or '@every 5m'"
        )
    if "=" in words[0]:
        raise ScheduleError(
            f"unexpected {words[0]!r} before the expression: the only prefixes are "
            f"CRON_TZ=<zone> and TZ=<zone>, read by parse_schedule"
        )
    head = words[0].lower()
    if head == "@every":
        return parse_every(words[1:], _SEARCH_YEARS)
    if head.startswith("@"):
        if head not in MACROS:
            raise ScheduleError(f"unknown macro {words[0]!r}: use {MACRO_HINT}")
        if len(words) > 1:
            raise ScheduleError(f"macro {words[0]!r} takes nothing after it, got {expr!r}")
        return parse_cron(MACROS[head].split())
    if len(words) != 5:
        raise ScheduleError(
            f"found {len(words)} fields in {expr!r} but 5 are expected "
            f"(minute hour day-of-month month day-of-week); or use {MACRO_HINT}"
        )
    return parse_cron(words)
