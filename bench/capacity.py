"""The capacity model's inputs, measured, and the model checked against a run.

    python bench/capacity.py [--ttl 5] [--window 60] [--jobs 80] [--every 60] [--spread off]

1. **Unit costs** (one etcd member, real ``leaderjob run`` daemons): an idle leader alone, then
   with a follower (the follower is the difference), then the leader running ``@every 1s``, then
   the same with a job that prints to stdout and stderr (its output tails are stored beside the
   run record): etcd requests per second by method, and revisions (writes) per run from the
   store's revision counter against the runs the daemon logged.
2. **The model**, from those costs: requests/s, range operations/s inside the confirmations,
   revisions/s, leases and watchers as functions of pods P, jobs J, TTL T and runs per second
   per job f. A pod confirms every candidacy it holds in one Txn per renew interval, two range
   operations per job; etcd caps a Txn at ``--max-txn-ops`` (128 by default), so a pod that is
   a candidate for more than 63 jobs sends several.
3. **A check**: P daemons, each with a jobs file of J jobs at ``@every S``, measured over the
   window, against what the model predicts: the ratio model / measurement for each figure.
4. **Throughput** of a 3-member etcd on this machine: threads putting with the package's own
   ``EtcdStore`` for a few seconds (where the model's revisions/s run out), then threads sending
   read-only Txns of 1 and of 128 range operations (where the confirmations run out).

Everything prints as Markdown; ``--json FILE`` keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchlib import (
    PYTHON,
    ROOT,
    ProcessGroup,
    delta,
    etcd_requests,
    etcd_server,
    table,
    write_section,
)

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from leaderjob.election.store import MAX_TXN_OPS
from tests.harness.etcd import EtcdCluster, EtcdServer
from tests.harness.procs import JsonLogProcess

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _gauge(client_url: str, name: str) -> float:
    with _NO_PROXY.open(f"{client_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})?\s+(\S+)", text, re.M)
    return float(m.group(1)) if m else 0.0


def _revision(store: EtcdStore) -> int:
    """The store's current revision (a Range on a key that does not exist still answers it)."""
    from etcd3 import etcdrpc

    stub, md, timeout = store._link.kvs(5.0)
    resp = stub.Range(etcdrpc.RangeRequest(key=b"/capacity/none"), timeout=timeout, metadata=md)
    return int(resp.header.revision)


def _daemon(
    procs: ProcessGroup,
    logdir: Path,
    name: str,
    endpoint: str,
    ttl: int,
    what: list[str],
    spread: str = "on",
    election: str = "cap",
) -> JsonLogProcess:
    argv = [
        PYTHON, "-m", "leaderjob", "run", "--election", election, "--identity", name,
        "--endpoints", endpoint, "--prefix", "/capacity", "--ttl", f"{ttl}s",
        "--log-format", "json", "--metrics-addr", "off", "--spread", spread, *what,
    ]  # fmt: skip
    return JsonLogProcess(procs, argv, logdir / f"{name}.log", cwd=str(ROOT))


def _window(etcd: EtcdServer, store: EtcdStore, seconds: float) -> tuple[dict[str, float], int]:
    r0, v0 = etcd_requests(etcd.client_url), _revision(store)
    time.sleep(seconds)
    r1, v1 = etcd_requests(etcd.client_url), _revision(store) - 1  # our own Range: no revision
    return {k: v / seconds for k, v in delta(r1, r0).items()}, v1 - v0 + 1


def unit_costs(ttl: int, window: float, logdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"ttl": ttl, "window": window, "history_limit": HISTORY_LIMIT}
    with etcd_server() as etcd, ProcessGroup() as procs:
        store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
        idle = ["--schedule", "0 0 1 1 *", "--", "true"]
        leader = _daemon(procs, logdir, "unit-leader", etcd.endpoint, ttl, idle)
        leader.wait_event("election.acquired", 30)
        time.sleep(2.0)
        lead, _ = _window(etcd, store, window)
        follower = _daemon(procs, logdir, "unit-follower", etcd.endpoint, ttl, idle)
        follower.wait_event("lease.granted", 30)
        time.sleep(2.0)
        both, _ = _window(etcd, store, window)
        out["watchers_1_job_2_pods"] = _gauge(etcd.client_url, "etcd_debugging_mvcc_watcher_total")
        out["leader_req_s"] = lead
        out["follower_req_s"] = {k: v - lead.get(k, 0.0) for k, v in both.items()}
        follower.signal_group(9)
        leader.signal_group(9)
        time.sleep(ttl + 1.0)
        # Runs at `@every 1s`, first while history and claims are under their limits (no
        # pruning yet: what every run writes), then past them (each run's prunes as well).
        busy = _daemon(
            procs, logdir, "unit-busy", etcd.endpoint, ttl,
            ["--history-limit", str(HISTORY_LIMIT), "--schedule", "@every 1s", "--", "true"],
            election="busy",
        )  # fmt: skip
        out["busy"] = _runs(etcd, store, busy, window, lead)
        busy.signal_group(15)
        busy.wait(30)
        # A run that prints: its output tails go beside its record, in the record's Txn.
        talky = _daemon(
            procs, logdir, "unit-output", etcd.endpoint, ttl,
            ["--history-limit", str(HISTORY_LIMIT), "--schedule", "@every 1s", "--",
             "sh", "-c", "echo out; echo err >&2"],
            election="talky",
        )  # fmt: skip
        out["output"] = _runs(etcd, store, talky, window, lead)
        out["output"]["pairs"] = _record_pairs(etcd, "/capacity/talky/")
        talky.signal_group(15)
        talky.wait(30)
        store.close()
    return out


