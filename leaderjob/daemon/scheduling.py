"""Scheduling, for one job while it is led: what happens to one slot, from due to claimed to run.

One leading cycle gives the schedule one budget of etcd time (:meth:`Scheduling.start_scheduled`):
catch-up once per tenure from the newest slot anyone claimed (a linearizable read), then the
trigger and suspend switches once per renew interval, then retries and replacements, then the slot
that is due. A slot runs only after its claim, a Txn guarded by our leader key, made it ours (S3);
a claim whose outcome is unknown never runs on a guess: it is read back first (:mod:`.unknown`).
Bookkeeping (publishing the schedule, pruning old claims) only runs while the cycle has time to
spare.

This module keeps one slot's path: due, claimed (at its start, or ahead of it by :mod:`.ahead`),
the overlap policy, started or skipped. Its collaborators are handed in by the runner:
the tenure's start (catch-up, skew, the schedule published: :mod:`.catchup`), the trigger and
suspend switches (:mod:`.switches`), the claims (:mod:`.claims`), what starts a run
(:mod:`.runs`) and what records (:mod:`.history`).
"""

from __future__ import annotations

from typing import Any

from leaderjob.daemon.ahead import Ahead
from leaderjob.daemon.catchup import CatchUp
from leaderjob.daemon.claims import Claims
from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import Pending, Report, Tenure
from leaderjob.daemon.runs import Runs
from leaderjob.daemon.switches import Switches
from leaderjob.election.store import StoreError
from leaderjob.history.records import SKIP_NOT_RUN, iso
from leaderjob.schedule.planner import Slot
from leaderjob.schedule.unknown_claims import UnknownClaims, settle


