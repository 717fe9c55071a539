"""Many jobs on one fire time: how late the last one starts, and the tree's memory meanwhile.

    python bench/burst.py [--jobs 100] [--every 20s] [--slots 3] [--command "sleep 5"] [--ttl 10s]

One daemon on an etcd of its own leads a jobs file of ``jobs`` jobs, all ``@every EVERY`` (their
slots fall on the same instants), each running ``command``, TTL ``--ttl`` (10 s). For ``slots`` fire
times after the first (the first comes with the tenure's catch-up): each job's ``exec_seconds`` from
its ``job.started`` line (fire time → the guardian saw the exec), their p50 and max (the last
job exec'd), and the last ``exec_reported_seconds`` (when the daemon read that report); the
peak PSS and RSS of the daemon's tree with the jobs left out (the daemon and its
guardian), sampled every 0.1 s; the most processes seen in the tree, jobs included; whether the
daemon kept leading, and how many of its ``/healthz`` answers, polled every 0.1 s, said a renewal
was late (a leader's last answered keepalive older than 1.5 renew intervals). Each figure is the
median over the slots. Per run (from the timing fields of ``job.started``): the gap between one exec
and the next, the guardian's round trip (start request → exec seen), the time from the claim's
commit to the start request, and how many claims were committed before the fire time (claimed
ahead).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchlib import (
    PYTHON,
    ProcessGroup,
    etcd_server,
    free_port,
    median,
    percentile,
    table,
    wait_for,
)
from tree import _tree, sample


def _jobs(path: Path, n: int, every: str, command: str) -> Path:
    argv = ", ".join(json.dumps(a) for a in shlex.split(command))
    lines = []
    for i in range(n):
        lines += [f"[jobs.j{i:04d}]", f'schedule = "@every {every}"', f"command = [{argv}]", ""]
    path.write_text("\n".join(lines))
    return path


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(port: int) -> bool | None:
    """``/healthz``: True (200), False (500: a leader's renewal is late), None (no answer)."""
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}/healthz", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


def run(
    jobs: int, every: str, slots: int, command: str, logdir: Path, ttl: str = "10s"
) -> dict[str, Any]:
    port = free_port()
    with etcd_server() as etcd, ProcessGroup() as procs:
        path = _jobs(logdir / "burst.toml", jobs, every, command)
        log = logdir / "burst.log"
        with log.open("wb") as f:
            d = procs.spawn(
                [PYTHON, "-m", "leaderjob", "run", "--election", "burst", "--identity", "b",
                 "--endpoints", etcd.endpoint, "--prefix", "/bench", "--ttl", ttl,
                 "--jobs", str(path), "--spread", "off", "--log-format", "json",
                 "--metrics-addr", f"127.0.0.1:{port}"],
                stdout=f, stderr=f, cwd=str(logdir),
            )  # fmt: skip
        wait_for(lambda: log.read_bytes().count(b'"job.started"') >= jobs, 120, 0.2)
        peak: dict[str, float] = {"pss": 0.0, "rss": 0.0, "procs": 0.0}
        late = polls = 0
        end = time.monotonic() + (slots + 0.5) * float(every.rstrip("s"))
        while time.monotonic() < end:
            s = sample(d.pid)
            peak["pss"] = max(peak["pss"], s["pss"])
            peak["rss"] = max(peak["rss"], s["rss"])
            peak["procs"] = max(peak["procs"], len(_tree(d.pid)))
            healthy = _healthy(port)
            polls += healthy is not None
            late += healthy is False
            time.sleep(0.1)
        by_slot: dict[str, list[float]] = defaultdict(list)
        reported: dict[str, list[float]] = defaultdict(list)
        steps: dict[str, list[dict[str, float]]] = defaultdict(list)
        lost = False
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("event") == "job.started" and ev.get("exec_seconds") is not None:
                    by_slot[ev["slot"]].append(float(ev["exec_seconds"]))
                    reported[ev["slot"]].append(
                        float(ev.get("exec_reported_seconds") or ev["exec_seconds"])
                    )
                    steps[ev["slot"]].append(
                        {k: float(ev[k] or 0.0) for k in ("claimed_seconds", "requested_seconds",
                                                          "exec_seconds")}
                    )  # fmt: skip
                lost = lost or ev.get("event") == "election.lost"
        done = [s for s, v in sorted(by_slot.items()) if len(v) == jobs][1:]  # after catch-up
        full = [by_slot[s] for s in done]
        anatomy = [_anatomy(steps[s]) for s in done]
        return {
            "slots": len(full),
            "last_exec": median(max(v) for v in full),
            "p50_exec": median(percentile(v, 0.5) or 0.0 for v in full),
            "first_exec": median(min(v) for v in full),
            "last_reported": median(max(reported[s]) for s in done),
            "peak_pss": peak["pss"],
            "peak_rss": peak["rss"],
            "peak_procs": peak["procs"],
            "kept_leading": not lost,
            "late_polls": late,
            "polls": polls,
            "per_run": {k: median(a[k] for a in anatomy) or 0.0 for k in anatomy[0]}
            if anatomy
            else {},
        }


