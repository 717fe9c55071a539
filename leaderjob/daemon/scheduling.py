"""Scheduling, for one job while it is led: what happens to one slot, from due to claimed to run.

One leading cycle gives the schedule one budget of etcd time (:meth:`Scheduling._start_scheduled`):
catch-up once per tenure from the newest slot anyone claimed (a linearizable read), then the
trigger and suspend switches once per renew interval, then retries and replacements, then the slot
that is due. A slot runs only after its claim, a Txn guarded by our leader key, made it ours (S3);
a claim whose outcome is unknown never runs on a guess: it is read back first (:mod:`.unknown`).
Bookkeeping (publishing the schedule, pruning old claims) only runs while the cycle has time to
spare.

This module keeps one slot's path: due, claimed (ahead or at its start), the overlap policy,
started or skipped, old claims pruned. It builds on the tenure's start (catch-up, skew, the
schedule published: :mod:`.catchup`) and the trigger and suspend switches (:mod:`.switches`).
It is the scheduling half of :class:`~leaderjob.daemon.runner.Runner`: it starts runs and
records outcomes through the runner (``_start``, ``_not_run``, ``_prune``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from leaderjob.daemon.catchup import CatchUp
from leaderjob.daemon.model import ActiveRun, Pending, Report, Tenure
from leaderjob.daemon.switches import Switches
from leaderjob.daemon.unknown import UnknownClaims, settle
from leaderjob.election.store import StoreError
from leaderjob.history.records import SKIP_NOT_RUN, iso
from leaderjob.schedule import slot_id
from leaderjob.schedule.planner import Slot

#: The next slot is claimed this long before its start, so that the claim's round trip is not on
#: the fire path. Long enough for a claim under load (its p99 on a busy 2-CPU machine: ~25 ms),
#: short enough that a graceful handover rarely falls between a claim and its start (a slot
#: claimed ahead by a leader that then leaves is not run by anyone: see _claim_ahead).
CLAIM_AHEAD = timedelta(seconds=0.05)


# CatchUp before Switches: its _skewed must come before the placeholder in Switches.
class Scheduling(CatchUp, Switches):
    # Set by the runner (see Runner.__init__); the settings, session, seat, data, planner,
    # clock, metrics, election and log are declared in the parts (CatchUp, Switches).
    runs: list[ActiveRun]
    tenure: Tenure | None
    #: Timed claims the next claim pushes out of the bound, found under this token.
    _slot_carry: tuple[int, list[str]] | None = None
    #: Slots whose claim's outcome is unknown, across tenures (set by the runner).
    unknown_claims: UnknownClaims

    # The runner's; _start and _not_run are declared in the parts (Switches, CatchUp).
    def _flush(self) -> None:
        raise NotImplementedError

    def _prune(
        self, find: Callable[[float], tuple[list[str], list[str]]]
    ) -> tuple[int, list[str]] | None:
        raise NotImplementedError

    def _carry(
        self, carried: tuple[int, list[str]] | None
    ) -> tuple[tuple[str, int] | None, list[str]]:
        raise NotImplementedError

    def _start_scheduled(self, tenure: Tenure) -> Report | None:
        """The schedule's share of one leading cycle, all its etcd calls within one budget."""
        own = self.session.deadline is None  # else the cycle's election step made it
        if own:
            self.session.deadline = self.session.group.step_deadline()
        try:
            report = self._schedule_step(tenure)
            if not tenure.published and tenure.ready and self.session.may_bookkeep():
                self._publish_schedule(tenure)
            self._flush()
            return report
        finally:
            if own:
                self.session.deadline = None

    def _schedule_step(self, tenure: Tenure) -> Report | None:
        assert self.planner is not None
        now = self.clock.monotonic()
        wall, jumped = tenure.slot_clock.observe(self.clock.wall(), now)
        if self.metrics is not None:
            self.metrics.clock_step.labels(self.election, self.s.election).set(jumped)
        if jumped:
            self.log.warning(
                "schedule.clock_step",
                ahead_seconds=round(jumped, 3),
                planning_time=iso(wall),
                hint="the wall clock jumped ahead; slots follow the monotonic clock until the "
                "jump is undone or has held for 10 minutes",
            )
        if not tenure.ready and not self._begin_tenure(tenure, wall):
            return None
        self._check_skew(tenure, wall)
        report = self._poll_control(tenure) or self._settle_unknown(tenure)
        if report is not None:
            return report
        # Retries and replacements waiting for their time.
        for p in list(tenure.pending):
            if now >= p.not_before and not self._blocked() and self.session.may_call():
                tenure.pending.remove(p)
                if p.fire is not None:
                    return self._fire(tenure, p.fire)
                return self._start_pending(tenure, p)
        if not self.session.may_call():
            return None  # the slot stays due: claimed next cycle, after the keepalive
        slot, expired = self.planner.due(wall)
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
        assert self.planner is not None
        slot = self.planner.peek()
        return (
            slot is not None
            # One held at a time (one the planner moved past, expired after a stall, is stale).
            and (tenure.ahead is None or tenure.ahead.fire_time < slot.fire_time)
            and tenure.ahead_tried != slot.id
            and not self.runs
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
        assert self.planner is not None
        if self.s.paused or not self.may_claim_ahead(tenure) or not self.session.may_call():
            return
        slot = self.planner.claimable(wall, CLAIM_AHEAD)
        if slot is None:
            return
        tenure.ahead_tried = slot.id
        previous = tenure.last_claimed
        if self._claim(tenure, slot, "running") == "claimed":
            tenure.ahead = slot
            tenure.ahead_claimed_at = self.clock.monotonic()
            tenure.ahead_previous = previous
        # Refused (suspended, deposed) or unknown: at its start the slot takes the usual path —
        # claimed again (and refused), or read back (an unknown outcome: see _settle).

    def give_back_ahead(self) -> None:
        """Leaving this job on purpose while its next slot is claimed ahead and not started:
        delete the claim and move ``state/last_slot`` back, fenced by our key — so only while we
        still lead, and nothing of ours runs the slot afterwards (S3) — and the successor plans
        and runs it (L2: a graceful handover costs no slot). If the give-back fails, the slot
        is lost as in a crash, and a not-run record says so."""
        tenure = self.tenure
        if tenure is None or tenure.ahead is None:
            return
        slot, tenure.ahead = tenure.ahead, None
        own = self.seat.key
        # No claim before it (a new election): a second before it, not nothing — a successor
        # that finds no claim at all plans from its own clock and would not see this slot.
        previous = tenure.ahead_previous or slot.fire_time - timedelta(seconds=1)
        ok = False
        if own is not None and self.session.may_call():
            try:
                ok = self.data.unclaim_slot(
                    own,
                    tenure.token,
                    slot.id,
                    slot_id(previous),
                    timeout=self.session.io_timeout(),
                )
            except StoreError as exc:
                self.session.store_error(exc)
        if ok:
            tenure.last_claimed = tenure.ahead_previous
            self.log.info("slot.given_back", slot=slot.id)
        else:
            self.log.warning("slot.give_back_failed", slot=slot.id)
            self._not_run(slot.id, slot.fire_time, "missed", "skipped_leaving", tenure.token)

    def _blocked(self) -> bool:
        """A pending run must wait: another run is active and runs may not overlap."""
        return bool(self.runs) and self.s.concurrency != "allow"

    def _start_pending(self, tenure: Tenure, p: Pending) -> Report | None:
        """Start a claimed retry or replacement, if the election is not suspended meanwhile and
        (a replacement) its starting deadline has not passed while the old run was stopping."""
        assert self.planner is not None
        planning = tenure.slot_clock.peek(self.clock.wall(), self.clock.monotonic())
        if p.replacing is not None and planning - p.replacing.start_time > self.planner.deadline:
            return self._skip(tenure, p.replacing, "deadline", claim=False)
        try:
            suspended = self.s.paused or self.data.is_suspended(timeout=self.session.io_timeout())
        except StoreError as exc:
            self.session.store_error(exc)  # unknown means "don't start": try again shortly
            p.not_before = self.clock.monotonic() + self.session.cycle_budget()
            tenure.pending.append(p)
            return None
        self._note_suspended(tenure, suspended)
        if suspended:
            if p.replacing is not None:
                return self._skip(tenure, p.replacing, "suspended", claim=False)
            self.log.info("slot.skipped", slot=p.slot, attempt=p.attempt, reason="suspended")
            return Report("slot_skipped", {"slot": p.slot, "reason": "suspended"})
        if p.replacing is not None:
            return self._start(p.slot, p.scheduled, 0, lag_from=p.replacing.start_time)
        return self._start(p.slot, p.scheduled, p.attempt)

    def _fire(self, tenure: Tenure, slot: Slot) -> Report | None:
        """A slot is due: apply the overlap policy, claim it (the claim itself is refused while
        the election is suspended) unless this tenure claimed it ahead, start it."""
        ahead = tenure.ahead
        tenure.ahead = None
        if ahead is not None and ahead.id == slot.id:
            return self._fire_claimed(tenure, slot, tenure.ahead_claimed_at)
        if slot.id in self.unknown_claims:  # its claim ahead failed: read it back first
            return self._settle(tenure, slot.id)
        if tenure.last_claimed is not None and slot.fire_time <= tenure.last_claimed:
            # Claimed before (its key may since have been pruned): never a second run.
            self.log.info("slot.skipped", slot=slot.id, reason="already_claimed")
            return Report("slot_skipped", {"slot": slot.id, "reason": "already_claimed"})
        return self._fire_unclaimed(tenure, slot)

    def _fire_unclaimed(self, tenure: Tenure, slot: Slot) -> Report | None:
        if self.s.paused:  # suspended by its jobs file: the slot is skipped, as by `suspend`
            self._note_suspended(tenure, True)
            return self._skip(tenure, slot, "suspended", claim=True)
        if self.runs and self.s.concurrency == "forbid":
            return self._skip(tenure, slot, "overlap", claim=True)
        replacing = bool(self.runs) and self.s.concurrency == "replace"
        result = self._claim(tenure, slot, "replacing" if replacing else "running")
        if result == "suspended":
            self._note_suspended(tenure, True)
            return self._skip(tenure, slot, "suspended", claim=True)
        if result != "claimed":
            return Report("claim_failed", {"slot": slot.id})
        return self._fire_claimed(tenure, slot, self.clock.monotonic())

    def _fire_claimed(self, tenure: Tenure, slot: Slot, claimed_at: float) -> Report | None:
        """Start a slot our claim made ours (``claimed_at``: when it committed). A run started
        since a claim made ahead (a retry, a trigger) is handled by the overlap policy here,
        the claim already made: forbid skips the slot, replace stops the run."""
        if self.runs and self.s.concurrency == "forbid":
            return self._skip(tenure, slot, "overlap", claim=False)
        replacing = bool(self.runs) and self.s.concurrency == "replace"
        if replacing:
            for active in self.runs:
                active.run.stop("replaced")
            # Only the newest replacement waits: an older one still waiting is superseded.
            for p in list(tenure.pending):
                if p.replacing is not None:
                    tenure.pending.remove(p)
                    self._skip(tenure, p.replacing, "superseded", claim=False)
            tenure.pending.append(
                Pending(slot.id, slot.fire_time, 0, 0.0, tenure.token, replacing=slot)
            )
            self._prune_slots(tenure)
            return Report("job_replacing", {"slot": slot.id})
        report = self._start(
            slot.id, slot.fire_time, 0, lag_from=slot.start_time, claimed_at=claimed_at
        )
        self._prune_slots(tenure)
        return report

    def _claim(self, tenure: Tenure, slot: Slot, status: str) -> str:
        """Claim ``slot`` (S3). "claimed", "suspended" (a run refused while suspended),
        "rejected" (deposed, or claimed before) or "unknown" (the call failed)."""
        own = self.seat.key
        if own is None:
            return "rejected"
        claim = {
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": tenure.token,
            "identity": self.s.identity,
            "status": status,
            "claimed_at": iso(self.clock.wall()),
        }
        run = status in ("running", "replacing")
        # The claims this one pushes out of the bound go in its Txn: one revision, fenced.
        _, carry = self._carry(self._slot_carry)
        try:
            ok = self.data.claim_slot(
                own,
                tenure.token,
                slot.id,
                claim,
                run=run,
                deletes=carry,
                timeout=self.session.io_timeout(),
            )
        except StoreError as exc:
            # Unknown whether it applied: do not run (at most once per slot).
            self.session.store_error(exc)
            self.log.warning("slot.claim_unknown", slot=slot.id)
            if run:  # read back later: it runs, or it gets a record (unknown.py)
                self.unknown_claims.add(slot, tenure.token)
            tenure.last_claimed = max(tenure.last_claimed or slot.fire_time, slot.fire_time)
            return "unknown"
        if ok:
            self._slot_carry = None
        result = "claimed" if ok else (self._why_refused() if run else "rejected")
        if result == "claimed":
            tenure.last_claimed = max(tenure.last_claimed or slot.fire_time, slot.fire_time)
        elif result == "rejected":
            # Either we were deposed (our key changed) or the slot was claimed before us.
            self.log.warning("slot.claim_rejected", slot=slot.id)
            if self.metrics is not None:
                self.metrics.slots_skipped.labels(
                    self.election, self.s.election, "claim_rejected"
                ).inc()
            self.seat.recheck()
        return result

    def _settle_unknown(self, tenure: Tenure) -> Report | None:
        """Read back the claims whose outcome was unknown (budget permitting), one a cycle."""
        assert self.planner is not None
        nxt = self.planner.peek()
        for u in self.unknown_claims.settle_now(nxt.id if nxt is not None else None):
            if not self.session.may_call():
                return None
            return self._settle(tenure, u.slot.id)
        return None

    def _settle(self, tenure: Tenure, slot_id: str) -> Report | None:
        """Settle one slot whose claim's outcome was unknown (:mod:`.unknown`)."""
        assert self.planner is not None
        u = self.unknown_claims.pop(slot_id)
        assert u is not None
        try:
            claim = self.data.claim(slot_id, timeout=self.session.io_timeout())
        except StoreError as exc:
            self.session.store_error(exc)
            self.unknown_claims.add(u.slot, u.token)  # read again at a later cycle
            return None
        planning = tenure.slot_clock.peek(self.clock.wall(), self.clock.monotonic())
        slot, last = u.slot, tenure.last_claimed
        late = planning - slot.start_time > self.planner.deadline
        newest = last is None or last <= slot.fire_time
        what = settle(u, claim, tenure.token, late=late, newest=newest)
        self.log.info("slot.claim_settled", slot=slot_id, outcome=what)
        if what == "run":
            return self._fire_claimed(tenure, slot, self.clock.monotonic())
        if what == "claim":
            return self._fire_unclaimed(tenure, slot)
        if what == "late":
            return self._skip(tenure, slot, "deadline", claim=True)
        if what == "not_run":
            self._not_run(slot_id, slot.fire_time, "missed", "claim_unknown", tenure.token)
        return Report("slot_skipped", {"slot": slot_id, "reason": f"claim_{what}"})

    def _why_refused(self) -> str:
        """A claim to run was refused: "suspended", or "rejected" (deposed, or claimed before).
        The Txn cannot say which compare failed; a read can (unknown counts as rejected)."""
        if not self.session.may_call():
            return "rejected"
        try:
            return (
                "suspended"
                if self.data.is_suspended(timeout=self.session.io_timeout())
                else "rejected"
            )
        except StoreError as exc:
            self.session.store_error(exc)
            return "rejected"

    def _prune_slots(self, tenure: Tenure, *, triggers: bool = False) -> None:
        """Keep the slot claims bounded, each kind by its own time — bookkeeping, so only while
        the cycle has time to spare. After every claim: timed claims already beyond the bound
        go now, a bounded batch in one fenced Txn (a backlog); the one the next claim pushes out
        (a schedule's interval later) is deleted in that claim's Txn (no revision of its own).
        Trigger claims are rare: theirs go at once."""
        keep = max(10, self.s.history_limit)
        if triggers:
            now = self.clock.wall()
            self._prune(
                lambda timeout: (
                    self.data.old_claims(now, keep, triggers=True, timeout=timeout),
                    [],
                )
            )
            return
        cutoff = tenure.last_claimed
        if cutoff is None:
            return
        step = timedelta(0)
        if self.s.schedule is not None:
            step = self.s.schedule.interval()
            cutoff -= step * keep

        def find(timeout: float) -> tuple[list[str], list[str]]:
            old = self.data.old_claims(cutoff + step, keep, triggers=False, timeout=timeout)
            beyond = [k for k in old if (self.data.fire_time(k) or cutoff) < cutoff]
            return beyond, old[len(beyond) :]

        carry = self._prune(find)
        if carry is not None:
            self._slot_carry = carry

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
            if self._claim(tenure, slot, f"skipped_{reason}") != "claimed":
                return Report("claim_failed", {"slot": slot.id})
            self._prune_slots(tenure)
        if also:
            self.log.info("slot.skipped", slot=slot.id, reason=reason, also_skipped=also)
        else:
            self.log.info("slot.skipped", slot=slot.id, reason=reason)
        if self.metrics is not None:
            self.metrics.slots_skipped.labels(self.election, self.s.election, reason).inc(1 + also)
        extra: dict[str, Any] = {}
        if also and first is not None:
            extra = {"first_slot": first.id, "count": 1 + also}
        why = SKIP_NOT_RUN[reason]
        self._not_run(slot.id, slot.fire_time, why, f"skipped_{reason}", tenure.token, **extra)
        return Report("slot_skipped", {"slot": slot.id, "reason": reason})
