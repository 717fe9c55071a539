"""Shared pieces of the benchmarks: paths, etcd metrics, process stats, the fenced store,
statistics and Markdown tables. Standard library plus the repository's test harness."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.binaries import etcd_version, find_etcd, find_etcdctl  # noqa: E402
from tests.harness.etcd import EtcdServer, free_port  # noqa: E402
from tests.harness.procs import ProcessGroup, exit_on_sigterm, kill_group, pid_alive  # noqa: E402

exit_on_sigterm()  # a benchmark stopped with kill stops its etcd and daemons first

__all__ = [
    "BENCH",
    "PYTHON",
    "ROOT",
    "EtcdServer",
    "FenceStore",
    "ProcessGroup",
    "children",
    "etcd_cpu_seconds",
    "etcd_requests",
    "etcd_server",
    "etcd_version",
    "find_etcd",
    "find_etcdctl",
    "fmt",
    "free_port",
    "kill_group",
    "median",
    "percentile",
    "pid_alive",
    "proc_cpu_seconds",
    "proc_rss_bytes",
    "table",
    "wait_for",
]

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
_TICKS = os.sysconf("SC_CLK_TCK")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextlib.contextmanager
def etcd_server() -> Iterator[EtcdServer]:
    """A single-member etcd from the test harness, closed (killed, data removed) on exit."""
    server = EtcdServer()
    try:
        yield server
    finally:
        server.close()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return False
        time.sleep(interval)
    return True


# -- etcd's own counters ---------------------------------------------------------------------

_METRIC = re.compile(
    r"^(grpc_server_msg_received_total|grpc_server_handled_total)\{([^}]*)\}\s+(\S+)"
)


def etcd_requests(
    client_url: str, metric: str = "grpc_server_msg_received_total"
) -> dict[str, float]:
    """Counts by gRPC method from etcd's /metrics. ``msg_received`` counts every request message
    (a unary call, or each message on a stream such as a long-lived LeaseKeepAlive); ``handled``
    counts finished calls and streams."""
    with _NO_PROXY.open(f"{client_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m or m.group(1) != metric:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        method = labels.get("grpc_method", "?")
        out[method] = out.get(method, 0.0) + float(m.group(3))
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


# -- process stats -----------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process (not its children)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def etcd_cpu_seconds(pid: int | None) -> float:
    return 0.0 if pid is None else proc_cpu_seconds(pid)


def proc_rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(x) for x in (task / "children").read_text().split()]
    return out


# -- the fenced store ----------------------------------------------------------------------------


class FenceStore:
    """``python examples/fencestore.py serve`` on a free port with its DB in /dev/shm."""

    def __init__(self, procs: ProcessGroup, name: str) -> None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.mkdtemp(prefix=f"ljbench-{name}-", dir=base)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = procs.spawn(
            [
                PYTHON,
                str(ROOT / "examples" / "fencestore.py"),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--db",
                os.path.join(self.dir, "store.db"),
            ],
            stderr=subprocess.DEVNULL,
            cwd=str(ROOT),
        )
        if not wait_for(self._up, 20, 0.05):
            raise RuntimeError("the fenced store did not start")

    def _up(self) -> bool:
        try:
            with _NO_PROXY.open(f"{self.url}/state", timeout=1):
                return True
        except OSError:
            return False

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        with _NO_PROXY.open(f"{self.url}/log?since={since}", timeout=30) as resp:
            return [json.loads(line) for line in resp.read().decode().splitlines() if line]

    def last_seq(self) -> int:
        recs = self.log(0)
        return int(recs[-1]["seq"]) if recs else 0


# -- statistics and tables ---------------------------------------------------------------------


def median(values: Iterable[float]) -> float | None:
    v = list(values)
    return statistics.median(v) if v else None


def percentile(values: Iterable[float], p: float) -> float | None:
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def fmt(value: float | None, unit: str = "s", digits: int = 2) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value * 1000:.{digits}f} ms"
    if unit == "s":
        return f"{value:.{digits}f} s"
    return f"{value:.{digits}f}{unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (readable as plain text too)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def stop_group(pid: int) -> None:
    """SIGCONT then SIGKILL a process group we started (it may be stopped)."""
    kill_group(pid, signal.SIGCONT)
    kill_group(pid, signal.SIGKILL)


def write_section(path: Path, text: str, begin: str, end: str) -> None:
    """Put ``text`` (which starts with ``begin`` and ends with ``end``) in place of the section
    between those markers in ``path``, or append it when the file has none yet."""
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + text + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def wait_reads_done(client_url: str, quiet: float = 3.0, limit: float = 120.0) -> float:
    """Wait until etcd sees no ``Range`` for ``quiet`` seconds (at most ``limit``); the seconds
    waited. An idle daemon reads only in its confirmation (a ``Txn``); a leader's start-up reads
    each job's newest slot and claims with a ``Range`` per job, spread over many cycles."""
    began = time.monotonic()
    before = etcd_requests(client_url)
    while time.monotonic() - began < limit:
        time.sleep(quiet)
        after = etcd_requests(client_url)
        if not delta(after, before).get("Range"):
            break
        before = after
    return time.monotonic() - began


def leader_then_follower(
    client_url: str, start: Callable[[str], int], *, settle: float, window: float
) -> dict[str, Any]:
    """What an idle runner costs: ``start("L")`` (a pid) alone for ``window`` seconds, then
    ``start("F")`` beside it for as long (the follower is the difference). RSS, CPU seconds per
    hour and etcd requests per minute (by method) of each; ``settle`` seconds before each window
    for start-up, campaign and the first confirmation, and then until the start-up reads are
    over (:func:`wait_reads_done`: a thousand jobs take longer than ``settle``)."""
    out: dict[str, Any] = {}
    leader = start("L")
    time.sleep(settle)
    out["leader_settled_s"] = settle + wait_reads_done(client_url)
    r0, c0 = etcd_requests(client_url), proc_cpu_seconds(leader)
    time.sleep(window)
    r1, c1 = etcd_requests(client_url), proc_cpu_seconds(leader)
    out["leader_rss"] = proc_rss_bytes(leader)
    out["leader_cpu_per_hour"] = (c1 - c0) / window * 3600
    lead = delta(r1, r0)
    out["leader_req_per_min"] = sum(lead.values()) / window * 60
    out["leader_by_method"] = {k: v / window * 60 for k, v in lead.items()}
    follower = start("F")
    time.sleep(settle)
    out["follower_settled_s"] = settle + wait_reads_done(client_url)
    r2, f0 = etcd_requests(client_url), proc_cpu_seconds(follower)
    time.sleep(window)
    r3, f1 = etcd_requests(client_url), proc_cpu_seconds(follower)
    out["follower_rss"] = proc_rss_bytes(follower)
    out["follower_cpu_per_hour"] = (f1 - f0) / window * 3600
    both = delta(r3, r2)
    follow = {k: both.get(k, 0.0) / window * 60 - out["leader_by_method"].get(k, 0.0)
              for k in both}  # fmt: skip
    # Differences under one request a minute are the leader's jitter, not the follower.
    out["follower_by_method"] = {k: round(v, 2) for k, v in follow.items() if v >= 1.0}
    out["follower_req_per_min"] = sum(both.values()) / window * 60 - out["leader_req_per_min"]
    return out
