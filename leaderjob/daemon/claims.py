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

from datetime import datetime, timedelta
from typing import Any

from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import Tenure
from leaderjob.election.store import Guarded, StoreError
from leaderjob.history.records import PRUNE_BATCH, iso
from leaderjob.history.runs import PRUNE_EVERY
from leaderjob.schedule.planner import Slot
from leaderjob.schedule.unknown_claims import UnknownClaims


class Claims:
    def __init__(self, job: JobContext, history: History, unknown: UnknownClaims) -> None:
        self.job = job
        self.history = history
        #: Slots whose claim's outcome is unknown, across tenures (shared with the slot path).
        self.unknown = unknown
        #: Timed claims the next claims push out of the bound, found under this token: every
        #: timed claim older than the first time is among the (fire time, key) pairs.
        self._slot_carry: tuple[int, tuple[datetime, list[tuple[datetime, str]]]] | None = None

    def doc(self, tenure: Tenure, slot: Slot, status: str) -> dict[str, Any]:
        """The claim's record: what `status` and `history --slot` read."""
        return {
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": tenure.token,
            "identity": self.job.s.identity,
            "status": status,
            "claimed_at": iso(self.job.clock.wall()),
        }

    def claim(self, tenure: Tenure, slot: Slot, status: str) -> str:
        """Claim ``slot`` (S3). "claimed", "suspended" (a run refused while suspended),
        "rejected" (deposed, or claimed before) or "unknown" (the call failed)."""
        own = self.job.seat.key
        if own is None:
            return "rejected"
        run = status in ("running", "replacing")
        # The claims this one pushes out of the bound go in its Txn: one revision, fenced.
        carry = self.pushed_out(slot)
        try:
            ok = self.job.data.claim_slot(
                own,
                tenure.token,
                slot.id,
                self.doc(tenure, slot, status),
                run=run,
                deletes=carry,
                timeout=self.job.session.io_timeout(),
            )
        except StoreError as exc:
            return self.outcome(tenure, slot, run, exc)
        return self.outcome(tenure, slot, run, ok)

    def write(self, tenure: Tenure, slot: Slot) -> Guarded | None:
        """The claim to run ``slot`` that :meth:`claim` would send, as a write to send with
        other jobs' claims (:mod:`.together`); its outcome goes to :meth:`outcome`. None: we
        hold no key."""
        own = self.job.seat.key
        if own is None:
            return None
        carry = self.pushed_out(slot)
        doc = self.doc(tenure, slot, "running")
        return self.job.data.claim_write(own, tenure.token, slot.id, doc, run=True, deletes=carry)

    def outcome(self, tenure: Tenure, slot: Slot, run: bool, outcome: bool | StoreError) -> str:
        """What a claim's outcome means (see :meth:`claim`): applied, refused, or the call
        failed (unknown)."""
        if isinstance(outcome, StoreError):
            # Unknown whether it applied: do not run (at most once per slot).
            self.job.session.store_error(outcome)
            self.job.log.warning("slot.claim_unknown", slot=slot.id)
            if run:  # read back later: it runs, or it gets a record (unknown.py)
                self.unknown.add(slot, tenure.token)
            tenure.last_claimed = max(tenure.last_claimed or slot.fire_time, slot.fire_time)
            return "unknown"
        if outcome and self._slot_carry is not None:
            gone = set(self.pushed_out(slot))
            token, (known, old) = self._slot_carry
            self._slot_carry = token, (known, [o for o in old if o[1] not in gone])
        result = "claimed" if outcome else (self.why_refused() if run else "rejected")
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

    def keep(self) -> int:
        """The bound of timed claims: this many schedule intervals (at least 10)."""
        return max(10, self.job.s.history_limit)

    def cutoff(self, newest: datetime) -> datetime:
        """Timed claims older than this fall out of the bound once ``newest`` is claimed."""
        if self.job.s.schedule is None:
            return newest
        return newest - self.job.s.schedule.interval() * self.keep()

    def pushed_out(self, slot: Slot) -> list[str]:
        """The old timed claims a claim of ``slot`` pushes out of the bound, as found before
        under our token (those it cannot see are found after it: :meth:`prune_slots`)."""
        _, found = self.history.carry(self._slot_carry)
        if found is None:
            return []
        cutoff = self.cutoff(slot.fire_time)
        return [key for fired, key in found[1] if fired < cutoff]

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
        the cycle has time to spare. Timed claims already beyond the bound go now, a bounded
        batch in one fenced Txn (a backlog); those the next :data:`PRUNE_EVERY` claims push out
        (an interval later each) are found in the same read and deleted each in the Txn of the
        claim that pushes it out (no revision of its own). So a read is made once every
        :data:`PRUNE_EVERY` claims, when the next claim's cutoff passes what was read. Trigger
        claims are rare: theirs go at once."""
        keep = self.keep()
        if triggers:
            now = self.job.clock.wall()
            self.history.prune(
                lambda timeout: (
                    self.job.data.old_claims(now, keep, triggers=True, timeout=timeout),
                    [],
                )
            )
            return
        if tenure.last_claimed is None:
            return
        cutoff = self.cutoff(tenure.last_claimed)
        step = self.job.s.schedule.interval() if self.job.s.schedule else timedelta(0)
        _, found = self.history.carry(self._slot_carry)
        if found is not None and cutoff + step <= found[0]:
            return  # the next claim's old claims were found already

        def find(timeout: float) -> tuple[list[str], tuple[datetime, list[tuple[datetime, str]]]]:
            known = cutoff + step * PRUNE_EVERY
            keys = self.job.data.old_claims(known, keep, triggers=False, timeout=timeout)
            old = [(self.job.data.fire_time(k) or cutoff, k) for k in keys]
            beyond = [k for fired, k in old if fired < cutoff]
            if beyond:  # a backlog: look again after the next claim
                known = min(known, cutoff + step)
            if len(keys) >= PRUNE_BATCH:  # maybe more than read: only up to the last one read
                known = min(known, old[-1][0])
            return beyond, (known, old[len(beyond) :])

        carry = self.history.prune(find)
        if carry is not None:
            self._slot_carry = carry
