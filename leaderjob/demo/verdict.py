"""The demo's verdict, pure: the runs and moves the demo observed in, every broken promise out.

No (job, slot) ran twice (S3), no two runs of one job at once, tokens of a job only grow (S2),
every slot of each job ran unless it fell in a leaderless window after a fault, and every move
within its bound: TTL + :data:`CRASH_SLACK` after a crash (L1), :data:`GRACEFUL_BOUND` after a
graceful stop (L2). It must not know processes, etcd or the clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

EVERY = 2.0  # seconds between the slots of each job
GRACEFUL_BOUND = 1.0  # L2: a graceful stop hands each job over in under a second
CRASH_SLACK = 1.5  # L1: a crash moves each job within TTL + this


@dataclass(frozen=True)
class Run:
    job: str
    replica: str
    slot: datetime
    token: int
    start: float  # monotonic, as the demo saw the log line
    end: float | None


@dataclass(frozen=True)
class Move:
    """A job that changed leader after a fault: `took` from the signal to the new leader."""

    kind: str  # "crash" or "graceful"
    job: str
    victim: str
    to: str | None  # None: nobody led it again before the demo ended
    took: float | None
    fault_wall: datetime  # when the fault hit, for the slots that fall in the leaderless window
    led_wall: datetime | None


@dataclass(frozen=True)
class Skip:
    """A slot the daemon declared skipped (`slot.skipped`: overlap, suspended, catch-up...)."""

    job: str
    slot: datetime
    reason: str


def judge(
    runs: list[Run],
    moves: list[Move],
    ttl: float,
    skips: list[Skip] | None = None,
    every: float = EVERY,
) -> list[str]:
    """Every problem the demo saw; none means the verdict is OK. A slot neither run nor declared
    skipped counts as lost unless it fell in a leaderless window after a fault (catch-up runs
    only the newest of those, L3)."""
    problems: list[str] = []
    if not runs:
        problems.append("no job ran")
    by_job: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: r.start):
        by_job.setdefault(r.job, []).append(r)
    for job, rs in sorted(by_job.items()):
        seen: dict[datetime, Run] = {}
        for r in rs:
            if r.slot in seen:
                problems.append(
                    f"{job}: slot {r.slot:%H:%M:%S} ran twice ({seen[r.slot].replica}, {r.replica})"
                )
            seen[r.slot] = r
        for a, b in itertools.pairwise(rs):
            if a.end is None or b.start < a.end:
                problems.append(f"{job}: runs on {a.replica} and {b.replica} overlapped")
            if b.token < a.token:
                problems.append(f"{job}: token went down from {a.token} to {b.token}")
        slots = sorted(seen)
        declared = [s.slot.timestamp() for s in skips or [] if s.job == job]
        windows = [
            (m.fault_wall.timestamp() - every, (m.led_wall or slots[-1]).timestamp())
            for m in moves
            if m.job == job
        ]
        t = slots[0].timestamp()
        while t < slots[-1].timestamp():
            accounted = [s.timestamp() for s in slots] + declared
            if all(abs(a - t) > every / 4 for a in accounted) and not any(
                lo <= t <= hi for lo, hi in windows
            ):
                lost = datetime.fromtimestamp(t, slots[0].tzinfo)
                problems.append(f"{job}: slot {lost:%H:%M:%S} never ran")
            t += every
    bounds = {"crash": ttl + CRASH_SLACK, "graceful": GRACEFUL_BOUND}
    for m in moves:
        if m.took is None:
            problems.append(f"{m.job}: nobody led it after the {m.kind} of {m.victim}")
        elif m.took > bounds[m.kind]:
            problems.append(
                f"{m.job}: moved {m.took:.2f}s after the {m.kind} of {m.victim} "
                f"(bound {bounds[m.kind]:.1f}s)"
            )
    if {m.kind for m in moves} != {"crash", "graceful"}:
        problems.append("not every fault moved a job")
    return problems
