"""What one run of ``@leaderjob.singleton`` is made of: the function's handle
(:class:`SlotRun`), the tenure's record of it, the policy options, and what a tenure needs of
leadership (:class:`Seat`).

Data and the run's own cooperative checks only: no etcd, no scheduling, no logging. The rules
that use them are :mod:`leaderjob.inprocess.singleton_rules`' (pure), driven by
:mod:`leaderjob.inprocess.singleton_tenure` and written out by
:mod:`leaderjob.inprocess.singleton_history`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from leaderjob.clock import Clock
from leaderjob.schedule.planner import Slot

__all__ = [
    "RETRY_BASE",
    "RETRY_CAP",
    "Active",
    "Concurrency",
    "Pending",
    "Policy",
    "Seat",
    "SlotRun",
]

Concurrency = Literal["forbid", "replace", "allow"]
#: Retry backoff: 1 s, 2 s, 4 s … capped (the daemon's).
RETRY_BASE, RETRY_CAP = 1.0, 60.0


class Seat(Protocol):
    """What a tenure needs of leadership (:class:`~leaderjob.inprocess.leadership.Leadership`
    fits)."""

    @property
    def key(self) -> str | None: ...

    @property
    def token(self) -> int | None: ...

    identity: str

    def valid(self) -> bool: ...

    def remaining(self) -> float: ...


class SlotRun:
    """One run of the function: which slot, under which token, and its cancel signal.

    ``cancelled`` is set when the run should stop — its ``timeout`` passed, a newer slot
    replaces it (``replace``), the tenure ended, or the singleton is stopping; ``cancel_reason``
    says which. :meth:`valid` is False from then on, and once leadership is no longer valid.
    """

    def __init__(
        self,
        slot: str,
        scheduled: datetime,
        token: int,
        run_id: str,
        leadership: Any,
        *,
        attempt: int = 0,
        clock: Clock | None = None,
        timeout_at: float | None = None,
    ) -> None:
        self.slot = slot
        self.scheduled = scheduled
        self.token = token
        self.run_id = run_id
        self.leadership = leadership
        self.attempt = attempt
        self.cancelled = threading.Event()
        self.cancel_reason: str | None = None
        self._clock = clock
        self._timeout_at = timeout_at

    def valid(self) -> bool:
        """Still leading with deadline to spare, and not cancelled: check it between steps."""
        return not self.cancelled.is_set() and bool(self.leadership.valid())

    def remaining(self) -> float:
        """Seconds until :meth:`valid` turns False by itself: the leadership's deadline, or the
        run's timeout if that comes first (0 once cancelled)."""
        if self.cancelled.is_set():
            return 0.0
        left = float(self.leadership.remaining())
        if self._timeout_at is not None and self._clock is not None:
            left = min(left, max(0.0, self._timeout_at - self._clock.monotonic()))
        return left

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancelled.set()


@dataclass
class Active:
    run: SlotRun
    started: float  # monotonic
    started_wall: datetime
    timeout_at: float | None
    thread: threading.Thread | None = None
    done: bool = False
    error: str | None = None


@dataclass
class Pending:
    """A claimed run waiting to start: a retry after its backoff, or a replacement waiting for
    the run it replaces to return."""

    slot: str
    scheduled: datetime
    attempt: int
    not_before: float
    replacing: Slot | None = None


@dataclass(frozen=True)
class Policy:
    """How runs relate to each other and to time: the daemon's options of the same names."""

    concurrency: Concurrency = "forbid"
    timeout: float | None = None
    retries: int = 0
