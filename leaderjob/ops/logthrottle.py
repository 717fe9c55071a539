"""At most one log line per key per interval, each with how many events it stands for.

For events that can come in floods and say the same thing each time (a notification dropped
because its endpoint is dead): the first of a key is logged at once, the next ones within the
interval are held back and counted, and the first one after the interval is logged with the
count of all of them. The metric beside it counts every event; only the log is thinned. Pure:
the caller's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

#: Seconds between two lines of one key.
INTERVAL = 30.0


class Throttle:
    def __init__(self, clock: Callable[[], float], interval: float = INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self._last: dict[Hashable, float] = {}  # key -> when its last line was admitted
        self._held: dict[Hashable, int] = {}  # key -> events held back since
        self._lock = threading.Lock()  # called from several threads

    def admit(self, key: Hashable) -> int | None:
        """None: hold this event back (counted into the next line of ``key``). Else log it now,
        saying it stands for that many events (itself and those held back)."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return 1 + self._held.pop(key, 0)
