"""Proof under faults, per job: three pods run one jobs file of four jobs (``leaderjob run
--jobs``: one lease per daemon, one election per job, a fenced resource per job), a fault hits
a pod that leads some of them, and the checker judges every job on its own (S1, S2, S3, S5, S6:
one leader per job at a time, tokens per job increasing, no (job, slot) twice, no job alive
after its key is gone).

TTL is 3 s; time bounds carry one second of slack for a loaded 2-core machine.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.checker import Verdict
from tests.faults.world import Pod, World
from tests.harness.procs import pid_alive, wait_until

TTL = 3.0
SLACK = 1.0
JOBS = 4
#: Runs of three writes 0.2 s apart on ``@every 1s``: a job moves only between runs (spread).
#: Spreading paced at 1 s, not the default 5 s: the pods settle at 2-1-1 in seconds instead of
#: ten or more, and the faults hit the same settled group.
WORLD = {"jobs": JOBS, "writes": 3, "interval": 0.2, "extra": ["--spread-pace", "1s"]}

pytestmark = pytest.mark.timeout(150)


def _finish(world: World, *about: str) -> Verdict:
    """No safety violation on any job, no anomaly, no liveness bound missed after ``about``."""
    verdict = world.finish()
    print(verdict.report())
    assert verdict.ok, verdict.report()
    assert verdict.liveness_of(*about) == [], verdict.report()
    return verdict


def _settled(world: World) -> tuple[Pod, dict[str, int]]:
    """Every job led and spread (no pod leads more than two of the four), each writing;
    returns the pod that leads the most jobs and their tokens."""
    world.wait_all_led(30)

    def spread() -> bool:
        leaders = world.leaders()
        per_pod = [sum(1 for p, _ in leaders.values() if p == pod.name) for pod in world.pods]
        return len(leaders) == JOBS and max(per_pod) <= 2

    assert wait_until(spread, 60, 0.1), f"never spread: {world.leaders()}"
    for _, token in world.leaders().values():
        world.wait_accepted(token, 10)
    leaders = world.leaders()
    by_pod: dict[str, dict[str, int]] = {}
    for job, (pod, token) in leaders.items():
        by_pod.setdefault(pod, {})[job] = token
    name = max(by_pod, key=lambda p: len(by_pod[p]))
    return world.pod(name), by_pod[name]


def _successors(world: World, victim: Pod, held: dict[str, int], timeout: float) -> dict[str, int]:
    """Wait until every job ``victim`` held has a leader elsewhere with a larger token."""
    new: dict[str, int] = {}

    def moved() -> bool:
        leaders = world.leaders()
        new.clear()
        new.update(
            {
                job: tok
                for job, (pod, tok) in leaders.items()
                if job in held and pod != victim.name and tok > held[job]
            }
        )
        return set(new) == set(held)

    assert wait_until(moved, timeout, 0.02), f"jobs {sorted(set(held) - set(new))} did not move"
    return dict(new)


def test_jobs_kill9_each_job_moves_L1_S6(make_world):
    """L1 + S6 per job: `kill -9` of a pod that leads some of the four jobs: each of its runs
    dies at once (the watchdog sees the pipe close), each of its jobs is led elsewhere within
    TTL + 1.5 s with a larger token of that job, and writes again; no job of the others moves
    backwards, no (job, slot) runs twice."""
    world = make_world(**WORLD)
    victim, held = _settled(world)
    runs: list[int] = []
    assert wait_until(lambda: bool(runs.extend(victim.jobs()) or runs), 5, 0.01), (
        f"{victim.name} leads {sorted(held)} but runs nothing"
    )
    t0 = time.monotonic()
    world.kill9(victim)
    assert wait_until(lambda: not any(pid_alive(p) for p in runs), 0.2 + SLACK), (
        "a run outlived its daemon"
    )
    new = _successors(world, victim, held, TTL + 1.5 + SLACK)
    took = time.monotonic() - t0
    assert took <= TTL + 1.5 + SLACK, took
    for token in new.values():
        world.wait_accepted(token, 5)
    verdict = _finish(world, "kill9")
    assert verdict.stats["failover"]["kill9"]["taken_over"] == len(held)


def test_jobs_sigterm_each_job_handed_over_L2(make_world):
    """L2 per job: SIGTERM of a pod that leads some jobs hands each over within 1 s (no TTL
    wait), and each job's old run ended before its successor's run started."""
    world = make_world(**WORLD)
    victim, held = _settled(world)
    with world.fault("sigterm", victim.name):
        t0 = time.monotonic()
        assert victim.daemon is not None
        victim.daemon.signal(signal.SIGTERM)
        new = _successors(world, victim, held, 5.0)
        took = time.monotonic() - t0
        assert victim.daemon.wait(10) == 0
    assert took < 1.0 + SLACK, took
    for job, token in new.items():
        world.wait_accepted(token, 5)
        old_end = max(r["t"] for r in world.journal_records("end", token=held[job]))
        new_start = min(r["t"] for r in world.journal_records("start", token=token))
        assert old_end < new_start, f"{job}: the successor's run started before the old one ended"
    verdict = _finish(world, "sigterm")
    assert verdict.stats["failover"]["sigterm"]["taken_over"] == len(held)


def test_jobs_pod_cut_off_runs_dead_before_keys_go_S6_L5(make_world):
    """S6 + L5 per job: a pod cut off from every etcd member reaps each of its runs before etcd
    deletes that job's key (the checker's S6, per token), each job is led elsewhere, and after
    the cut heals the pod campaigns again with a new lease (its tokens only grow: S2 per job)."""
    world = make_world(**WORLD)
    victim, held = _settled(world)
    runs: list[int] = []
    assert wait_until(lambda: bool(runs.extend(victim.jobs()) or runs), 5, 0.01), (
        f"{victim.name} leads {sorted(held)} but runs nothing"
    )
    with world.fault("cut_off", victim.name):
        victim.proxies.blackhole()
        _successors(world, victim, held, TTL + 1.5 + 2 * SLACK)
        assert not any(pid_alive(p) for p in runs), "a run of the cut-off pod still lives"
        granted = len(victim.daemon.events("lease.granted")) if victim.daemon else 0
        victim.proxies.heal()
    assert victim.daemon is not None
    # L5: back in touch, it takes a new lease (never resumes the old one).
    assert wait_until(lambda: len(victim.daemon.events("lease.granted")) > granted, 15, 0.05)
    world.wait_all_led(15)
    verdict = _finish(world, "cut_off")
    assert verdict.stats["jobs_started"] > 0