#: History records kept in the unit phases: small, so that pruning starts within the phase (at
#: the default of 50 it starts 50 runs in; from then on every run prunes, whatever the limit).
HISTORY_LIMIT = 20


def _phase(
    etcd: EtcdServer, store: EtcdStore, d: JsonLogProcess, window: float, lead: dict[str, float]
) -> dict[str, Any]:
    n0 = len(d.events("job.finished"))
    req, revs = _window(etcd, store, window)
    runs = len(d.events("job.finished")) - n0
    extra = sum(req.values()) - sum(lead.values())
    return {
        "window": window, "req_s": req, "runs": runs, "revisions": revs,
        "revisions_per_run": revs / runs if runs else None,
        "requests_per_run": extra * window / runs if runs else None,
        "txn_per_run": (req.get("Txn", 0.0) - lead.get("Txn", 0.0)) * window / runs
        if runs else None,
    }  # fmt: skip


def _runs(
    etcd: EtcdServer, store: EtcdStore, d: JsonLogProcess, window: float, lead: dict[str, float]
) -> dict[str, Any]:
    """Requests and revisions per run of ``d`` (one run a second): ``early`` while nothing is
    pruned yet (fewer records and claims than the limit), ``steady`` once every run prunes."""
    d.wait_event("job.finished", 30)
    time.sleep(1.0)
    early = _phase(etcd, store, d, HISTORY_LIMIT - 6.0, lead)
    deadline = time.monotonic() + 60
    while len(d.events("job.finished")) < HISTORY_LIMIT + 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    return {"early": early, "steady": _phase(etcd, store, d, window, lead)}


def _record_pairs(etcd: EtcdServer, prefix: str) -> dict[str, int]:
    """History records that carry output, and how many of them share the revision of their
    output key (written in one Txn)."""
    kvs = json.loads(etcd.etcdctl("get", "--prefix", prefix, "-w", "json")).get("kvs", [])
    rev = {base64.b64decode(kv["key"]).decode(): kv["mod_revision"] for kv in kvs}
    out, hist = prefix + "output/", prefix + "history/"
    outputs = {k: r for k, r in rev.items() if k.startswith(out)}
    same = sum(1 for k, r in outputs.items() if rev.get(hist + k[len(out) :]) == r)
    return {"outputs": len(outputs), "same_revision": same}


