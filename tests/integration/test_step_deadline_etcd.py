"""One deadline per step, against a real etcd: the create of a key for a job that joins its
queue while others lead goes through the same gRPC deadline as the rest of the step. A network
that holds every byte for 1.5 s (longer than a step's budget, shorter than the renew deadline)
costs that step at most its budget — half a renew interval — not the hold; the jobs that lead
keep leading (L4) and the new one joins once the network is back. TTL 3 s."""

from __future__ import annotations

import threading
import time

from leaderjob.clock import SystemClock
from leaderjob.config import Connection, Timing
from leaderjob.election.etcd import EtcdStore
from leaderjob.election.group import Group
from tests.harness.etcd import EtcdServer
from tests.harness.proxy import FaultProxy

TIMING = Timing.from_ttl(3)
HOLD = 1.5
SLACK = 0.15  # a loaded 2-core machine


def test_a_held_create_for_a_joining_job_costs_one_step_budget_l4(
    etcd: EtcdServer, prefix: str
) -> None:
    with FaultProxy(etcd.endpoint) as proxy:
        store = EtcdStore(Connection(endpoints=(proxy.endpoint,), rpc_timeout=5.0))
        g = Group(store, TIMING, "r0", SystemClock(), threading.Event(), rpc_timeout=5.0)
        for job in ("a", "b"):
            g.want(job, f"{prefix}/jobs/{job}/leader")
        try:
            g.step(True)
            assert sorted(g.leading()) == ["a", "b"]
            assert g.machine.lease is not None
            g.want("c", f"{prefix}/jobs/c/leader")
            proxy.blackhole()
            held_at = time.monotonic()
            started = time.monotonic()
            out = g.step(True)  # the create of c's key meets the hold
            took = time.monotonic() - started
            assert took <= TIMING.renew_interval / 2 + SLACK, f"the step took {took:.2f} s"
            assert out.errors and not any(t.lost_leadership for t in out.transitions)
            lost = []
            while time.monotonic() < held_at + HOLD + 2 * TIMING.renew_interval:
                if time.monotonic() >= held_at + HOLD:
                    proxy.heal()
                out = g.step(True)
                lost += [t for t in out.transitions if t.lost_leadership]
                time.sleep(0.05)
            assert not lost, lost
            assert sorted(g.leading()) == ["a", "b", "c"]
        finally:
            proxy.heal()
            g.resign()
            g.release()
            store.close()
