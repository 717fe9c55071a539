"""An idle leader's etcd traffic, counted on the fake clock: Daemon + MemoryStore, no processes.

The goal (docs/benchmarks.md, "Idle traffic"): besides the keepalive, one request per renewal
period — the Txn that confirms our keys (docs/safety.md §4, S5) and, in the same read, every led
job's control switches (suspend, triggers) and the replicas' fingerprints — whatever the number
of jobs the daemon leads.

Timing: ttl 15 s (renew every 5 s), as the benchmark; schedules never due during the test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.daemon.spread import Spreader
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from leaderjob.schedule import parse_schedule
from tests.unit.test_daemon_jobs import fake_runs
from tests.unit.test_daemon_schedule import Clock, FakeRun

TIMING = Timing.from_ttl(15)
PREFIX = "/lj"
IDLE = "0 0 1 1 *"  # never due in these tests
PERIODS = 12  # one minute at TTL 15 s


class Counting:
    """A client of the in-memory etcd that counts its requests by operation (every call is one
    request; a watch is one stream, opened once)."""

    def __init__(self, store: MemoryStore) -> None:
        self.inner = store.client()
        self.calls: Counter[str] = Counter()
        self.prefixes: list[str] = []  # what get_prefix read

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "get_prefix":
                self.prefixes.append(str(args[0]))
            return attr(*args, **kwargs)

        return counted


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    with fake_runs(monkeypatch) as (c, _):
        yield c


def daemon(
    store: MemoryStore, clock: Clock, jobs: int | None, identity: str = "a", spread: bool = False
) -> tuple[Daemon, Counting]:
    """A daemon of one job (``jobs`` None: ``run --schedule``) or of a jobs file of ``jobs``
    (``spread``: spreading its jobs over the replicas, the default of `run --jobs`)."""
    client = Counting(store)
    settings = Settings(
        election="g",
        prefix=PREFIX,
        identity=identity,
        timing=TIMING,
        command=("job",),
        schedule=parse_schedule(IDLE, "UTC"),
        rpc_timeout=1.0,
    )
    if jobs is None:
        return Daemon(settings, client, clock=clock, environ={}), client  # type: ignore[arg-type]
    specs = [
        Settings(
            election=f"j{i:02d}",
            prefix=f"{PREFIX}/g/jobs",
            identity=identity,
            timing=TIMING,
            command=("job",),
            schedule=parse_schedule(IDLE, "UTC"),
            rpc_timeout=1.0,
        )
        for i in range(jobs)
    ]
    spreader = Spreader(enabled=spread)
    d = Daemon(settings, client, clock=clock, environ={}, jobs=specs, spreader=spreader)  # type: ignore[arg-type]
    return d, client


def run_for(d: Daemon, seconds: float) -> None:
    end = d.clock.monotonic() + seconds
    cycles = 0
    while d.clock.monotonic() < end:
        d.cycle()
        d._wait()
        cycles += 1
        assert cycles < 100_000, "busy loop"


@pytest.mark.parametrize(("jobs", "spread"), [(None, False), (1, False), (50, False), (50, True)])
def test_an_idle_leader_sends_a_keepalive_and_one_read_per_renewal_period(
    clock: Clock, jobs: int | None, spread: bool
) -> None:
    """S5/§4 keep their confirming read once per renewal period; the control switches of every
    led job, and the replicas' fingerprints, ride in it: a minute of leading 1 or 50 idle jobs
    costs 12 keepalives and 12 reads (one Txn each), nothing per job, nothing else."""
    store = MemoryStore(clock)
    d, client = daemon(store, clock, jobs, spread=spread)
    run_for(d, 3 * TIMING.renew_interval)
    assert len([r for r in d.runners.values() if r.tenure is not None]) == (jobs or 1)
    client.calls.clear()
    run_for(d, PERIODS * TIMING.renew_interval)
    reads = client.calls["standing"] + client.calls["standings"]
    assert PERIODS - 1 <= client.calls["keepalive"] <= PERIODS + 1, client.calls
    assert PERIODS - 1 <= reads <= PERIODS + 1, client.calls
    periodic = ("keepalive", "standing", "standings")
    others = {k: n for k, n in client.calls.items() if k not in periodic}
    assert not others, f"requests besides the keepalive and the confirming read: {others}"


def test_a_trigger_runs_within_one_renew_interval_without_a_read_of_its_own(clock: Clock) -> None:
    """The "run now" promise holds with the switches read inside the confirmation: a trigger
    written at any moment of an idle tenure starts within one renew interval (plus a cycle)."""
    store = MemoryStore(clock)
    d, client = daemon(store, clock, None)
    run_for(d, 2 * TIMING.renew_interval + 1.3)
    data = ElectionData(store, PREFIX, "g")
    data.trigger("ops", timeout=1)
    asked = clock.monotonic()
    client.calls.clear()
    client.prefixes.clear()
    while not FakeRun.started:
        assert clock.monotonic() - asked <= TIMING.renew_interval + 0.1, "trigger not run"
        run_for(d, 0.05)
    assert FakeRun.started[0].slot.startswith("trigger-")
    assert not [p for p in client.prefixes if "/control/" in p], "a read of the switches alone"


def test_suspension_is_seen_by_the_leader_within_one_renew_interval(clock: Clock) -> None:
    """`status` shows what the leader last read: a suspend and a resume reach the tenure within
    one renew interval, with no read of their own."""
    store = MemoryStore(clock)
    d, client = daemon(store, clock, 3)
    run_for(d, 2 * TIMING.renew_interval)
    runner = d.runners["j01"]
    assert runner.tenure is not None and runner.tenure.suspended is False
    ElectionData(store, f"{PREFIX}/g/jobs", "j01").suspend("ops", timeout=1)
    client.calls.clear()
    client.prefixes.clear()
    run_for(d, TIMING.renew_interval + 0.1)
    assert runner.tenure.suspended is True
    assert d.runners["j00"].tenure is not None and d.runners["j00"].tenure.suspended is False
    ElectionData(store, f"{PREFIX}/g/jobs", "j01").resume(timeout=1)
    run_for(d, TIMING.renew_interval + 0.1)
    assert runner.tenure.suspended is False
    assert not [p for p in client.prefixes if "/control/" in p], "a read of the switches alone"
    assert client.calls["get"] == 0, client.calls


def test_the_leader_still_flags_a_replica_running_another_job_without_reading(
    clock: Clock,
) -> None:
    """The fingerprint check (two deployments sharing one election) keeps working with the
    fingerprints read in the leader's confirmation: a newcomer running another command is
    flagged by the leader within one check interval, and the leader made no read for it."""
    import threading

    from leaderjob.ops.fingerprint import CHECK_INTERVAL

    store = MemoryStore(clock)
    leader, client = daemon(store, clock, None)
    run_for(leader, 2 * TIMING.renew_interval)
    assert leader.runner.tenure is not None
    other = Settings(
        election="g",
        prefix=PREFIX,
        identity="b",
        timing=TIMING,
        command=("another", "job"),
        schedule=parse_schedule(IDLE, "UTC"),
        rpc_timeout=1.0,
    )
    newcomer = Daemon(other, store.client(), clock=clock, environ={})
    client.calls.clear()
    idle = threading.Event()
    end = clock.monotonic() + CHECK_INTERVAL + TIMING.renew_interval + 0.5
    while clock.monotonic() < end and not leader.config.checker.conflict:
        leader.cycle()
        newcomer.cycle()
        clock.wait(idle, 0.05)
    assert [p.identity for p in leader.config.checker.conflict] == ["b"]
    assert newcomer.config.checker.conflict, "the newcomer sees it at once, as before"
    assert client.calls["get_prefix"] == 0, client.calls


def test_spreading_counts_the_replicas_from_the_confirmation(clock: Clock) -> None:
    """Spreading needs the number of live replicas (M): it comes with each confirmation, on a
    leader and a follower alike, so a second replica is counted within one renew interval and
    the leader then hands over half of its jobs, with no read of its own."""
    store = MemoryStore(clock)
    a, client = daemon(store, clock, 4, "a", spread=True)
    run_for(a, 2 * TIMING.renew_interval)
    assert a.spreading is not None and a.spreading.members == 1
    b, _ = daemon(store, clock, 4, "b", spread=True)
    client.calls.clear()
    import threading

    idle = threading.Event()
    end = clock.monotonic() + 60.0
    b_counted_while_waiting = False
    while clock.monotonic() < end:
        a.cycle()
        b.cycle()
        assert b.spreading is not None
        if b.spreading.members == 2 and not b.session.leading:
            b_counted_while_waiting = True
        clock.wait(idle, 0.05)
    assert b_counted_while_waiting, "a replica that leads nothing counts the members too"
    assert a.spreading.members == 2 and b.spreading is not None and b.spreading.members == 2
    led = [len([r for r in d.runners.values() if r.tenure is not None]) for d in (a, b)]
    assert led == [2, 2], led
    assert client.calls["candidates"] == 0, client.calls