class Model:
    """Costs per second, each measured at TTL ``t0`` and scaled as 1/T (every periodic request
    is once per renew interval, T/3).

    A pod's periodic requests are its keepalive and its confirmation: one read-only Txn per renew
    interval that holds two range operations per job of its jobs file (a leader's key and the
    job's control prefix; a waiting candidate's key and its predecessor), plus up to ``S`` shared
    reads (the replicas' fingerprints while it leads, one queue's members when spreading). etcd
    refuses a Txn of more than ``--max-txn-ops`` operations (128 by default), so the pod splits
    the confirmation: ⌈(2J + S) / 128⌉ Txns per interval."""

    #: Shared reads in a confirmation: fingerprints (while leading) and spreading's members.
    SHARED = 2

    def __init__(self, u: dict[str, Any]) -> None:
        t0 = float(u["ttl"])
        fol = u["follower_req_s"]
        self.keepalive: float = fol.get("LeaseKeepAlive", 0.0) * t0  # per pod, × 1/T
        self.confirm: float = fol.get("Txn", 0.0) * t0  # one confirmation Txn, × 1/T
        self.follower: float = sum(fol.values()) * t0
        # What leading one job adds on top of a follower: nothing, if the control read rides in
        # the confirmation (measured, not assumed: a separate read would show here).
        self.leader_extra: float = sum(u["leader_req_s"].values()) * t0 - self.follower
        # Per run, once history and claims are at their limits (every claim then deletes one old
        # claim, every record one old record, in their own Txns): what a deployment pays, so
        # what the plan uses.
        busy, early = u["busy"]["steady"], u["busy"]["early"]
        self.per_run = float(busy["requests_per_run"] or 0.0)
        self.txn_per_run = float(busy["txn_per_run"] or 0.0)
        self.writes_per_run = float(busy["revisions_per_run"] or 0.0)
        # Per run before anything is pruned (a job's first `--history-limit` runs).
        self.per_run_early = float(early["requests_per_run"] or 0.0)
        self.txn_per_run_early = float(early["txn_per_run"] or 0.0)
        self.writes_per_run_early = float(early["revisions_per_run"] or 0.0)
        out = u.get("output", {})
        self.writes_per_output_run = out.get("steady", {}).get("revisions_per_run")
        self.writes_per_output_run_early = out.get("early", {}).get("revisions_per_run")

    @classmethod
    def txns(cls, jobs: int, shared: int = SHARED) -> int:
        """Confirmation Txns per renew interval of a pod that is a candidate for ``jobs`` jobs."""
        return -(-(2 * jobs + shared) // MAX_TXN_OPS)

    def requests(
        self, pods: int, jobs: int, ttl: float, f: float, shared: int = SHARED, prune: bool = True
    ) -> float:
        return (
            pods * (self.keepalive + self.confirm * self.txns(jobs, shared)) / ttl
            + min(pods, jobs) * self.leader_extra / ttl
            + jobs * f * (self.per_run if prune else self.per_run_early)
        )

    def txn_s(
        self, pods: int, jobs: int, ttl: float, f: float, shared: int = SHARED, prune: bool = True
    ) -> float:
        """Txns per second: the confirmations, and the runs' own (claim, record, prunes)."""
        per_run = self.txn_per_run if prune else self.txn_per_run_early
        return pods * self.confirm * self.txns(jobs, shared) / ttl + jobs * f * per_run

    def ops(self, pods: int, jobs: int, ttl: float, shared: int = SHARED) -> float:
        """Range operations per second inside the confirmation Txns."""
        return pods * self.confirm * (2 * jobs + shared) / ttl

    def revisions(self, jobs: int, f: float, prune: bool = True) -> float:
        return jobs * f * (self.writes_per_run if prune else self.writes_per_run_early)

    @staticmethod
    def leases(pods: int) -> int:
        return pods

    @staticmethod
    def watchers(pods: int, jobs: int) -> int:
        """Per job: each of the P − 1 waiting candidates watches the key before its own and its
        own key (the campaign re-confirms, etcd #19597); the leader watches its own key."""
        return (2 * max(pods - 1, 0) + 1) * jobs


def _jobs_file(path: Path, n: int, every: int) -> Path:
    lines = []
    for i in range(n):
        lines += [f"[jobs.c{i:03d}]", f'schedule = "@every {every}s"', 'command = ["true"]', ""]
    path.write_text("\n".join(lines))
    return path


def check(
    pods: int, jobs: int, every: int, ttl: int, window: float, logdir: Path, spread: str
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pods": pods, "jobs": jobs, "every": every, "ttl": ttl, "spread": spread,
    }  # fmt: skip
    path = _jobs_file(logdir / "check.toml", jobs, every)
    with etcd_server() as etcd, ProcessGroup() as procs:
        store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
        ds = [
            _daemon(procs, logdir, f"check-{i}", etcd.endpoint, ttl, ["--jobs", str(path)], spread)
            for i in range(pods)
        ]
        for d in ds:
            d.wait_event("lease.granted", 60)
        # Steady state: every job led and the spreading done (no hand-over for 20 s; at most
        # 4 minutes). Moves cost deletes, creates and new watches the model leaves out.
        t0 = time.monotonic()
        time.sleep(max(2.0 * every, 20.0) if spread == "on" else 20.0)
        while time.monotonic() - t0 < 240:
            moves = sum(len(d.events("spread.released")) for d in ds)
            time.sleep(20.0)
            if sum(len(d.events("spread.released")) for d in ds) == moves:
                break
        out["settle_s"] = time.monotonic() - t0
        out["window"] = window
        n0 = sum(len(d.events("job.finished")) for d in ds)
        req, revs = _window(etcd, store, window)
        runs = sum(len(d.events("job.finished")) for d in ds) - n0
        out["req_s"] = sum(req.values())
        out["req_by_method"] = req
        out["revisions_s"] = revs / window
        out["runs_s"] = runs / window
        out["watchers"] = _gauge(etcd.client_url, "etcd_debugging_mvcc_watcher_total")
        out["leases"] = len(
            [x for x in etcd.etcdctl("lease", "list").splitlines()[1:] if x.strip()]
        )
        store.close()
    return out


def write_throughput(seconds: float, threads: int) -> dict[str, Any]:
    """Puts from ``threads`` threads, one EtcdStore each, into a 3-member cluster."""
    done = [0] * threads
    stop = threading.Event()
    with EtcdCluster(3, heartbeat_ms=100, election_ms=1000) as cluster:
        conn = Connection(endpoints=tuple(cluster.endpoints))

        def put(i: int) -> None:
            store = EtcdStore(conn)
            value = b"x" * 200
            while not stop.is_set():
                try:
                    store.put(f"/capacity/w/{i}/{done[i] % 1000}", value, timeout=5.0)
                    done[i] += 1
                except Exception:  # a failed put is not a write: it is not counted
                    pass
            store.close()

        ts = [threading.Thread(target=put, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        time.sleep(1.0)
        n0, t0 = sum(done), time.monotonic()
        time.sleep(seconds)
        n1, t1 = sum(done), time.monotonic()
        stop.set()
        for t in ts:
            t.join(10)
    return {"threads": threads, "writes_s": (n1 - n0) / (t1 - t0)}


def read_throughput(seconds: float, threads: int, ops: int) -> dict[str, Any]:
    """Read-only Txns of ``ops`` range operations each (a confirmation's shape: prefix ranges
    with limit 1 over a few hundred keys), from ``threads`` threads, one client each, into a
    3-member cluster: Txns/s and range operations/s."""
    from etcd3 import etcdrpc

    done = [0] * threads
    stop = threading.Event()
    with EtcdCluster(3, heartbeat_ms=100, election_ms=1000) as cluster:
        conn = Connection(endpoints=tuple(cluster.endpoints))
        seed = EtcdStore(conn)
        for i in range(256):
            seed.put(f"/capacity/r/{i:03d}/k", b"x" * 100, timeout=5.0)
        seed.close()

        def read(i: int) -> None:
            store = EtcdStore(conn)
            rops = [
                etcdrpc.RequestOp(
                    request_range=etcdrpc.RangeRequest(
                        key=f"/capacity/r/{(i + k) % 256:03d}/".encode(),
                        range_end=f"/capacity/r/{(i + k) % 256:03d}0".encode(),
                        limit=1,
                    )
                )
                for k in range(ops)
            ]
            while not stop.is_set():
                try:
                    stub, md, timeout = store._link.kvs(5.0)
                    stub.Txn(etcdrpc.TxnRequest(success=rops), timeout=timeout, metadata=md)
                    done[i] += 1
                except Exception:  # a failed read is not counted
                    pass
            store.close()

        ts = [threading.Thread(target=read, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        time.sleep(1.0)
        n0, t0 = sum(done), time.monotonic()
        time.sleep(seconds)
        n1, t1 = sum(done), time.monotonic()
        stop.set()
        for t in ts:
            t.join(10)
    txns = (n1 - n0) / (t1 - t0)
    return {"threads": threads, "ops": ops, "txns_s": txns, "ops_s": txns * ops}


def _shared(c: dict[str, Any]) -> int:
    """Shared reads in a confirmation of the check: fingerprints, and members if it spreads."""
    return 2 if c.get("spread", "on") == "on" else 1


def _unit_rows(m: Model) -> list[list[str]]:
    def two(steady: float | None, early: float | None) -> str:
        if steady is None or early is None:
            return "—"
        return f"{steady:.2f} ({early:.2f})"

    return [
        ["a: each pod, any role: keepalive", f"{m.keepalive:.2f} / T"],
        ["c: each pod: one confirmation Txn (up to 63 jobs)", f"{m.confirm:.2f} / T"],
        ["each pod leading at least one job, on top", f"{m.leader_extra:.2f} / T"],
        ["r: each run, requests", two(m.per_run, m.per_run_early)],
        ["… of which Txns", two(m.txn_per_run, m.txn_per_run_early)],
        ["w: each run, revisions (writes)", two(m.writes_per_run, m.writes_per_run_early)],
        ["each run that prints output, revisions",
         two(m.writes_per_output_run, m.writes_per_output_run_early)],
    ]  # fmt: skip


#: ``--history-limit``'s default; claims are kept as many slots back. A job prunes once it has
#: run that often.
DEFAULT_HISTORY_LIMIT = 50


def _prunes(c: dict[str, Any]) -> bool:
    """Whether the check's jobs had run past the history limit (then every run prunes)."""
    runs = (float(c.get("settle_s", 0.0)) + float(c.get("window", 60.0))) / float(c["every"])
    return runs > DEFAULT_HISTORY_LIMIT


def render(u: dict[str, Any], c: dict[str, Any], w: dict[str, Any]) -> str:
    m = Model(u)
    reads = [
        f"{r['txns_s']:,.0f} Txns/s of {r['ops']} range(s) ({r['ops_s']:,.0f} ranges/s)"
        for r in w.get("reads", [])
    ]
    return "\n\n".join([
        f"Unit costs (measured at TTL {u['ttl']} s; {u['busy']['steady']['runs']} runs at "
        "`@every 1s` once pruning started):",
        table(["cost", "measured (T = TTL in s)"], _unit_rows(m)),
        f"Check: {c['pods']} daemons × a jobs file of {c['jobs']} jobs at `@every {c['every']}s`, "
        f"TTL {c['ttl']} s ({c['runs_s']:.2f} runs/s measured):",
        render_check(m, c),
        f"Write throughput of a 3-member etcd here: {w['writes_s']:.0f} puts/s "
        f"({w['threads']} threads, one client each). Reads: {'; '.join(reads) or '—'}.",
    ])  # fmt: skip


BEGIN = "<!-- capacity.py: begin -->"
END = "<!-- capacity.py: end -->"
#: A 3-member etcd on server hardware commits a few thousand writes/s (etcd's own benchmarks
#: are higher, with many clients); the model plans with this and half of it as headroom.
REFERENCE_WRITES_S = 2000.0
HEADROOM = 0.5
#: Requests/s (a linearizable read is a ReadIndex round each) planned for a 3-member etcd.
READS_S = 10000.0
SCHEDULES = (("`*/1 * * * *`", 1 / 60), ("`@every 10s`", 1 / 10))
PLAN_TTL = 10.0


def _max_jobs(m: Model, f: float, writes_s: float) -> int:
    return int(HEADROOM * writes_s / (f * m.writes_per_run)) if m.writes_per_run else 0


def _largest(fits: Any, hi: int = 10_000_000) -> int:
    """The largest J ≥ 0 with ``fits(J)`` (``fits`` monotone), by bisection."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _ops_budget(w: dict[str, Any]) -> float | None:
    """Range operations/s inside Txns planned for a 3-member etcd: half of what this machine's
    3-member etcd served in full Txns (reads touch no disk, so tmpfs flatters them little; a
    shared 2-core machine is no faster than a cluster of servers)."""
    full = {r["ops"]: r for r in w.get("reads", [])}.get(MAX_TXN_OPS)
    return HEADROOM * float(full["ops_s"]) if full else None


def render_doc(u: dict[str, Any], c: dict[str, Any], w: dict[str, Any], meta: str) -> str:
    m = Model(u)
    t = PLAN_TTL
    ops_s = _ops_budget(w)
    reads = {r["ops"]: r for r in w.get("reads", [])}
    rows = []
    limits: dict[str, list[tuple[int, int, str]]] = {}
    for label, f in SCHEDULES:
        for pods in (3, 10):
            by_writes = _max_jobs(m, f, REFERENCE_WRITES_S)
            by_requests = _largest(lambda j, p=pods, f=f: m.requests(p, j, t, f) <= READS_S)
            by_ops = _largest(lambda j, p=pods: m.ops(p, j, t) <= ops_s) if ops_s else None
            both = min(by_writes, by_requests, *([by_ops] if by_ops is not None else []))
            first = (
                "writes" if both == by_writes
                else "requests" if both == by_requests else "ranges in the confirmations"
            )  # fmt: skip
            limits.setdefault(label, []).append((pods, both, first))
            rows.append([
                label, str(pods), f"{by_writes:,}",
                f"{m.requests(pods, by_writes, t, f):,.0f}",
                f"{m.txns(by_writes)}", f"{m.ops(pods, by_writes, t):,.0f}",
                f"{by_requests:,}", f"{by_ops:,}" if by_ops is not None else "—",
                f"{both:,} ({first})", f"{m.watchers(pods, both):,}",
            ])  # fmt: skip
    sat = table(
        ["schedule", "pods", f"jobs by writes (half of {REFERENCE_WRITES_S:,.0f}/s)",
         "requests/s then", "confirmation Txns per pod per interval then",
         "ranges/s in them then", f"jobs by requests ({READS_S:,.0f}/s)",
         f"jobs by ranges ({ops_s:,.0f}/s)" if ops_s else "jobs by ranges",
         "jobs per cluster (first limit)", "watchers then"],
        rows,
    )  # fmt: skip

    def say(label: str) -> str:
        parts = [f"{j:,} jobs with {p} pods ({first})" for p, j, first in limits[label]]
        return " and ".join(parts)

    big = max(both for rows_ in limits.values() for _, both, _ in rows_)
    one, full = reads.get(1), reads.get(MAX_TXN_OPS)
    read_line = (
        f"- Reads on this machine's 3-member etcd ({one['threads']} clients, one connection "
        f"each): {one['txns_s']:,.0f} Txns/s of one range, {full['txns_s']:,.0f} Txns/s of "
        f"{MAX_TXN_OPS} ranges ({full['ops_s']:,.0f} ranges/s): a full Txn costs "
        f"{one['txns_s'] / full['txns_s']:.1f} one-range requests, a range inside it "
        f"{one['txns_s'] / full['ops_s']:.2f} of one. The clients (Python threads) shared the "
        "2 loaded cores with the members, so both are floors for a cluster of servers; the "
        f"plan takes half of the second, {ops_s:,.0f} ranges/s."
        if one and full and ops_s
        else "- Reads were not measured in this run."
    )
    return "\n".join([
        BEGIN,
        "## Capacity: what one etcd carries",
        "",
        f"- **Run:** {meta}",
        "- **Command:** `.venv/bin/python bench/capacity.py --window 60 --json "
        "docs/data/capacity.json`, then `--render docs/data/capacity.json --doc "
        "docs/benchmarks.md` (also part of `make bench`, from the saved run).",
        "- **Load:** requests, operations and revisions are counts, the same on a busy machine "
        "as on a quiet one; the throughputs (puts/s, Txns/s) are timings and depend on the load "
        "the run shared the machine with.",
        "",
        "Every periodic request is once per renew interval (TTL/3), so per-second costs scale "
        "as 1/T. A pod's periodic requests are its keepalive and its confirmation: one "
        "read-only `Txn` that confirms every candidacy it holds and carries, for each job it "
        "leads, that job's control read (suspend, triggers), plus the replicas' fingerprints "
        "and, when spreading, one queue's member count. A job costs two range operations in "
        "that Txn whether the pod leads it (its key, its control prefix) or waits for it (its "
        "key, the key before it): the number of jobs a pod leads changes no request. etcd "
        f"refuses a Txn of more than `--max-txn-ops` operations ({MAX_TXN_OPS} by default), so a "
        f"pod that is a candidate for more than {MAX_TXN_OPS // 2 - 1} jobs splits its "
        "confirmation into ⌈(2J + 2)/128⌉ Txns, one after another (`MAX_PER_READ` in "
        "leaderjob/election/confirm_read.py). With P pods (daemons, each a candidate for every "
        "job of its jobs file), J jobs, TTL T seconds and f runs per second per job, from the "
        f"measured unit costs (a = {m.keepalive:.1f} keepalive and c = {m.confirm:.1f} "
        f"confirmation requests per pod × 1/T, r = {m.per_run:.1f} requests and "
        f"w = {m.writes_per_run:.1f} revisions per run once a job prunes, as every job does "
        f"after its first `--history-limit` runs, {DEFAULT_HISTORY_LIMIT} by default):",
        "",
        "- **requests/s** = P·(a + c·⌈(2J + 2)/128⌉)/T + J·f·r — per pod a keepalive and one "
        "confirmation `Txn` per 64 jobs per renew interval; per run the claim `Txn`, the run "
        "record, the reads that look for old records and claims (one every ten runs), and "
        "their deletes. A led job "
        "adds no request of its own.",
        "- **range operations/s inside the confirmations** = P·c·(2J + 2)/T — two per job per "
        "pod per renew interval, a local read on the member that answers (the Txn's "
        "linearizable ReadIndex round is paid once per Txn, not per range).",
        "- **revisions/s** = J·f·w — only runs write: the claim (with `state/last_slot`, one "
        "Txn), the record (with its output tails, one Txn); once the job has that many, the "
        "claim also deletes the oldest claim and the record the oldest record, in the same "
        "Txns (no revision of their own). Keepalives and "
        "confirmations (with the control reads in them) create no revision. Leadership changes "
        "add a delete and a create each.",
        "- **leases** = P (one per daemon, shared by its jobs); **watchers** = (2P − 1)·J (a "
        "waiting candidate watches the key before its own and its own key; a leader its own).",
        "- **database**: revisions are kept until compacted; with periodic compaction every R "
        "seconds the history holds about J·f·w·R revisions (`@every 10s`, 1,000 jobs, R = 1 h: "
        f"{1000 * 0.1 * m.writes_per_run * 3600:,.0f} revisions of a few hundred bytes, "
        "well below the 2 GiB quota); without compaction it grows until NOSPACE (docs/deploy.md).",
        "",
        "Unit costs, measured (one etcd member, real `leaderjob run` daemons):",
        "",
        table(["cost", "measured (T = TTL in s)"], _unit_rows(m)),
        "",
        "Each run figure: once every run prunes (in parentheses: a job's first "
        f"`--history-limit` runs, before anything is pruned). The daemons here ran with "
        f"`--history-limit {u.get('history_limit', HISTORY_LIMIT)}` so that pruning began "
        "within the phase; from then on the counts do not depend on the limit.",
        "",
        _revisions_text(u, m),
        "",
        f"**The model against a run:** {c['pods']} daemons, each with a jobs file of "
        f"{c['jobs']} jobs at `@every {c['every']}s` (so {m.txns(c['jobs'], _shared(c))} "
        f"confirmation Txns per pod per renew interval), spreading {c.get('spread', 'on')}, "
        f"TTL {c['ttl']} s, one etcd member, measured over {c.get('window', 60):.0f} s once "
        f"every job was led and nothing moved ({c.get('settle_s', 0):.0f} s after start; "
        f"{c['runs_s']:.2f} runs/s). "
        + (
            "Its jobs had run past the history limit: the model counts each run's prunes."
            if _prunes(c)
            else f"Its jobs had run fewer than {DEFAULT_HISTORY_LIMIT} times each, so nothing "
            "was pruned yet: the model takes the per-run costs in parentheses above."
        ),
        "",
        render_check(m, c),
        "",
        _range_gap(u, c),
        "",
        "**Where a 3-member etcd saturates.** Writes are what a raft cluster runs out of first "
        "(each is a consensus round and an fsync on a majority); reads come next (a "
        "linearizable request is a ReadIndex round, no disk; a range inside a Txn is a local "
        f"index lookup). Planning with {REFERENCE_WRITES_S:,.0f} writes/s (half as headroom), "
        f"{READS_S:,.0f} requests/s and "
        + (f"{ops_s:,.0f} ranges/s inside Txns (below)" if ops_s else "no figure for ranges")
        + f" for a 3-member cluster, at the default TTL of {PLAN_TTL:.0f} s and w = "
        f"{m.writes_per_run:.1f}:",
        "",
        sat,
        "",
        f"- At `*/1 * * * *`: {say('`*/1 * * * *`')}. The previous model, with a `Range` per "
        "led job per renew interval, put the first limit at the requests (about 25,000 jobs); "
        "now a led job costs two ranges in a Txn the pod sends anyway, the requests stay far "
        "below the plan, and what decides is the writes — or, with many pods each a candidate "
        "for every job, the ranges of their confirmations.",
        f"- At `@every 10s`: {say('`@every 10s`')} — about "
        f"{HEADROOM * REFERENCE_WRITES_S:,.0f} revisions/s.",
        "- The ranges grow as P·J: every pod confirms its candidacy for every job of its jobs "
        "file. More pods than availability needs cost ranges and watchers, nothing else; "
        "jobs files split across groups of pods (each pod a candidate for a part) cut both.",
        "- A pod has limits of its own: a candidate for J jobs sends ⌈(2J + 2)/128⌉ "
        f"confirmation Txns one after another each renew interval (at {big:,} jobs, "
        f"{m.txns(big)}: their round trips must fit in the interval), and holds every job's "
        "runner in memory (Many jobs: about 25 KiB per job).",
        read_line,
        f"- This machine's 3-member etcd took {w['writes_s']:,.0f} puts/s from "
        f"{w['threads']} clients, on tmpfs without fsync (the test harness's setting): an upper "
        "bound, not a plan; on real disks the fsync of each commit sets the pace.",
        "- The database: at 1,000 revisions/s and a 1-hour compaction retention, 3.6 million "
        "revisions of a few hundred bytes, about 1 GiB: inside the 2 GiB default quota, but "
        "shorten the retention (or raise the quota) before going there; "
        "`LeaderjobEtcdDbNearQuota` warns at 80 %.",
        END,
    ])  # fmt: skip


def _revisions_text(u: dict[str, Any], m: Model) -> str:
    steady, early = u["busy"]["steady"], u["busy"]["early"]
    goal = 3.0
    text = (
        f"**Revisions per run at `@every 1s`: {m.writes_per_run:.1f}** ({steady['revisions']} "
        f"over {steady['runs']} runs) once every run prunes, {m.writes_per_run_early:.1f} "
        f"before ({early['revisions']} over {early['runs']} runs: the claim and the record). "
    )
    if m.writes_per_run > goal:
        text += (
            f"**Goal (≤ {goal:.0f}) missed once a job prunes:** pruning costs revisions of its "
            "own. "
        )
    else:
        text += (
            f"**Goal (≤ {goal:.0f}) met:** pruning rides on the writes a run makes anyway — "
            "one read every ten writes finds the keys the next writes push out of the limit, "
            "and each write (the next claim, the next record) deletes its own in its Txn; only a "
            "backlog (after a suspension, a lowered limit) is deleted in Txns of its own. "
        )
    out = u.get("output")
    if out:
        pairs = out.get("pairs", {})
        text += (
            f"**A run that prints** (`sh -c 'echo out; echo err >&2'`): "
            f"{out['steady']['revisions_per_run']:.1f} revisions per run once it prunes, "
            f"{out['early']['revisions_per_run']:.1f} before — as many as a silent run: its "
            "output tails go beside the record in the record's own Txn, and are pruned with it "
            f"in one. Of the {pairs.get('outputs', 0)} output keys left at the end, "
            f"{pairs.get('same_revision', 0)} carry the revision of their record."
        )
    return text


def _range_gap(u: dict[str, Any], c: dict[str, Any]) -> str:
    """Where the requests of the check part from the model: the reads per run."""
    unit = u["busy"]["early" if not _prunes(c) else "steady"]
    lead = u["leader_req_s"].get("Range", 0.0)
    per_unit = (unit["req_s"].get("Range", 0.0) - lead) * unit["window"] / max(unit["runs"], 1)
    per_check = c["req_by_method"].get("Range", 0.0) / c["runs_s"] if c["runs_s"] else 0.0
    m = Model(u)
    f, pods, pr = 1.0 / c["every"], c["pods"], _prunes(c)
    per_run = m.txn_per_run if pr else m.txn_per_run_early
    one_txn = pods * m.confirm / c["ttl"] + c["jobs"] * f * per_run
    txn = c["req_by_method"].get("Txn", 0.0)
    return (
        f"`Range` requests per run: {per_check:.2f} in the check against {per_unit:.2f} in the "
        "unit phase (the reads that look for old records and claims to prune, made only while "
        f"the daemon's cycle has time to spare, and here all {c['jobs']} jobs share each slot): "
        "most "
        "of the gap in requests/s. Had the model counted one confirmation Txn per pod, whatever "
        f"its jobs, it would say {one_txn:.2f} Txn/s (model / measured "
        f"{one_txn / txn if txn else 0:.2f}): the split at {MAX_TXN_OPS} operations is real."
    )


def render_check(m: Model, c: dict[str, Any]) -> str:
    f, p, j, t, sh, pr = 1.0 / c["every"], c["pods"], c["jobs"], c["ttl"], _shared(c), _prunes(c)
    rows = []
    for name, model, measured in (
        ("requests/s", m.requests(p, j, t, f, sh, pr), c["req_s"]),
        ("… of which Txn/s", m.txn_s(p, j, t, f, sh, pr), c["req_by_method"].get("Txn", 0.0)),
        ("revisions/s", m.revisions(j, f, pr), c["revisions_s"]),
        ("leases", float(m.leases(p)), float(c["leases"])),
        ("watchers", float(m.watchers(p, j)), float(c["watchers"])),
    ):
        ratio = f"{model / measured:.2f}" if measured else "—"
        rows.append([name, f"{model:.2f}", f"{measured:.2f}", ratio])
    return table(["figure", "model", "measured", "model / measured"], rows)


def write_doc(path: Path, text: str) -> None:
    write_section(path, text, BEGIN, END)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--pods", type=int, default=4)
    p.add_argument(
        "--jobs", type=int, default=80, help="jobs of the check (over 63: a split confirmation)"
    )
    p.add_argument("--every", type=int, default=60)
    p.add_argument(
        "--spread", default="off", help="spreading in the check (on: settles only at few jobs)"
    )
    p.add_argument("--write-seconds", type=float, default=10.0)
    p.add_argument("--write-threads", type=int, default=16)
    p.add_argument("--read-seconds", type=float, default=10.0)
    p.add_argument("--read-threads", type=int, default=16)
    p.add_argument("--json", default=None, help="keep the raw numbers here")
    p.add_argument("--skip-units", default=None, help="reuse unit costs from this JSON file")
    p.add_argument(
        "--skip-check", default=None, help="reuse the check and throughputs from this JSON file"
    )
    p.add_argument("--render", default=None, help="only render a saved run (with --doc)")
    p.add_argument("--doc", default=None, help="replace the 'Capacity' section of this file")
    a = p.parse_args()
    if a.render:
        saved = json.loads(Path(a.render).read_text())
        text = render_doc(saved["unit"], saved["check"], saved["write"], saved.get("meta", ""))
        if a.doc:
            write_doc(Path(a.doc), text)
        else:
            print(text)
        return 0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    logdir = Path(f"/tmp/ljbench-capacity-{time.strftime('%Y%m%d-%H%M%S')}")
    logdir.mkdir(parents=True, exist_ok=True)
    u = (
        json.loads(Path(a.skip_units).read_text())["unit"]
        if a.skip_units
        else unit_costs(a.ttl, a.window, logdir)
    )
    print(json.dumps(u, indent=1), flush=True)
    reused = json.loads(Path(a.skip_check).read_text()) if a.skip_check else None
    c = (
        reused["check"]
        if reused
        else check(a.pods, a.jobs, a.every, a.ttl, a.window, logdir, a.spread)
    )
    print(json.dumps(c, indent=1), flush=True)
    w: dict[str, Any]
    if reused:
        w = reused["write"]
    else:
        w = (
            write_throughput(a.write_seconds, a.write_threads)
            if a.write_seconds > 0
            else {"threads": 0, "writes_s": 0.0}
        )
    if a.read_seconds > 0 and not reused:
        w["reads"] = [read_throughput(a.read_seconds, a.read_threads, n) for n in (1, MAX_TXN_OPS)]
        print(json.dumps(w, indent=1), flush=True)
    meta = (
        f"{started}; {os.cpu_count()} cores shared with other work (load average at the end "
        f"{os.getloadavg()[0]:.1f}); etcd from the test harness"
    )
    saved = {"unit": u, "check": c, "write": w, "meta": meta}
    if a.json:
        Path(a.json).write_text(json.dumps(saved, indent=1))
    print(render(u, c, w))
    if a.doc:
        write_doc(Path(a.doc), render_doc(u, c, w, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
