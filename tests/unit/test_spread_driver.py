"""Spreading's driver hands the pure rule what the replica really sees (L2).

``Spreader.decide`` (leaderjob/daemon/spread.py) releases only jobs its view calls idle;
test_spread.py proves that with views written by hand. These tests drive the real caller
(``Spreading.tick``, through real daemons on the in-memory etcd and the fake clock) and check each
view it builds against the runners themselves: the idle set is exactly the led jobs with no run in
progress, no retry waiting and no slot claimed ahead; the member count is the number of live
replicas; the time is the clock's. A job with a run in progress is never released: a release would
hand the job to a successor while its run goes on (a move happens only between runs).

Three jobs run for ever (``busy``), three briefly; ``@every 1s``; ttl 3 s; spread pace and
settle 1 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import leaderjob.daemon.starts as runner_mod
from leaderjob.daemon import Daemon
from leaderjob.daemon.spread import Decision, Spreader, View
from leaderjob.election.memory import MemoryStore
from tests.unit.test_daemon_jobs import Group, fake_runs, group_daemon
from tests.unit.test_daemon_schedule import Clock, FakeRun, Job

JOBS = ("j0", "j1", "j2", "j3", "j4", "j5")
BUSY = frozenset({"j0", "j1", "j2"})


class MixedRun(FakeRun):
    """A busy job's run goes on until stopped; the others' end after 0.1 s."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.spec = Job(duration=None) if self.env.get("LEADERJOB_JOB") in BUSY else Job()


@dataclass
class Seen:
    now: float
    clock: float
    view: View
    truly_idle: frozenset[str]
    live: int
    decision: Decision


class SpyGroup(Group):
    def __init__(self, clock: Clock, store: MemoryStore) -> None:
        super().__init__(clock, store)
        self.seen: dict[str, list[Seen]] = {}

    def add(self, identity: str) -> Daemon:
        d = group_daemon(
            self.store, self.clock, identity, jobs=JOBS, spreader=Spreader(pace=1.0, settle=1.0)
        )
        assert d.spreading is not None
        spreader = d.spreading.spreader
        decide = spreader.decide
        seen = self.seen.setdefault(identity, [])

        def spy(view: View, now: float) -> Decision:
            # The truth, from the runners themselves, at the moment of the call.
            truly_idle = frozenset(
                n
                for n in view.leading
                if not d.runners[n].runs
                and (
                    d.runners[n].tenure is None
                    or (not d.runners[n].tenure.pending and d.runners[n].tenure.ahead is None)
                )
            )
            live = len([n for n in self.daemons if n not in self.crashed])
            decision = decide(view, now)
            seen.append(Seen(now, self.clock.monotonic(), view, truly_idle, live, decision))
            return decision

        spreader.decide = spy  # type: ignore[method-assign]
        self.daemons[identity] = d
        return d


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch) -> Iterator[SpyGroup]:
    with fake_runs(monkeypatch) as (clock, _):
        monkeypatch.setattr(runner_mod, "Run", MixedRun)
        yield SpyGroup(clock, MemoryStore(clock))


def test_spreading_is_handed_the_runners_idle_set_and_moves_no_busy_job_L2(
    group: SpyGroup,
) -> None:
    g = group
    a = g.add("a")
    g.run(3.0)
    assert set(g.leaders()) == set(JOBS) and set(g.leaders().values()) == {"a"}
    busy_runs = {n: list(a.runners[n].runs) for n in BUSY}
    assert all(busy_runs.values()), "the busy jobs should be running"
    g.add("b")
    g.run(15.0)
    seen = g.seen["a"]
    assert seen, "spreading never asked the rule"
    for s in seen:
        assert s.view.idle == s.truly_idle, (s.now, s.view.idle, s.truly_idle)
        assert s.now == s.clock
        assert s.view.members <= s.live
    released = [s.decision.release for s in seen if s.decision.release is not None]
    assert released, "nothing moved to the new replica"
    assert not BUSY & set(released), f"a job with a run in progress was released: {released}"
    assert all(g.leaders()[n] == "a" for n in BUSY)
    assert all(a.runners[n].runs == busy_runs[n] for n in BUSY), "a busy job's run was stopped"
    # The count the rule was given caught up with the two live replicas.
    assert seen[-1].view.members == 2
    assert sorted(g.leaders().values()).count("b") == 3
