"""Proof by simulation of the spreading rules: a small pure model of a group of replicas.

The model: per job a queue of replica ids, ordered as etcd orders the candidates (by create
revision); the head leads. A release or a step-back moves a replica to the back of that job's
queue; a crash removes a replica from every queue (its jobs go to the next in line at once, as L1
does); a join appends the replica to every queue. Jobs run periodically and each run takes time, so
at any moment some jobs are busy and cannot move. Every replica calls ``Spreader.decide`` with its
own view on a fake clock, once per tick; after a step-back it calls again at once (a step-back
moves no leadership, so the driver does not wait a tick for the next one).

The model checks on every move that it is legal (a release only by the leader of an idle job; a
step-back only of a standby key) and counts them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaderjob.daemon.spread import Spreader, View

TICK = 0.5  # seconds between two decide calls of one replica
PERIOD = 6.0  # every job runs every PERIOD seconds …
RUN = 2.0  # … for RUN seconds (busy, not movable)


def _phase(job: str) -> float:
    return int.from_bytes(hashlib.sha256(job.encode()).digest()[:4], "big") % 1000 / 1000 * PERIOD


@dataclass
class Group:
    jobs: list[str]
    pace: float = 5.0
    settle: float = 5.0
    enabled: bool = True
    burst: bool = True  # call decide again at once after a step-back
    now: float = 0.0
    queues: dict[str, list[str]] = field(default_factory=dict)
    spreaders: dict[str, Spreader] = field(default_factory=dict)
    busy_until: dict[str, float] = field(default_factory=dict)  # extra busy periods
    releases: int = 0
    step_backs: int = 0
    failovers: int = 0  # leadership changes caused by a crash
    last_release: float = 0.0
    released_at: dict[str, float] = field(default_factory=dict)  # per replica
    changed_at: float = 0.0  # last join or crash
    _next_id: int = 0
    order_seed: int = 0

    def __post_init__(self) -> None:
        self.queues = {j: [] for j in self.jobs}

    # --- events -----------------------------------------------------------------------------
    def join(self) -> str:
        rid = f"r{self._next_id:02d}"
        self._next_id += 1
        self.spreaders[rid] = Spreader(enabled=self.enabled, pace=self.pace, settle=self.settle)
        self.changed_at = self.now
        for q in self.queues.values():
            q.append(rid)
        return rid

    def crash(self, rid: str) -> None:
        del self.spreaders[rid]
        self.changed_at = self.now
        for q in self.queues.values():
            if q and q[0] == rid and len(q) > 1:
                self.failovers += 1
            q.remove(rid)

    def make_busy(self, job: str, seconds: float) -> None:
        self.busy_until[job] = max(self.busy_until.get(job, 0.0), self.now + seconds)

    # --- observation ------------------------------------------------------------------------
    def busy(self, job: str) -> bool:
        periodic = (self.now + _phase(job)) % PERIOD < RUN
        return periodic or self.now < self.busy_until.get(job, 0.0)

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(self.spreaders, 0)
        for q in self.queues.values():
            if q:
                c[q[0]] += 1
        return c

    def share(self) -> int:
        return Spreader.fair_share(len(self.spreaders), len(self.jobs))

    def excess(self) -> int:
        s = self.share()
        return sum(max(0, n - s) for n in self.counts().values())

    def balanced(self) -> bool:
        return max(self.counts().values(), default=0) <= self.share()

    def view(self, rid: str) -> View:
        leading = frozenset(j for j, q in self.queues.items() if q and q[0] == rid)
        return View(
            members=len(self.spreaders),
            jobs=frozenset(self.jobs),
            leading=leading,
            idle=frozenset(j for j in leading if not self.busy(j)),
            standby=frozenset(j for j, q in self.queues.items() if rid in q[1:]),
        )

    # --- time -------------------------------------------------------------------------------
    def tick(self) -> None:
        """Every replica calls decide once, in a shuffled order; with ``burst``, those that
        stepped back call again in further rounds until none does (their step-backs
        interleave, as concurrent drivers' writes do)."""
        self.now += TICK
        active = sorted(self.spreaders)
        random.Random(f"{self.order_seed}:{self.now}").shuffle(active)
        for _ in range(len(self.jobs) + 1):
            active = [rid for rid in active if self._act(rid) and self.burst]
            if not active:
                break

    def _act(self, rid: str) -> bool:
        """One decide call of ``rid``, applied; whether it stepped back."""
        d = self.spreaders[rid].decide(self.view(rid), self.now)
        if d.release is not None or d.step_back is not None:
            assert self.now - self.changed_at >= self.settle, "moved before settling"
        if d.release is not None:
            last = self.released_at.get(rid)
            assert last is None or self.now - last >= self.pace, "released too soon"
            self.released_at[rid] = self.now
            q = self.queues[d.release]
            assert q[0] == rid, "released a job it does not lead"
            assert not self.busy(d.release), "released a job during a run"
            q.remove(rid)
            q.append(rid)
            self.releases += 1
            self.last_release = self.now
        if d.step_back is not None:
            q = self.queues[d.step_back]
            assert rid in q[1:], "stepped back in a queue it does not wait in"
            q.remove(rid)
            q.append(rid)
            self.step_backs += 1
        return d.step_back is not None

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.tick()

    def settle_time(self, limit: float) -> float:
        """Seconds until balanced and no release for a quiet while; fails past ``limit``."""
        start = self.now
        quiet = self.settle + 3 * self.pace + PERIOD
        while self.now - start < limit:
            self.tick()
            if self.balanced() and self.now - max(self.last_release, start) >= quiet:
                return max(self.last_release, start) - start
        raise AssertionError(f"not settled within {limit} s: {self.counts()}")


def _group(m: int, n: int, **kw: object) -> Group:
    g = Group(jobs=[f"job{i:02d}" for i in range(n)], **kw)  # type: ignore[arg-type]
    for _ in range(m):
        g.join()
    return g


# --- the scenarios of the many-jobs proof ------------------------------------------------------


def test_three_replicas_six_jobs_settle_at_two_each() -> None:
    g = _group(3, 6)
    t = g.settle_time(limit=120)
    assert sorted(g.counts().values()) == [2, 2, 2]
    # Bound: settle + pace before the first release, then one release per pace per replica for
    # the excess of the first replica (it led all six: four to shed), its turn within the pace,
    # plus a run's length.
    assert t <= g.settle + g.pace * 5 + RUN + PERIOD
    assert g.releases == 4, "each release lands on a replica with room: exactly the excess moves"


def test_kill_one_of_three_survivors_reach_three_each() -> None:
    g = _group(3, 6)
    g.settle_time(limit=120)
    before = g.releases
    g.crash(sorted(g.spreaders)[0])
    assert len(g.counts()) == 2 and sum(g.counts().values()) == 6, "L1: every job has a leader"
    g.settle_time(limit=120)
    assert sorted(g.counts().values()) == [3, 3]
    assert g.releases - before <= 1, "a crash of 2 jobs costs at most one move (4-2 → 3-3)"


def test_add_a_fourth_at_most_two_each() -> None:
    g = _group(3, 6)
    g.settle_time(limit=120)
    g.crash(sorted(g.spreaders)[0])
    g.settle_time(limit=120)
    before = g.releases
    g.join()
    g.join()  # back to three, then a fourth
    g.settle_time(limit=200)
    assert max(g.counts().values()) <= 2
    assert g.releases - before == 2, "3-3-0-0 → 2-2-1-1: only the excess moves"


def test_twenty_replicas_twenty_jobs_settle_and_moves_per_crash() -> None:
    g = _group(20, 20)
    g.settle_time(limit=600)
    assert max(g.counts().values()) == 1
    assert g.releases == 19, "the first replica led all twenty: nineteen moves, no more"
    moves = []
    for _ in range(5):
        before = g.releases
        g.crash(sorted(g.spreaders, key=lambda r: -g.counts()[r])[0])
        g.settle_time(limit=600)
        assert max(g.counts().values()) <= g.share()
        moves.append(g.releases - before)
    # The first crash (one job, share ⌈20/19⌉ = 2) moves nothing; later crashes of a replica
    # leading two can land both on one survivor (3 > 2): one move, never more.
    assert moves[0] == 0
    assert max(moves) <= 1


def test_spread_off_leads_everything_and_never_moves() -> None:
    g = _group(3, 6, enabled=False)
    g.run(120)
    assert sorted(g.counts().values()) == [0, 0, 6]
    assert g.releases == g.step_backs == 0


# --- random sequences of joins, crashes and busy periods ---------------------------------------

_event = st.one_of(
    st.tuples(st.just("join"), st.just(0), st.floats(0, 8)),
    st.tuples(st.just("crash"), st.integers(0, 50), st.floats(0, 8)),
    st.tuples(st.just("busy"), st.integers(0, 50), st.floats(0, 20)),
    st.tuples(st.just("wait"), st.just(0), st.floats(0, 30)),
)


@settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    m=st.integers(1, 6),
    n=st.integers(0, 12),
    events=st.lists(_event, max_size=12),
    burst=st.booleans(),
)
def test_random_joins_crashes_and_busy_periods_settle_with_bounded_moves(
    m: int, n: int, events: list[tuple[str, int, float]], burst: bool
) -> None:
    """Once events stop, every replica leads ≤ ⌈N/M⌉ within
    settle + 2·pace + E_max·(pace + RUN) + the longest busy period still running, where E_max is the
    largest excess of one replica then; the releases after the last event are at most the excess
    then (E = Σ max(0, led − share)) twice over when the driver acts on step-backs at once (2E + M
    when it waits a tick between them): a release lands on a replica with room, except when two
    releasers hand a job to the same one in the same instant, and that costs one move; so
    nothing ping-pongs. And each replica steps back at most once per job it waits for (≤ M·N)."""
    g = _group(m, n, burst=burst)
    for kind, i, t in events:
        if kind == "join":
            g.join()
        elif kind == "crash" and len(g.spreaders) > 1:
            g.crash(sorted(g.spreaders)[i % len(g.spreaders)])
        elif kind == "busy" and n:
            g.make_busy(g.jobs[i % n], t)
        # Every replica looks at least once between two events: a leave and a join inside one
        # look leave the member count as it was, and no rule can see a change it is not shown.
        g.run(max(t, TICK))
    share = g.share()
    excess = g.excess()
    worst = max((c - share for c in g.counts().values()), default=0)
    busy_left = max([u - g.now for u in g.busy_until.values()] + [0.0])
    wait = max(g.changed_at + g.settle - g.now, 0) + 2 * g.pace  # settle, pace, turn
    settled_by = wait + worst * (g.pace + RUN)
    bound = settled_by + busy_left + TICK
    before, step_backs = g.releases, g.step_backs
    t = g.settle_time(limit=bound + g.settle + 3 * g.pace + PERIOD)
    assert g.balanced()
    assert t <= bound, (t, bound)
    # A driver that waits a tick between step-backs lets a release reach a replica that just came
    # to its share before it stepped back there: one extra move per such replica at most.
    assert g.releases - before <= 2 * excess + (0 if burst else len(g.spreaders))
    assert g.step_backs - step_backs <= len(g.spreaders) * n


def test_rolling_restart_moves_nothing_until_over_then_only_the_excess() -> None:
    """Settle: a rolling restart (a replica stopped, its replacement up 1.5 s later, the next
    one 1.5 s after that: faster than settle) releases nothing while it lasts; afterwards only
    the excess moves."""
    g = _group(3, 6)
    g.settle_time(limit=120)
    before = g.releases
    for rid in sorted(g.spreaders):
        g.crash(rid)
        g.run(1.5)
        g.join()
        g.run(1.5)
    assert g.releases == before, "a move during the rolling restart"
    excess = g.excess()
    g.settle_time(limit=120)
    assert sorted(g.counts().values()) == [2, 2, 2]
    assert g.releases - before == excess
