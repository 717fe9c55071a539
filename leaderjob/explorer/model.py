"""The timeline of one job, as a view model — pure.

History records (a run's, a slot not run's), the slot ledger's verdicts for the window and the
run in progress come in; what a person should see comes out: one lane per replica that ran
something, one bar per run from its start to its end, one tick per slot that did not run (with
why), one marker where the fencing token changed (a new leadership), and every stretch where two
runs of the job overlapped (it should never happen: S3 and the deadline rule; if the records say
it did, the page shows it in red).

Times are seconds since the epoch (floats). No etcd, no clock, no HTML here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, NamedTuple

from leaderjob.history.runs import is_run

#: The lane of ticks for slots that did not run (they belong to no replica's work).
NOT_RUN_LANE = "not run"


class Bar(NamedTuple):
    """One run: a bar from its start to its end, in its replica's lane. (A named tuple, not a
    dataclass: a week of a per-minute job builds ten thousand of them.)"""

    name: str  # the record's name: the run's detail is found by it
    run_id: str
    lane: str
    start: float
    end: float
    outcome: str
    slot: str
    token: int | None
    attempt: int
    running: bool = False  # in progress: no record yet, drawn up to now
    overlap: bool = False


class Tick(NamedTuple):
    """A slot that did not run (or a range of them: ``until`` and ``count``)."""

    at: float
    reason: str  # missed, skipped, suspended, late, failed_to_start, missing
    outcome: str
    slot: str
    detail: str = ""
    until: float | None = None
    slots: int = 1  # how many slots it stands for
    name: str | None = None  # a record to open (failed_to_start is also a run)
    token: int | None = None  # who recorded it
    identity: str = ""


class Marker(NamedTuple):
    """A leadership of the job first seen at ``at``: its token and who held it."""

    at: float
    token: int
    identity: str


@dataclass(frozen=True)
class Timeline:
    job: str
    since: float
    until: float
    lanes: list[str]
    bars: list[Bar]
    ticks: list[Tick]
    markers: list[Marker]
    overlaps: list[tuple[float, float]]
    counts: dict[str, int] = field(default_factory=dict)
    #: Fire times with no record were looked for from here on (None: not at all).
    checked_since: float | None = None


def seconds(text: Any) -> float | None:
    """An ISO 8601 time of a record, in seconds since the epoch (None: absent or unreadable)."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text))  # with a Z too, since Python 3.11
    except ValueError:
        return None
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def slot_seconds(slot: Any) -> float | None:
    try:
        return datetime.strptime(str(slot), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def build(
    job: str,
    since: float,
    until: float,
    records: list[tuple[str, dict[str, Any]]],
    *,
    missing: Sequence[tuple[float, str, str]] = (),
    current: dict[str, Any] | None = None,
    now: float | None = None,
    checked_since: float | None = None,
) -> Timeline:
    """The timeline of ``job`` from ``since`` to ``until``.

    ``records``: (name, record) of the history read for the window, any order (those wholly
    outside it are left out). ``missing``: (fire time, slot, detail) of fire times with no record
    (the slot ledger's verdicts, :mod:`leaderjob.history.audit`). ``current``: the run in progress,
    as `status` gives it (``slot``, ``identity``, ``token``, ``claimed_at``), drawn up to ``now``.
    """
    bars: list[Bar] = []
    ticks: list[Tick] = []
    for name, r in records:
        if is_run(r) and r.get("not_run") != "failed_to_start":
            bar = _bar(name, r)
            if bar is not None and bar.end >= since and bar.start <= until:
                bars.append(bar)
            continue
        tick = _tick(name, r)
        if tick is not None and (tick.until or tick.at) >= since and tick.at <= until:
            ticks.append(tick)
    for at, slot, detail in missing:
        if since <= at <= until:
            ticks.append(Tick(at, "missing", "missing", slot, detail))
    # The run in progress, unless its record was read too (it ended between the two reads).
    if current is not None and not any(b.slot == current.get("slot") for b in bars):
        start = seconds(current.get("claimed_at"))
        end = until if now is None else min(until, now)
        if start is not None and start <= until:
            bars.append(
                Bar(
                    name="",
                    run_id="",
                    lane=str(current.get("identity") or "?"),
                    start=start,
                    end=max(start, end),
                    outcome="running",
                    slot=str(current.get("slot") or ""),
                    token=_int(current.get("token")),
                    attempt=0,
                    running=True,
                )
            )
    bars.sort(key=attrgetter("start", "end"))
    ticks.sort(key=attrgetter("at"))
    overlaps = find_overlaps(bars)
    if overlaps:
        bars = [_flag(b, overlaps) for b in bars]
    counts: dict[str, int] = {"runs": sum(1 for b in bars if not b.running)}
    for t in ticks:
        counts[t.reason] = counts.get(t.reason, 0) + t.slots
    return Timeline(
        job=job,
        since=since,
        until=until,
        lanes=lanes(bars),
        bars=bars,
        ticks=ticks,
        markers=markers(bars, ticks),
        overlaps=overlaps,
        counts=counts,
        checked_since=checked_since,
    )


def lanes(bars: list[Bar]) -> list[str]:
    """One lane per replica that ran something, in the order each first ran."""
    seen: dict[str, None] = {}
    for b in bars:
        seen.setdefault(b.lane, None)
    return list(seen)


def find_overlaps(bars: list[Bar]) -> list[tuple[float, float]]:
    """Every stretch of time during which two runs were under way at once, merged, in order.
    ``bars`` sorted by start."""
    found: list[tuple[float, float]] = []
    reach = float("-inf")  # the latest end of the runs started so far
    for b in bars:
        if b.start < reach:
            lo, hi = b.start, min(b.end, reach)
            if found and lo <= found[-1][1]:
                found[-1] = (found[-1][0], max(found[-1][1], hi))
            else:
                found.append((lo, hi))
        reach = max(reach, b.end)
    return found


def _flag(bar: Bar, overlaps: list[tuple[float, float]]) -> Bar:
    hit = any(bar.start < hi and lo < bar.end for lo, hi in overlaps)
    if not hit:
        return bar
    return bar._replace(overlap=True)


def markers(bars: list[Bar], ticks: list[Tick]) -> list[Marker]:
    """Where each token is first seen in the window: a new leadership of the job. etcd keeps no
    time of the handover itself, so the marker stands at the first thing the new leader did
    (a run's start, or a record of a slot it did not run)."""
    seen = [(b.start, b.token, b.lane) for b in bars if b.token is not None]
    seen += [(t.at, t.token, t.identity) for t in ticks if t.token is not None]
    first: dict[int, tuple[float, str]] = {}
    for at, token, who in sorted(seen):
        first.setdefault(token, (at, who))
    return sorted((Marker(at, token, who) for token, (at, who) in first.items()), key=_at)


def _at(m: Marker) -> float:
    return m.at


def _bar(name: str, r: dict[str, Any]) -> Bar | None:
    started = r.get("started_at")
    start = seconds(started) if started else None
    if start is None:
        start = seconds(r.get("scheduled_time"))
        if start is None:
            return None
    duration = r.get("duration_seconds")
    if started and isinstance(duration, float | int):
        end = start + duration
    else:
        end = seconds(r.get("finished_at")) or start
    token, attempt = r.get("token"), r.get("attempt")
    return Bar(
        name,
        str(r.get("run_id") or ""),
        str(r.get("identity") or "?"),
        start,
        end if end > start else start,
        str(r.get("outcome") or "?"),
        str(r.get("slot") or ""),
        token if type(token) is int else None,
        attempt if type(attempt) is int else 0,
    )


def _tick(name: str, r: dict[str, Any]) -> Tick | None:
    at = seconds(r.get("scheduled_time")) or slot_seconds(r.get("slot"))
    if at is None:
        return None
    reason = str(r.get("not_run") or r.get("outcome") or "?")
    first = slot_seconds(r.get("first_slot")) if r.get("first_slot") else None
    count = _int(r.get("count")) or 1
    detail = str(r.get("error") or "")
    token, who = _int(r.get("token")), str(r.get("identity") or "")
    outcome, slot = str(r.get("outcome") or ""), str(r.get("slot") or "")
    if first is not None and count > 1:
        detail = detail or f"{count} slots from {r.get('first_slot')}"
        return Tick(first, reason, outcome, slot, detail, at, count, None, token, who)
    name_ = name if is_run(r) else None
    return Tick(at, reason, outcome, slot, detail, None, 1, name_, token, who)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def to_json(t: Timeline) -> dict[str, Any]:
    """The timeline for ``/api/…/timeline``: times as ISO 8601 UTC."""

    def iso(x: float | None) -> str | None:
        if x is None:
            return None
        return datetime.fromtimestamp(x, UTC).isoformat().replace("+00:00", "Z")

    return {
        "job": t.job,
        "since": iso(t.since),
        "until": iso(t.until),
        "lanes": t.lanes,
        "counts": t.counts,
        "runs": [
            {
                "name": b.name or None,
                "run_id": b.run_id or None,
                "replica": b.lane,
                "start": iso(b.start),
                "end": None if b.running else iso(b.end),
                "outcome": b.outcome,
                "slot": b.slot,
                "token": b.token,
                "attempt": b.attempt,
                "running": b.running,
                "overlap": b.overlap,
            }
            for b in t.bars
        ],
        "not_run": [
            {
                "at": iso(k.at),
                "until": iso(k.until),
                "reason": k.reason,
                "outcome": k.outcome,
                "slot": k.slot,
                "count": k.slots,
                "detail": k.detail,
                "name": k.name,
            }
            for k in t.ticks
        ],
        "leaderships": [
            {"at": iso(m.at), "token": m.token, "identity": m.identity} for m in t.markers
        ],
        "overlaps": [{"from": iso(lo), "to": iso(hi)} for lo, hi in t.overlaps],
        "missing_checked_since": iso(t.checked_since),
    }
