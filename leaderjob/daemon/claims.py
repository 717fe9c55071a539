"""Slot claims, for one job while it is led: the fenced Txn that makes a slot ours (S3), why a
claim to run was refused, and the pruning that keeps the claims bounded.

A claim is a Txn guarded by our leader key: it applies only while we lead, and only if nobody
claimed the slot before (and, for a run, only while the election is not suspended). A claim whose
outcome is unknown (the call failed) is never run on a guess: it joins the unknown claims
(:mod:`.unknown`), read back later by the slot path (:mod:`.scheduling`). The claims a new one
pushes out of the bound are deleted in its own Txn; a backlog goes in a fenced Txn of its own,
while the cycle has time to spare (through the recorder's :meth:`~.history.History.prune`).
"""

from __future__ import annotations

from datetime import timedelta

from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import Tenure
from leaderjob.election.store import StoreError
from leaderjob.history.records import iso
from leaderjob.schedule.planner import Slot
from leaderjob.schedule.unknown_claims import UnknownClaims


class Claims:
    def __init__(self, job: JobContext, history: History, unknown: UnknownClaims) -> None:
        self.job = job
        self.history = history
        #: Slots whose claim's outcome is unknown, across tenures (shared with the slot path).
        self.unknown = unknown
        #: Timed claims the next claim pushes out of the bound, found under this token.
        self._slot_carry: tuple[int, list[str]] | None = None

    def claim(self, tenure: Tenure, slot: Slot, status: str) -> str:
        """Claim ``slot`` (S3). "claimed", "suspended" (a run refused while suspended),
        "rejected" (deposed, or claimed before) or "unknown" (the call failed)."""
        own = self.job.seat.key
        if own is None:
            return "rejected"
        claim = {
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": tenure.token,
            "identity": self.job.s.identity,
            "status": status,
            "claimed_at": iso(self.job.clock.wall()),
        }
        run = status in ("running", "replacing")
        # The claims this one pushes out of the bound go in its Txn: one revision, fenced.
        _, carry = self.history.carry(self._slot_carry)
        try:
            ok = self.job.data.claim_slot(
                own,
                tenure.token,
                slot.id,
                claim,
                run=run,
                deletes=carry,
                timeout=self.job.session.io_timeout(),
            )
        except StoreError as exc:
            # Unknown whether it applied: do not run (at most once per slot).
            self.job.session.store_error(exc)
            self.job.log.warning("slot.claim_unknown", slot=slot.id)
            if run:  # read back later: it runs, or it gets a record (unknown.py)
                self.unknown.add(slot, tenure.token)
            tenure.last_claimed = max(tenure.last_claimed or slot.fire_time, slot.fire_time)
            return "unknown"
        if ok:
            self._slot_carry = None
        result = "claimed" if ok else (self.why_refused() if run else "rejected")
        if result == "claimed":
            tenure.last_claimed = max(tenure.last_claimed or slot.fire_time, slot.fire_time)
        elif result == "rejected":
            # Either we were deposed (our key changed) or the slot was claimed before us.
            self.job.log.warning("slot.claim_rejected", slot=slot.id)
            if self.job.metrics is not None:
                self.job.metrics.slots_skipped.labels(
                    self.job.election, self.job.s.election, "claim_rejected"
                ).inc()
            self.job.seat.recheck()
        return result

    def why_refused(self) -> str:
        """A claim to run was refused: "suspended", or "rejected" (deposed, or claimed before).
        The Txn cannot say which compare failed; a read can (unknown counts as rejected)."""
        if not self.job.session.may_call():
            return "rejected"
        try:
            return (
                "suspended"
                if self.job.data.is_suspended(timeout=self.job.session.io_timeout())
                else "rejected"
            )
        except StoreError as exc:
            self.job.session.store_error(exc)
            return "rejected"

    def prune_slots(self, tenure: Tenure, *, triggers: bool = False) -> None:
        """Keep the slot claims bounded, each kind by its own time — bookkeeping, so only while
        the cycle has time to spare. After every claim: timed claims already beyond the bound
        go now, a bounded batch in one fenced Txn (a backlog); the one the next claim pushes out
        (a schedule's interval later) is deleted in that claim's Txn (no revision of its own).
        Trigger claims are rare: theirs go at once."""
        keep = max(10, self.job.s.history_limit)
        if triggers:
            now = self.job.clock.wall()
            self.history.prune(
                lambda timeout: (
                    self.job.data.old_claims(now, keep, triggers=True, timeout=timeout),
                    [],
                )
            )
            return
        cutoff = tenure.last_claimed
        if cutoff is None:
            return
        step = timedelta(0)
        if self.job.s.schedule is not None:
            step = self.job.s.schedule.interval()
            cutoff -= step * keep

        def find(timeout: float) -> tuple[list[str], list[str]]:
            old = self.job.data.old_claims(cutoff + step, keep, triggers=False, timeout=timeout)
            beyond = [k for k in old if (self.job.data.fire_time(k) or cutoff) < cutoff]
            return beyond, old[len(beyond) :]

        carry = self.history.prune(find)
        if carry is not None:
            self._slot_carry = carry
