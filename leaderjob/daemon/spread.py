"""Spreading leadership: which job one replica hands over, and where it queues — pure.

Every replica campaigns for every job of its group, so each job has a queue of candidates ordered
by the create revision of their keys (etcd's election recipe); the head leads. This module decides,
for one replica, the two moves that reorder those queues:

* **release** a job it leads: delete its key of that job (the next in line takes over between two
  runs — a graceful handover) and re-create it at the back of the queue;
* **step back** in a job it waits for: delete and re-create its standby key, so it goes to the back.

The goal: with M live replicas and N jobs, no replica leads more than the fair share ⌈N/M⌉ once
membership has been stable for a while. The rules, in the order :meth:`Spreader.decide` applies
them:

1. ``enabled=False`` (``--spread off``): never move. One replica then leads everything, as with a
   single job; a candidate at the head of a queue still leads at once (failover never waits for
   spreading, in either mode).
2. **Settle.** A change of the member count or of the job set is waited out for ``settle`` seconds
   before any move: a rolling restart (leave, join, leave, join…) moves nothing until it is over.
3. **Step back first.** A replica at or above its share steps back in every job it waits for, one
   per call, unpaced (a step-back moves no leadership; call again at once after acting on one). So
   in every queue the replicas below their share stand ahead of those at or above it, and a
   release lands on a replica with room — not on one that would have to release in turn (a
   cascade). After a membership change the step-backs are done again: a join puts the newcomer (who
   leads nothing) behind everyone, and a leave raises the share of some replicas that had stepped
   back early in some queues.
4. **Hysteresis.** A replica within its share (leading ≤ ⌈N/M⌉) never releases. Only the excess
   above the share moves, so a settled group stays still, and a release never pushes the releaser
   below its share (no ping-pong between two replicas).
5. **Pace.** A replica releases at most one job per ``pace`` seconds. Its first release after a
   membership change comes one ``pace`` after the settle wait, so the others' step-backs finish
   first, plus a turn of its own within one more ``pace`` (drawn from the hash below), so that
   the replicas above their share do not all hand a job to the same one at the same instant.
6. **Idle only.** Only a job with no run in progress is released: a job moves between runs.

Which job: among the candidates, the one with the smallest stable hash of (job, this replica's
own set of led jobs). The led sets of two replicas are disjoint (one leader per job), so no two
replicas share an order without needing a replica id; the hash spreads a replica's step-backs over
the jobs in an order of its own, so in each queue the replicas that stepped back stand in a
different order, and the jobs of a crashed replica go to different survivors. A hash (not the
job's name) keeps every replica from releasing the same "first" job in turn.

The object keeps a little state between calls (when membership last changed, when it last
released, where it already stepped back); time comes in as ``now`` (monotonic seconds). Nothing
here reads a clock, talks to etcd or logs: the daemon does that, and logs the decision's reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Decision", "Spreader", "View"]


@dataclass(frozen=True)
class View:
    """What this replica knows at ``now``."""

    members: int  # live replicas in the group, including this one (M >= 1)
    jobs: frozenset[str]  # every job of the group (N)
    leading: frozenset[str]  # jobs this replica leads
    idle: frozenset[str]  # of those, the ones with no run in progress (movable now)
    standby: frozenset[str]  # jobs where this replica waits in the queue


@dataclass(frozen=True)
class Decision:
    release: str | None = None  # hand this job over now (stop nothing: it is idle), then re-queue
    step_back: str | None = None  # re-queue our standby key for this job at the back of its queue
    reason: str = ""  # for the log line


def _rank(job: str, salt: frozenset[str]) -> bytes:
    """A stable, replica-specific order over jobs (independent of PYTHONHASHSEED)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(job.encode())
    for name in sorted(salt):
        h.update(b"\0" + name.encode())
    return h.digest()


class Spreader:
    """The spreading rules of one replica. See the module doc for the rules and their reasons.

    ``pace``: seconds between two releases of this replica (default 5). ``settle``: seconds the
    member count and job set must hold still before any move (default 5). ``enabled=False``
    never moves.
    """

    def __init__(self, *, enabled: bool = True, pace: float = 5.0, settle: float = 5.0) -> None:
        if pace < 0 or settle < 0:
            raise ValueError("spread pace and settle must be >= 0 seconds")
        self.enabled = enabled
        self.pace = pace
        self.settle = settle
        self._shape: tuple[int, frozenset[str]] | None = None  # (members, jobs) last seen
        self._changed_at = 0.0  # when _shape last changed
        self._released_at: float | None = None  # our last release
        self._stepped: set[str] = set()  # jobs we are at the back of since _changed_at
        self._offset = 0.0  # this replica's phase within the pace, drawn at each change

    @staticmethod
    def fair_share(members: int, jobs: int) -> int:
        """⌈N/M⌉: the most jobs one replica leads once settled."""
        return -(-jobs // max(members, 1))

    def decide(self, view: View, now: float) -> Decision:
        if not self.enabled:
            return Decision()
        shape = (view.members, view.jobs)
        if shape != self._shape:
            # A join, a leave or a reload: the queues' order no longer reflects who has room.
            self._shape = shape
            self._changed_at = now
            self._stepped.clear()
            self._offset = self.pace * int.from_bytes(_rank("", view.leading)[:2]) / 65536
        self._stepped -= view.leading
        if now - self._changed_at < self.settle:
            return Decision()
        share = self.fair_share(view.members, len(view.jobs))
        led = len(view.leading)
        if led < share:
            return Decision()  # below the share: stay ahead in every queue, release nothing
        pending = sorted(view.standby - self._stepped, key=lambda j: _rank(j, view.leading))
        if pending:
            job = pending[0]
            self._stepped.add(job)
            return Decision(step_back=job, reason=f"leading {led} >= share {share}")
        if led <= share:
            return Decision()  # hysteresis: within the share, nothing moves
        if now - self._changed_at < self.settle + self.pace + self._offset:
            return Decision()  # the others' step-backs come first; the releasers take turns
        if self._released_at is not None and now - self._released_at < self.pace:
            return Decision()
        movable = sorted(view.idle & view.leading, key=lambda j: _rank(j, view.leading))
        if not movable:
            return Decision()  # every excess job is running: it moves after its run
        job = movable[0]
        self._released_at = now
        self._stepped.add(job)  # re-created at the back of its queue
        return Decision(release=job, reason=f"leading {led} > share {share}")
