"""The snapshot the HTTP endpoints read: what this replica is doing, in plain data."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from leaderjob.clock import Clock
from leaderjob.daemon.model import ActiveRun, Settings, Tenure
from leaderjob.daemon.runner import Runner
from leaderjob.election.elector import Elector
from leaderjob.election.group import Group
from leaderjob.election.machine import Phase
from leaderjob.history.records import iso
from leaderjob.ops.health import HealthChecker
from leaderjob.schedule.planner import Planner


class Observed(Protocol):
    """What the snapshot reads of the daemon (the loop's :class:`Daemon`)."""

    s: Settings
    clock: Clock
    elector: Elector | Group
    health: HealthChecker | None
    leaving: str | None
    grouped: bool

    @property
    def leading_since(self) -> datetime | None: ...

    @property
    def runners(self) -> Mapping[str, Runner]: ...

    @property
    def runner(self) -> Runner: ...

    @property
    def runs(self) -> list[ActiveRun]: ...

    @property
    def tenure(self) -> Tenure | None: ...

    @property
    def planner(self) -> Planner | None: ...

    @property
    def last_contact(self) -> float | None: ...


def snapshot(daemon: Observed, action: str) -> dict[str, Any]:
    """What the HTTP endpoints show (swapped in whole: read from other threads)."""
    machine = daemon.elector.machine
    lease = machine.lease
    leader = daemon.elector.phase is Phase.LEADING
    last_run, last_success = daemon.runner.last_run, daemon.runner.last_success
    next_slot = daemon.planner.peek() if daemon.planner is not None and leader else None
    if daemon.grouped:  # the group as a whole: the current jobs' newest run, next fire time
        runners = list(daemon.runners.values())
        last_run = _newest([r.last_run for r in runners])
        last_success = _newest([r.last_success for r in runners])
        slots = [
            r.planner.peek() for r in runners if r.planner is not None and r.seat.leading
        ]
        next_slot = min(
            (slot for slot in slots if slot is not None),
            key=lambda slot: slot.start_time,
            default=None,
        )
    snap: dict[str, Any] = {
        "election": daemon.s.election,
        "identity": daemon.s.identity,
        "phase": daemon.elector.phase.value,
        "action": action,
        "leader": leader,
        "token": machine.token,
        "lease_id": f"{lease.lease_id:x}" if lease is not None else None,
        "leading_since": iso(daemon.leading_since),
        "last_contact": daemon.last_contact,
        "connected_within": daemon.s.timing.renew_deadline,
        "healthy": None if daemon.health is None else daemon.health.healthy,
        "idle_reason": daemon.leaving,
        "mode": daemon.s.mode,
        "schedule": daemon.s.schedule.expr if daemon.s.schedule else None,
        "timezone": daemon.s.schedule.timezone if daemon.s.schedule else None,
        "next_fire": iso(next_slot.start_time) if next_slot is not None else None,
        "suspended": (
            daemon.tenure.suspended if daemon.tenure is not None and not daemon.grouped else None
        ),
        "running": [
            {
                "run_id": a.run.run_id,
                "pid": a.run.pid,
                "slot": a.slot,
                "attempt": a.attempt,
                "running_for_seconds": round(daemon.clock.monotonic() - a.run.started_at, 3),
            }
            for a in daemon.runs
        ],
        "last_run": last_run,
        "last_success": _last_success(last_success, daemon.clock.wall()),
        "loop_at": daemon.clock.monotonic(),
        "renewed_at": lease.last_ok_sent if lease is not None else None,
        "deadline": machine.deadline,
        "renew_interval": daemon.s.timing.renew_interval,
    }
    if daemon.grouped:
        snap["jobs"] = {
            name: {
                "leader": r.seat.leading,
                "token": r.seat.token,
                "leading_since": iso(r.tenure.since) if r.tenure is not None else None,
                "running": [a.run.run_id for a in r.runs],
                "last_outcome": (r.last_run or {}).get("outcome"),
                "current_runs": [
                    {
                        "run_id": a.run.run_id,
                        "pid": a.run.pid,
                        "slot": a.slot,
                        "running_for_seconds": round(
                            daemon.clock.monotonic() - a.run.started_at, 3
                        ),
                    }
                    for a in r.runs
                ],
                "last_success": _last_success(r.last_success, daemon.clock.wall()),
            }
            for name, r in daemon.runners.items()
        }
    return snap


#: A big group's snapshot is built whole after a cycle at most this often (seconds): with a
#: thousand jobs, building it after every cycle took 40 % of the loop's time in a burst of their
#: runs. Left behind, it is built whole at most CATCH_UP later, the loop woken for it.
PUBLISH_EVERY = 0.25
CATCH_UP = 1.0
#: From this many jobs a group's snapshot is throttled; a smaller one is cheap to build every
#: cycle, and a catch-up wake of its own would cost more passes than it saves.
THROTTLE_FROM = 16
#: While the loop cycles, building the snapshot whole takes at most this share of its time:
#: a group whose build takes longer than PUBLISH_EVERY × this share is built whole less often
#: (a thousand jobs' build, every 0.25 s, was a fifth of a burst's loop).
BUILD_SHARE = 0.1


class Publisher:
    """When the snapshot is built whole. A big group's covers many jobs: after a cycle it is
    built whole at most every :data:`PUBLISH_EVERY`, its liveness fields refreshed in between
    (:func:`refreshed`), and the loop wakes by :meth:`due` to build it whole should it stay
    behind; every leadership change builds it whole at once. ``jobs`` says how many jobs the
    daemon has now (a reload changes it)."""

    def __init__(self, clock: Clock, jobs: Callable[[], int]) -> None:
        self.clock = clock
        self.jobs = jobs
        self.whole_at = -math.inf  # monotonic
        self.behind = False  # refreshed since it was last built whole
        #: How long after a whole build the next may come while the loop cycles: at least
        #: PUBLISH_EVERY, longer for a build that costs more than its share (BUILD_SHARE).
        self.every = PUBLISH_EVERY

    def publish(
        self, daemon: Observed, previous: Mapping[str, Any], action: str, throttled: bool
    ) -> dict[str, Any]:
        now = self.clock.monotonic()
        if (
            throttled
            and previous
            and now < self.whole_at + self.every
            and self.jobs() >= THROTTLE_FROM
        ):
            self.behind = True
            return refreshed(previous, daemon, action)
        self.whole_at, self.behind = now, False
        began = time.perf_counter()  # what the build costs, in real time whatever the clock
        snap = snapshot(daemon, action)
        self.every = max(PUBLISH_EVERY, (time.perf_counter() - began) / BUILD_SHARE)
        return snap

    def due(self) -> float:
        """When the loop must cycle again for the snapshot to be built whole (monotonic)."""
        return self.whole_at + max(CATCH_UP, self.every) if self.behind else math.inf


def refreshed(previous: Mapping[str, Any], daemon: Observed, action: str) -> dict[str, Any]:
    """``previous`` with the fields a probe judges liveness by, and what the loop did, read
    anew (cheap whatever the number of jobs); leadership changes are published whole
    (:func:`snapshot`), never through this."""
    lease = daemon.elector.machine.lease
    live = {
        "action": action,
        "loop_at": daemon.clock.monotonic(),
        "renewed_at": lease.last_ok_sent if lease is not None else None,
        "deadline": daemon.elector.machine.deadline,
        "last_contact": daemon.last_contact,
        "healthy": None if daemon.health is None else daemon.health.healthy,
        "idle_reason": daemon.leaving,
    }
    return {**previous, **live}


def _newest(records: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The record that finished last (records of one replica: ISO times in UTC sort)."""
    found = [r for r in records if r is not None]
    return max(found, key=lambda r: str(r.get("finished_at") or ""), default=None)


def _last_success(record: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    """The last run this replica saw succeed: when it finished, and how long ago."""
    if record is None or not record.get("finished_at"):
        return None
    finished = datetime.fromisoformat(str(record["finished_at"]).replace("Z", "+00:00"))
    return {
        "run_id": record.get("run_id"),
        "slot": record.get("slot"),
        "finished_at": record["finished_at"],
        "seconds_ago": round((now - finished).total_seconds(), 3),
    }
