"""The singleton runners compared, and one failover trial of one of them.

A trial: runner A starts and its job writes to the fenced store every 20 ms; runner B starts and
queues; a fault hits A's runner process (never its job directly); we watch the store's decision
log (timestamps from the store's own monotonic clock, which is the machine's) until B's job has
written for a while and the fault is over. Then:

* handover / failover = fault → B's job's first write;
* overlap = last write attempt by A's job − B's first write (0 if A's job had stopped);
  "open" if A's job was still running when the trial ended;
* orphan = A's job alive after A's runner had exited;
* stale writes = writes the store rejected (token below its high-water mark), and
  A's writes *accepted* after B's first write (must be 0: that is what fencing is for).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import BENCH, PYTHON, ROOT, FenceStore, ProcessGroup, find_etcdctl, pid_alive

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from tests.harness.proxy import FaultProxy

FAULTS = ("graceful", "crash", "freeze", "cut")
FAULT_TITLES = {
    "graceful": "graceful stop (SIGTERM)",
    "crash": "crash (kill -9 of the runner)",
    "freeze": "freeze (SIGSTOP of the runner for 2·TTL)",
    "cut": "cut from etcd (blackhole for 2·TTL)",
}
JOB = str(BENCH / "job.py")
PYLOCK = str(BENCH / "pylock.py")


@dataclass(frozen=True)
class Contender:
    key: str
    title: str
    token_env: str

    def argv(self, who: str, endpoint: str, name: str, ttl: float, job: list[str]) -> list[str]:
        t = str(int(ttl))
        if self.key in ("leaderjob-run", "leaderjob-lock"):
            sub = "run" if self.key == "leaderjob-run" else "lock"
            return [
                PYTHON, "-m", "leaderjob", sub,
                "--election", name, "--identity", who, "--endpoints", endpoint,
                "--prefix", "/bench", "--ttl", f"{t}s",
                "--log-format", "json", "--metrics-addr", "off",
                "--", *job,
            ]  # fmt: skip
        if self.key == "etcdctl-lock":
            return [find_etcdctl(), f"--endpoints={endpoint}", "lock", f"--ttl={t}", name, *job]
        mode = "refresh" if self.key == "python-etcd3-refresh" else "plain"
        return [PYTHON, PYLOCK, endpoint, name, t, mode, *job]

    def queued(self, store: EtcdStore, name: str) -> bool | None:
        """Whether B waits in etcd's queue (None: not observable, wait a fixed time)."""
        if self.key.startswith("leaderjob"):
            return len(store.candidates(f"/bench/{name}/leader", timeout=2)) >= 2
        if self.key == "etcdctl-lock":
            return len(store.get_prefix(f"{name}/", timeout=2)) >= 2
        return None


CONTENDERS = [
    Contender("leaderjob-run", "`leaderjob run`", "LEADERJOB_FENCING_TOKEN"),
    Contender("leaderjob-lock", "`leaderjob lock`", "LEADERJOB_FENCING_TOKEN"),
    Contender("etcdctl-lock", "`etcdctl lock --ttl`", "ETCD_LOCK_REV"),
    Contender(
        "python-etcd3-refresh",
        "python-etcd3 `Lock`: acquire, refresh thread, release",
        "BENCH_TOKEN",
    ),
]
PLAIN = Contender("python-etcd3-plain", "python-etcd3 `with client.lock(name, ttl)`", "BENCH_TOKEN")


class Tail:
    """Incremental reader of one fenced store's decision log, for one resource."""

    def __init__(self, fence: FenceStore, resource: str) -> None:
        self.fence = fence
        self.resource = resource
        self.since = fence.last_seq()
        self.records: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        new = self.fence.log(self.since)
        if new:
            self.since = int(new[-1]["seq"])
            self.records += [r for r in new if r["resource"] == self.resource]
        return self.records

    def first(self, who: str, after: float = 0.0) -> float | None:
        for r in self.records:
            if str(r["writer"]).startswith(who + ":") and r["mono"] >= after:
                return float(r["mono"])
        return None

    def pids(self, who: str) -> set[int]:
        return {
            int(str(r["writer"]).split(":")[1])
            for r in self.records
            if str(r["writer"]).startswith(who + ":")
        }


