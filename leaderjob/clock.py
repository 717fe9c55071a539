"""Two clocks, two types.

Deadlines are monotonic floats (seconds, ``CLOCK_MONOTONIC``, shared by every process on the
machine, so the per-run watchdog can be handed an absolute deadline). Cron fire times are aware
UTC datetimes. Wall-clock time never decides a deadline: NTP may step it.

The shell owns the clock; pure modules take ``now`` as an argument.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> datetime:
        """Aware UTC wall-clock time; only for schedule fire times and records."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))


class FakeClock:
    """A clock that only moves when told to, or when a waiter would otherwise block.

    Like trio's MockClock with autojump: ``wait`` on an unset event jumps time forward by the
    timeout instead of sleeping, so timing tests run in microseconds and never flake.
    """

    def __init__(self, start: float = 1000.0, wall: datetime | None = None) -> None:
        self._now = start
        self._wall0 = wall or datetime(2026, 1, 1, tzinfo=UTC)
        self._start = start

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._now - self._start)

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "monotonic time never goes back"
        self._now += seconds

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
