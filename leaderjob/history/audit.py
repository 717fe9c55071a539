"""The slot ledger check: every fire time of a schedule in a window, against the history — pure.

A scheduler that "did not run and nobody noticed" is the failure operators fear most. Every slot
leaves a record (docs/history.md): a run's when it ends, a slot that did not run one saying why
(a long outage as one record standing for a range of slots). This module takes the fire times of
a window and what etcd holds — the newest history records and the slot claims — and gives each
fire time one verdict:

* ``ran``: a run's record names the slot;
* ``not_run``: a record says why it did not run (also a record whose ``first_slot``..``slot``
  range covers it, or a claim to skip it whose record is not written yet);
* ``running``: the newest claim to run has no record yet — a run in progress;
* ``unknown``: older than the oldest record read: the history keeps only the newest
  ``--history-limit`` records, and before the election's first leader there is nothing to find.
  Said so, never counted as missing;
* ``missing``: nothing at all — or a claim to run whose run left no record (its replica died
  mid-run). These are what the check is for.

It knows no etcd, no clock and no output format: fire times, records and claims come in, verdicts
come out. Slot ids (``YYYYMMDDTHHMMSSZ``) sort as time, so ranges compare as strings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leaderjob.schedule import Schedule, slot_id

#: Fire times one check looks at, at most: a per-second schedule over a day is 86 400.
MAX_FIRE_TIMES = 200_000
RUNNING_STATUSES = ("running", "replacing")


class WindowTooLarge(ValueError):
    """The window holds more fire times than :data:`MAX_FIRE_TIMES`."""


@dataclass(frozen=True)
class Verdict:
    fire_time: datetime
    slot: str
    status: str  # ran, not_run, running, unknown, missing
    detail: str = ""  # the outcome, the reason, or what the claim says


def fire_times(schedule: Schedule, since: datetime, until: datetime) -> list[datetime]:
    """The schedule's fire times in ``(since, until]``."""
    times: list[datetime] = []
    t = schedule.next_after(since)
    while t <= until:
        if len(times) >= MAX_FIRE_TIMES:
            raise WindowTooLarge(f"more than {MAX_FIRE_TIMES} fire times")
        times.append(t)
        t = schedule.next_after(t)
    return times


def audit(
    fires: list[datetime],
    records: list[dict[str, Any]],
    claims: dict[str, dict[str, Any]],
    *,
    leader_token: int | None = None,
    complete: bool = False,
) -> list[Verdict]:
    """One verdict per fire time, in the order given.

    ``records``: the newest history records read (any order). ``complete``: they are the whole
    history, nothing was pruned or left unread — only then is a fire time older than every record
    judged, otherwise it is ``unknown``. ``claims``: slot id → claim, as kept in etcd;
    ``leader_token``: the current leader's, whose newest claim to run may be in progress.
    """
    by_slot: dict[str, dict[str, Any]] = {}
    ranges: list[tuple[str, str, dict[str, Any]]] = []
    oldest: str | None = None
    for r in records:
        slot = str(r.get("slot") or "")
        if not slot or slot.startswith("trigger-"):
            continue
        # A run's record wins over a not-run one for the same slot (a retry, a deposed leader).
        if slot not in by_slot or r.get("run_id"):
            by_slot[slot] = r
        first = str(r.get("first_slot") or slot)
        if first != slot:
            ranges.append((first, slot, r))
        oldest = first if oldest is None else min(oldest, first)
    to_run = [
        s
        for s, c in claims.items()
        if c.get("status", "running") in RUNNING_STATUSES and c.get("token") == leader_token
    ]
    newest_run_claim = max(to_run, default=None)
    return [
        _judge(fire, slot_id(fire), by_slot, ranges, claims, newest_run_claim, oldest, complete)
        for fire in fires
    ]


def _judge(
    fire: datetime,
    sid: str,
    by_slot: dict[str, dict[str, Any]],
    ranges: list[tuple[str, str, dict[str, Any]]],
    claims: dict[str, dict[str, Any]],
    newest_run_claim: str | None,
    oldest: str | None,
    complete: bool,
) -> Verdict:
    record = by_slot.get(sid)
    if record is not None:
        if record.get("run_id") and record.get("not_run") != "failed_to_start":
            return Verdict(fire, sid, "ran", str(record.get("outcome") or ""))
        return Verdict(fire, sid, "not_run", _why(record))
    for first, last, r in ranges:
        if first <= sid <= last:
            return Verdict(fire, sid, "not_run", _why(r) + f" ({r.get('count')} slots)")
    claim = claims.get(sid)
    if claim is not None:
        status = str(claim.get("status", "running"))
        if status not in RUNNING_STATUSES:
            return Verdict(fire, sid, "not_run", f"{status} (claimed; record not written yet)")
        if sid == newest_run_claim:
            return Verdict(fire, sid, "running", f"in progress on {claim.get('identity')}")
        if (oldest is not None and sid >= oldest) or complete:
            return Verdict(
                fire,
                sid,
                "missing",
                f"claimed by {claim.get('identity')} token {claim.get('token')}, no record: "
                "its replica died during the run?",
            )
    if not complete and (oldest is None or sid < oldest):
        return Verdict(fire, sid, "unknown", "older than the oldest record kept")
    return Verdict(fire, sid, "missing", "no record, no claim")


def _why(record: dict[str, Any]) -> str:
    return str(record.get("not_run") or record.get("outcome") or "")


def summary(verdicts: list[Verdict]) -> Counter[str]:
    return Counter(v.status for v in verdicts)
