"""Footprint of one runner (RSS, CPU per hour, etcd requests per minute, idle as leader and as
follower) and leaderjob's schedule lag, each contender on an etcd of its own.

    python bench/footprint.py [--window 90] [--busy 180] [--contenders leaderjob,etcdctl,python]

``--contenders leaderjob --busy 0`` measures only leaderjob's idle leader and follower (about
three minutes): the check for its idle traffic and memory.

Idle: the leader alone for ``window`` seconds (its requests are every request etcd saw), then a
follower joins for another ``window`` (follower = the second window's rate minus the first).
Requests are etcd's ``grpc_server_msg_received_total`` deltas: every unary call and every message
on a stream (a Go client's long-lived LeaseKeepAlive stream counts each keepalive).
Busy: ``leaderjob run --schedule '@every 1s' -- true`` for ``busy`` seconds: RSS, CPU of the
daemon alone and with its guardian and jobs, and the lag of each start (job.started
``lag_seconds``: fire time → process started).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import (
    PYTHON,
    ROOT,
    ProcessGroup,
    delta,
    etcd_requests,
    etcd_server,
    find_etcdctl,
    fmt,
    leader_then_follower,
    median,
    percentile,
    proc_cpu_seconds,
    proc_rss_bytes,
    table,
    wait_for,
)


def _argv(kind: str, who: str, endpoint: str, ttl: int, schedule: str | None = None) -> list[str]:
    if kind == "leaderjob":
        return [
            PYTHON, "-m", "leaderjob", "run", "--election", "fp", "--identity", who,
            "--endpoints", endpoint, "--prefix", "/bench", "--ttl", f"{ttl}s",
            "--log-format", "json", "--metrics-addr", "off",
            "--schedule", schedule or "@yearly", "--", "true",
        ]  # fmt: skip
    if kind == "etcdctl":
        return [find_etcdctl(), f"--endpoints={endpoint}", "lock", f"--ttl={ttl}", "fp",
                "sleep", "86400"]  # fmt: skip
    return [PYTHON, str(ROOT / "bench" / "pylock.py"), endpoint, "fp", str(ttl), "refresh",
            "sleep", "86400"]  # fmt: skip


TITLES = {
    "leaderjob": "`leaderjob run` (idle schedule)",
    "etcdctl": "`etcdctl lock --ttl` (job: sleep)",
    "python": "python-etcd3 `Lock` + refresh (job: sleep)",
}


def _cpu_total(pid: int) -> float:
    """CPU of a process plus its reaped children (cutime, cstime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = stat[stat.rfind(")") + 2 :].split()
    import os

    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def idle(kind: str, ttl: int, window: float, logdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "ttl": ttl, "window": window}
    with etcd_server() as etcd, ProcessGroup() as procs:
        logs = [open(logdir / f"fp-{kind}-{ttl}-{w}.log", "ab") for w in ("L", "F")]  # noqa: SIM115

        def start(who: str) -> int:
            log = logs[0 if who == "L" else 1]
            return procs.spawn(_argv(kind, who, etcd.endpoint, ttl), stderr=log, stdout=log,
                               cwd=str(ROOT)).pid  # fmt: skip

        out.update(leader_then_follower(etcd.client_url, start, settle=5.0, window=window))
        for f in logs:
            f.close()
    return out


def busy(ttl: int, duration: float, logdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"ttl": ttl, "duration": duration}
    with etcd_server() as etcd, ProcessGroup() as procs:
        log = logdir / f"fp-busy-{ttl}.log"
        with log.open("ab") as f:
            d = procs.spawn(_argv("leaderjob", "busy", etcd.endpoint, ttl, "@every 1s"),
                            stderr=f, stdout=f, cwd=str(ROOT))  # fmt: skip
        wait_for(lambda: b"job.started" in log.read_bytes(), 30, 0.1)
        time.sleep(2.0)
        c0, t0 = proc_cpu_seconds(d.pid), _cpu_total(d.pid)
        r0 = etcd_requests(etcd.client_url)
        rss: list[int] = []
        end = time.monotonic() + duration
        while time.monotonic() < end:
            rss.append(proc_rss_bytes(d.pid))
            time.sleep(1.0)
        c1, t1 = proc_cpu_seconds(d.pid), _cpu_total(d.pid)
        r1 = etcd_requests(etcd.client_url)
        out["rss_max"] = max(rss) if rss else 0
        out["rss_median"] = median(rss)
        out["cpu_per_hour"] = (c1 - c0) / duration * 3600
        out["cpu_per_hour_with_runs"] = (t1 - t0) / duration * 3600
        out["req_per_min"] = sum(delta(r1, r0).values()) / duration * 60
        lags = []
        for line in log.read_text(errors="replace").splitlines():
            if '"job.started"' in line:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("lag_seconds") is not None:
                    lags.append(float(rec["lag_seconds"]))
        lags = lags[2:]  # the first runs overlap start-up
        out["runs"] = len(lags)
        out["lag_p50"] = percentile(lags, 0.5)
        out["lag_p99"] = percentile(lags, 0.99)
        out["lag_max"] = max(lags) if lags else None
    return out


def run_all(
    window: float, busy_seconds: float, logdir: Path, contenders: tuple[str, ...] = tuple(TITLES)
) -> dict[str, Any]:
    """Idle runs of every contender side by side (each on its own etcd), then the busy run
    (skipped with ``busy_seconds`` 0)."""
    plans = [("leaderjob", 15), ("leaderjob", 3), ("etcdctl", 15), ("python", 15)]
    plans = [(k, t) for k, t in plans if k in contenders]
    results: dict[str, Any] = {"idle": [None] * len(plans)}

    def one(i: int, kind: str, ttl: int) -> None:
        results["idle"][i] = idle(kind, ttl, window, logdir)

    threads = [threading.Thread(target=one, args=(i, k, t)) for i, (k, t) in enumerate(plans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if busy_seconds > 0:
        results["busy"] = busy(15, busy_seconds, logdir)
    return results


def render(fp: dict[str, Any]) -> str:
    rows = []
    for r in fp["idle"]:
        if r is None:
            continue
        rows.append([
            f"{TITLES[r['kind']]}, TTL {r['ttl']} s",
            f"{r['leader_rss'] / 2**20:.0f} MiB", f"{r['follower_rss'] / 2**20:.0f} MiB",
            f"{r['leader_cpu_per_hour']:.1f} s", f"{r['follower_cpu_per_hour']:.1f} s",
            f"{r['leader_req_per_min']:.0f}", f"{r['follower_req_per_min']:.0f}",
        ])  # fmt: skip
    idle_table = table(
        ["runner (idle)", "RSS leader", "RSS follower", "CPU/h leader", "CPU/h follower",
         "etcd req/min leader", "etcd req/min follower"],
        rows,
    )  # fmt: skip
    methods = []
    for r in fp["idle"]:
        if r is None:
            continue
        lead = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["leader_by_method"].items()))
        fol = ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(r["follower_by_method"].items()) if v >= 1.0
        )
        methods.append([f"{TITLES[r['kind']]}, TTL {r['ttl']} s", lead, fol or "—"])
    method_table = table(["runner", "leader: req/min by method", "follower: req/min by method"],
                         methods)  # fmt: skip
    b = fp.get("busy")
    if b is None:
        return f"{idle_table}\n\n{method_table}"
    busy_table = table(
        ["`leaderjob run --schedule '@every 1s' -- true`, TTL 15 s", "value"],
        [
            ["daemon RSS (median / max)",
             f"{(b['rss_median'] or 0) / 2**20:.0f} / {b['rss_max'] / 2**20:.0f} MiB"],
            ["daemon CPU per hour", f"{b['cpu_per_hour']:.0f} s"],
            ["… with its guardian and jobs", f"{b['cpu_per_hour_with_runs']:.0f} s"],
            ["etcd requests per minute", f"{b['req_per_min']:.0f}"],
            [f"schedule lag p50 / p99 / max ({b['runs']} runs)",
             f"{fmt(b['lag_p50'], 'ms', 1)} / {fmt(b['lag_p99'], 'ms', 1)} / "
             f"{fmt(b['lag_max'], 'ms', 1)}"],
        ],
    )  # fmt: skip
    return f"{idle_table}\n\n{method_table}\n\n{busy_table}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--window", type=float, default=90.0)
    p.add_argument("--busy", type=float, default=180.0, help="seconds; 0 skips the busy run")
    p.add_argument(
        "--contenders", default=",".join(TITLES), help="comma-separated: " + ", ".join(TITLES)
    )
    a = p.parse_args()
    logdir = Path("/tmp") / f"ljbench-footprint-{int(time.time())}"
    logdir.mkdir(parents=True, exist_ok=True)
    print(render(run_all(a.window, a.busy, logdir, tuple(a.contenders.split(",")))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
