"""One absolute deadline for one step's etcd calls, on the monotonic clock.

A step on the renew path (keepalive, the keys of jobs that rejoin their queue, the confirmation in
as many Txns as it takes, then the cycle's claims and records) spends one budget: each call's
timeout is what is left of it (:meth:`Deadline.timeout`), never a fresh timeout of its own, so a
step made of many calls ends when one call would have. Between the parts of a split call (the
chunks of a confirmation) the caller asks :meth:`Deadline.check` whether one more fits.

The store port keeps taking a plain ``timeout``: the deadline is how a caller chooses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from leaderjob.election.store import StoreUnavailable

#: A call with less than this left is not sent: it could not get an answer back in time.
MIN_CALL = 0.05


class DeadlinePassed(StoreUnavailable):
    """The step's budget is spent: the call was not sent (it waits for the next step)."""


@dataclass(frozen=True)
class Deadline:
    """The end (``at``, monotonic seconds) of one step's etcd budget of ``budget`` seconds."""

    at: float
    budget: float
    now: Callable[[], float]

    @classmethod
    def after(
        cls, now: Callable[[], float], budget: float, *, limit: float | None = None
    ) -> Deadline:
        """``budget`` seconds from now, never later than ``limit`` (e.g. ``D − grace``)."""
        start = now()
        at = start + budget if limit is None else min(start + budget, limit)
        return cls(at, budget, now)

    def remaining(self) -> float:
        return self.at - self.now()

    def fits(self, seconds: float = MIN_CALL) -> bool:
        """At least ``seconds`` left (by default: room for one more call)."""
        return self.remaining() >= seconds

    def check(self, operation: str) -> None:
        """Raise :class:`DeadlinePassed` when no call fits any more."""
        if not self.fits():
            raise DeadlinePassed(operation, "the step's deadline passed: left for the next step")

    def timeout(self, operation: str, ceiling: float | None = None) -> float:
        """The timeout of a call sent now: what is left (at most ``ceiling``); raises
        :class:`DeadlinePassed` when too little is left to send it."""
        self.check(operation)
        left = self.remaining()
        return left if ceiling is None else min(ceiling, left)
