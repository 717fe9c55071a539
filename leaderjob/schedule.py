"""Fire-time math: when does a schedule fire next, and how is one firing named.

This module owns cron expressions (5 fields, macros, ``@every``), their time zone, the
daylight-saving rules, slot ids and per-slot jitter. It is pure: it knows nothing about etcd,
processes, logging or the clock. Callers pass ``now`` in; every replica that asks the same question
gets the same answer, which is what lets replicas agree on a slot without talking to each other.

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

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from leaderjob.units import DurationError, parse_duration

__all__ = [
    "SUPPORTED_UNTIL",
    "Schedule",
    "ScheduleError",
    "parse_schedule",
    "slot_id",
    "slot_jitter",
]

# How far ahead next_after looks. A leap-day schedule can wait 8 years (2096-02-29 → 2104-02-29,
# as 2100 is not a leap year); impossible day/month combos are rejected at parse time, so running
# out of horizon means an `after` near year 9999.
_SEARCH_YEARS = 8
# Every schedule that parses has a fire time within the horizon after any `after` before this
# instant; next_after raises ScheduleError only past it (the calendar ends with year 9999).
SUPPORTED_UNTIL = datetime(MAXYEAR - _SEARCH_YEARS - 1, 1, 1, tzinfo=UTC)
# The longest @every: one interval must fit in the search horizon.
_MAX_EVERY = timedelta(days=365 * _SEARCH_YEARS)
# interval() samples this many fire times after a fixed reference, so the answer never depends on
# when it is asked.
_INTERVAL_SAMPLES = 50
_INTERVAL_REFERENCE = datetime(2001, 1, 1)  # a Monday; naive local wall time
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MACRO_HINT = (
    "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>"
)
_PREFIX = re.compile(r"(CRON_TZ|TZ)=(\S*)\s*(.*)", re.DOTALL)
_DIGITS = re.compile(r"[0-9]+")
# Longest month length per month, Feb counted as 29: used to reject never-firing day/month combos.
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the bad part and what to write instead."""


# --- parsing one cron field ------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    # Upper end used by `*` and `a/n`; differs from `high` only for day-of-week, where 7 is merely
    # an alias of 0 (Sunday) and must not be produced twice by a wildcard.
    wild_high: int
    names: tuple[str, ...] = ()  # names[i] has the value low + i
    hint: str = ""
    # `?` means `*` in the day fields (robfig/cron and Kubernetes accept it there).
    question_mark: bool = False

    def allowed(self) -> str:
        named = f" or {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"values must be {self.low}-{self.high}{self.hint}{named}"

    def error(self, text: str, problem: str) -> ScheduleError:
        return ScheduleError(f"{self.name} field {text!r}: {problem}")

    def parse(self, text: str) -> frozenset[int]:
        values: set[int] = set()
        for part in text.split(","):
            if not part:
                raise self.error(
                    text, f"empty list item; separate values with single commas, {self.allowed()}"
                )
            values.update(self._part(part, text))
        return frozenset(values)

    def is_wildcard(self, text: str) -> bool:
        """Whether the field counts as unrestricted for the day-of-month/day-of-week rule.

        As robfig/cron (and so Kubernetes) decides: some list item is `*` (or `?`) with no step
        or a step of 1. So `*/1` and `1,*` are wildcards, `*/2` is not. Call after parse().
        """
        for part in text.split(","):
            base, slash, step_text = part.partition("/")
            if self._is_star(base) and (not slash or int(step_text) == 1):
                return True
        return False

    def _is_star(self, base: str) -> bool:
        return base == "*" or (self.question_mark and base == "?")

    def _part(self, part: str, text: str) -> range:
        base, slash, step_text = part.partition("/")
        step = self._step(step_text, text) if slash else 1
        if self._is_star(base):
            return range(self.low, self.wild_high + 1, step)
        if "-" in base:
            return self._range(base, text, step)
        first = self._value(base, text)
        if not slash:
            return range(first, first + 1)
        # `a/n` means "from a to the end of the field, every n" (Vixie cron, robfig/cron). For
        # day-of-week the end is 6, so `7/n` (Sunday written as 7) would match no day at all.
        if first > self.wild_high:
            raise self.error(
                text,
                f"{part!r} starts after the field's last value {self.wild_high} and matches "
                f"nothing; start from {self.low}, like {self.low}/{step}",
            )
        return range(first, self.wild_high + 1, step)

    def _range(self, base: str, text: str, step: int) -> range:
        low_text, _, high_text = base.partition("-")
        if not low_text or "-" in high_text:
            raise self.error(text, f"cannot read range {base!r}; write it like 1-5")
        low, high = self._value(low_text, text), self._value(high_text, text)
        if low > high:
            wrap = " (for a range ending on Sunday use 7, e.g. 5-7)" if self is _DOW else ""
            raise self.error(text, f"range {base!r} is reversed; write the low end first{wrap}")
        return range(low, high + 1, step)

    def _step(self, step_text: str, text: str) -> int:
        if not _DIGITS.fullmatch(step_text):
            raise self.error(text, f"step {step_text!r} is not a number; write it like */5")
        step = int(step_text)
        if step == 0:
            raise self.error(text, "step 0 never advances; use a step of 1 or more, like */5")
        return step

    def _value(self, token: str, text: str) -> int:
        if _DIGITS.fullmatch(token):
            value = int(token)
        elif token.upper() in self.names:
            return self.low + self.names.index(token.upper())
        elif self.names:
            raise self.error(text, f"unknown name {token!r}; {self.allowed()}")
        else:
            raise self.error(text, f"{token!r} is not a number; {self.allowed()}")
        if not self.low <= value <= self.high:
            raise self.error(text, f"{value} is out of range; {self.allowed()}")
        return value


