"""A ``@leaderjob.singleton`` tenure's claims: each slot and trigger made ours by a fenced Txn (S3).

The claim half of :class:`~leaderjob.inprocess.singleton_tenure.SingletonTenure`, as
:mod:`leaderjob.daemon.claims` is the daemon runner's. A slot is claimed with the daemon's fenced
claim, guarded by our key's create revision: "claimed", "suspended" (a claim to run refused while
the election is suspended), "rejected" (deposed, or someone claimed it before) or "unknown" (the
call failed: the slot is kept and read back at a later step, never run blind — at most once per
slot). A "run now" trigger is claimed the same way.

Owns: the claims' records, the newest slot claimed, and the read-back of a claim whose outcome
was unknown (the rules that settle it are :mod:`leaderjob.schedule.unknown_claims`'). It must not
know what a claim leads to — a run started in a thread, a skip recorded: the tenure's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from leaderjob.clock import Clock
from leaderjob.election.store import StoreError
from leaderjob.history.records import ElectionData, iso
from leaderjob.inprocess.singleton_history import SingletonHistory
from leaderjob.inprocess.singleton_run import Seat
from leaderjob.ops.metrics import Metrics
from leaderjob.schedule.planner import Slot
from leaderjob.schedule.unknown_claims import Unknown, UnknownClaims, settle

__all__ = ["SingletonClaims"]


@dataclass
class SingletonClaims:
    seat: Seat
    data: ElectionData
    clock: Clock
    log: Any
    history: SingletonHistory
    #: The timeout of one etcd call now (the tenure's: never past the seat's deadline).
    io: Callable[[], float]
    #: Slots whose claim's outcome is unknown, shared by the tenures of one function.
    unknown: UnknownClaims
    metrics: Metrics | None = None
    last_claimed: datetime | None = None

    def slot(self, slot: Slot, status: str) -> str:
        """S3: "claimed", "suspended" (a run refused while suspended), "rejected" (deposed, or
        claimed before) or "unknown" (the call failed: never run — at most once per slot)."""
        key, token = self.seat.key, self.seat.token
        if key is None or token is None or not self.seat.valid():
            return "rejected"
        claim = {
            "slot": slot.id,
            "scheduled_time": iso(slot.fire_time),
            "token": token,
            "identity": self.seat.identity,
            "status": status,
            "claimed_at": iso(self.clock.wall()),
        }
        run = status in ("running", "replacing")
        try:
            ok = self.data.claim_slot(key, token, slot.id, claim, run=run, timeout=self.io())
            suspended = not ok and run and self.data.is_suspended(timeout=self.io())
        except StoreError as exc:
            self.history.store_error(exc)
            self.log.warning("slot.claim_unknown", slot=slot.id)
            if run:  # read back at a later step: it runs, or it gets a record
                self.unknown.add(slot, token)
            self.last_claimed = max(self.last_claimed or slot.fire_time, slot.fire_time)
            return "unknown"
        if ok:
            self.last_claimed = max(self.last_claimed or slot.fire_time, slot.fire_time)
            return "claimed"
        if suspended:
            return "suspended"
        self.log.warning("slot.claim_rejected", slot=slot.id)
        if self.metrics is not None:
            self.metrics.slots_skipped.labels(*self.history.series, "claim_rejected").inc()
        return "rejected"

    def trigger(self, key: str, request: dict[str, Any]) -> tuple[bool, str] | None:
        """Claim the trigger under ``key`` (S3): whether it is ours, and the slot id it runs as;
        None if we hold no tenure or the call failed (the trigger is tried again)."""
        own, token = self.seat.key, self.seat.token
        if own is None or token is None:
            return None
        claim = {
            "token": token,
            "identity": self.seat.identity,
            "request": request,
            "claimed_at": iso(self.clock.wall()),
        }
        try:
            return self.data.claim_trigger(own, token, key, claim, timeout=self.io())
        except StoreError as exc:
            self.history.store_error(exc)
            return None

    def read_back(self, next_slot: str | None, deadline: timedelta) -> tuple[Unknown, str] | None:
        """Read back one claim whose outcome was unknown (not ``next_slot``'s: it is claimed
        as it comes) and settle it as the daemon does: the claim, and what to do with its slot
        (run, claim, late, not_run, or nothing); None if there is none to read now, or the
        read failed (read again at a later step)."""
        for u in self.unknown.settle_now(next_slot):
            self.unknown.pop(u.slot.id)
            try:
                claim = self.data.claim(u.slot.id, timeout=self.io())
            except StoreError as exc:
                self.history.store_error(exc)
                self.unknown.add(u.slot, u.token)  # read again at a later step
                return None
            late = self.clock.wall() - u.slot.start_time > deadline
            newest = self.last_claimed is None or self.last_claimed <= u.slot.fire_time
            what = settle(u, claim, self.seat.token or 0, late=late, newest=newest)
            self.log.info("slot.claim_settled", slot=u.slot.id, outcome=what)
            return u, what
        return None
