"""Cron expressions: five fields (or a macro) into the local wall times they match.

This module owns the day rule (day-of-month and day-of-week together), the macros, calendar
lengths, and the walk through matching wall times in increasing order. It works in naive local
wall time only: which instants a wall time fires at (time zones, DST) is ``zones.py``'s, and which
wall time answers a question is the ``Schedule``'s. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from leaderjob.schedule.errors import ScheduleError
from leaderjob.schedule.fields import DOM, DOW, HOUR, MINUTE, MONTH

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MACRO_HINT = (
    "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>"
)
# Longest month length per month, Feb counted as 29: used to reject never-firing day/month combos.
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class Cron:
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
    # fall-back repeat, firing in both passes of a repeated wall time (see the package docstring).
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
                for dom in range(first, days_in_month(year, month) + 1):
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


def parse_cron(words: list[str]) -> Cron:
    """Five fields (minute hour day-of-month month day-of-week) into a plan that fires."""
    minute, hour, dom, month, dow = words
    hours = tuple(sorted(HOUR.parse(hour)))
    cron = Cron(
        minutes=tuple(sorted(MINUTE.parse(minute))),
        hours=hours,
        days=DOM.parse(dom),
        months=tuple(sorted(MONTH.parse(month))),
        weekdays=frozenset(d % 7 for d in DOW.parse(dow)),
        either_day=not DOM.is_wildcard(dom) and not DOW.is_wildcard(dow),
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


def days_in_month(year: int, month: int) -> int:
    if month != 2:
        return _MAX_DAYS[month - 1]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 29 if leap else 28
