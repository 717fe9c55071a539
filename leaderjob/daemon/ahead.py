"""The claim ahead, for one job while it is led: its next slot claimed just before its start,
so that the claim's round trip is not on the fire path.

When a job claims ahead (nothing runs, no claim ahead held, this slot not tried yet), the write
it would send with other jobs' claims of the same instant (:mod:`.together`) and the outcome that
comes back, and the claim given back when the job is left on purpose (a graceful stop, a move,
a reload) so that the successor runs that slot. The slot's path from its start on is
:mod:`.scheduling`'s.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from leaderjob.daemon.claims import Claims
from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import Tenure
from leaderjob.daemon.runs import Runs
from leaderjob.election.store import Guarded, StoreError
from leaderjob.schedule import slot_id
from leaderjob.schedule.planner import Slot
from leaderjob.schedule.unknown_claims import UnknownClaims

#: The next slot is claimed this long before its start, so that the claim's round trip is not on
#: the fire path. Long enough for a claim under load (its p99 on a busy 2-CPU machine: ~25 ms),
#: short enough that a graceful handover rarely falls between a claim and its start (a slot
#: claimed ahead by a leader that then leaves is not run by anyone: see Ahead.claim).
CLAIM_AHEAD = timedelta(seconds=0.05)


class Ahead:
    def __init__(
        self, job: JobContext, runs: Runs, history: History, claims: Claims, unknown: UnknownClaims
    ) -> None:
        self.job = job
        self.runs = runs  # nothing is claimed ahead while a run goes on
        self.history = history  # a claim that could not be given back: a not-run record
        self.claims = claims
        self.unknown = unknown  # a slot whose claim's outcome is unknown is not claimed again

    def may_claim(self, tenure: Tenure) -> bool:
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

    def claim(self, tenure: Tenure, wall: datetime) -> None:
        """Claim the next slot up to :data:`CLAIM_AHEAD` before its start; it starts at its
        start time without another round trip (the scheduling's fire path).

        S3 still holds: the claim is the same Txn, guarded by our own key, and records the slot
        (``state/last_slot`` too). Nothing runs before the start time, and only in the tenure
        that made the claim: if leadership is lost in between, the tenure (and ``ahead`` with
        it) is dropped and nothing runs. The successor reads the newest claim when its tenure
        begins and plans only the slots after it, and ``_fire`` skips any slot at or before
        ``last_claimed``: it never runs that slot, so the slot runs at most once. The price is
        on liveness, not safety: such a slot runs nowhere (as a slot whose claim's outcome is
        unknown); the window is :data:`CLAIM_AHEAD` per slot. A leader that leaves on purpose
        (a graceful stop, a move, a reload) gives the claim back first (:meth:`give_back`),
        so only a crash or a lost lease in that window costs the slot.
        """
        assert self.job.planner is not None
        if self.job.s.paused or not self.may_claim(tenure) or not self.job.session.may_call():
            return
        slot = self.job.planner.claimable(wall, CLAIM_AHEAD)
        if slot is None:
            return
        previous = tenure.last_claimed
        self._took_ahead(tenure, slot, previous, self.claims.claim(tenure, slot, "running"))
        # Refused (suspended, deposed) or unknown: at its start the slot takes the usual path —
        # claimed again (and refused), or read back (an unknown outcome: see _settle).

    def _took_ahead(
        self, tenure: Tenure, slot: Slot, previous: datetime | None, result: str
    ) -> None:
        tenure.ahead_tried = slot.id
        if result == "claimed":
            tenure.ahead = slot
            tenure.ahead_claimed_at = self.job.clock.monotonic()
            tenure.ahead_previous = previous

    def claim_wanted(self, tenure: Tenure) -> tuple[Slot, Guarded] | None:
        """The claim ahead this job would make now (:meth:`claim`), as a write to send
        with other jobs' claims in one request (:mod:`.together`); None: none now. The same
        conditions and the same write: fenced by this job's own key, refused while suspended;
        its outcome comes back through :meth:`claimed_together`."""
        job = self.job
        if job.planner is None or job.s.mode != "schedule":
            return None
        if not tenure.ready or job.s.paused or not self.may_claim(tenure):
            return None
        planning = tenure.slot_clock.peek(job.clock.wall(), job.clock.monotonic())
        slot = job.planner.claimable(planning, CLAIM_AHEAD)
        if slot is None:
            # A pass that comes after the start (many jobs make a pass long): the slot due now,
            # claimed as if ahead, while far from its starting deadline (the pass starts it).
            due = job.planner.peek()
            if due is not None and timedelta(0) <= planning - due.start_time <= (
                job.planner.deadline / 2
            ):
                slot = due
        if slot is None or slot.id in self.unknown:
            return None
        write = self.claims.write(tenure, slot)
        return None if write is None else (slot, write)

    def claimed_together(self, tenure: Tenure, slot: Slot, outcome: bool | StoreError) -> None:
        """The outcome of the claim :meth:`claim_wanted` gave, sent with others: applied, refused,
        or unknown (the request failed: the slot joins the unknown claims, read back before it
        could run)."""
        previous = tenure.last_claimed
        self._took_ahead(tenure, slot, previous, self.claims.outcome(tenure, slot, True, outcome))

    def give_back(self, tenure: Tenure | None) -> None:
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
