"""Slot claims whose outcome is unknown: the claim's Txn failed (a timeout, a lost reply), and it
may or may not have applied. Such a slot never runs on a guess (S3), and it is not dropped on a
guess either (L3): it is settled by reading the claim back.

* Read back in the tenure that made it: ours → the slot runs (the claim made it ours, and only
  this tenure could start it); absent → claimed again, like any due slot (too late: skipped
  for its starting deadline, with a not-run record); someone else's → theirs.
* The tenure ended first: the replica's next tenure plans from the newest claim it reads. A slot
  after it is caught up like any missed slot — in a new election too, where there is no claim
  to plan from: the plan starts just before the oldest unknown slot. A slot at or before it is
  read back: claimed by us, it never ran (not-run record); absent, the election moved past it
  (not-run record); someone else's, theirs.

This module keeps the set and the rules; the daemon's slot path and the in-process singleton
(:mod:`leaderjob.inprocess.singleton_tenure`) read the claims and apply them. Only the
replica that made a claim knows its outcome is unknown: another one that takes over plans from
what etcd holds — the newest claim, or where a new election's first leader began
(:meth:`~leaderjob.daemon.catchup.CatchUp._mark_start`), so a first slot is caught up there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from leaderjob.schedule.planner import Slot

Settle = Literal["run", "claim", "late", "not_run", "theirs"]


@dataclass(frozen=True)
class Unknown:
    slot: Slot
    token: int  # of the tenure that tried the claim


class UnknownClaims:
    def __init__(self) -> None:
        self._slots: dict[str, Unknown] = {}

    def __contains__(self, slot_id: object) -> bool:
        return slot_id in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, slot: Slot, token: int) -> None:
        self._slots[slot.id] = Unknown(slot, token)

    def pop(self, slot_id: str) -> Unknown | None:
        return self._slots.pop(slot_id, None)

    def plan_from(self, last_claimed: datetime | None) -> datetime | None:
        """Where a new tenure's catch-up starts, given the newest claim it read: there, or with
        no claim at all (a new election), just before the oldest unknown slot, so that catch-up
        sees it."""
        if last_claimed is None and self._slots:
            return min(u.slot.fire_time for u in self._slots.values()) - timedelta(seconds=1)
        return last_claimed

    def forget_caught_up(self, last_claimed: datetime | None) -> None:
        """The slots after the newest claim are the catch-up's now: forget them."""
        for u in list(self._slots.values()):
            if last_claimed is None or u.slot.fire_time > last_claimed:
                del self._slots[u.slot.id]

    def settle_now(self, skip: str | None) -> list[Unknown]:
        """Those to read back now, oldest first (``skip``: the slot the planner still holds;
        it is settled when it comes due)."""
        return sorted(
            (u for u in self._slots.values() if u.slot.id != skip),
            key=lambda u: u.slot.fire_time,
        )


def settle(
    u: Unknown, claim: dict[str, Any] | None, token: int, *, late: bool, newest: bool
) -> Settle:
    """What to do with ``u`` once its claim is read back (``claim``: None if absent), in the
    tenure of ``token``; ``late``: its starting deadline has passed; ``newest``: no later slot
    was claimed since (a claim now must not move ``state/last_slot`` back)."""
    if claim is not None:
        if claim.get("token") != u.token:
            return "theirs"
        ours_now = u.token == token and claim.get("status") in ("running", "replacing")
        return "run" if ours_now and not late else "not_run"
    if u.token != token or not newest:
        return "not_run"  # the election moved past it without a claim: it ran nowhere
    return "late" if late else "claim"
