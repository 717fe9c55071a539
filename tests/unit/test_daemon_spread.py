"""Spreading, driven by real daemons on the fake clock: 3 daemons × 6 jobs over one in-memory etcd.

The pure rules (leaderjob/daemon/spread.py) are proven on a model in test_spread_sim.py, where every
replica sees the member count change at the instant it changes. A daemon learns it from etcd, a
little later; these tests check that this lag moves nothing the fair share ⌈N/M⌉ does not require:
after a crash or a graceful stop, the releases are at most the survivors' excess over their share,
and no replica hands a job over to itself.

Timing: ttl 3 s (renew every 1 s), spread pace and settle 1 s; jobs fire ``@every 1s`` and run
0.1 s (FakeRun).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leaderjob.daemon import Daemon
from leaderjob.daemon.spread import Decision, Spreader, View
from leaderjob.election.memory import MemoryStore
from tests.unit.test_daemon_jobs import Group, fake_runs, group_daemon
from tests.unit.test_daemon_schedule import Clock

JOBS = tuple(f"j{i}" for i in range(6))


class SpreadGroup(Group):
    """A Group whose daemons spread, recording every release: (time, releaser, job, members
    the releaser counted)."""

    def __init__(self, clock: Clock, store: MemoryStore) -> None:
        super().__init__(clock, store)
        self.releases: list[tuple[float, str, str, int]] = []

    def add(self, identity: str) -> Daemon:
        spreader = Spreader(pace=1.0, settle=1.0)
        d = group_daemon(self.store, self.clock, identity, jobs=JOBS, spreader=spreader)
        assert d.spreading is not None
        spreader = d.spreading.spreader
        decide = spreader.decide

        def recorded(view: View, now: float) -> Decision:
            decision = decide(view, now)
            if decision.release is not None:
                self.releases.append((now, identity, decision.release, view.members))
            return decision

        spreader.decide = recorded  # type: ignore[method-assign]
        self.daemons[identity] = d
        return d

    def counts(self) -> dict[str, int]:
        led = self.leaders()
        return {
            name: sum(1 for who in led.values() if who == name)
            for name in self.daemons
            if name not in self.crashed
        }

    def settle(self, limit: float) -> None:
        """Run until every job is led, nobody leads more than its share, and nothing moved for
        three paces."""
        end = self.clock.monotonic() + limit
        share = -(-len(JOBS) // len(self.counts()))
        while self.clock.monotonic() < end:
            self.run(0.5)
            quiet = not self.releases or self.clock.monotonic() - self.releases[-1][0] > 3.0
            counts = self.counts()
            if len(self.leaders()) == len(JOBS) and max(counts.values()) <= share and quiet:
                return
        raise AssertionError(f"did not settle within {limit}s: {self.counts()}")


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch) -> Iterator[SpreadGroup]:
    with fake_runs(monkeypatch) as (clock, _):
        yield SpreadGroup(clock, MemoryStore(clock))


def _excess(counts: dict[str, int]) -> int:
    share = -(-len(JOBS) // len(counts))
    return sum(max(0, n - share) for n in counts.values())


def _settled_three(g: SpreadGroup) -> None:
    for name in ("a", "b", "c"):
        g.add(name)
        g.run(0.2)
    g.settle(60.0)
    assert sorted(g.counts().values()) == [2, 2, 2]


def test_a_crash_moves_no_job_the_fair_share_does_not_require(group: SpreadGroup) -> None:
    """After a crash, a survivor that took over jobs (L1) must not release on the old member
    count: only the excess over ⌈N/M⌉ of the survivors moves."""
    g = group
    _settled_three(g)
    g.crashed.add("c")
    crashed_at = g.clock.monotonic()
    while len(g.leaders()) != len(JOBS):
        g.run(0.05)
    excess = _excess(g.counts())
    g.settle(60.0)
    moves = [r for r in g.releases if r[0] > crashed_at]
    assert sorted(g.counts().values()) == [3, 3]
    assert len(moves) <= excess, (excess, moves)
    assert all(members == 2 for *_, members in moves), moves


def test_after_a_graceful_stop_no_replica_hands_a_job_to_itself(group: SpreadGroup) -> None:
    """After a graceful stop (L2), the survivors release nothing on the old member count, and no
    release lands on the releaser itself; only the excess over ⌈N/M⌉ moves."""
    g = group
    _settled_three(g)
    g.daemons["c"].request_stop()
    while "c" not in g.crashed:
        g.run(0.05)
        if g.daemons["c"].cycle().action == "exited":
            g.crashed.add("c")
    stopped_at = g.clock.monotonic()
    while len(g.leaders()) != len(JOBS):
        g.run(0.05)
    excess = _excess(g.counts())
    g.settle(60.0)
    moves = [r for r in g.releases if r[0] > stopped_at - 1.0]
    assert sorted(g.counts().values()) == [3, 3]
    assert len(moves) <= excess, (excess, moves)
    assert all(members == 2 for *_, members in moves), moves


def test_the_last_replica_standing_hands_no_job_to_itself(group: SpreadGroup) -> None:
    """Two replicas settled 3-3; one stops gracefully. The survivor leads all six, its share now:
    a release would only hand a job back to itself (a new tenure for nothing)."""
    g = group
    for name in ("a", "b"):
        g.add(name)
        g.run(0.2)
    g.settle(60.0)
    assert sorted(g.counts().values()) == [3, 3]
    g.daemons["b"].request_stop()
    while "b" not in g.crashed:
        g.run(0.05)
        if g.daemons["b"].cycle().action == "exited":
            g.crashed.add("b")
    stopped_at = g.clock.monotonic()
    g.run(10.0)
    assert g.counts() == {"a": 6}
    assert [r for r in g.releases if r[0] > stopped_at - 1.0] == []
