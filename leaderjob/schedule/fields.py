"""One cron field: its syntax (lists, ranges, steps, ``a/n``, names, ``?``) and its values.

This module owns how one of the five fields is read into a set of values, and which forms count
as a wildcard for the day rule. It does not know the other fields, the day rule itself, time zones
or fire times (``cron.py`` combines the fields). Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from leaderjob.schedule.errors import ScheduleError

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class FieldSpec:
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
            wrap = " (for a range ending on Sunday use 7, e.g. 5-7)" if self is DOW else ""
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


MINUTE = FieldSpec("minute", 0, 59, 59)
HOUR = FieldSpec("hour", 0, 23, 23)
DOM = FieldSpec("day-of-month", 1, 31, 31, question_mark=True)
MONTH = FieldSpec(
    "month",
    1,
    12,
    12,
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
)
DOW = FieldSpec(
    "day-of-week",
    0,
    7,
    6,
    ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"),
    " (0 and 7 are Sunday)",
    question_mark=True,
)
