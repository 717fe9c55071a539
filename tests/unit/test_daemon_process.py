"""The daemon's own health gate is started and stopped with the process, whichever way it was
handed over.

The CLI builds the ``Daemon`` first and hands it its ``HealthChecker`` afterwards (the checker
wakes the daemon's loop, so it needs the daemon's waker). When the process lifecycle moved out of
the loop it captured the constructor's ``health`` — None for every CLI daemon — so a replica's
``--health-cmd`` never ran: an unhealthy replica kept leading and an unhealthy follower kept
campaigning (health gating: a replica whose check fails hands over and does not campaign).
"""

from __future__ import annotations

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore


class RecordingChecker:
    """A health checker that records what the process did with it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.healthy = True
        self.consecutive_failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")


def _daemon() -> Daemon:
    clock = FakeClock()
    settings = Settings(
        election="job", prefix="/lj", identity="a", timing=Timing.from_ttl(3), command=("true",)
    )
    return Daemon(settings, MemoryStore(clock), clock=clock, environ={})


def test_a_checker_handed_over_after_construction_is_started_and_stopped_with_the_process() -> None:
    d = _daemon()
    checker = RecordingChecker()
    d.health = checker  # type: ignore[assignment]  # as the CLI does, once the daemon exists
    d.process.start(d.s, d.clock.monotonic())
    try:
        assert checker.calls == ["start"]
    finally:
        d.process.stop(lambda: [])
    assert checker.calls == ["start", "stop"]


def test_the_loop_reads_the_checker_the_process_started() -> None:
    d = _daemon()
    checker = RecordingChecker()
    d.health = checker  # type: ignore[assignment]
    d.process.start(d.s, d.clock.monotonic())
    try:
        checker.healthy = False
        checker.consecutive_failures = 2
        d.cycle()
        assert d.departure.reason == "unhealthy"
    finally:
        d.process.stop(lambda: [])
