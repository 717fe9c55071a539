"""The port through which a job's run is started: the guardian sits behind it.

A start is two steps: the request (the command, its environment, the local deadline ``D`` and
grace, handed to the daemon's guardian) and its confirmation (the guardian's report that the job
was exec'd, awaited at most ``wait`` seconds: the time left before ``D − grace``, after which the
guardian refuses to exec anyway). :meth:`Starter.start` does both and returns the :class:`Run`,
confirmed or not; the caller (:mod:`.runs`) decides what a confirmed or a failed start means.
Both steps sit here, in one place, so that they can be told apart later (request many starts,
read their confirmations after) without touching the slot path.

A test hands in a starter of its own instead of the guardian's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from leaderjob.clock import Wakeable
from leaderjob.guard.supervisor import Guardian, Run


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
    def start(self, request: StartRequest, now: float) -> Run:
        """Request the start and wait at most ``request.wait`` for its confirmation: the run,
        ``confirmed`` or not (an unconfirmed run may still be ending: track it until ``done``)."""
        ...


class GuardianStarter:
    """Starts runs under the daemon's guardian (None: each run starts a guardian of its own)."""

    def __init__(self, wakeup: Wakeable, guardian: Guardian | None = None) -> None:
        self.wakeup = wakeup
        self.guardian = guardian

    def start(self, request: StartRequest, now: float) -> Run:
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
        # The daemon's guardian is already up: a start is one fork + exec.
        run.guardian = self.guardian.take() if self.guardian is not None else None
        # The wait is bounded by the lease budget: at D − grace the guardian refuses to exec.
        run.start(now, wait=request.wait)
        return run