_MINUTE = _FieldSpec("minute", 0, 59, 59)
_HOUR = _FieldSpec("hour", 0, 23, 23)
_DOM = _FieldSpec("day-of-month", 1, 31, 31, question_mark=True)
_MONTH = _FieldSpec(
    "month",
    1,
    12,
    12,
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
)
_DOW = _FieldSpec(
    "day-of-week",
    0,
    7,
    6,
    ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"),
    " (0 and 7 are Sunday)",
    question_mark=True,
)


# --- the two kinds of plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Cron:
    """Five parsed fields. Iteration is in naive local wall time of the schedule's zone."""

    minutes: tuple[int, ...]  # sorted
    hours: tuple[int, ...]  # sorted
    days: frozenset[int]
    months: tuple[int, ...]  # sorted
    weekdays: frozenset[int]  # 0 = Sunday; 7 already folded into 0
    # Classic cron day rule, as robfig/cron (and so Kubernetes) applies it: when BOTH
    # day-of-month and day-of-week are restricted (neither is a wildcard, see is_wildcard), a day
    # matches if EITHER matches; otherwise both must (so the wildcard one matches every day).
    # `0 0 13 * 5` is "the 13th and every Friday", not "Friday the 13th".
    either_day: bool
    # The hour field matches more than one hour: such a schedule keeps its interval through a
    # fall-back repeat, firing in both passes of a repeated wall time (see the module docstring).
    repeats: bool

    def day_matches(self, day: date) -> bool:
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.either_day else (dom and dow)

    def days_from(self, start: date, stop_year: int) -> Iterator[date]:
        """Matching days >= start, through stop_year; skips whole years and months by field."""
        for year in range(start.year, stop_year + 1):
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                first = start.day if (year, month) == (start.year, start.month) else 1
                for dom in range(first, _days_in_month(year, month) + 1):
                    day = date(year, month, dom)
                    if self.day_matches(day):
                        yield day

    def walls_from(self, start: datetime, stop_year: int) -> Iterator[datetime]:
        """Matching naive wall times >= start, in increasing order."""
        first = start.date()
        for day in self.days_from(first, stop_year):
            for hour in self.hours:
                if day == first and hour < start.hour:
                    continue  # skip the first day's past hours without building wall times
                for minute in self.minutes:
                    wall = datetime(day.year, day.month, day.day, hour, minute)
                    if wall >= start:  # only ever false within the first hour
                        yield wall


