"""Two clocks, two types.

Deadlines are monotonic floats (seconds on ``CLOCK_BOOTTIME`` where the system has it — Linux —
else ``time.monotonic()``; shared by every process on the machine, so the per-run watchdog can be
handed an absolute deadline). ``CLOCK_MONOTONIC`` stops while the host is suspended (a laptop's
lid, a paused VM) and an etcd lease does not: a deadline on it could say "valid" for a lease that
expired meanwhile. ``CLOCK_BOOTTIME`` counts the suspend. Cron fire times are aware UTC
datetimes. Wall-clock time never decides a deadline: NTP may step it.

The shell owns the clock; pure modules take ``now`` as an argument.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)

#: The name of the clock deadlines are kept on (logged at start, shown in tests).
SOURCE = "CLOCK_BOOTTIME" if _BOOTTIME is not None else "CLOCK_MONOTONIC"
#: Its id for ``time.clock_gettime``: the guardian process reads the same clock (supervisor.py).
CLOCK_ID: int = _BOOTTIME if _BOOTTIME is not None else time.CLOCK_MONOTONIC


def now() -> float:
    """Seconds on the deadline clock: ``CLOCK_BOOTTIME`` (counts suspend) where available."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


class Wakeable(Protocol):
    """What a loop waits on: ``threading.Event`` fits, and so does :class:`Waker`."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def clear(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Waker:
    """An event that may be set from a signal handler.

    ``threading.Event.set`` takes a lock; a signal handler runs in the main thread between two
    bytecodes, possibly while that thread holds the same lock inside ``clear`` or ``wait``, and
    then deadlocks. This one is a flag plus a non-blocking self-pipe: ``set`` never blocks and
    takes no lock, and ``wait`` is a ``select`` on the pipe.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._flag = False

    def set(self) -> None:
        self._flag = True
        with contextlib.suppress(BlockingIOError):  # a full pipe already holds a wake-up
            os.write(self._w, b"!")

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        # The flag first: a set() racing with the drain leaves the flag up, so no wake-up is lost.
        self._flag = False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._r, 4096):
                pass

    def wait(self, timeout: float | None = None) -> bool:
        if not self._flag:
            select.select([self._r], [], [], timeout)
        return self._flag

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> datetime:
        """Aware UTC wall-clock time; only for schedule fire times and records."""
        ...

    def wait(self, event: Wakeable, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        """The deadline clock (:func:`now`): it keeps counting while the host is suspended."""
        return now()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: Wakeable, timeout: float) -> bool:
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

    def wait(self, event: Wakeable, timeout: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
