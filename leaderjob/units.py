"""Durations as people write them: ``500ms``, ``3s``, ``2m``, ``1h30m``, or plain seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The longest duration leaderjob takes, whatever it is for: etcd's maximum lease TTL
#: (9 000 000 000 s, about 285 years). Anything longer is a slip of the keyboard, and would
#: overflow a date's range (``timedelta``) or etcd's TTL range further on, long after start.
MAX_DURATION = 9_000_000_000.0
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class DurationError(ValueError):
    """A duration string that cannot be read."""


def parse_duration(text: str, *, bounded: bool = True) -> float:
    """Return seconds for ``text``; raise :class:`DurationError` with a readable message.
    ``bounded``: at most :data:`MAX_DURATION` (a caller with a tighter bound of its own, and
    a message to match, reads it unbounded)."""
    s = text.strip().lower()
    if not s:
        raise DurationError("empty duration; write it like 500ms, 3s, 2m or 1h")
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise DurationError(f"duration {text!r} is not a finite number of seconds")
        if value < 0:
            raise DurationError(f"duration {text!r} is negative")
        return check_duration(value, text) if bounded else value
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise DurationError(f"cannot read duration {text!r}; write it like 500ms, 3s, 2m or 1h30m")
    return check_duration(total, text) if bounded else total


def check_duration(seconds: float, text: object) -> float:
    """``seconds``, if it is at most :data:`MAX_DURATION`; else a :class:`DurationError`."""
    if seconds > MAX_DURATION:
        raise DurationError(
            f"duration {text!r} is too long: at most {MAX_DURATION:.0f}s (about 285 years)"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form: ``250ms``, ``3s``, ``1.5s``, ``2m``, ``1h30m``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest}m" if rest else f"{hours}h"


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_size(text: str) -> int:
    """Bytes for ``text``: ``8589934592``, ``2GiB``, ``8G``, ``512MiB`` (powers of 1024 with
    ``i``, of 1000 without); raise :class:`ValueError` with a readable message."""
    m = _SIZE.fullmatch(text.strip().lower())
    if m is None or m.group(2) not in _SIZE_UNITS:
        raise ValueError(f"cannot read size {text!r}; write it like 2GiB, 8G or 536870912")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