@dataclass(frozen=True)
class _Every:
    """Fire times are exactly the instants k * seconds after the Unix epoch."""

    seconds: int

    def next_after(self, after: datetime) -> datetime:
        elapsed = (after - _EPOCH) // _SECOND  # floor: whole seconds, so sub-second `after` works
        k = elapsed // self.seconds + 1  # strictly after, even when `after` is itself a fire time
        return _EPOCH + timedelta(seconds=k * self.seconds)  # OverflowError past year 9999


# --- the public API ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. Build it with :func:`parse_schedule` (which also reads CRON_TZ=)."""

    expr: str  # as given, without any CRON_TZ=/TZ= prefix
    timezone: str  # IANA name actually used (as the zone database spells it, e.g. `utc` -> UTC)
    _plan: _Cron | _Every = field(init=False, repr=False, compare=False)
    _zone: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the derived fields are set once here, and the schedule validates itself.
        name, zone = _load_zone(self.timezone)
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
            if isinstance(self._plan, _Every):
                return self._plan.next_after(after)
            return self._next_cron(self._plan, after)
        except OverflowError:
            raise self._exhausted(after) from None

    def interval(self) -> timedelta:
        """The typical gap between fire times (used for defaults like a starting deadline).

        For ``@every`` the interval itself. For cron, the smallest gap between consecutive fire
        times among the first 50 after a fixed reference date, measured in local wall time so a
        DST shift does not make a daily job look 23 hours apart.
        """
        if isinstance(self._plan, _Every):
            return timedelta(seconds=self._plan.seconds)
        walls: list[datetime] = []
        stop = _INTERVAL_REFERENCE.year + _SEARCH_YEARS * _INTERVAL_SAMPLES
        for wall in self._plan.walls_from(_INTERVAL_REFERENCE, stop):
            walls.append(wall)
            if len(walls) == _INTERVAL_SAMPLES:
                break
        return min(b - a for a, b in itertools.pairwise(walls))

    def _next_cron(self, plan: _Cron, after: datetime) -> datetime:
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
            start -= _offset(local) - _offset(local.replace(fold=1))
        stop_year = min(start.year + _SEARCH_YEARS, MAXYEAR)
        repeat: datetime | None = None  # the first second occurrence after `after`
        for wall in plan.walls_from(start, stop_year):
            first, last = _instants(wall, self._zone, plan.repeats)
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
    if _load_zone(timezone)[0] not in ("UTC", _load_zone(zone)[0]):
        raise ScheduleError(
            f"time zone given twice: {key}={zone} in the expression and {timezone!r} as the time "
            f"zone; give the zone once"
        )
    return Schedule(rest, zone)


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


def slot_id(fire_time: datetime) -> str:
    """A stable, sortable id for one firing: the UTC fire time as ``20260101T120000Z``."""
    if fire_time.tzinfo is None or fire_time.utcoffset() is None:
        raise ValueError(f"slot_id needs a timezone-aware datetime, got naive {fire_time!r}")
    t = fire_time.astimezone(UTC)
    # Formatted by hand: strftime("%Y") does not zero-pad years < 1000 on every platform.
    return f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}Z"


def slot_jitter(election: str, fire_time: datetime, jitter: float) -> float:
    """A delay in [0, jitter) seconds, the same on every replica for one (election, slot).

    Derived from sha256, not a random generator, so a failover mid-slot does not re-roll it.
    """
    if not jitter > 0:  # also catches NaN
        return 0.0
    if jitter == float("inf"):
        raise ValueError("jitter must be a finite number of seconds")
    # The slot id has a fixed length, so "election NUL slot" is unambiguous.
    digest = hashlib.sha256(f"{election}\x00{slot_id(fire_time)}".encode()).digest()
    # 53 bits give a fraction in [0, 1) that is exact as a float; f * jitter < jitter then holds
    # under round-to-nearest for any finite jitter > 0.
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
    return fraction * jitter


