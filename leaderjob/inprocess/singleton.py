"""``@leaderjob.singleton``: a function run on each slot of a schedule, once across replicas.

    @leaderjob.singleton(election="report", schedule="0 6 * * *", endpoints=["etcd-0:2379"])
    def report(run: leaderjob.SlotRun) -> None:
        ...                       # run.token, run.valid(), run.leadership.fenced_put(...)

    report.start()                # the background thread: lead, claim each slot, run, record
    ...
    report.stop()                 # leave: resign, revoke

Owns: one background thread that holds :class:`~leaderjob.inprocess.leadership.Leadership` and,
while leading, steps a :class:`~leaderjob.inprocess.singleton_tenure.SingletonTenure` — the daemon's
planner, fenced slot and trigger claims (S3), suspension, overlap policy, timeout, retries, history
records and metrics, for a function run in a thread of its own per run. A tenure is left (and
its lease revoked) only once every run of it has returned: a new campaign never overlaps one.

The function is called with a :class:`SlotRun` if it takes an argument, else with none. It is
in-process work, so the honest guarantees of docs/inprocess.md apply: it is not killed at the
deadline, at its timeout or when replaced; ``run.valid()`` and ``run.cancelled`` are the
cooperative checks, and fenced writes keep a deposed run out.

Not here (the daemon's only): the published schedule for ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from leaderjob.clock import Clock, SystemClock
from leaderjob.config import DEFAULT_PREFIX, join_errors, validate_slot_timing
from leaderjob.election.store import StoreError
from leaderjob.history.records import ElectionData
from leaderjob.inprocess.leadership import Leadership, LeadershipError
from leaderjob.inprocess.singleton_tenure import Concurrency, Policy, SingletonTenure, SlotRun
from leaderjob.log import get_logger
from leaderjob.schedule import ScheduleError, parse_schedule
from leaderjob.schedule.planner import CatchUp, Planner
from leaderjob.schedule.unknown_claims import UnknownClaims

__all__ = ["Singleton", "SlotRun", "singleton"]


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
        concurrency: Concurrency = "forbid",
        timeout: float | None = None,
        retries: int = 0,
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
        if concurrency not in ("forbid", "replace", "allow"):
            errors.append(f"--concurrency {concurrency!r}: use forbid, replace or allow")
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            errors.append(f"--timeout must be a positive duration, e.g. 10m (got {timeout!r})")
        if not (isinstance(retries, int) and retries >= 0):
            errors.append(f"--retries must be a whole number of 0 or more (got {retries!r})")
        if errors:
            raise ValueError(join_errors(errors))
        self.fn = fn
        self.election = election
        self.prefix = prefix
        self.policy = Policy(concurrency, timeout, retries)
        self.planner = Planner(
            self.schedule,
            election,
            catch_up=catch_up,
            starting_deadline=(
                None if starting_deadline is None else timedelta(seconds=starting_deadline)
            ),
            jitter=jitter,
        )
        self.clock: Clock = leadership.get("clock") or SystemClock()
        self._wake = threading.Event()
        user_on_lost = leadership.pop("on_lost", None)

        def on_lost(reason: str) -> None:
            self._wake.set()  # the tenure ends now, not at the next wake-up
            if user_on_lost is not None:
                user_on_lost(reason)

        # Built once here, so that a wrong option fails at decoration, not in the thread.
        self.leadership = Leadership(election, prefix=prefix, on_lost=on_lost, **leadership)
        self._takes_run = bool(inspect.signature(fn).parameters)
        self._stop = threading.Event()
        self._start_lock = threading.Lock()  # two start()s never make two threads
        self._thread: threading.Thread | None = None
        self.tenure: SingletonTenure | None = None
        self.log = get_logger(election=election, identity=self.leadership.identity)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> Singleton:
        """Start the background thread (idempotent; after a :meth:`stop` whose runs have not
        returned yet, the new thread campaigns once they have)."""
        with self._start_lock:
            previous = self._thread
            if previous is not None and previous.is_alive() and not self._stop.is_set():
                return self
            stop = self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._serve,
                args=(stop, previous),
                name=f"leaderjob-singleton-{self.election}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop: cancel the running runs (their ``cancelled`` is set, reason ``stopping``),
        wait for them to return, then resign and revoke if leading.

        From inside the scheduled function (or a callback) it does not wait — it cannot wait
        for itself: the singleton leaves once the function returns. With ``timeout``, a run
        that has not returned by then is left behind: the lease is revoked anyway (the run's
        ``valid()`` is False from then on), so that another replica can lead."""
        with self._start_lock:
            stop, thread = self._stop, self._thread
        stop.set()
        self._wake.set()
        if thread is None or self._inside(thread):
            return
        end = None if timeout is None else time.monotonic() + timeout
        while thread.is_alive():
            self.leadership.cancel()  # a pending acquire leaves the queue (again, if it raced)
            left = 0.1 if end is None else min(0.1, end - time.monotonic())
            if left <= 0:
                self.log.warning("singleton.stop_timed_out", runs=self._running())
                self.leadership.release()  # the runs are the application's; the lease is not
                return
            thread.join(left)

    async def stop_async(self, timeout: float | None = None) -> None:
        """:meth:`stop` from a coroutine (the wait runs in a worker thread)."""
        await asyncio.to_thread(self.stop, timeout)

    def _inside(self, thread: threading.Thread) -> bool:
        """Called from the singleton's own thread, a run of it, or the election's callback."""
        me = threading.current_thread()
        if me is thread or me.name == f"leaderjob-{self.election}":
            return True
        tenure = self.tenure
        # By name: a run may call stop() before its Active learned its thread.
        return tenure is not None and any(
            me.name == f"leaderjob-run-{a.run.run_id}" for a in list(tenure.runs)
        )

    def _running(self) -> int:
        tenure = self.tenure
        return 0 if tenure is None else len(tenure.runs)

    def _serve(self, stop: threading.Event, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()  # a new tenure never overlaps a run of the old one
        while not stop.is_set():
            try:
                with self.leadership as lead:
                    self._lead(lead, stop)
            except LeadershipError as exc:
                if not isinstance(exc, TimeoutError):  # a timeout here is stop()'s cancel
                    self.log.warning("etcd.unavailable", operation="lead", error=str(exc))
                    stop.wait(1.0)
            except StoreError as exc:  # a bookkeeping call failed: leave, campaign again
                self.log.warning("etcd.unavailable", operation=exc.operation, error=exc.detail)

    def tenure_for(self, lead: Any, data: ElectionData | None = None) -> SingletonTenure:
        """The tenure object for one term of ``lead`` (a :class:`Leadership`, or any seat with
        its ``key``, ``token``, ``identity``, ``valid()`` and ``remaining()``)."""
        self.planner.end_tenure()
        previous = self.tenure
        return SingletonTenure(
            seat=lead,
            data=data or ElectionData(lead.store, self.prefix, self.election),
            planner=self.planner,
            policy=self.policy,
            call=self._call,
            clock=self.clock,
            wake=self._wake,
            log=self.log,
            election=self.election,
            rpc_timeout=self.leadership.connection.rpc_timeout,
            renew_interval=self.leadership.timing.renew_interval,
            metrics=self.leadership.metrics,
            missed_upto=None if previous is None else previous.missed_upto,
            unknown=UnknownClaims() if previous is None else previous.unknown,
        )

    def _lead(self, lead: Leadership, stop: threading.Event) -> None:
        tenure = self.tenure = self.tenure_for(lead)
        try:
            while lead.valid() and not stop.is_set():
                self._wake.clear()
                tenure.cycle()
                now = self.clock.monotonic()
                # valid() turns False at D − grace without an event: wake for it too.
                until = min(tenure.next_wakeup(now), now + max(0.01, lead.remaining()))
                self.clock.wait(self._wake, max(0.0, until - now))
        finally:
            # Leave only once every run of this tenure returned: its work must not overlap a
            # successor's more than the cooperative checks allow, nor a new tenure of ours.
            tenure.end("stopping" if stop.is_set() else "leadership_lost")

    def _call(self, run: SlotRun) -> None:
        result = self.fn(run) if self._takes_run else self.fn()
        if inspect.isawaitable(result):  # an async def: run it on a loop in the run's thread
            asyncio.run(_until_cancelled(result, run))


async def _until_cancelled(work: Awaitable[Any], run: SlotRun) -> None:
    """Await ``work``; cancel it (``asyncio.CancelledError`` at its current await) once the
    run is cancelled. A cancelled coroutine that lets the cancellation out has returned."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=_POLL)
        if run.cancelled.is_set() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not task.cancelled():
        task.result()


_POLL = 0.05


def singleton(
    *,
    election: str,
    schedule: str,
    endpoints: Any = ("127.0.0.1:2379",),
    **options: Any,
) -> Callable[[Callable[..., Any]], Singleton]:
    """Decorate a function to run on each slot of ``schedule``, once across every replica that
    runs it with the same etcd, prefix and election. Options: those of
    :class:`~leaderjob.inprocess.leadership.Leadership` (``registry`` for metrics among them), plus
    ``timezone``, ``catch_up``, ``starting_deadline``, ``jitter``, ``concurrency``,
    ``timeout`` (seconds) and ``retries`` as for ``leaderjob run``. Call ``.start()``."""

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
