"""Slot planning: which firings of the schedule to run, and which to skip — pure.

A *slot* is one fire time of the schedule. Its start time is the fire time plus the slot's jitter
(the same on every replica, so a failover does not re-roll it). The planner owns:

* the catch-up decision when a replica becomes leader: the slots that fired while nobody led are
  either all skipped (``skip``) or the most recent one runs once (``once``) if it is still within
  the starting deadline — never a burst, never a duplicate, and no "too many missed" cliff;
* the next slot due in a stable tenure, skipping (reason ``deadline``) a slot whose start is
  already older than the starting deadline, e.g. after the process was frozen.

It also owns :class:`SlotClock`, the time slots are planned by within one tenure: the wall clock,
except right after it jumped — then the wall time the monotonic clock says it should be, until the
jump has held for :data:`STEP_TRUST_AFTER`. A leader whose clock is stepped a day ahead for a
while therefore neither runs tomorrow's slot nor, once the step is undone, waits a day for it.

Time comes in as aware UTC datetimes; nothing here reads a clock, talks to etcd or logs. Whether a
due slot actually runs (overlap policy, suspension, the claim in etcd) is the daemon's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from leaderjob.schedule import Schedule, slot_id, slot_jitter

CatchUp = Literal["skip", "once"]
#: Catch-up never looks further back than this: the starting deadline is capped at one hour.
MAX_STARTING_DEADLINE = timedelta(hours=1)
#: Counting missed slots stops here (a per-second schedule missed for days is "at least" this).
MAX_COUNTED = 10_000
#: A wall-clock jump is trusted for slots once it has held this long (monotonic seconds): long
#: enough to outlast a mistaken step that gets undone, short enough that a real correction (a
#: clock that was wrong before) takes effect the same day.
STEP_TRUST_AFTER = 600.0
#: Wall and monotonic clocks diverging by less than this between two looks is slewing or a
#: small step: followed at once.
STEP_THRESHOLD = 1.0
#: A new leader lists at most this many missed slots one by one (the newest) for their not-run
#: records; the older ones are summarised as one range with a count, so a long outage costs a
#: bounded number of history writes.
MISSED_RECORDS = 10


@dataclass(frozen=True)
class Slot:
    fire_time: datetime  # aware UTC
    start_time: datetime  # fire_time + jitter
    id: str


@dataclass
class CatchUpPlan:
    run: Slot | None = None  # the one missed slot to run now, if any
    skipped: int = 0  # missed slots not run (at least this many)
    expired: Slot | None = None  # the newest missed slot, if too old to run
    #: The missed slots that do not run, newest first, at most :data:`MISSED_RECORDS`.
    missed: list[Slot] = field(default_factory=list)
    #: The older missed slots not listed: (first, last) fire time of the range, and how many.
    missed_range: tuple[datetime, datetime] | None = None
    missed_more: int = 0


@dataclass
class Planner:
    schedule: Schedule
    election: str
    catch_up: CatchUp = "once"
    starting_deadline: timedelta | None = None
    jitter: float = 0.0
    _next: Slot | None = field(default=None, init=False)

    @property
    def deadline(self) -> timedelta:
        """The starting deadline: explicit, else one schedule interval; at most one hour."""
        d = (
            self.starting_deadline
            if self.starting_deadline is not None
            else self.schedule.interval()
        )
        return min(d, MAX_STARTING_DEADLINE)

    def slot(self, fire_time: datetime) -> Slot:
        delay = timedelta(seconds=slot_jitter(self.election, fire_time, self.jitter))
        return Slot(fire_time, fire_time + delay, slot_id(fire_time))

    def begin_tenure(self, last_claimed: datetime | None, now: datetime) -> CatchUpPlan:
        """Decide about slots missed since ``last_claimed`` (the newest slot anyone claimed).

        Afterwards :meth:`due` yields the slots after ``now`` (or after the one caught up).
        """
        plan = CatchUpPlan()
        # Never before the newest claim: this replica's clock may run behind the one that made it.
        self._next = self.slot(self.schedule.next_after(max(now, last_claimed or now)))
        if last_claimed is None:
            return plan  # a new election has nothing to catch up on
        counted, newest_fire = self._missed(last_claimed, now)
        if newest_fire is None:
            return plan
        newest = self.slot(newest_fire)
        if newest.start_time > now:
            # Fired but its jitter has not elapsed: not missed, simply next.
            self._next = newest
            counted -= 1
            if counted == 0:
                return plan
            newest = self.slot(self._previous(newest.fire_time, last_claimed))
        older = counted - 1
        if self.catch_up == "skip":
            plan.skipped = counted
            return self._list_missed(plan, newest.fire_time, counted, last_claimed)
        if now - newest.start_time > self.deadline:  # lateness counts from the jittered start
            plan.expired = newest
            plan.skipped = older
            return self._list_missed(plan, newest.fire_time, counted, last_claimed)
        plan.run = newest
        plan.skipped = older
        if older:
            previous = self._previous(newest.fire_time, last_claimed)
            self._list_missed(plan, previous, older, last_claimed)
        return plan

    def _list_missed(
        self, plan: CatchUpPlan, newest: datetime, count: int, last_claimed: datetime
    ) -> CatchUpPlan:
        """List the ``count`` missed fire times that do not run, from ``newest`` back: the
        newest :data:`MISSED_RECORDS` one by one, the rest as one range (its first fire time is
        the one after ``last_claimed``)."""
        t = newest
        while t > last_claimed and len(plan.missed) < min(count, MISSED_RECORDS):
            plan.missed.append(self.slot(t))
            t = self._previous(t, last_claimed)
        if count > len(plan.missed) and t > last_claimed:
            plan.missed_range = (self.schedule.next_after(last_claimed), t)
            plan.missed_more = count - len(plan.missed)
        return plan

    def _missed(self, last_claimed: datetime, now: datetime) -> tuple[int, datetime | None]:
        """How many fire times fell in (last_claimed, now] (at least, when capped), and the
        newest of them."""
        counted, newest, t = 0, None, last_claimed
        while counted < MAX_COUNTED:
            t = self.schedule.next_after(t)
            if t > now:
                return counted, newest
            counted, newest = counted + 1, t
        # Capped: the newest fire time is found directly, walking back from now.
        newest = self._previous(self.schedule.next_after(now), last_claimed)
        assert t is not None
        return counted + (1 if newest > t else 0), newest

    def _previous(self, fire_time: datetime, floor: datetime) -> datetime:
        """The fire time just before ``fire_time`` (and after ``floor``), looking back in
        widening steps so that a weekday schedule's Monday finds Friday."""
        span = self.schedule.interval()
        while True:
            start = max(floor, fire_time - span)
            t, prev = start, None
            while (t := self.schedule.next_after(t)) < fire_time:
                prev = t
            if prev is not None or start == floor:
                return prev or floor
            span *= 4

    def peek(self) -> Slot | None:
        return self._next

    def claimable(self, now: datetime, lead: timedelta) -> Slot | None:
        """The next slot, if it may be claimed ahead now: its start is at most ``lead`` away
        (and not yet come: a slot whose start has come is :meth:`due`)."""
        slot = self._next
        if slot is None or not now < slot.start_time <= now + lead:
            return None
        return slot

    def due(self, now: datetime) -> tuple[Slot | None, list[Slot]]:
        """The slot to start now (if its start time has come) and the slots that expired.

        A slot whose start is older than the starting deadline has expired: the process was
        frozen or stalled past it. Expired slots are returned for the record, never run.
        """
        expired: list[Slot] = []
        while self._next is not None and self._next.start_time <= now:
            slot = self._next
            self._next = self.slot(self.schedule.next_after(slot.fire_time))
            if now - slot.start_time > self.deadline:
                expired.append(slot)
                if len(expired) >= MAX_COUNTED:
                    self._next = self.slot(self.schedule.next_after(now))
                continue
            return slot, expired
        return None, expired

    def end_tenure(self) -> None:
        self._next = None