def _anatomy(runs: list[dict[str, float]]) -> dict[str, float]:
    """Where one slot's runs spent their time (seconds, medians over its runs): the gap between
    one exec and the next (runs in exec order), the guardian's round trip (start request → exec
    reported), the claim ahead of the fire time or not (claim committed → start request), and
    how many claims were committed before the fire time."""
    runs = sorted(runs, key=lambda r: r["exec_seconds"])
    gaps = [b["exec_seconds"] - a["exec_seconds"] for a, b in itertools.pairwise(runs)]
    return {
        "gap": median(gaps) or 0.0,
        "round_trip": median(r["exec_seconds"] - r["requested_seconds"] for r in runs) or 0.0,
        "claim_to_request": median(r["requested_seconds"] - r["claimed_seconds"] for r in runs)
        or 0.0,
        "claimed_ahead": float(sum(r["claimed_seconds"] < 0 for r in runs)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--every", default="20s")
    ap.add_argument("--slots", type=int, default=3)
    ap.add_argument("--command", default="sleep 5")
    ap.add_argument("--ttl", default="10s")
    args = ap.parse_args()
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"leaderjob-burst-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)
    r = run(args.jobs, args.every, args.slots, args.command, logdir, args.ttl)

    def ms(v: float | None) -> str:
        return "—" if v is None else f"{v * 1000:.0f} ms"

    print(table(["at one fire time", "measured"], [
        ["jobs", f"{args.jobs} × @every {args.every} `{args.command}` ({r['slots']} slots), "
                 f"TTL {args.ttl}"],
        ["first / p50 / last job exec'd after the fire time",
         f"{ms(r['first_exec'])} / {ms(r['p50_exec'])} / {ms(r['last_exec'])}"],
        ["last exec read by the daemon (the guardian's report of it)", ms(r["last_reported"])],
        ["peak PSS / RSS of the tree, jobs excluded",
         f"{r['peak_pss']:.0f} / {r['peak_rss']:.0f} MiB"],
        ["most processes in the tree (jobs included)", f"{r['peak_procs']:.0f}"],
        ["leadership", "kept" if r["kept_leading"] else "LOST"],
        ["`/healthz` polls saying a renewal was late", f"{r['late_polls']} of {r['polls']}"],
        *([
            ["per run: exec → next exec (median)", ms(a["gap"])],
            ["per run: start request → exec seen (guardian round trip)", ms(a["round_trip"])],
            ["per run: claim committed → start request", ms(a["claim_to_request"])],
            ["claims committed before the fire time", f"{a['claimed_ahead']:.0f} of {args.jobs}"],
        ] if (a := r["per_run"]) else []),
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
