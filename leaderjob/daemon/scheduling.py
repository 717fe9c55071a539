"""Scheduling, for one job while it is led: what happens to one slot, from due to claimed to run.

One leading cycle gives the schedule one budget of etcd time (:meth:`Scheduling.start_scheduled`):
catch-up once per tenure from the newest slot anyone claimed (a linearizable read), then the
trigger and suspend switches once per renew interval, then retries and replacements, then the slot
that is due. A slot runs only after its claim, a Txn guarded by our leader key, made it ours (S3);
a claim whose outcome is unknown never runs on a guess: it is read back first (:mod:`.unknown`).
Bookkeeping (publishing the schedule, pruning old claims) only runs while the cycle has time to
spare.

This module keeps one slot's path: due, claimed (ahead or at its start), the overlap policy,
started or skipped, a claim ahead given back. Its collaborators are handed in by the runner:
the tenure's start (catch-up, skew, the schedule published: :mod:`.catchup`), the trigger and
suspend switches (:mod:`.switches`), the claims (:mod:`.claims`), what starts a run
(:mod:`.runs`) and what records (:mod:`.history`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from leaderjob.daemon.catchup import CatchUp
from leaderjob.daemon.claims import Claims
from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import Pending, Report, Tenure
from leaderjob.daemon.runs import Runs
from leaderjob.daemon.switches import Switches
from leaderjob.election.store import StoreError
from leaderjob.history.records import SKIP_NOT_RUN, iso
from leaderjob.schedule import slot_id
from leaderjob.schedule.planner import Slot
from leaderjob.schedule.unknown_claims import UnknownClaims, settle

#: The next slot is claimed this long before its start, so that the claim's round trip is not on
#: the fire path. Long enough for a claim under load (its p99 on a busy 2-CPU machine: ~25 ms),
#: short enough that a graceful handover rarely falls between a claim and its start (a slot
#: claimed ahead by a leader that then leaves is not run by anyone: see _claim_ahead).
CLAIM_AHEAD = timedelta(seconds=0.05)


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
            self.job.metrics.clock_step.labels(self.job.election, self.job.s.election).set(jumped)
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
            self._claim_ahead(tenure, wall)
            return None
        return self._fire(tenure, slot)

    def may_claim_ahead(self, tenure: Tenure) -> bool:
        """Whether the next slot is to be claimed ahead: nothing runs (the overlap policy is
        decided at the claim), no claim ahead is held, this slot was not tried yet."""
        assert self.job.planner is not None
        slot = self.job.planner.peek()
        return (
            slot is not None
            # One held at a time (one the planner moved past, expired after a stall, is stale).
            and (tenure.ahead is None or tenure.ahead.fire_time < slot.fire_time)
            and tenure.ahead_tried != slot.id
            and not self.runs.active
            and not (tenure.last_claimed is not None and slot.fire_time <= tenure.last_claimed)
        )

    def _claim_ahead(self, tenure: Tenure, wall: datetime) -> None:
        """Claim the next slot up to :data:`CLAIM_AHEAD` before its start; it starts at its
        start time without another round trip (:meth:`_fire`).

        S3 still holds: the claim is the same Txn, guarded by our own key, and records the slot
        (``state/last_slot`` too). Nothing runs before the start time, and only in the tenure
        that made the claim: if leadership is lost in between, the tenure (and ``ahead`` with
        it) is dropped and nothing runs. The successor reads the newest claim when its tenure
        begins and plans only the slots after it, and ``_fire`` skips any slot at or before
        ``last_claimed``: it never runs that slot, so the slot runs at most once. The price is
        on liveness, not safety: such a slot runs nowhere (as a slot whose claim's outcome is
        unknown); the window is :data:`CLAIM_AHEAD` per slot. A leader that leaves on purpose
        (a graceful stop, a move, a reload) gives the claim back first (:meth:`give_back_ahead`),
        so only a crash or a lost lease in that window costs the slot.
        """
        assert self.job.planner is not None
        if self.job.s.paused or not self.may_claim_ahead(tenure) or not self.job.session.may_call():
            return
        slot = self.job.planner.claimable(wall, CLAIM_AHEAD)
        if slot is None:
            return
        tenure.ahead_tried = slot.id
        previous = tenure.last_claimed
        if self.claims.claim(tenure, slot, "running") == "claimed":
            tenure.ahead = slot
            tenure.ahead_claimed_at = self.job.clock.monotonic()
            tenure.ahead_previous = previous
        # Refused (suspended, deposed) or unknown: at its start the slot takes the usual path —
        # claimed again (and refused), or read back (an unknown outcome: see _settle).

    def give_back_ahead(self, tenure: Tenure | None) -> None:
        """Leaving this job on purpose while its next slot is claimed ahead and not started:
        delete the claim and move ``state/last_slot`` back, fenced by our key — so only while we
        still lead, and nothing of ours runs the slot afterwards (S3) — and the successor plans
        and runs it (L2: a graceful handover costs no slot). If the give-back fails, the slot
        is lost as in a crash, and a not-run record says so."""
        if tenure is None or tenure.ahead is None:
            return
        slot, tenure.ahead = tenure.ahead, None
        own = self.job.seat.key
        # No claim before it (a new election): a second before it, not nothing — a successor
        # that finds no claim at all plans from its own clock and would not see this slot.
        previous = tenure.ahead_previous or slot.fire_time - timedelta(seconds=1)
        ok = False
        if own is not None and self.job.session.may_call():
            try:
                ok = self.job.data.unclaim_slot(
                    own,
                    tenure.token,
                    slot.id,
                    slot_id(previous),
                    timeout=self.job.session.io_timeout(),
                )
            except StoreError as exc:
                self.job.session.store_error(exc)
        if ok:
            tenure.last_claimed = tenure.ahead_previous
            self.job.log.info("slot.given_back", slot=slot.id)
        else:
            self.job.log.warning("slot.give_back_failed", slot=slot.id)
            self.history.not_run(slot.id, slot.fire_time, "missed", "skipped_leaving", tenure.token)

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
        self.claims.prune_slots(tenure)
        return report

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
