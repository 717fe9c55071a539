"""Many candidates on one election on one etcd, in one process: leaderjob's Elector with its own
EtcdStore (own gRPC channel) per candidate, each driven by its own thread (leaderjob.selftest's
Candidate, without a job).

    python bench/scale.py [--sizes 10,100,300] [--ttl 15] [--window 30]

Per size: etcd requests per minute while idle (by method), etcd's CPU while idle, graceful
handover (the leader resigns and revokes → the next candidate leads) and crash failover (the
leader's loop stops without a word → its lease expires → the next leads), the etcd requests each
leadership change cost (keepalives excluded: they are the idle background), and how many
candidates woke up for it (made a standing read) — which must not grow with the size.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchlib import (
    EtcdServer,
    delta,
    etcd_cpu_seconds,
    etcd_requests,
    etcd_server,
    fmt,
    table,
    wait_for,
)

from leaderjob.config import Connection, Timing
from leaderjob.selftest import Candidate, TrackingStore


def _reads(c: Candidate) -> int:
    """How many standing reads a candidate made so far."""
    store = c.store
    assert isinstance(store, TrackingStore)
    return store.calls.get("standing", 0)


def _change(etcd: EtcdServer, cands: list[Candidate], how: str, ttl: float) -> dict[str, Any]:
    leader = next(c for c in cands if c.leading)
    others = [c for c in cands if c is not leader and c.alive]
    reads0 = {id(c): _reads(c) for c in others}
    r0 = etcd_requests(etcd.client_url)
    t0 = time.monotonic()
    if how == "graceful":
        leader.stop()
    else:
        leader.crash()
    ok = wait_for(lambda: any(c.first("election.acquired", t0) for c in others), ttl + 15, 0.002)
    t1 = time.monotonic()
    new = [c.first("election.acquired", t0) for c in others]
    times = [x[0] for x in new if x is not None]
    time.sleep(1.0)  # let the successor's confirm and the next in line's watch settle
    r1 = etcd_requests(etcd.client_url)
    requests = delta(r1, r0)
    requests.pop("LeaseKeepAlive", None)
    woken = len([c for c in others if _reads(c) > reads0[id(c)]])
    cands.remove(leader)
    return {
        "seconds": (min(times) - t0) if ok and times else None,
        "waited": t1 - t0,
        "requests": sum(requests.values()),
        "by_method": requests,
        "woken": woken,
    }


def one_size(n: int, ttl: float, window: float) -> dict[str, Any]:
    timing = Timing.from_ttl(ttl)
    out: dict[str, Any] = {"n": n, "ttl": ttl}
    with etcd_server() as etcd:
        conn = Connection(endpoints=(etcd.endpoint,))
        cands = [
            Candidate(f"c{i}", TrackingStore(conn), timing, f"/bench/scale-{n}/leader")
            for i in range(n)
        ]
        t0 = time.monotonic()
        for c in cands:
            c.start()
        ready = wait_for(
            lambda: (
                all(c.elector.lease_id is not None for c in cands)
                and sum(c.leading for c in cands) == 1
            ),
            120,
            0.05,
        )
        out["start_seconds"] = time.monotonic() - t0
        if not ready:
            out["error"] = "not all candidates queued"
        time.sleep(3.0)
        r0, e0 = etcd_requests(etcd.client_url), etcd_cpu_seconds(etcd.pid)
        time.sleep(window)
        r1, e1 = etcd_requests(etcd.client_url), etcd_cpu_seconds(etcd.pid)
        idle = delta(r1, r0)
        out["idle_req_per_min"] = sum(idle.values()) / window * 60
        out["idle_by_method"] = {k: v / window * 60 for k, v in idle.items()}
        out["idle_etcd_cpu"] = (e1 - e0) / window
        e2 = etcd_cpu_seconds(etcd.pid)
        out["graceful"] = _change(etcd, cands, "graceful", ttl)
        out["crash"] = _change(etcd, cands, "crash", ttl)
        out["change_etcd_cpu_seconds"] = etcd_cpu_seconds(etcd.pid) - e2
        out["errors"] = sum(c.errors for c in cands)
        for c in cands:
            c.stop(5)
        for c in cands:
            c.store.close()
    return out


def run_all(sizes: list[int], ttl: float, window: float) -> list[dict[str, Any]]:
    return [one_size(n, ttl, window) for n in sizes]


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        g, c = r["graceful"], r["crash"]
        keep = r["idle_by_method"].get("LeaseKeepAlive", 0.0)
        rows.append([
            str(r["n"]),
            f"{r['idle_req_per_min']:.0f} ({keep / r['n']:.1f} keepalives/min each)",
            f"{r['idle_etcd_cpu'] * 100:.1f} %",
            fmt(g["seconds"], "s", 3), fmt(c["seconds"], "s", 2),
            f"{g['requests']:.0f} / {c['requests']:.0f}",
            f"{g['woken']} / {c['woken']}",
        ])  # fmt: skip
    return table(
        ["candidates", "etcd req/min idle", "etcd CPU idle", "graceful handover",
         "crash failover", "etcd req per change (graceful / crash)",
         "candidates woken (graceful / crash)"],
        rows,
    )  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="10,100,300")
    p.add_argument("--ttl", type=float, default=15.0)
    p.add_argument("--window", type=float, default=30.0)
    a = p.parse_args()
    res = run_all([int(x) for x in a.sizes.split(",")], a.ttl, a.window)
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