@dataclass
class SlotClock:
    """The wall time to plan slots by, robust to wall-clock jumps within one tenure.

    It follows the wall clock while wall and monotonic time advance together (re-basing at each
    look, so slewing never accumulates). When the wall clock jumps by more than
    :data:`STEP_THRESHOLD` either way, it keeps counting from before the jump on the monotonic
    clock and answers the *earlier* of that and the wall clock: a forward jump does not run future
    slots, a backward one still waits (slots only move forward). Once the jump has held for
    :data:`STEP_TRUST_AFTER` it is accepted as the new time.
    """

    _base: tuple[datetime, float] | None = None  # (wall, monotonic) the steady count starts at
    _jumped_at: float | None = None  # monotonic time the current jump was first seen

    def peek(self, wall: datetime, mono: float) -> datetime:
        """The planning time now, without taking a look (for computing wake-ups)."""
        if self._base is None or self._jumped_at is None:
            return wall
        return min(wall, self._steady(mono))

    def observe(self, wall: datetime, mono: float) -> tuple[datetime, float]:
        """Take one look: the planning time, and how far the wall clock is ahead of it (> 0 only
        while a forward jump is being held back)."""
        if self._base is None:
            self._base = (wall, mono)
            return wall, 0.0
        steady = self._steady(mono)
        jump = (wall - steady).total_seconds()
        if abs(jump) <= STEP_THRESHOLD or (
            self._jumped_at is not None and mono - self._jumped_at >= STEP_TRUST_AFTER
        ):
            self._base, self._jumped_at = (wall, mono), None
            return wall, 0.0
        if self._jumped_at is None:
            self._jumped_at = mono
        return min(wall, steady), max(0.0, jump)

    def _steady(self, mono: float) -> datetime:
        assert self._base is not None
        return self._base[0] + timedelta(seconds=mono - self._base[1])