@dataclass
class Trial:
    contender: str
    fault: str
    ttl: float
    index: int
    failover: float | None = None  # fault -> B's first write
    b_before_fault: float | None = None  # B wrote before any fault (seconds after B started)
    overlap: float = 0.0
    overlap_open: bool = False
    orphan: bool = False
    stale_rejected: int = 0
    stale_accepted_after_successor: int = 0
    a_writes_after_successor: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _spawn(procs: ProcessGroup, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return procs.spawn(argv, stdout=f, stderr=f, cwd=str(ROOT))


def _end(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def run_trial(
    c: Contender,
    fault: str,
    ttl: float,
    index: int,
    etcd_endpoint: str,
    fence: FenceStore,
    store: EtcdStore,
    logdir: Path,
) -> Trial:
    name = f"{c.key}-{int(ttl)}-{fault}-{index}"
    result = Trial(c.key, fault, ttl, index)
    tail = Tail(fence, name)
    procs = ProcessGroup()
    pa, pb = FaultProxy(etcd_endpoint), FaultProxy(etcd_endpoint)
    try:
        job = [PYTHON, JOB, fence.url, name, "A", c.token_env]
        a = _spawn(procs, c.argv("A", pa.endpoint, name, ttl, job), logdir / f"{name}-A.log")
        if not _until(lambda: tail.poll() and tail.first("A") is not None, 30):
            result.note = "A's job never wrote"
            return result
        job_b = [PYTHON, JOB, fence.url, name, "B", c.token_env]
        b_started = time.monotonic()
        b = _spawn(procs, c.argv("B", pb.endpoint, name, ttl, job_b), logdir / f"{name}-B.log")
        if c.queued(store, name) is None:
            time.sleep(2.0)  # python-etcd3: nothing in etcd shows a waiter; give it time to start
        elif not _until(lambda: bool(c.queued(store, name)), 30):
            result.note = "B never queued"
            return result
        time.sleep(0.3)  # B reads its standing and sets its watch
        tail.poll()
        pre = tail.first("B")
        if pre is not None:
            result.b_before_fault = pre - b_started
        t0 = time.monotonic()
        timed = fault in ("freeze", "cut")
        fault_end = t0 + 2 * ttl if timed else t0
        limit = t0 + (2 * ttl + 3 if timed else ttl + 6)
        if fault == "graceful":
            a.send_signal(signal.SIGTERM)
        elif fault == "crash":
            a.send_signal(signal.SIGKILL)
        elif fault == "freeze":
            a.send_signal(signal.SIGSTOP)
        else:
            pa.blackhole()
        healed = not timed
        while True:
            time.sleep(0.02)
            now = time.monotonic()
            if not healed and now >= fault_end:
                if fault == "freeze":
                    a.send_signal(signal.SIGCONT)
                else:
                    pa.heal()
                healed = True
            tail.poll()
            first_b = tail.first("B", t0)
            if healed and first_b is not None and now >= max(first_b + 1.0, fault_end + 1.5):
                break
            if healed and now >= limit:
                break
        a_runner_alive = a.poll() is None
        a_jobs = tail.pids("A")
        a_job_alive = any(pid_alive(p) for p in a_jobs)
        result.orphan = (not a_runner_alive) and a_job_alive
        _end(a)
        _end(b)
        for pid in a_jobs | tail.pids("B"):  # jobs outside their runner's group (orphans)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        recs = tail.poll()
        first_b = tail.first("B", t0)
        first_b_any = tail.first("B")
        if first_b is not None:
            result.failover = first_b - t0
        result.stale_rejected = sum(1 for r in recs if not r["accepted"])
        successor = first_b_any
        if successor is not None:
            a_after = [
                r for r in recs if str(r["writer"]).startswith("A:") and r["mono"] > successor
            ]
            result.a_writes_after_successor = len(a_after)
            result.stale_accepted_after_successor = sum(1 for r in a_after if r["accepted"])
            if a_after:
                result.overlap = max(float(r["mono"]) for r in a_after) - successor
                result.overlap_open = a_job_alive
        if first_b is None and result.b_before_fault is None:
            result.note = f"no successor within {limit - t0:.0f}s"
        return result
    finally:
        procs.cleanup()
        pa.close()
        pb.close()


def run_plain(
    ttl: float, etcd_endpoint: str, fence: FenceStore, store: EtcdStore, logdir: Path
) -> Trial:
    """python-etcd3 the README way, no fault: does the waiting copy stay waiting?"""
    c = PLAIN
    name = f"{c.key}-{int(ttl)}-nofault"
    result = Trial(c.key, "none", ttl, 0)
    tail = Tail(fence, name)
    procs = ProcessGroup()
    try:
        job = [PYTHON, JOB, fence.url, name, "A", c.token_env]
        _spawn(procs, c.argv("A", etcd_endpoint, name, ttl, job), logdir / f"{name}-A.log")
        if not _until(lambda: tail.poll() and tail.first("A") is not None, 30):
            result.note = "A's job never wrote"
            return result
        a_first = tail.first("A") or 0.0
        job_b = [PYTHON, JOB, fence.url, name, "B", c.token_env]
        b_started = time.monotonic()
        _spawn(procs, c.argv("B", etcd_endpoint, name, ttl, job_b), logdir / f"{name}-B.log")
        window = max(ttl, 10.0) + 4.0
        _until(lambda: bool(tail.poll()) and False, window)
        recs = tail.poll()
        first_b = tail.first("B")
        if first_b is not None:
            result.b_before_fault = first_b - b_started
            a_after = [r for r in recs if str(r["writer"]).startswith("A:") and r["mono"] > first_b]
            result.a_writes_after_successor = len(a_after)
            result.stale_accepted_after_successor = sum(1 for r in a_after if r["accepted"])
            if a_after:
                result.overlap = max(float(r["mono"]) for r in a_after) - first_b
                result.overlap_open = True
        result.stale_rejected = sum(1 for r in recs if not r["accepted"])
        result.extra["a_held_for"] = (first_b or time.monotonic()) - a_first
        tokens = {str(r["writer"])[0]: r["token"] for r in recs}
        result.extra["tokens"] = tokens
        return result
    finally:
        procs.cleanup()


def _until(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def etcd_store(endpoint: str) -> EtcdStore:
    return EtcdStore(Connection(endpoints=(endpoint,)))
