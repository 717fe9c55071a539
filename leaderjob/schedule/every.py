"""``@every <duration>``: fire times at a fixed interval of absolute time.

This module owns the ``@every`` form: its duration's rules (whole seconds, at least 1 s, no longer
than the search horizon it is given) and its arithmetic. Fire times are anchored to the Unix
epoch, so every replica computes the same ones; zones and DST do not apply. Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from leaderjob.schedule.errors import ScheduleError
from leaderjob.units import DurationError, parse_duration

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Every:
    """Fire times are exactly the instants k * seconds after the Unix epoch."""

    seconds: int

    def next_after(self, after: datetime) -> datetime:
        elapsed = (after - _EPOCH) // _SECOND  # floor: whole seconds, so sub-second `after` works
        k = elapsed // self.seconds + 1  # strictly after, even when `after` is itself a fire time
        return _EPOCH + timedelta(seconds=k * self.seconds)  # OverflowError past year 9999


def parse_every(args: list[str], horizon_years: int) -> Every:
    """The words after ``@every``. One interval must fit in the search horizon (``horizon_years``
    of 365 days), so that every schedule that parses has a fire time within it."""
    if not args:
        raise ScheduleError("@every needs a duration, like '@every 5m' or '@every 1h30m'")
    if len(args) > 1:
        raise ScheduleError(
            f"@every duration {' '.join(args)!r} has spaces; write it as one word, like 1h30m"
        )
    text = args[0]
    try:
        seconds = parse_duration(text, bounded=False)  # bounded below, with its own message
    except DurationError as exc:
        raise ScheduleError(f"@every duration {text!r}: {exc}") from None
    whole = round(seconds)
    if seconds < 1:
        raise ScheduleError(f"@every duration {text!r} is shorter than 1s; use 1s or more")
    if abs(seconds - whole) > 1e-6:  # tolerance: e.g. 0.1h is 360.00000000000006 in floats
        raise ScheduleError(
            f"@every duration {text!r} has a fraction of a second; use whole seconds, like 2s"
        )
    longest = timedelta(days=365 * horizon_years)
    if whole > longest.total_seconds():
        raise ScheduleError(
            f"@every duration {text!r} is longer than {longest.days}d ({horizon_years} "
            f"years); use a cron expression for rare runs, like @yearly"
        )
    return Every(whole)
