"""The start of a job's tenure, for the schedule: catch-up, skew, the schedule published.

Once per tenure, before any slot is claimed, catch-up reads the newest slot anyone claimed (a
linearizable read) and plans from it: the missed slots the catch-up policy skips get not-run
records, the one it runs waits as a pending start. Every cycle after that, a newest claim ahead
of our clock (a replica whose clock ran fast) is logged and exported: no slot runs until our
clock gets there. The schedule is published once per tenure, while the cycle has time to spare.

The slot path (:class:`~leaderjob.daemon.scheduling.Scheduling`) calls it from each leading
cycle; it records the slots not run through the recorder (:mod:`.history`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import Pending, Tenure
from leaderjob.election.store import StoreError
from leaderjob.history.records import iso
from leaderjob.schedule import slot_id
from leaderjob.schedule.unknown_claims import UnknownClaims


class CatchUp:
    def __init__(self, job: JobContext, history: History, unknown: UnknownClaims) -> None:
        self.job = job
        self.history = history
        #: Slots whose claim's outcome is unknown, across tenures (shared with the slot path).
        self.unknown = unknown
        #: The newest fire time recorded as missed: a re-plan (a reload, a repair, the next
        #: tenure before any new claim) finds the same missed slots again and must not record
        #: them twice.
        self._missed_upto: datetime | None = None

    def begin_tenure(self, tenure: Tenure, wall: datetime) -> bool:
        """Catch-up, once per tenure, from the newest slot anyone claimed (a linearizable read)."""
        assert self.job.planner is not None
        if not self.job.session.may_call():
            return False  # at the next cycle, with time for the read
        try:
            last = self.job.data.last_slot(timeout=self.job.session.io_timeout())
        except StoreError as exc:
            self.job.session.store_error(exc)
            return False
        # A slot whose claim's outcome is unknown, after the newest claim, is caught up like
        # any missed slot (in a new election too: the plan starts just before it).
        start = self.unknown.plan_from(last)
        plan = self.job.planner.begin_tenure(start, wall)
        if last is None and not self._mark_start(tenure, start, wall):
            return False
        self.unknown.forget_caught_up(last)
        tenure.ready = True
        tenure.last_claimed = last
        tenure.pending = [p for p in tenure.pending if p.fire is None]  # a re-plan replaces these
        if plan.skipped or plan.expired or plan.run:
            self.job.log.info(
                "schedule.catch_up",
                policy=self.job.s.catch_up,
                last_claimed=iso(last),
                missed_skipped=plan.skipped,
                expired=plan.expired.id if plan.expired else None,
                run=plan.run.id if plan.run else None,
            )
        if self.job.metrics is not None:
            reason = "catch_up_skip"
            self.job.metrics.slots_skipped.labels(
                self.job.election, self.job.s.election, reason
            ).inc(plan.skipped)
            if plan.expired is not None:
                self.job.metrics.slots_skipped.labels(
                    self.job.election, self.job.s.election, "deadline"
                ).inc()
        # Every missed slot that does not run gets a not-run record: the newest few one by one,
        # the rest as one range (a day of a per-second schedule is one record, not 86 400).
        upto = self._missed_upto
        for missed in plan.missed:
            if upto is None or missed.fire_time > upto:
                self.history.not_run(missed.id, missed.fire_time, "missed", "missed", tenure.token)
        if plan.missed:
            self._missed_upto = max(upto or plan.missed[0].fire_time, plan.missed[0].fire_time)
        if plan.missed_range is not None and (upto is None or plan.missed_range[1] > upto):
            first, last = plan.missed_range
            self.history.not_run(
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
        assert self.job.planner is not None
        own, first = self.job.seat.key, self.job.planner.peek()
        if own is None:
            return False
        if start is None:
            if first is None:
                return True
            start = first.fire_time - timedelta(seconds=1)
        try:
            return self.job.data.mark_start(
                own, tenure.token, slot_id(min(start, wall)), timeout=self.job.session.io_timeout()
            )  # refused: written meanwhile, or deposed
        except StoreError as exc:
            self.job.session.store_error(exc)
            return False

    def check_skew(self, tenure: Tenure, wall: datetime) -> None:
        """A newest claim ahead of our clock: a replica whose clock ran fast claimed it, and no
        slot runs until our clock gets there (slots only move forward past the newest claim —
        the alternative, trusting our own clock, would re-run pruned slots if *ours* is slow).
        Logged every cycle and exported; ``leaderjob repair-schedule`` moves it back."""
        assert self.job.planner is not None
        ahead = 0.0
        if tenure.last_claimed is not None:
            ahead = max(0.0, (tenure.last_claimed - wall).total_seconds())
        if self.job.metrics is not None:
            self.job.gauge("clock_skew").set(ahead)
        if ahead > self.job.planner.deadline.total_seconds():
            self.job.log.warning(
                "schedule.clock_skew",
                last_claimed=iso(tenure.last_claimed),
                ahead_seconds=round(ahead, 3),
                hint="a replica's clock ran ahead; fix it, then `leaderjob repair-schedule`",
            )

    def skewed(self, tenure: Tenure) -> bool:
        assert self.job.planner is not None
        planning = tenure.slot_clock.peek(self.job.clock.wall(), self.job.clock.monotonic())
        return tenure.last_claimed is not None and (
            tenure.last_claimed - planning > self.job.planner.deadline
        )

    def publish_schedule(self, tenure: Tenure) -> None:
        if self.job.s.schedule is None or self.job.seat.key is None:
            return
        info = {
            "expr": self.job.s.schedule.expr,
            "timezone": self.job.s.schedule.timezone,
            "leader": self.job.s.identity,
            "token": tenure.token,
            "since": iso(tenure.since),
            "paused": self.job.s.paused,  # suspended by the jobs file (status says so)
            "concurrency": self.job.s.concurrency,
            "catch_up": self.job.s.catch_up,
            "jitter": self.job.s.jitter,
        }
        try:
            tenure.published = self.job.data.publish_schedule(
                self.job.seat.key, tenure.token, info, timeout=self.job.session.io_timeout()
            )
        except StoreError as exc:
            self.job.session.store_error(exc)
