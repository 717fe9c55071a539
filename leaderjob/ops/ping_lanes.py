"""The lanes of dead-man's-switch pings, pure: which ping of which job may be sent now, which
are stale, which are given up (the rules are listed in :mod:`leaderjob.ops.pings`, which sends
them). No threads, no I/O: ``now`` is the caller's monotonic clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Retry backoff of a ping: 1 s, 2 s, 4 s … capped; no retry after its window closed.
PING_RETRY_BASE, PING_RETRY_CAP = 1.0, 30.0
#: Pings waiting per job; beyond this the oldest is dropped.
LANE_CAP = 8


@dataclass(eq=False)
class Ping:
    job: str
    event: str  # start | success | fail
    run: str | None  # the run's id
    url: str = field(repr=False)  # a secret
    body: bytes = field(repr=False)
    until: float  # monotonic: no attempt after this
    attempts: int = 0
    ready_at: float = 0.0  # monotonic: not before (its backoff)
    #: A later event made it meaningless while a worker was sending it: no retry.
    superseded: bool = False


@dataclass(frozen=True)
class Drop:
    ping: Ping
    reason: str


@dataclass
class _Lane:
    waiting: deque[Ping] = field(default_factory=deque)
    sending: Ping | None = None


class Lanes:
    """The pings of every job, lane by lane: which may be sent now, which are stale, which are
    given up. Pure: no threads, no I/O; ``now`` is the caller's monotonic clock."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = LANE_CAP if cap is None else cap
        self.stopping = False  # no backoff and no retry any more: each ping gets one try
        self._lanes: dict[str, _Lane] = {}

    def add(self, ping: Ping) -> list[Drop]:
        """Queue ``ping`` behind its job's others; returns the pings this drops."""
        lane = self._lanes.setdefault(ping.job, _Lane())
        if ping.event == "start":
            drops = self._supersede(lane, lambda p: p.event == "success" and p.run != ping.run)
        else:
            drops = self._supersede(lane, lambda p: p.event == "start" and p.run == ping.run)
        lane.waiting.append(ping)
        while len(lane.waiting) > self.cap:
            drops.append(Drop(lane.waiting.popleft(), "queue full"))
        return drops

    def ended(self, job: str, run: str | None) -> list[Drop]:
        """A run ended without a ping of its own (a planned stop): its ``/start``, if it still
        waits, can no longer matter."""
        lane = self._lanes.get(job)
        if lane is None:
            return []
        drops = self._supersede(lane, lambda p: p.event == "start" and p.run == run)
        self._forget(job, lane)
        return drops

    def _supersede(self, lane: _Lane, stale: Callable[[Ping], bool]) -> list[Drop]:
        drops = [Drop(p, "superseded") for p in lane.waiting if stale(p)]
        for drop in drops:
            lane.waiting.remove(drop.ping)
        if lane.sending is not None and stale(lane.sending):
            lane.sending.superseded = True
        return drops

    def take(self, now: float) -> tuple[Ping | None, list[Drop]]:
        """The ping to send next (its lane is then busy until :meth:`done`), the one whose lane
        has waited longest among those ready; and the pings whose window closed before their
        turn came."""
        expired: list[Drop] = []
        best: tuple[float, str] | None = None
        for job, lane in list(self._lanes.items()):
            if lane.sending is not None:
                continue
            while lane.waiting and lane.waiting[0].until <= now:
                expired.append(Drop(lane.waiting.popleft(), "its window closed before its turn"))
            if not lane.waiting:
                self._forget(job, lane)
                continue
            ready_at = 0.0 if self.stopping else lane.waiting[0].ready_at
            if ready_at <= now and (best is None or ready_at < best[0]):
                best = (ready_at, job)
        if best is None:
            return None, expired
        lane = self._lanes[best[1]]
        lane.sending = lane.waiting.popleft()
        lane.sending.attempts += 1
        return lane.sending, expired

    def done(self, ping: Ping, now: float, error: str | None) -> str | None:
        """``ping``'s attempt ended (``error`` None: answered 2xx). Returns its result — ``ok``,
        ``failed`` (its window closed, or stopping), ``dropped`` (superseded meanwhile) — or
        None: it waits in its lane for a retry."""
        lane = self._lanes[ping.job]
        lane.sending = None
        if error is None:
            result: str | None = "ok"
        elif ping.superseded:
            result = "dropped"
        else:
            delay = min(PING_RETRY_CAP, PING_RETRY_BASE * 2 ** (ping.attempts - 1))
            if self.stopping or now + delay >= ping.until:
                result = "failed"
            else:
                ping.ready_at = now + delay
                lane.waiting.appendleft(ping)
                result = None
        self._forget(ping.job, lane)
        return result

    def next_ready(self) -> float | None:
        """When the next lane that waits (not being sent) may send, if any."""
        heads = [
            0.0 if self.stopping else lane.waiting[0].ready_at
            for lane in self._lanes.values()
            if lane.sending is None and lane.waiting
        ]
        return min(heads, default=None)

    def ready(self, now: float) -> int:
        """Lanes that could send now (not being sent, their head's backoff over)."""
        return sum(
            1
            for lane in self._lanes.values()
            if lane.sending is None
            and lane.waiting
            and (self.stopping or lane.waiting[0].ready_at <= now)
        )

    def waiting_lanes(self) -> int:
        return sum(1 for lane in self._lanes.values() if lane.sending is None and lane.waiting)

    def pending(self) -> int:
        """Pings queued or being sent, over every lane."""
        return sum(len(lane.waiting) + (lane.sending is not None) for lane in self._lanes.values())

    def clear(self) -> list[Drop]:
        """Every ping still waiting (at the end of a stop's grace)."""
        drops = [Drop(p, "stopping") for lane in self._lanes.values() for p in lane.waiting]
        for lane in self._lanes.values():
            lane.waiting.clear()
        return drops

    def _forget(self, job: str, lane: _Lane) -> None:
        if not lane.waiting and lane.sending is None:
            self._lanes.pop(job, None)  # a job removed by a reload leaves nothing behind