# --- helpers ----------------------------------------------------------------------------------


def _load_zone(name: str) -> tuple[str, tzinfo]:
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


def _parse_expr(expr: str) -> _Cron | _Every:
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
        return _parse_every(words[1:])
    if head.startswith("@"):
        if head not in _MACROS:
            raise ScheduleError(f"unknown macro {words[0]!r}: use {_MACRO_HINT}")
        if len(words) > 1:
            raise ScheduleError(f"macro {words[0]!r} takes nothing after it, got {expr!r}")
        return _parse_cron(_MACROS[head].split())
    if len(words) != 5:
        raise ScheduleError(
            f"found {len(words)} fields in {expr!r} but 5 are expected "
            f"(minute hour day-of-month month day-of-week); or use {_MACRO_HINT}"
        )
    return _parse_cron(words)


def _parse_every(args: list[str]) -> _Every:
    if not args:
        raise ScheduleError("@every needs a duration, like '@every 5m' or '@every 1h30m'")
    if len(args) > 1:
        raise ScheduleError(
            f"@every duration {' '.join(args)!r} has spaces; write it as one word, like 1h30m"
        )
    text = args[0]
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise ScheduleError(f"@every duration {text!r}: {exc}") from None
    whole = round(seconds)
    if seconds < 1:
        raise ScheduleError(f"@every duration {text!r} is shorter than 1s; use 1s or more")
    if abs(seconds - whole) > 1e-6:  # tolerance: e.g. 0.1h is 360.00000000000006 in floats
        raise ScheduleError(
            f"@every duration {text!r} has a fraction of a second; use whole seconds, like 2s"
        )
    if whole > _MAX_EVERY.total_seconds():
        raise ScheduleError(
            f"@every duration {text!r} is longer than {_MAX_EVERY.days}d ({_SEARCH_YEARS} "
            f"years); use a cron expression for rare runs, like @yearly"
        )
    return _Every(whole)


def _parse_cron(words: list[str]) -> _Cron:
    minute, hour, dom, month, dow = words
    hours = tuple(sorted(_HOUR.parse(hour)))
    cron = _Cron(
        minutes=tuple(sorted(_MINUTE.parse(minute))),
        hours=hours,
        days=_DOM.parse(dom),
        months=tuple(sorted(_MONTH.parse(month))),
        weekdays=frozenset(d % 7 for d in _DOW.parse(dow)),
        either_day=not _DOM.is_wildcard(dom) and not _DOW.is_wildcard(dow),
        repeats=len(hours) > 1,
    )
    # Under the AND rule a restricted day-of-month must exist in some chosen month, or the
    # schedule never fires (`0 0 30 2 *`). Under the OR rule day-of-week alone always fires.
    if not cron.either_day and not any(min(cron.days) <= _MAX_DAYS[m - 1] for m in cron.months):
        raise ScheduleError(
            f"schedule never fires: day-of-month field {dom!r} never occurs in month field "
            f"{month!r}; pick days that exist in those months"
        )
    return cron


def _days_in_month(year: int, month: int) -> int:
    if month != 2:
        return _MAX_DAYS[month - 1]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 29 if leap else 28


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    assert offset is not None, moment  # aware: made by astimezone
    return offset


def _instants(wall: datetime, zone: tzinfo, repeats: bool) -> tuple[datetime, datetime]:
    """The UTC instants a local wall time fires at, (first, last): its first occurrence (or the
    end of the gap that swallows it), and, when ``repeats``, its second occurrence if the wall
    time happens twice; otherwise last == first."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # fold=0: first of a repeated time
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        end = _gap_end(wall, zone)
        return end, end
    if not repeats:
        return first, first
    return first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # fold=1: the second


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
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
