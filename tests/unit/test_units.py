"""Durations as people write them, and back."""

from __future__ import annotations

import pytest

from leaderjob.units import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("3s", 3.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m500ms", 60.5),
        ("10", 10.0),  # a bare number is seconds
        ("0.25", 0.25),
        ("0", 0.0),
        (" 3S ", 3.0),  # surrounding space and case do not matter
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "   ", "-1", "-3s", "3x", "s", "3s5", "1h 30m", "3 s", "ms500", "1.s", "abc"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["nan", "inf", "infinity", "-inf", "NaN", " Infinity "])
def test_parse_duration_rejects_non_finite(text: str) -> None:
    # float() reads these; a --grace nan or --ttl inf must not reach Timing.validate().
    with pytest.raises(DurationError, match="not a finite number"):
        parse_duration(text)


def test_parse_duration_error_says_how_to_write_it() -> None:
    with pytest.raises(DurationError, match=r"500ms, 3s, 2m"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250ms"),
        (0.0, "0s"),
        (1.0, "1s"),
        (3.0, "3s"),
        (1.5, "1.5s"),
        (59.5, "59.5s"),
        (90.0, "90s"),  # not a whole number of minutes: stays in seconds
        (120.0, "2m"),
        (3600.0, "1h"),
        (5400.0, "1h30m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 1.0, 1.5, 3.0, 90.0, 120.0, 3600.0, 5400.0, 86400.0])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_waker_set_from_a_signal_handler_wakes_the_waiter() -> None:
    """The daemon's loop is woken by its own SIGTERM handler: a set() from a handler wakes a
    waiter at once, and handlers between clears never lose or fake a wake-up."""
    import os
    import signal
    import threading
    import time

    from leaderjob.clock import Waker

    waker = Waker()

    def handler(signum: int, frame: object) -> None:
        waker.set()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
        start = time.monotonic()
        assert waker.wait(5)
        assert time.monotonic() - start < 2
        waker.clear()
        assert not waker.is_set()
        for _ in range(100):
            os.kill(os.getpid(), signal.SIGUSR1)
            waker.clear()
        assert not waker.is_set()
        waker.set()
        assert waker.wait(0)
    finally:
        signal.signal(signal.SIGUSR1, old)
        waker.close()


#: Run in a child process: a signal is raised on *every line* executed inside the waker's
#: clear(), wait() and is_set() (and whatever they call, e.g. a lock's __enter__), so its
#: handler -- which calls set() -- runs while the interrupted method is mid-way, holding
#: whatever it holds. threading.Event deadlocks here on its first clear(); the child then
#: never prints "ok" and is killed by the timeout.
_SIGNAL_ON_EVERY_LINE = """
import os, signal, sys
from leaderjob.clock import Waker

waker = Waker()
in_handler = []
seen = set()

def handler(signum, frame):
    in_handler.append(1)
    try:
        waker.set()
    finally:
        in_handler.pop()

signal.signal(signal.SIGUSR1, handler)
methods = {Waker.clear.__code__, Waker.wait.__code__, Waker.is_set.__code__}

def on_line(frame, event, arg):
    # Once per line per call: a loop that a set() keeps going (draining the pipe) must end.
    if event == "line" and not in_handler and (frame.f_code, frame.f_lineno) not in seen:
        seen.add((frame.f_code, frame.f_lineno))
        os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs right after this call
    return on_line

def on_call(frame, event, arg):
    f = frame
    while f is not None:
        if f.f_code in methods:
            return on_line
        f = f.f_back
    return None

interrupted = 0
for _ in range(3):
    seen.clear()
    sys.settrace(on_call)
    waker.clear()
    waker.wait(0)
    waker.is_set()
    sys.settrace(None)
    interrupted += len(seen)
    assert waker.wait(0), "a set() from a handler was lost"
print("ok", interrupted)
"""


def test_waker_set_by_a_handler_that_interrupted_clear_never_deadlocks() -> None:
    """L2 (SIGTERM handover): the daemon's SIGTERM handler sets the loop's waker; a handler that
    lands while the main thread is inside clear() or wait() must not deadlock.
    threading.Event.set takes the lock clear() holds: put an Event back and this test fails."""
    import subprocess
    import sys

    try:
        out = subprocess.run(
            [sys.executable, "-c", _SIGNAL_ON_EVERY_LINE],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: a handler's set() hung inside the clear() it interrupted")
    assert out.returncode == 0, out.stderr
    word, count = out.stdout.split()
    assert word == "ok" and int(count) >= 6, out.stdout  # several lines of each call interrupted
