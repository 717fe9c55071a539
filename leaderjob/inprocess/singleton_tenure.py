"""One tenure of ``@leaderjob.singleton``: slots, triggers, overlap, timeouts and retries.

Owns what the daemon's runner and scheduling own for a command, for a Python function run in a
thread of the application: while one replica leads, plan slots with the daemon's
:class:`~leaderjob.schedule.planner.Planner`, claim each one with the daemon's fenced claim (S3),
claim "run now" triggers the same way, apply the overlap policy, time runs out, retry failed ones,
and write the daemon's history records (runs, and slots that did not run: skipped, or missed
while nobody led) and metrics.

It must not know how leadership is held: it is handed a :class:`Seat` (the key, token and
``valid()`` of the current tenure — :class:`~leaderjob.inprocess.leadership.Leadership` is one), a
store, a clock and a wake-up event, and is stepped by its owner (:meth:`SingletonTenure.cycle`),
which waits until :meth:`SingletonTenure.next_wakeup` between steps. The decisions themselves
(overlap, outcome, retry, the records' shape, the next wake-up) are pure functions in
:mod:`leaderjob.inprocess.singleton_rules`; this module drives them (runs in threads),
:mod:`leaderjob.inprocess.singleton_claims` claims each slot and trigger (and reads back a claim
whose outcome was unknown), and :mod:`leaderjob.inprocess.singleton_history` writes out what each
run and skipped slot leaves behind.

Rules that differ from the daemon's, because a thread cannot be killed:

* Stopping a run (``--timeout``, ``replace``, a lost tenure, ``stop()``) sets the run's cancel
  event with a reason; the function is expected to watch it (``run.valid()``,
  ``run.cancelled``). Until it returns, the run counts as active: a ``replace`` waits for it (and
  is skipped once its starting deadline passed), and the tenure is not left (so not revoked, and
  no new campaign overlaps the run — the daemon's rule too).
* A run stopped for a timeout or a replacement is recorded ``timed_out`` / ``replaced`` however
  it then returned; otherwise ``succeeded`` or ``failed`` (the exception).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leaderjob.clock import Clock, Wakeable
from leaderjob.election.store import StoreError
from leaderjob.history.records import ElectionData, iso
from leaderjob.inprocess.singleton_claims import SingletonClaims
from leaderjob.inprocess.singleton_history import SingletonHistory
from leaderjob.inprocess.singleton_rules import blocked, overlap, replacement_late, wakeup
from leaderjob.inprocess.singleton_run import Active, Concurrency, Pending, Policy, Seat, SlotRun
from leaderjob.ops.metrics import Metrics
from leaderjob.schedule.planner import Planner, Slot
from leaderjob.schedule.unknown_claims import UnknownClaims

__all__ = ["Concurrency", "Policy", "SingletonTenure", "SlotRun"]


def _thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


@dataclass
class SingletonTenure:
    seat: Seat
    data: ElectionData
    planner: Planner
    policy: Policy
    call: Callable[[SlotRun], None]
    clock: Clock
    wake: Wakeable
    log: Any
    election: str
    rpc_timeout: float
    renew_interval: float
    metrics: Metrics | None = None
    #: Starts a run's thread; replaced in tests to run the function where they want.
    spawn: Callable[[Callable[[], None], str], threading.Thread | None] = _thread
    runs: list[Active] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    ready: bool = False
    suspended: bool | None = None
    #: The newest missed slot recorded (by this tenure or an earlier one of the same function).
    missed_upto: datetime | None = None
    #: Slots whose claim's outcome is unknown, read back later (the daemon's rule: unknown.py);
    #: shared by the tenures of one function.
    unknown: UnknownClaims = field(default_factory=UnknownClaims)
    control_at: float = 0.0
    history: SingletonHistory = field(init=False)
    claims: SingletonClaims = field(init=False)

    def __post_init__(self) -> None:
        self.history = SingletonHistory(
            self.seat,
            self.data,
            self.clock,
            self.log,
            self.election,
            self.rpc_timeout,
            self.metrics,
        )
        self.claims = SingletonClaims(
            self.seat,
            self.data,
            self.clock,
            self.log,
            self.history,
            self._io,
            self.unknown,
            self.metrics,
        )

    @property
    def series(self) -> tuple[str, str]:
        """The labels of this function's per-job series (the history's)."""
        return self.history.series

    # -- the step -----------------------------------------------------------------------------

    def cycle(self) -> str:
        """One step: collect finished runs, enforce timeouts, then start what is due. Returns
        one word saying what it did."""
        self._collect()
        self._timeouts()
        if not self.seat.valid():
            return "not_leading"
        if not self.ready:
            self._begin()
            if not self.ready:
                return "catching_up"
        now = self.clock.monotonic()
        if now >= self.control_at:
            said = self._poll_control()
            if said is not None:
                return said
        for p in list(self.pending):
            if now >= p.not_before and not self._blocked():
                self.pending.remove(p)
                return self._start_pending(p)
        said = self._settle_unknown()
        if said is not None:
            return said
        slot, expired = self.planner.due(self.clock.wall())
        if expired:
            self._skip(expired[-1], "deadline", claim=True, also=len(expired) - 1, first=expired[0])
        if slot is None:
            return "idle"
        return self._fire(slot)

    def next_wakeup(self, now: float) -> float:
        """Monotonic time of the next thing to do (a run ending wakes the owner by itself)."""
        deadlines = [a.timeout_at for a in self.runs if a.timeout_at is not None and not a.done]
        deadlines += [p.not_before for p in self.pending if not self._blocked()]
        nxt = self.planner.peek()
        return wakeup(
            now,
            control_at=self.control_at,
            renew_interval=self.renew_interval,
            deadlines=deadlines,
            next_slot_in=(
                None if nxt is None else (nxt.start_time - self.clock.wall()).total_seconds()
            ),
            ready=self.ready,
        )

    def end(self, reason: str, *, wait: float | None = None) -> None:
        """The tenure ends: cancel every run and wait for each to return (``wait``: at most so
        long, for tests), recording its outcome. Pending retries and replacements are dropped."""
        self.planner.end_tenure()
        self.pending.clear()
        for a in self.runs:
            a.run.cancel(reason)
        for a in list(self.runs):
            if a.thread is not None:
                a.thread.join(wait)
        self._collect()

    @property
    def idle(self) -> bool:
        return not self.runs and not self.pending

    # -- catch-up, control --------------------------------------------------------------------

    def _begin(self) -> None:
        """Catch-up from the newest slot anyone claimed (the daemon's rule, a linearizable
        read)."""
        try:
            last = self.data.last_slot(timeout=self._io())
        except StoreError as exc:
            self.history.store_error(exc)
            return
        # An unknown slot after the newest claim is caught up like any missed slot.
        plan = self.planner.begin_tenure(self.unknown.plan_from(last), self.clock.wall())
        self.unknown.forget_caught_up(last)
        self.ready, self.claims.last_claimed = True, last
        if plan.skipped or plan.expired or plan.run:
            self.log.info(
                "schedule.catch_up",
                policy=self.planner.catch_up,
                last_claimed=iso(last),
                missed_skipped=plan.skipped,
                expired=plan.expired.id if plan.expired else None,
                run=plan.run.id if plan.run else None,
            )
        if self.metrics is not None:
            self.metrics.slots_skipped.labels(*self.series, "catch_up_skip").inc(plan.skipped)
            if plan.expired is not None:
                self.metrics.slots_skipped.labels(*self.series, "deadline").inc()
        # Every missed slot that does not run gets a not-run record (the daemon's rule).
        self.missed_upto = self.history.missed(plan, after=self.missed_upto)
        if plan.run is not None:
            self._fire(plan.run)

    def _poll_control(self) -> str | None:
        """The trigger and suspend switches, once per renew interval (the daemon's rhythm)."""
        self.control_at = self.clock.monotonic() + self.renew_interval
        try:
            control = self.data.control(timeout=self._io())
        except StoreError as exc:
            self.history.store_error(exc)
            return None
        self._note_suspended(control.suspended)
        if not control.triggers or control.suspended or self._blocked():
            return None  # a trigger waits for resume, or for the current run: it is not lost
        key, request = control.triggers[0]
        claimed = self.claims.trigger(key, request)
        if claimed is None:
            return None
        ok, slot = claimed
        if not ok:
            self.log.warning("trigger.claim_failed", trigger=key)
            return "claim_failed"
        self.log.info("trigger.claimed", slot=slot, requested_by=request.get("by"))
        self.control_at = self.clock.monotonic()  # look for more triggers soon
        return self._start(slot, self.clock.wall(), 0)

    def _note_suspended(self, suspended: bool) -> None:
        if suspended != self.suspended:
            if suspended or self.suspended is not None:
                self.log.info("election.suspended" if suspended else "election.resumed")
            self.suspended = suspended

    # -- slots --------------------------------------------------------------------------------

    def _blocked(self) -> bool:
        return blocked(bool(self.runs), self.policy.concurrency)

    def _fire(self, slot: Slot) -> str:
        """A slot is due: the overlap policy, the claim (refused while suspended), the start."""
        last_claimed = self.claims.last_claimed
        if last_claimed is not None and slot.fire_time <= last_claimed:
            self.log.info("slot.skipped", slot=slot.id, reason="already_claimed")
            return "skipped"
        return self._fire_unclaimed(slot)

    def _fire_unclaimed(self, slot: Slot) -> str:
        decision = overlap(bool(self.runs), self.policy.concurrency)
        if decision == "skip":
            return self._skip(slot, "overlap", claim=True)
        replacing = decision == "replace"
        result = self.claims.slot(slot, "replacing" if replacing else "running")
        if result == "suspended":
            self._note_suspended(True)
            return self._skip(slot, "suspended", claim=True)
        if result != "claimed":
            return "claim_failed"
        if replacing:
            for a in self.runs:
                a.run.cancel("replaced")
            for p in [p for p in self.pending if p.replacing is not None]:
                self.pending.remove(p)  # only the newest replacement waits
                assert p.replacing is not None
                self._skip(p.replacing, "superseded", claim=False)
            self.pending.append(Pending(slot.id, slot.fire_time, 0, 0.0, replacing=slot))
            return "replacing"
        return self._start(slot.id, slot.fire_time, 0, lag_from=slot.start_time)

    def _start_pending(self, p: Pending) -> str:
        """A retry or a replacement: not while suspended (read now), and a replacement only
        within its starting deadline."""
        if p.replacing is not None and replacement_late(
            self.clock.wall(), p.replacing.start_time, self.planner.deadline
        ):
            return self._skip(p.replacing, "deadline", claim=False)
        try:
            suspended = self.data.is_suspended(timeout=self._io())
        except StoreError as exc:
            self.history.store_error(exc)  # unknown means "don't start": try again shortly
            p.not_before = self.clock.monotonic() + self.renew_interval
            self.pending.append(p)
            return "unknown"
        self._note_suspended(suspended)
        if suspended:
            if p.replacing is not None:
                return self._skip(p.replacing, "suspended", claim=False)
            self.log.info("slot.skipped", slot=p.slot, attempt=p.attempt, reason="suspended")
            return "skipped"
        lag_from = None if p.replacing is None else p.replacing.start_time
        return self._start(p.slot, p.scheduled, p.attempt, lag_from=lag_from)

    def _settle_unknown(self) -> str | None:
        """Read back one claim whose outcome was unknown, and act on it as the daemon does."""
        nxt = self.planner.peek()
        settled = self.claims.read_back(nxt.id if nxt is not None else None, self.planner.deadline)
        if settled is None:
            return None
        u, what = settled
        if what == "run":
            return self._start(u.slot.id, u.slot.fire_time, 0, lag_from=u.slot.start_time)
        if what == "claim":
            return self._fire_unclaimed(u.slot)
        if what == "late":
            return self._skip(u.slot, "deadline", claim=True)
        if what == "not_run":
            self.history.not_run(u.slot.id, u.slot.fire_time, "missed", "claim_unknown")
        return "skipped"

    def _skip(
        self, slot: Slot, reason: str, *, claim: bool, also: int = 0, first: Slot | None = None
    ) -> str:
        """Skip ``slot`` (with ``claim``: only once the claim made it ours — a deposed leader
        records nothing for a slot its successor may have run) and record it as the daemon
        does."""
        if claim and self.claims.slot(slot, f"skipped_{reason}") != "claimed":
            return "claim_failed"
        self.history.skipped(slot, reason, also=also, first=first)
        return "skipped"

    # -- runs ---------------------------------------------------------------------------------

    def _start(
        self, slot: str, scheduled: datetime, attempt: int, lag_from: datetime | None = None
    ) -> str:
        token = self.seat.token
        if token is None or not self.seat.valid():
            self.log.warning("job.skipped", reason="deadline", slot=slot)
            if self.metrics is not None:
                self.metrics.slots_skipped.labels(*self.series, "deadline").inc()
            if attempt == 0:  # its slot was claimed to run: say why it did not (a retry's ran)
                self.history.not_run(slot, scheduled, "late", "skipped_deadline")
            return "skipped"
        now = self.clock.monotonic()
        timeout_at = None if self.policy.timeout is None else now + self.policy.timeout
        run = SlotRun(
            slot,
            scheduled,
            token,
            uuid.uuid4().hex[:12],
            self.seat,
            attempt=attempt,
            clock=self.clock,
            timeout_at=timeout_at,
        )
        active = Active(run, now, self.clock.wall(), timeout_at)
        lag = (self.clock.wall() - (lag_from or scheduled)).total_seconds()
        self.log.info(
            "job.started", run_id=run.run_id, slot=slot, attempt=attempt, lag_seconds=round(lag, 4)
        )
        if self.metrics is not None:
            self.metrics.job_running.labels(*self.series).set(1)
            if attempt == 0 and lag_from is not None:
                self.metrics.schedule_lag.labels(*self.series).observe(max(0.0, lag))
        self.runs.append(active)

        def body() -> None:
            try:
                self.call(run)
            except BaseException as exc:  # sys.exit() and Ctrl-C too: recorded, not fatal
                active.error = repr(exc)
                self.log.error(
                    "job.raised", run_id=run.run_id, slot=slot, error=repr(exc), exc_info=exc
                )
            finally:
                active.done = True
                self.wake.set()

        active.thread = self.spawn(body, f"leaderjob-run-{run.run_id}")
        return "job_started"

    def _timeouts(self) -> None:
        now = self.clock.monotonic()
        for a in self.runs:
            if a.timeout_at is not None and now >= a.timeout_at and not a.run.cancelled.is_set():
                self.log.warning("job.timed_out", run_id=a.run.run_id, slot=a.run.slot)
                a.run.cancel("timed_out")

    def _collect(self) -> None:
        for a in [a for a in self.runs if a.done]:
            self.runs.remove(a)
            retry = self.history.finished(a, retries=self.policy.retries, running=bool(self.runs))
            if retry is not None:
                self.pending.append(retry)

    # -- etcd ---------------------------------------------------------------------------------

    def _io(self) -> float:
        return min(self.rpc_timeout, max(0.05, self.seat.remaining()))
