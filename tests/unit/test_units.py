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


def test_waker_set_from_a_signal_handler_wakes_the_waiter_and_takes_no_lock() -> None:
    """The daemon's loop is woken by its own SIGTERM handler: setting the waker inside a handler
    that interrupted clear() or wait() must not deadlock (threading.Event would)."""
    import os
    import signal
    import threading
    import time

    from leaderjob.clock import Waker

    waker = Waker()
    fired: list[float] = []

    def handler(signum: int, frame: object) -> None:
        waker.set()
        fired.append(time.monotonic())

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
        start = time.monotonic()
        assert waker.wait(5)
        assert time.monotonic() - start < 2
        waker.clear()
        assert not waker.is_set()
        for _ in range(100):  # handlers interrupting clear(): never a hang
            os.kill(os.getpid(), signal.SIGUSR1)
            waker.clear()
        waker.set()
        assert waker.wait(0)
    finally:
        signal.signal(signal.SIGUSR1, old)
        waker.close()