class Scheduling:
    def __init__(
        self,
        job: JobContext,
        runs: Runs,
        history: History,
        claims: Claims,
        catchup: CatchUp,
        switches: Switches,
        unknown: UnknownClaims,
    ) -> None:
        self.job = job
        self.runs = runs  # starts a run; the overlap policy reads the runs that go on
        self.history = history  # records a slot not run; writes the queued records
        self.claims = claims  # makes a slot ours (S3)
        self.catchup = catchup  # the tenure's start
        self.switches = switches  # trigger, suspend, repair
        #: Slots whose claim's outcome is unknown, across tenures (shared with the claims).
        self.unknown = unknown
        #: A run started in this pass: its claims are pruned once the pass's starts are out.
        self._prune_after: Tenure | None = None
        #: The next slot claimed before its start (alone, or with other jobs' claims).
        self.ahead = Ahead(job, runs, history, claims, unknown)

    def start_scheduled(self, tenure: Tenure) -> Report | None:
        """The schedule's share of one leading cycle, all its etcd calls within one budget."""
        own = self.job.session.deadline is None  # else the cycle's election step made it
        if own:
            self.job.session.deadline = self.job.session.group.step_deadline()
        try:
            report = self._schedule_step(tenure)
            if not tenure.published and tenure.ready and self.job.session.may_bookkeep():
                self.catchup.publish_schedule(tenure)
            self.history.flush()
            return report
        finally:
            if own:
                self.job.session.deadline = None

    def _schedule_step(self, tenure: Tenure) -> Report | None:
        assert self.job.planner is not None
        now = self.job.clock.monotonic()
        wall, jumped = tenure.slot_clock.observe(self.job.clock.wall(), now)
        if self.job.metrics is not None:
            self.job.gauge("clock_step").set(jumped)
        if jumped:
            self.job.log.warning(
                "schedule.clock_step",
                ahead_seconds=round(jumped, 3),
                planning_time=iso(wall),
                hint="the wall clock jumped ahead; slots follow the monotonic clock until the "
                "jump is undone or has held for 10 minutes",
            )
        if not tenure.ready and not self.catchup.begin_tenure(tenure, wall):
            return None
        self.catchup.check_skew(tenure, wall)
        report = self.switches.poll_control(tenure) or self._settle_unknown(tenure)
        if report is not None:
            return report
        # Retries and replacements waiting for their time.
        for p in list(tenure.pending):
            if now >= p.not_before and not self.runs.blocked() and self.job.session.may_call():
                tenure.pending.remove(p)
                if p.fire is not None:
                    return self._fire(tenure, p.fire)
                return self._start_pending(tenure, p)
        if not self.job.session.may_call():
            return None  # the slot stays due: claimed next cycle, after the keepalive
        slot, expired = self.job.planner.due(wall)
        if expired:
            # A stall or a forward wall-clock step can expire thousands of slots at once: claim
            # and record only the newest (it moves state/last_slot on) and count the others, so
            # this cycle stays short and the lease keeps being renewed.
            self._skip(
                tenure, expired[-1], "deadline", claim=True, also=len(expired) - 1, first=expired[0]
            )
        if slot is None:
            self.ahead.claim(tenure, wall)
            return None
        return self._fire(tenure, slot)

    def _start_pending(self, tenure: Tenure, p: Pending) -> Report | None:
        """Start a claimed retry or replacement, if the election is not suspended meanwhile and
        (a replacement) its starting deadline has not passed while the old run was stopping."""
        assert self.job.planner is not None
        planning = tenure.slot_clock.peek(self.job.clock.wall(), self.job.clock.monotonic())
        if (
            p.replacing is not None
            and planning - p.replacing.start_time > self.job.planner.deadline
        ):
            return self._skip(tenure, p.replacing, "deadline", claim=False)
        try:
            suspended = self.job.s.paused or self.job.data.is_suspended(
                timeout=self.job.session.io_timeout()
            )
        except StoreError as exc:
            self.job.session.store_error(exc)  # unknown means "don't start": try again shortly
            p.not_before = self.job.clock.monotonic() + self.job.session.cycle_budget()
            tenure.pending.append(p)
            return None
        self.switches.note_suspended(tenure, suspended)
        if suspended:
            if p.replacing is not None:
                return self._skip(tenure, p.replacing, "suspended", claim=False)
            self.job.log.info("slot.skipped", slot=p.slot, attempt=p.attempt, reason="suspended")
            return Report("slot_skipped", {"slot": p.slot, "reason": "suspended"})
        if p.replacing is not None:
            return self.runs.start(p.slot, p.scheduled, 0, lag_from=p.replacing.start_time)
        return self.runs.start(p.slot, p.scheduled, p.attempt)

    def _fire(self, tenure: Tenure, slot: Slot) -> Report | None:
        """A slot is due: apply the overlap policy, claim it (the claim itself is refused while
        the election is suspended) unless this tenure claimed it ahead, start it."""
        ahead = tenure.ahead
        tenure.ahead = None
        if ahead is not None and ahead.id == slot.id:
            return self._fire_claimed(tenure, slot, tenure.ahead_claimed_at)
        if slot.id in self.unknown:  # its claim ahead failed: read it back first
            return self._settle(tenure, slot.id)
        if tenure.last_claimed is not None and slot.fire_time <= tenure.last_claimed:
            # Claimed before (its key may since have been pruned): never a second run.
            self.job.log.info("slot.skipped", slot=slot.id, reason="already_claimed")
            return Report("slot_skipped", {"slot": slot.id, "reason": "already_claimed"})
        return self._fire_unclaimed(tenure, slot)

    def _fire_unclaimed(self, tenure: Tenure, slot: Slot) -> Report | None:
        if self.job.s.paused:  # suspended by its jobs file: the slot is skipped, as by `suspend`
            self.switches.note_suspended(tenure, True)
            return self._skip(tenure, slot, "suspended", claim=True)
        if self.runs.active and self.job.s.concurrency == "forbid":
            return self._skip(tenure, slot, "overlap", claim=True)
        replacing = bool(self.runs.active) and self.job.s.concurrency == "replace"
        result = self.claims.claim(tenure, slot, "replacing" if replacing else "running")
        if result == "suspended":
            self.switches.note_suspended(tenure, True)
            return self._skip(tenure, slot, "suspended", claim=True)
        if result != "claimed":
            return Report("claim_failed", {"slot": slot.id})
        return self._fire_claimed(tenure, slot, self.job.clock.monotonic())

    def _fire_claimed(self, tenure: Tenure, slot: Slot, claimed_at: float) -> Report | None:
        """Start a slot our claim made ours (``claimed_at``: when it committed). A run started
        since a claim made ahead (a retry, a trigger) is handled by the overlap policy here,
        the claim already made: forbid skips the slot, replace stops the run."""
        if self.runs.active and self.job.s.concurrency == "forbid":
            return self._skip(tenure, slot, "overlap", claim=False)
        replacing = bool(self.runs.active) and self.job.s.concurrency == "replace"
        if replacing:
            for active in self.runs.active:
                active.run.stop("replaced")
            # Only the newest replacement waits: an older one still waiting is superseded.
            for p in list(tenure.pending):
                if p.replacing is not None:
                    tenure.pending.remove(p)
                    self._skip(tenure, p.replacing, "superseded", claim=False)
            tenure.pending.append(
                Pending(slot.id, slot.fire_time, 0, 0.0, tenure.token, replacing=slot)
            )
            self.claims.prune_slots(tenure)
            return Report("job_replacing", {"slot": slot.id})
        report = self.runs.start(
            slot.id, slot.fire_time, 0, lag_from=slot.start_time, claimed_at=claimed_at
        )
        # Bookkeeping after every start of the pass (:meth:`after_starts`): other jobs due at
        # the same time are requested first.
        self._prune_after = tenure
        return report

    def after_starts(self, tenure: Tenure | None) -> None:
        """The pass has requested every start due: now the old claims a start of ``tenure``
        (the current one) left behind."""
        started, self._prune_after = self._prune_after, None
        if started is not None and started is tenure:
            self.claims.prune_slots(tenure)

    def _settle_unknown(self, tenure: Tenure) -> Report | None:
        """Read back the claims whose outcome was unknown (budget permitting), one a cycle."""
        assert self.job.planner is not None
        nxt = self.job.planner.peek()
        for u in self.unknown.settle_now(nxt.id if nxt is not None else None):
            if not self.job.session.may_call():
                return None
            return self._settle(tenure, u.slot.id)
        return None

    def _settle(self, tenure: Tenure, slot_id: str) -> Report | None:
        """Settle one slot whose claim's outcome was unknown (:mod:`.unknown`)."""
        assert self.job.planner is not None
        u = self.unknown.pop(slot_id)
        assert u is not None
        try:
            claim = self.job.data.claim(slot_id, timeout=self.job.session.io_timeout())
        except StoreError as exc:
            self.job.session.store_error(exc)
            self.unknown.add(u.slot, u.token)  # read again at a later cycle
            return None
        planning = tenure.slot_clock.peek(self.job.clock.wall(), self.job.clock.monotonic())
        slot, last = u.slot, tenure.last_claimed
        late = planning - slot.start_time > self.job.planner.deadline
        newest = last is None or last <= slot.fire_time
        what = settle(u, claim, tenure.token, late=late, newest=newest)
        self.job.log.info("slot.claim_settled", slot=slot_id, outcome=what)
        if what == "run":
            return self._fire_claimed(tenure, slot, self.job.clock.monotonic())
        if what == "claim":
            return self._fire_unclaimed(tenure, slot)
        if what == "late":
            return self._skip(tenure, slot, "deadline", claim=True)
        if what == "not_run":
            self.history.not_run(slot_id, slot.fire_time, "missed", "claim_unknown", tenure.token)
        return Report("slot_skipped", {"slot": slot_id, "reason": f"claim_{what}"})

    def _skip(
        self,
        tenure: Tenure,
        slot: Slot,
        reason: str,
        *,
        claim: bool,
        also: int = 0,
        first: Slot | None = None,
    ) -> Report:
        """Skip ``slot`` (and count ``also`` older slots skipped with it, unclaimed, from
        ``first`` on: its record stands for them all).

        With ``claim``, the skip is recorded only if the claim made the slot ours: a deposed
        leader records nothing for a slot its successor may have run.
        """
        if claim:
            if self.claims.claim(tenure, slot, f"skipped_{reason}") != "claimed":
                return Report("claim_failed", {"slot": slot.id})
            self.claims.prune_slots(tenure)
        if also:
            self.job.log.info("slot.skipped", slot=slot.id, reason=reason, also_skipped=also)
        else:
            self.job.log.info("slot.skipped", slot=slot.id, reason=reason)
        if self.job.metrics is not None:
            self.job.metrics.slots_skipped.labels(
                self.job.election, self.job.s.election, reason
            ).inc(1 + also)
        extra: dict[str, Any] = {}
        if also and first is not None:
            extra = {"first_slot": first.id, "count": 1 + also}
        why = SKIP_NOT_RUN[reason]
        self.history.not_run(
            slot.id, slot.fire_time, why, f"skipped_{reason}", tenure.token, **extra
        )
        return Report("slot_skipped", {"slot": slot.id, "reason": reason})
