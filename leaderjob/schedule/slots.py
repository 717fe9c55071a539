"""How one firing is named (its slot id) and delayed (its jitter), the same on every replica.

Pure: both are functions of the fire time (and the election), so replicas agree on a slot and its
delay without talking to each other, and a failover mid-slot neither renames nor re-rolls it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime


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
