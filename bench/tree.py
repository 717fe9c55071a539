"""Footprint of a daemon's whole process tree (the daemon and its guardian, jobs left out):
PSS and RSS of a leader of 1 / 4 / 16 jobs and of a follower, the leader's CPU with 4 jobs at
``@every 1s`` (whole tree, jobs included), the slot fire → exec lag, processes per pod.

    python bench/tree.py [--rounds 3] [--settle 15] [--window 40] [--compare DIR] [--only cpu]

Each round starts an etcd of its own and a group daemon (``run --election tree --jobs FILE``)
with N jobs ``@every 2s`` running ``true``; ``settle`` seconds after its start the tree is
sampled: every process below the daemon whose command line names leaderjob (the daemon, its
guardian — or, in an older tree, its watchdogs), PSS from ``/proc/PID/smaps_rollup``. Then a
follower of the one-job file beside it. Then 4 jobs at ``@every 1s`` for ``window`` seconds:
CPU of the daemon and of what it started (live processes plus reaped children; also per run,
apart: the daemon itself, its guardian, the jobs the guardian reaped), and
``exec_seconds`` of each ``job.started`` (fire time → the guardian saw the exec; and
``exec_reported_seconds``, fire time → the daemon read that report, which an older tree's
``exec_seconds`` was). Each
cell is the median of ``rounds`` rounds. ``--compare DIR`` runs the same rounds on another
checkout's ``leaderjob`` package (``DIR`` holds it), as the "before" column, alternating with this
tree round by round. ``--only cpu`` measures the CPU configuration alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import (
    PYTHON,
    ROOT,
    ProcessGroup,
    children,
    etcd_server,
    median,
    percentile,
    proc_rss_bytes,
    table,
    wait_for,
)

COUNTS = (1, 4, 16)


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def _ours(pid: int) -> bool:
    try:
        return b"leaderjob" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _pss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu(pid: int) -> tuple[float, float]:
    """CPU of a process itself, and of its reaped children (cutime, cstime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    f = [int(x) / os.sysconf("SC_CLK_TCK") for x in stat[stat.rfind(")") + 2 :].split()[11:15]]
    return f[0] + f[1], f[2] + f[3]


def _cpu_total(pid: int) -> float:
    """CPU of a process plus its reaped children."""
    return sum(_cpu(pid))


def cpu_parts(root: int) -> tuple[float, float, float]:
    """CPU of the daemon itself; of its guardian (or watchdogs), live or reaped; of the jobs
    they reaped."""
    daemon, reaped = _cpu(root)
    guardian, jobs = reaped, 0.0
    for p in children(root):
        if _ours(p):
            own, theirs = _cpu(p)
            guardian, jobs = guardian + own, jobs + theirs
    return daemon, guardian, jobs


def sample(root: int) -> dict[str, float]:
    procs = [p for p in _tree(root) if _ours(p)]
    return {
        "pss": sum(_pss(p) for p in procs) / 2**20,
        "rss": sum(proc_rss_bytes(p) for p in procs) / 2**20,
        "procs": len(procs),
    }


def tree_cpu(root: int) -> float:
    """The daemon's CPU with its reaped children, plus each live process of ours below it with
    its own reaped children (the jobs)."""
    return sum(_cpu_total(p) for p in _tree(root) if _ours(p))


def _jobs(path: Path, n: int, every: str) -> Path:
    lines = []
    for i in range(n):
        lines += [f"[jobs.j{i}]", f'schedule = "@every {every}"', 'command = ["true"]', ""]
    path.write_text("\n".join(lines))
    return path


def _argv(who: str, endpoint: str, jobs: Path) -> list[str]:
    return [
        PYTHON, "-m", "leaderjob", "run", "--election", "tree", "--identity", who,
        "--endpoints", endpoint, "--prefix", "/bench", "--ttl", "10s", "--jobs", str(jobs),
        "--spread", "off", "--log-format", "json", "--metrics-addr", "off",
    ]  # fmt: skip


def one_round(
    src: Path, settle: float, window: float, logdir: Path, *, cpu_only: bool = False
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out: dict[str, Any] = {}

    def start(procs: ProcessGroup, who: str, endpoint: str, jobs: Path) -> tuple[int, Path]:
        log = logdir / f"tree-{who}.log"
        with log.open("wb") as f:
            pid = procs.spawn(_argv(who, endpoint, jobs), stdout=f, stderr=f, env=env,
                              cwd=str(logdir)).pid  # fmt: skip
        wait_for(lambda: b"election.acquired" in log.read_bytes(), 30, 0.1)
        return pid, log

    for n in () if cpu_only else COUNTS:
        with etcd_server() as etcd, ProcessGroup() as procs:
            jobs = _jobs(logdir / f"jobs{n}.toml", n, "2s")
            leader, _ = start(procs, f"L{n}", etcd.endpoint, jobs)
            time.sleep(settle)
            out[f"leader{n}"] = sample(leader)
            if n == COUNTS[0]:
                follower = procs.spawn(
                    _argv("F", etcd.endpoint, jobs), env=env, cwd=str(logdir),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(settle)
                out["follower"] = sample(follower.pid)
    with etcd_server() as etcd, ProcessGroup() as procs:
        jobs = _jobs(logdir / "jobs-cpu.toml", 4, "1s")
        leader, log = start(procs, "C", etcd.endpoint, jobs)
        time.sleep(5.0)
        c0, p0, t0 = tree_cpu(leader), cpu_parts(leader), time.monotonic()
        mark = len(log.read_bytes())
        time.sleep(window)
        c1, p1, t1 = tree_cpu(leader), cpu_parts(leader), time.monotonic()
        out["cpu_per_hour"] = (c1 - c0) / (t1 - t0) * 3600
        lags, read = [], []
        for line in log.read_bytes()[mark:].decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("event") == "job.started" and ev.get("exec_seconds") is not None:
                    lags.append(float(ev["exec_seconds"]))
                    # An older tree logs no exec_reported_seconds: its exec_seconds was that.
                    read.append(float(ev.get("exec_reported_seconds") or ev["exec_seconds"]))
        for name, a, b in zip(("daemon", "guardian", "jobs"), p0, p1, strict=True):
            out[f"cpu_ms_{name}"] = (b - a) / max(1, len(lags)) * 1000
        out["exec_p50"] = percentile(lags, 0.5)
        out["exec_p99"] = percentile(lags, 0.99)
        out["read_p50"] = percentile(read, 0.5)
        out["read_p99"] = percentile(read, 0.99)
        out["runs"] = len(lags)
        out["load"] = os.getloadavg()[0]
    return out


def measure(got: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each cell over the rounds ``got`` (a cell no round measured: None)."""

    def med(key: str, sub: str | None = None) -> float | None:
        vals = [g.get(key, {}).get(sub) if sub else g.get(key) for g in got]
        present = [v for v in vals if v is not None]
        return median(present) if present else None

    out: dict[str, Any] = {"rounds": got}
    for n in COUNTS:
        for sub in ("pss", "rss", "procs"):
            out[f"leader{n}_{sub}"] = med(f"leader{n}", sub)
    for sub in ("pss", "rss", "procs"):
        out[f"follower_{sub}"] = med("follower", sub)
    for key in ("cpu_per_hour", "cpu_ms_daemon", "cpu_ms_guardian", "cpu_ms_jobs", "exec_p50",
                "exec_p99", "read_p50", "read_p99", "load"):  # fmt: skip
        out[key] = med(key)
    return out


def render(cols: dict[str, dict[str, Any]]) -> str:
    def mib(m: dict[str, Any], key: str) -> str:
        return "—" if m.get(key) is None else f"{m[key]:.0f}"

    measures: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("leader tree PSS, 1 / 4 / 16 jobs (MiB)",
         lambda m: " / ".join(mib(m, f"leader{n}_pss") for n in COUNTS)),
        ("leader tree RSS, 1 / 4 / 16 jobs (MiB)",
         lambda m: " / ".join(mib(m, f"leader{n}_rss") for n in COUNTS)),
        ("follower tree PSS / RSS (MiB)",
         lambda m: f"{mib(m, 'follower_pss')} / {mib(m, 'follower_rss')}"),
        ("leader CPU, 4 jobs at @every 1s, whole tree (s/h)",
         lambda m: f"{m['cpu_per_hour']:.0f}"),
        ("CPU per run: daemon / guardian / jobs (ms)",
         lambda m: " / ".join("—" if m.get(f"cpu_ms_{k}") is None else f"{m[f'cpu_ms_{k}']:.1f}"
                              for k in ("daemon", "guardian", "jobs"))),
        ("slot fire → exec p50 / p99 (ms)",
         lambda m: f"{m['exec_p50'] * 1000:.0f} / {m['exec_p99'] * 1000:.0f}"),
        ("slot fire → the daemon read the exec's report p50 / p99 (ms)",
         lambda m: f"{m['read_p50'] * 1000:.0f} / {m['read_p99'] * 1000:.0f}"),
        ("processes of the leader's tree, 1 / 4 / 16 jobs (jobs excluded)",
         lambda m: " / ".join(mib(m, f"leader{n}_procs") for n in COUNTS)),
        ("load average (1 min) at the end of the CPU window", lambda m: f"{m['load']:.2f}"),
    ]  # fmt: skip
    rows = [[label, *(fn(m) for m in cols.values())] for label, fn in measures]
    return table(["measure", *cols], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=15.0)
    ap.add_argument("--window", type=float, default=40.0)
    ap.add_argument("--compare", type=Path, help="another checkout, measured first as 'before'")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    ap.add_argument(
        "--only",
        choices=("all", "cpu"),
        default="all",
        help="cpu: the CPU configuration alone (4 jobs at @every 1s), without the memory rows",
    )
    args = ap.parse_args()
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"leaderjob-tree-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)
    trees = (
        {"this tree": ROOT} if args.compare is None else {"before": args.compare, "this tree": ROOT}
    )
    got: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for _ in range(args.rounds):  # the trees alternate round by round: the same minutes' load
        for name, src in trees.items():
            got[name].append(
                one_round(src, args.settle, args.window, logdir, cpu_only=args.only == "cpu")
            )
    cols = {name: measure(rounds) for name, rounds in got.items()}
    if args.json is not None:
        args.json.write_text(json.dumps(cols, indent=1))
    print(render(cols))


if __name__ == "__main__":
    main()
