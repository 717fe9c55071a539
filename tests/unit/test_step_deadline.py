"""One deadline per step: a daemon's whole cycle on the renew path — keepalive, the confirmation
of its keys, the claims of due slots, history records — spends one budget of etcd time (half a
renew interval), however slow etcd is. On the fake clock: a group daemon of four jobs whose
store answers every call at 90 % of the timeout it is given (L4: the next keepalive is never
held up by the rest of the cycle).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore
from leaderjob.schedule import parse_schedule
from tests.unit.slowstore import SlowStore
from tests.unit.test_daemon_jobs import GROUP, JOBS, PREFIX, TICK, TIMING, fake_runs
from tests.unit.test_daemon_schedule import Clock, FakeRun


def slow_daemon(clock: Clock) -> tuple[Daemon, SlowStore]:
    slow = SlowStore(MemoryStore(clock), clock)
    settings = Settings(
        election=GROUP, prefix=PREFIX, identity="slow", timing=TIMING, command=(), rpc_timeout=1.0
    )
    specs = [
        Settings(
            election=job,
            prefix=f"{PREFIX}/{GROUP}/jobs",
            identity="slow",
            timing=TIMING,
            command=("job", job),
            schedule=parse_schedule("@every 1s", "UTC"),
            rpc_timeout=1.0,
        )
        for job in JOBS
    ]
    return Daemon(settings, slow, clock=clock, environ={}, jobs=specs), slow


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Clock, list[FakeRun]]]:
    with fake_runs(monkeypatch) as (clock, started):
        yield clock, started


def test_a_whole_cycle_spends_one_step_budget_of_etcd_time_l4(
    world: tuple[Clock, list[FakeRun]],
) -> None:
    clock, started = world
    d, slow = slow_daemon(clock)
    idle = threading.Event()
    for _ in range(round(3 / TICK)):  # a quick etcd: every job leads and runs
        d.cycle()
        clock.wait(idle, TICK)  # fake runs end on the way
    assert sorted(r.seat.job for r in d.runners.values() if r.tenure is not None) == list(JOBS)
    ran = len(started)
    assert ran >= len(JOBS)
    budget = TIMING.renew_interval / 2
    slow.answer_at = 0.9
    worst = 0.0
    operations: set[str] = set()
    for _ in range(round(4 * TIMING.ttl / TICK)):
        before, calls = slow.spent, len(slow.calls)
        d.cycle()
        worst = max(worst, slow.spent - before)
        operations |= {op for op, _ in slow.calls[calls:]}
        assert slow.spent - before <= budget + 1e-6, slow.calls[calls:]
        for r in d.runners.values():
            assert r.tenure is not None, f"{r.seat.job} lost its tenure on a slow etcd"
        clock.wait(idle, TICK)
    # Every kind of call of the renew path took part, within the budget.
    assert {"keepalive", "standings", "guarded_put"} <= operations, operations
    assert len(started) > ran, "slots still run on a slow etcd"
