"""The decisions of one ``@leaderjob.singleton`` tenure, as pure functions.

What a due slot does while a run is active (the overlap policy), when a waiting run may start,
what a finished run's outcome is and whether it is retried, what the history record of a run
holds (a slot that did not run has the daemon's: :func:`~leaderjob.history.records.not_run_record`),
and when the tenure next needs a step. Everything comes in as arguments: no clock, no etcd, no
threads, no logging. :class:`~leaderjob.inprocess.singleton_tenure.SingletonTenure` drives them
(claims, threads, log lines, metrics, records); the rules are the daemon's, restated for a
function run in a thread (see that module's doc for where they differ).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from leaderjob.history.records import iso
from leaderjob.inprocess.singleton_run import RETRY_BASE, RETRY_CAP, Concurrency, SlotRun

__all__ = [
    "Overlap",
    "blocked",
    "outcome",
    "overlap",
    "replacement_late",
    "retry_backoff",
    "run_record",
    "wakeup",
]

#: What a due slot does: ``start`` now, ``skip`` it (reason ``overlap``), or ``replace`` the
#: active runs (cancel them; the new run starts once they have returned).
Overlap = Literal["start", "skip", "replace"]

#: How soon a tenure that has not caught up yet (its first read failed) tries again, in seconds.
_CATCH_UP_RETRY = 0.2


def overlap(running: bool, concurrency: Concurrency) -> Overlap:
    """A slot is due while runs are ``running`` or not: ``forbid`` skips it, ``replace``
    replaces them, ``allow`` (or nothing running) starts it."""
    if running and concurrency == "forbid":
        return "skip"
    if running and concurrency == "replace":
        return "replace"
    return "start"


def blocked(running: bool, concurrency: Concurrency) -> bool:
    """Whether a retry, a replacement or a trigger must wait: while a run is active, unless runs
    may overlap (``allow``). A blocked trigger stays in etcd: it is not lost."""
    return running and concurrency != "allow"


def replacement_late(now: datetime, start_time: datetime, deadline: timedelta) -> bool:
    """A replacement waited for the run it replaces past the slot's starting deadline (counted
    from the jittered start, as the planner counts it): skip it (reason ``deadline``)."""
    return now - start_time > deadline


def outcome(cancel_reason: str | None, error: str | None) -> str:
    """A run stopped for a timeout or a replacement is ``timed_out`` / ``replaced`` however it
    then returned (a thread cannot be killed: the function may finish its work regardless);
    otherwise ``succeeded``, or ``failed`` when the function raised."""
    if cancel_reason in ("timed_out", "replaced"):
        return cancel_reason
    return "succeeded" if error is None else "failed"


def retry_backoff(outcome: str, attempt: int, retries: int, same_tenure: bool) -> float | None:
    """Seconds to wait before the next attempt of a run that ended with ``outcome``, or None for
    no retry: only a ``failed`` or ``timed_out`` run, while attempts remain, and only in the
    tenure that claimed its slot (a new leader does not retry its predecessor's run). Backoff
    1 s, 2 s, 4 s … capped, as the daemon's."""
    if outcome not in ("failed", "timed_out") or attempt >= retries or not same_tenure:
        return None
    return min(RETRY_CAP, RETRY_BASE * 2.0**attempt)


def run_record(
    run: SlotRun,
    *,
    identity: str,
    started: datetime,
    finished: datetime,
    duration: float,
    outcome: str,
    error: str | None,
) -> dict[str, Any]:
    """The history record of a finished run, in the daemon's shape (a function has no exit code
    or signal: 0 when it returned, 1 when it raised)."""
    return {
        "run_id": run.run_id,
        "slot": run.slot,
        "scheduled_time": iso(run.scheduled),
        "token": run.token,
        "identity": identity,
        "attempt": run.attempt,
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration_seconds": round(duration, 3),
        "exit_code": 0 if error is None else 1,
        "signal": None,
        "outcome": outcome,
        "error": error,
    }


def wakeup(
    now: float,
    *,
    control_at: float,
    renew_interval: float,
    deadlines: Iterable[float],
    next_slot_in: float | None,
    ready: bool,
) -> float:
    """Monotonic time of the tenure's next step: the next control poll, a renew interval at the
    latest, each of ``deadlines`` (run timeouts, pending starts), the next slot's start
    (``next_slot_in`` seconds away), and soon while not ``ready`` (catch-up not done). Never in
    the past. A run ending wakes the owner by itself."""
    times = [control_at, now + renew_interval, *deadlines]
    if next_slot_in is not None:
        times.append(now + next_slot_in)
    if not ready:
        times.append(now + _CATCH_UP_RETRY)
    return max(now, min(times))
