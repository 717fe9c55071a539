"""``@leaderjob.singleton``: a function run on each slot of a schedule, once across replicas.

    @leaderjob.singleton(election="report", schedule="0 6 * * *", endpoints=["etcd-0:2379"])
    def report(run: leaderjob.singleton.SlotRun) -> None:
        ...                       # run.token, run.valid(), run.leadership.fenced_put(...)

    report.start()                # the background thread: lead, claim each slot, run, record
    ...
    report.stop()                 # leave: resign, revoke

Owns: one background thread that holds :class:`~leaderjob.leadership.Leadership` and, while
leading, plans slots with the daemon's :class:`~leaderjob.planner.Planner` and claims each one
with the daemon's fenced claim (:meth:`~leaderjob.records.ElectionData.claim_slot`, S3), then
runs the function in that thread and writes one history record per run or skip, as the daemon
does, so ``leaderjob history`` and ``leaderjob status`` show them. Slots run one at a time: a
slot that comes due while the function still runs waits for it, and is skipped (``deadline``)
once its starting deadline has passed.

The function is called with a :class:`SlotRun` if it takes an argument, else with none. It is
in-process work, so the honest guarantees of docs/inprocess.md apply: it is not killed at the
deadline; ``run.valid()`` is the cooperative check and fenced writes keep a deposed run out.

Not here (the daemon's only): ``--concurrency replace|allow``, retries, ``--timeout``, "run now"
triggers, the published schedule for ``status``.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from leaderjob.config import DEFAULT_PREFIX, join_errors, validate_slot_timing
from leaderjob.election.store import StoreError
from leaderjob.leadership import Leadership, LeadershipError
from leaderjob.log import get_logger
from leaderjob.planner import CatchUp, Planner, Slot
from leaderjob.records import ElectionData, iso
from leaderjob.schedule import ScheduleError, parse_schedule

__all__ = ["Singleton", "SlotRun", "singleton"]


@dataclass(frozen=True)
class SlotRun:
    """One run of the function: which slot, under which token."""

    slot: str
    scheduled: datetime
    token: int
    run_id: str
    leadership: Leadership

    def valid(self) -> bool:
        """Still leading with deadline to spare: check it between steps of the work."""
        return self.leadership.valid()


class Singleton:
    """The decorated function plus its schedule. Calling it calls the function directly;
    :meth:`start` runs it on the schedule in a background thread."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        election: str,
        schedule: str,
        timezone: str = "UTC",
        catch_up: CatchUp = "once",
        starting_deadline: float | None = None,
        jitter: float = 0.0,
        prefix: str = DEFAULT_PREFIX,
        **leadership: Any,
    ) -> None:
        try:
            self.schedule = parse_schedule(schedule, timezone)
        except ScheduleError as exc:
            raise ValueError(f"--schedule {schedule!r}: {exc}") from None
        errors = validate_slot_timing(
            self.schedule.interval().total_seconds(), jitter, starting_deadline
        )
        if catch_up not in ("once", "skip"):
            errors.append(f"--catch-up {catch_up!r}: use once or skip")
        if errors:
            raise ValueError(join_errors(errors))
        self.fn = fn
        self.election = election
        self.prefix = prefix
        self.planner = Planner(
            self.schedule,
            election,
            catch_up=catch_up,
            starting_deadline=(
                None if starting_deadline is None else timedelta(seconds=starting_deadline)
            ),
            jitter=jitter,
        )
        # Built once here, so that a wrong option fails at decoration, not in the thread.
        self._options = {"prefix": prefix, **leadership}
        self.leadership = Leadership(election, **self._options)
        self._takes_run = bool(inspect.signature(fn).parameters)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_claimed: datetime | None = None
        self.log = get_logger(election=election, identity=self.leadership.identity)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> Singleton:
        """Start the background thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._serve, name=f"leaderjob-singleton-{self.election}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current run (if any) returns; resign and revoke if leading."""
        self._stop.set()
        thread = self._thread
        end = None if timeout is None else time.monotonic() + timeout
        while thread is not None and thread.is_alive():
            self.leadership.cancel()  # a pending acquire leaves the queue (again, if it raced)
            left = 0.1 if end is None else min(0.1, end - time.monotonic())
            if left <= 0:
                return
            thread.join(left)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                with self.leadership as lead:
                    self._tenure(lead)
            except LeadershipError as exc:
                if not isinstance(exc, TimeoutError):  # a timeout here is stop()'s cancel
                    self.log.warning("etcd.unavailable", operation="lead", error=str(exc))
                    self._stop.wait(1.0)
            except StoreError as exc:  # a bookkeeping call failed: leave, campaign again
                self.log.warning("etcd.unavailable", operation=exc.operation, error=exc.detail)

    def _tenure(self, lead: Leadership) -> None:
        data = ElectionData(lead.store, self.prefix, self.election)
        timeout = lead.connection.rpc_timeout
        # Catch-up from the newest slot anyone claimed (the daemon's rule, a linearizable read).
        self._last_claimed = data.last_slot(timeout=min(timeout, max(0.05, lead.remaining())))
        plan = self.planner.begin_tenure(self._last_claimed, datetime.now(UTC))
        if plan.run is not None:
            self._fire(lead, data, plan.run)
        while lead.valid() and not self._stop.is_set():
            slot, expired = self.planner.due(datetime.now(UTC))
            if expired:
                self._skip(lead, data, expired[-1], "deadline")
            if slot is not None:
                self._fire(lead, data, slot)
                continue
            nxt = self.planner.peek()
            wait = lead.timing.renew_interval
            if nxt is not None:
                wait = min(wait, (nxt.start_time - datetime.now(UTC)).total_seconds())
            self._stop.wait(max(0.0, wait))
        self.planner.end_tenure()

    def _claim(self, lead: Leadership, data: ElectionData, slot: Slot, status: str) -> bool:
        key, token = lead.key, lead.token
        if key is None or token is None or not lead.valid():
            return False
        if self._last_claimed is not None and slot.fire_time <= self._last_claimed:
            self.log.info("slot.skipped", slot=slot.id, reason="already_claimed")
            return False
        claim = {
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": token,
            "identity": lead.identity,
            "status": status,
            "claimed_at": iso(datetime.now(UTC)),
        }
        ok = data.claim_slot(
            key,
            token,
            slot.id,
            claim,
            run=status == "running",
            timeout=min(lead.connection.rpc_timeout, max(0.05, lead.remaining())),
        )
        if ok:
            self._last_claimed = max(self._last_claimed or slot.fire_time, slot.fire_time)
        else:
            self.log.warning("slot.claim_rejected", slot=slot.id)
        return ok

    def _skip(self, lead: Leadership, data: ElectionData, slot: Slot, reason: str) -> None:
        if not self._claim(lead, data, slot, f"skipped_{reason}"):
            return
        self.log.info("slot.skipped", slot=slot.id, reason=reason)
        record = {
            "run_id": None,
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": lead.token,
            "identity": lead.identity,
            "outcome": f"skipped_{reason}",
        }
        data.record(record, datetime.now(UTC), timeout=lead.connection.rpc_timeout)

    def _fire(self, lead: Leadership, data: ElectionData, slot: Slot) -> None:
        if not self._claim(lead, data, slot, "running"):
            return
        token = lead.token
        assert token is not None
        run = SlotRun(slot.id, slot.fire_time, token, uuid.uuid4().hex[:12], lead)
        lag = (datetime.now(UTC) - slot.start_time).total_seconds()
        self.log.info("job.started", run_id=run.run_id, slot=slot.id, lag_seconds=round(lag, 4))
        started, started_wall = time.monotonic(), datetime.now(UTC)
        error: str | None = None
        try:
            if self._takes_run:
                self.fn(run)
            else:
                self.fn()
        except Exception as exc:  # the function's failure is recorded, not fatal to the thread
            error = repr(exc)
        duration = time.monotonic() - started
        outcome = "succeeded" if error is None else "failed"
        record = {
            "run_id": run.run_id,
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": token,
            "identity": lead.identity,
            "attempt": 0,
            "started_at": iso(started_wall),
            "finished_at": iso(datetime.now(UTC)),
            "duration_seconds": round(duration, 3),
            "exit_code": 0 if error is None else 1,
            "signal": None,
            "outcome": outcome,
            "error": error,
        }
        self.log.info(
            "job.finished",
            run_id=run.run_id,
            slot=slot.id,
            token=token,
            outcome=outcome,
            duration_seconds=record["duration_seconds"],
            error=error,
        )
        # History is informational: written with the plain put, as the daemon's.
        data.record(record, datetime.now(UTC), timeout=lead.connection.rpc_timeout)


def singleton(
    *,
    election: str,
    schedule: str,
    endpoints: Any = ("127.0.0.1:2379",),
    **options: Any,
) -> Callable[[Callable[..., Any]], Singleton]:
    """Decorate a function to run on each slot of ``schedule``, once across every replica that
    runs it with the same etcd, prefix and election. Options: those of
    :class:`~leaderjob.leadership.Leadership`, plus ``timezone``, ``catch_up``,
    ``starting_deadline`` and ``jitter`` as for ``leaderjob run``. Call ``.start()``."""

    def decorate(fn: Callable[..., Any]) -> Singleton:
        return Singleton(fn, election=election, schedule=schedule, endpoints=endpoints, **options)

    return decorate


class _Module(types.ModuleType):
    """``leaderjob.singleton`` is this module once imported (the import system sets it on the
    package), so the module itself decorates: ``@leaderjob.singleton(...)`` works whichever of
    the two the name holds, and ``leaderjob.singleton.SlotRun`` too."""

    def __call__(
        self, *, election: str, schedule: str, **options: Any
    ) -> Callable[[Callable[..., Any]], Singleton]:
        return singleton(election=election, schedule=schedule, **options)


sys.modules[__name__].__class__ = _Module
