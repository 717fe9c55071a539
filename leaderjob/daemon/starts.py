"""The port through which a job's run is started: the guardian sits behind it.

A start is two steps: the request (the command, its environment, the local deadline ``D`` and
grace, handed to the daemon's guardian) and its confirmation (the guardian's report that the job
was exec'd, at most ``wait`` seconds later: the time left before ``D − grace``, after which the
guardian refuses to exec anyway). :meth:`Starter.request` sends the request and returns the
:class:`Run` at once; its answer is read later (``run.confirm()``), so that many jobs due at
once are all requested before any confirmation is awaited. The caller (:mod:`.runs`) decides
what a confirmed or a failed start means.

A test hands in a starter of its own instead of the guardian's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from leaderjob.clock import Wakeable
from leaderjob.guard.run import Run
from leaderjob.guard.supervisor import Guardian


@dataclass(frozen=True)
class StartRequest:
    """What one start hands the guardian."""

    argv: Sequence[str]
    env: Mapping[str, str]
    deadline: float  # D: the guardian kills the run by then (S6)
    grace: float
    run_id: str
    token: int
    cwd: str | None
    #: How long to wait for the confirmation (the time left before D − grace).
    wait: float


class Starter(Protocol):
    def request(self, request: StartRequest, now: float) -> Run:
        """Request the start and return at once: the run, its answer read later with
        ``run.confirm()`` (None until it comes; False past ``now + request.wait``, after which
        the guardian refuses to exec). The run counts as running from now on."""
        ...

    def pump(self, now: float) -> None:
        """Send what waits to be sent (the loop calls this at every cycle)."""
        ...


#: Start requests in the guardian's control pipe at once, at most. The guardian applies every
#: extension, stop and kill of what one turn reads (the whole pipe, up to 1 MiB) before any start
#: in it, so the cap does not keep a deadline extension waiting behind a burst; it keeps the
#: requests in the pipe well within one read (a request with a job's environment is a few KiB).
#: The guardian forks each job and goes on without waiting for its exec, so a burst is paced by
#: the forks alone: at 16 the requests waited here for the guardian's answers, at 128 a 100-job
#: burst is requested in one pass. The other requests wait here, their runs already tracked as
#: starting, and go as answers come.
IN_FLIGHT = 128


class GuardianStarter:
    """Starts runs under the daemon's guardian (None: each run starts a guardian of its own),
    at most :data:`IN_FLIGHT` unanswered at once."""

    def __init__(self, wakeup: Wakeable, guardian: Guardian | None = None) -> None:
        self.wakeup = wakeup
        self.guardian = guardian
        self.in_flight: list[Run] = []
        self.waiting: deque[tuple[Run, float]] = deque()  # a run, its limit (monotonic)

    def request(self, request: StartRequest, now: float) -> Run:
        run = Run(
            argv=request.argv,
            env=request.env,
            deadline=request.deadline,
            grace=request.grace,
            wakeup=self.wakeup,
            run_id=request.run_id,
            token=request.token,
            cwd=request.cwd,
        )
        # The wait is bounded by the lease budget: at D − grace the guardian refuses to exec.
        self.waiting.append((run, now + request.wait))
        self.pump(now)
        return run

    def pending(self) -> bool:
        """Whether starts are on their way: waiting here for room in the guardian's pipe, or
        the last one sent not answered yet and not given up on (the guardian answers roughly
        in order: one look, not a scan of every start in flight)."""
        if self.waiting:
            return True
        return bool(self.in_flight) and self.in_flight[-1].confirm() is None

    def pump(self, now: float) -> None:
        """Send the waiting start requests the guardian has room for (the loop calls this at
        every cycle: the guardian's answers make room)."""
        self.in_flight = [r for r in self.in_flight if r.pid is None and not r.done]
        while self.waiting and len(self.in_flight) < IN_FLIGHT:
            run, limit = self.waiting.popleft()
            # The daemon's guardian is already up: a start is one fork + exec.
            run.guardian = self.guardian.take() if self.guardian is not None else None
            # A run stopped while it waited (its tenure ended) is sent with no time left: the
            # guardian refuses it and reports its end, as for any start given up on. Its D is
            # the newest one (extended while it waited).
            run.request(now, wait=0.0 if run.stop_reason is not None else max(0.0, limit - now))
            self.in_flight.append(run)
