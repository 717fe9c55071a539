"""The start of a job's tenure, for the schedule: catch-up, skew, the schedule published.

Once per tenure, before any slot is claimed, catch-up reads the newest slot anyone claimed (a
linearizable read) and plans from it: the missed slots the catch-up policy skips get not-run
records, the one it runs waits as a pending start. Every cycle after that, a newest claim ahead
of our clock (a replica whose clock ran fast) is logged and exported: no slot runs until our
clock gets there. The schedule is published once per tenure, while the cycle has time to spare.

A part of :class:`~leaderjob.daemon.scheduling.Scheduling`, which calls it from each leading
cycle; it records not-run slots through the runner (``_not_run``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock
from leaderjob.daemon.model import Pending, Settings, Tenure
from leaderjob.daemon.session import Seat, Session
from leaderjob.daemon.unknown import UnknownClaims
from leaderjob.election.store import StoreError
from leaderjob.history.records import ElectionData, iso
from leaderjob.schedule import slot_id
from leaderjob.schedule.planner import Planner

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


class CatchUp:
    # Set by the runner (see Runner.__init__).
    s: Settings
    session: Session
    seat: Seat
    data: ElectionData
    planner: Planner | None
    clock: Clock
    metrics: Metrics | None
    election: str  # the daemon's (a group's name): the metrics' election label
    log: Any
    unknown_claims: UnknownClaims
    #: The newest fire time recorded as missed: a re-plan (a reload, a repair, the next tenure
    #: before any new claim) finds the same missed slots again and must not record them twice.
    _missed_upto: datetime | None = None

    def _not_run(
        self,
        slot: str,
        scheduled: datetime | None,
        reason: str,
        outcome: str,
        token: int | None,
        **extra: Any,
    ) -> None:
        raise NotImplementedError

    def _begin_tenure(self, tenure: Tenure, wall: datetime) -> bool:
        """Catch-up, once per tenure, from the newest slot anyone claimed (a linearizable read)."""
        assert self.planner is not None
        if not self.session.may_call():
            return False  # at the next cycle, with time for the read
        try:
            last = self.data.last_slot(timeout=self.session.io_timeout())
        except StoreError as exc:
            self.session.store_error(exc)
            return False
        # A slot whose claim's outcome is unknown, after the newest claim, is caught up like
        # any missed slot (in a new election too: the plan starts just before it).
        start = self.unknown_claims.plan_from(last)
        plan = self.planner.begin_tenure(start, wall)
        if last is None and not self._mark_start(tenure, start, wall):
            return False
        self.unknown_claims.forget_caught_up(last)
        tenure.ready = True
        tenure.last_claimed = last
        tenure.pending = [p for p in tenure.pending if p.fire is None]  # a re-plan replaces these
        if plan.skipped or plan.expired or plan.run:
            self.log.info(
                "schedule.catch_up",
                policy=self.s.catch_up,
                last_claimed=iso(last),
                missed_skipped=plan.skipped,
                expired=plan.expired.id if plan.expired else None,
                run=plan.run.id if plan.run else None,
            )
        if self.metrics is not None:
            reason = "catch_up_skip"
            self.metrics.slots_skipped.labels(self.election, self.s.election, reason).inc(
                plan.skipped
            )
            if plan.expired is not None:
                self.metrics.slots_skipped.labels(self.election, self.s.election, "deadline").inc()
        # Every missed slot that does not run gets a not-run record: the newest few one by one,
        # the rest as one range (a day of a per-second schedule is one record, not 86 400).
        upto = self._missed_upto
        for missed in plan.missed:
            if upto is None or missed.fire_time > upto:
                self._not_run(missed.id, missed.fire_time, "missed", "missed", tenure.token)
        if plan.missed:
            self._missed_upto = max(upto or plan.missed[0].fire_time, plan.missed[0].fire_time)
        if plan.missed_range is not None and (upto is None or plan.missed_range[1] > upto):
            first, last = plan.missed_range
            self._not_run(
                slot_id(last),
                last,
                "missed",
                "missed",
                tenure.token,
                first_slot=slot_id(first),
                count=plan.missed_more,
            )
        if plan.run is not None:
            tenure.pending.append(
                Pending(plan.run.id, plan.run.fire_time, 0, 0.0, tenure.token, plan.run)
            )
        return True

    def _mark_start(self, tenure: Tenure, start: datetime | None, wall: datetime) -> bool:
        """A new election (no claim yet): before its first claim, ``state/last_slot`` is set to
        just before its first slot, and never ahead of our clock (fenced, only if still absent).
        Whoever leads next — after a crash, or a claim whose outcome was unknown and a lost
        lease — then catches that slot up like any other, instead of finding "nothing to catch
        up on". False: not written (read and planned again at the next cycle)."""
        assert self.planner is not None
        own, first = self.seat.key, self.planner.peek()
        if own is None:
            return False
        if start is None:
            if first is None:
                return True
            start = first.fire_time - timedelta(seconds=1)
        try:
            return self.data.mark_start(
                own, tenure.token, slot_id(min(start, wall)), timeout=self.session.io_timeout()
            )  # refused: written meanwhile, or deposed
        except StoreError as exc:
            self.session.store_error(exc)
            return False

    def _check_skew(self, tenure: Tenure, wall: datetime) -> None:
        """A newest claim ahead of our clock: a replica whose clock ran fast claimed it, and no
        slot runs until our clock gets there (slots only move forward past the newest claim —
        the alternative, trusting our own clock, would re-run pruned slots if *ours* is slow).
        Logged every cycle and exported; ``leaderjob repair-schedule`` moves it back."""
        assert self.planner is not None
        ahead = 0.0
        if tenure.last_claimed is not None:
            ahead = max(0.0, (tenure.last_claimed - wall).total_seconds())
        if self.metrics is not None:
            self.metrics.clock_skew.labels(self.election, self.s.election).set(ahead)
        if ahead > self.planner.deadline.total_seconds():
            self.log.warning(
                "schedule.clock_skew",
                last_claimed=iso(tenure.last_claimed),
                ahead_seconds=round(ahead, 3),
                hint="a replica's clock ran ahead; fix it, then `leaderjob repair-schedule`",
            )

    def _skewed(self, tenure: Tenure) -> bool:
        assert self.planner is not None
        planning = tenure.slot_clock.peek(self.clock.wall(), self.clock.monotonic())
        return tenure.last_claimed is not None and (
            tenure.last_claimed - planning > self.planner.deadline
        )

    def _publish_schedule(self, tenure: Tenure) -> None:
        if self.s.schedule is None or self.seat.key is None:
            return
        info = {
            "expr": self.s.schedule.expr,
            "timezone": self.s.schedule.timezone,
            "leader": self.s.identity,
            "token": tenure.token,
            "since": iso(tenure.since),
            "paused": self.s.paused,  # suspended by the jobs file (status says so)
            "concurrency": self.s.concurrency,
            "catch_up": self.s.catch_up,
            "jitter": self.s.jitter,
        }
        try:
            tenure.published = self.data.publish_schedule(
                self.seat.key, tenure.token, info, timeout=self.session.io_timeout()
            )
        except StoreError as exc:
            self.session.store_error(exc)
