"""Many jobs under one daemon, and many daemons sharing many jobs: `leaderjob run --jobs FILE`.

    python bench/many_jobs.py [--quick] [--window 60] [--daemons 20] [--jobs 20] [--doc FILE]

1. **Footprint by job count.** One daemon leads 1, 10, 50 and 1,000 idle jobs (``0 0 1 1 *``,
   never due during the run; ``--counts``), each count on an etcd of its own, side by side: RSS,
   CPU seconds per hour and etcd requests per minute (by gRPC method) of the leader alone for
   ``window`` seconds, then of a follower that joins for another ``window``; each window begins
   once the start-up reads are over (no ``Range`` for 3 s). Both run ``--spread off`` so the
   leader keeps every job and the follower only waits. Requests are etcd's
   ``grpc_server_msg_received_total`` deltas (footprint.py's counting). Memory per job: (RSS at
   the most jobs − RSS at the fewest) / their difference.
2. **Twenty pods.** ``daemons`` daemons × ``jobs`` jobs (``@every 10s``, command ``true``) on one
   etcd, TTL 3 s, all started at once with the daemon's default spreading pace unless ``--pace``
   is given. Leadership is read from each daemon's JSON log (``election.acquired`` /
   ``election.lost``, with their timestamps); a move is a ``spread.released``. Settled: every job
   led, no daemon leading more than ⌈jobs/daemons⌉, and nothing moved for ``quiet`` seconds.
   Then ``kill -9`` of one daemon's process group that leads a job: time until each of its jobs is
   led elsewhere, and the moves until settled again; then SIGTERM of another such daemon: the
   handover time of its jobs.

Every process is started in its own process group and killed by group id at the end, whatever
happens. ``--doc FILE`` replaces (or appends) the "Many jobs" section of FILE with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from benchlib import (
    PYTHON,
    ROOT,
    ProcessGroup,
    etcd_server,
    etcd_version,
    find_etcd,
    kill_group,
    leader_then_follower,
    table,
    wait_for,
    write_section,
)

BEGIN = "<!-- many_jobs.py: begin -->"
END = "<!-- many_jobs.py: end -->"
IDLE_SCHEDULE = "0 0 1 1 *"


def _jobs_file(path: Path, n: int, schedule: str) -> Path:
    lines = []
    for i in range(n):
        lines += [f"[jobs.j{i:02d}]", f'schedule = "{schedule}"', 'command = ["true"]', ""]
    path.write_text("\n".join(lines))
    return path


def _argv(who: str, endpoint: str, jobs: Path, ttl: int, extra: list[str]) -> list[str]:
    return [
        PYTHON, "-m", "leaderjob", "run", "--election", "many", "--identity", who,
        "--endpoints", endpoint, "--prefix", "/bench", "--ttl", f"{ttl}s",
        "--log-format", "json", "--metrics-addr", "off", "--jobs", str(jobs), *extra,
    ]  # fmt: skip


# -- part 1: one daemon, 1 / 10 / 50 / 1,000 idle jobs -----------------------------------------


def idle(n: int, ttl: int, window: float, logdir: Path) -> dict[str, Any]:
    """One leader of ``n`` idle jobs alone for ``window`` s, then a follower for ``window`` s."""
    out: dict[str, Any] = {"jobs": n, "ttl": ttl, "window": window}
    jobs = _jobs_file(logdir / f"idle-{n}.toml", n, IDLE_SCHEDULE)
    with etcd_server() as etcd, ProcessGroup() as procs, contextlib.ExitStack() as files:
        logs = [files.enter_context((logdir / f"idle-{n}-{w}.log").open("ab")) for w in "LF"]

        def start(who: str) -> int:
            log = logs[0 if who == "L" else 1]
            return procs.spawn(_argv(who, etcd.endpoint, jobs, ttl, ["--spread", "off"]),
                               stdout=log, stderr=log, cwd=str(ROOT)).pid  # fmt: skip

        out.update(leader_then_follower(etcd.client_url, start, settle=8.0, window=window))
    return out


def idle_all(counts: list[int], ttl: int, window: float, logdir: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in counts]
    errors: list[BaseException] = []

    def one(i: int, n: int) -> None:
        try:
            results[i] = idle(n, ttl, window, logdir)
        except BaseException as e:  # reported after every thread has cleaned up
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(counts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# -- part 2: twenty daemons, twenty jobs ---------------------------------------------------------


@dataclass
class Event:
    t: float  # wall-clock seconds, from the record's timestamp
    who: str
    event: str
    job: str


@dataclass
class Daemon:
    name: str
    pid: int
    log: Path
    offset: int = 0
    rest: bytes = b""


@dataclass
class Group:
    """The daemons of one group and what their logs say, read incrementally."""

    daemons: dict[str, Daemon] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    dead: dict[str, float] = field(default_factory=dict)  # killed -9: no goodbye in the log

    def poll(self) -> None:
        new: list[Event] = []
        for d in self.daemons.values():
            try:
                with d.log.open("rb") as f:
                    f.seek(d.offset)
                    chunk = f.read()
            except OSError:
                continue
            d.offset += len(chunk)
            lines = (d.rest + chunk).split(b"\n")
            d.rest = lines.pop()
            for line in lines:
                if not line.startswith(b"{"):
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                ev = rec.get("event")
                if ev in ("election.acquired", "election.lost", "spread.released") and "job" in rec:
                    when = datetime.fromisoformat(rec["timestamp"]).timestamp()
                    new.append(Event(when, d.name, ev, rec["job"]))
        self.events += new
        self.events.sort(key=lambda e: e.t)

    def leaders(self, at: float | None = None) -> dict[str, str]:
        """job → daemon leading it (by the logs, up to ``at``); a killed daemon leads nothing."""
        out: dict[str, str] = {}
        for e in self.events:
            if at is not None and e.t > at:
                break
            if e.event == "election.acquired":
                out[e.job] = e.who
            elif e.event == "election.lost" and out.get(e.job) == e.who:
                del out[e.job]
        return {j: w for j, w in out.items() if w not in self.dead}

    def last_change(self) -> float:
        changes = [e.t for e in self.events if e.event != "spread.released"]
        return max([*changes, *self.dead.values()], default=0.0)

    def settled(self, jobs: int, quiet: float) -> bool:
        self.poll()
        led = self.leaders()
        live = len(self.daemons) - len(self.dead)
        share = math.ceil(jobs / live)
        counts: dict[str, int] = {}
        for w in led.values():
            counts[w] = counts.get(w, 0) + 1
        fair = len(led) == jobs and all(c <= share for c in counts.values())
        return fair and time.time() - self.last_change() >= quiet

    def releases(self, after: float, until: float) -> int:
        return sum(1 for e in self.events if e.event == "spread.released" and after < e.t <= until)

    def acquired(self, job: str, after: float, by_other_than: str) -> float | None:
        for e in self.events:
            if (
                e.t > after
                and e.job == job
                and e.event == "election.acquired"
                and (e.who != by_other_than)
            ):
                return e.t
        return None


def _wait_settled(g: Group, jobs: int, quiet: float, timeout: float) -> float | None:
    """Wall time of the last change before the group held still ``quiet`` s; None on timeout."""
    if not wait_for(lambda: g.settled(jobs, quiet), timeout, 0.25):
        return None
    return g.last_change()


def _victim(g: Group, not_: set[str]) -> tuple[str, list[str]]:
    g.poll()
    by: dict[str, list[str]] = {}
    for job, who in sorted(g.leaders().items()):
        if who not in not_:
            by.setdefault(who, []).append(job)
    who = sorted(by)[0]
    return who, by[who]


def twenty(
    n_daemons: int, n_jobs: int, ttl: int, pace: str | None, quiet: float, logdir: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {"daemons": n_daemons, "jobs": n_jobs, "ttl": ttl, "pace": pace,
                           "quiet": quiet}  # fmt: skip
    jobs = _jobs_file(logdir / "pods.toml", n_jobs, "@every 10s")
    extra = ["--spread-pace", pace] if pace else []
    timeout = 600.0
    g = Group()
    with etcd_server() as etcd, ProcessGroup() as procs, contextlib.ExitStack() as files:
        start = time.time()
        for i in range(n_daemons):
            name = f"d{i:02d}"
            path = logdir / f"pod-{name}.log"
            f: IO[bytes] = files.enter_context(path.open("ab"))
            p = procs.spawn(_argv(name, etcd.endpoint, jobs, ttl, extra), stdout=f, stderr=f,
                            cwd=str(ROOT))  # fmt: skip
            g.daemons[name] = Daemon(name, p.pid, path)
        out["spawned_s"] = time.time() - start
        done = _wait_settled(g, n_jobs, quiet, timeout)
        if done is None:
            raise RuntimeError(f"{n_daemons}×{n_jobs} did not settle in {timeout:.0f} s")
        first = min(e.t for e in g.events if e.event == "election.acquired")
        out["settle_s"] = done - start
        all_led = _all_led(g, n_jobs)
        out["all_led_s"] = all_led - start
        out["first_most"] = max(Counter(g.leaders(all_led).values()).values())
        out["first_lead_s"] = first - start
        out["settle_moves"] = g.releases(0, done)
        out["settle_led"] = sorted(_counts(g).values(), reverse=True)

        # kill -9 of one daemon that leads a job (the whole group: daemon and its watchdogs).
        who, its = _victim(g, set())
        killed = time.time()
        kill_group(g.daemons[who].pid, signal.SIGKILL)
        g.dead[who] = killed
        done = _wait_settled(g, n_jobs, quiet, timeout)
        if done is None:
            raise RuntimeError(f"no settling after the crash of {who} in {timeout:.0f} s")
        moved = [g.acquired(j, killed, who) for j in its]
        out["crash"] = {
            "daemon": who, "jobs": its,
            "failover_s": [None if m is None else m - killed for m in moved],
            "moves": g.releases(killed, done), "settle_s": done - killed,
            "led": sorted(_counts(g).values(), reverse=True),
        }  # fmt: skip

        # SIGTERM of another that leads a job: graceful handover.
        who, its = _victim(g, set(g.dead))
        sent = time.time()
        os.kill(g.daemons[who].pid, signal.SIGTERM)
        wait_for(lambda: _acquired_all(g, its, sent, who), 30.0, 0.1)
        g.dead[who] = sent  # it is gone (or going): it leads nothing from here on
        done = _wait_settled(g, n_jobs, quiet, timeout)
        moved = [g.acquired(j, sent, who) for j in its]
        out["term"] = {
            "daemon": who, "jobs": its,
            "handover_s": [None if m is None else m - sent for m in moved],
            "moves": g.releases(sent, done or time.time()),
            "settle_s": None if done is None else done - sent,
            "led": sorted(_counts(g).values(), reverse=True),
        }  # fmt: skip
    return out


def _all_led(g: Group, jobs: int) -> float:
    """The first time every job had a leader."""
    for e in g.events:
        if e.event == "election.acquired" and len(g.leaders(e.t)) == jobs:
            return e.t
    return math.nan


def _counts(g: Group) -> dict[str, int]:
    counts = {d: 0 for d in g.daemons if d not in g.dead}
    for w in g.leaders().values():
        counts[w] += 1
    return counts


def _acquired_all(g: Group, jobs: list[str], after: float, other_than: str) -> bool:
    g.poll()
    return all(g.acquired(j, after, other_than) is not None for j in jobs)


# -- rendering -----------------------------------------------------------------------------------


def _kib(b: float) -> str:
    return f"{b / 1024:.0f} KiB"


def _methods(by: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(by.items()) if v >= 0.5) or "—"


def render_idle(rows: list[dict[str, Any]]) -> str:
    t = table(
        ["idle jobs", "RSS leader", "RSS follower", "CPU/h leader", "CPU/h follower",
         "etcd req/min leader", "etcd req/min follower", "leader: req/min by method",
         "follower: req/min by method"],
        [[str(r["jobs"]), f"{r['leader_rss'] / 2**20:.1f} MiB",
          f"{r['follower_rss'] / 2**20:.1f} MiB", f"{r['leader_cpu_per_hour']:.1f} s",
          f"{r['follower_cpu_per_hour']:.1f} s", f"{r['leader_req_per_min']:.0f}",
          f"{r['follower_req_per_min']:.0f}", _methods(r["leader_by_method"]),
          _methods(r["follower_by_method"])] for r in rows],
    )  # fmt: skip
    lo, hi = rows[0], rows[-1]
    span = hi["jobs"] - lo["jobs"]
    if span > 0:
        per_job_l = (hi["leader_rss"] - lo["leader_rss"]) / span
        per_job_f = (hi["follower_rss"] - lo["follower_rss"]) / span
        t += (
            f"\n\nMemory per job ({lo['jobs']} → {hi['jobs']} jobs): leader {_kib(per_job_l)}, "
            f"follower {_kib(per_job_f)}. Requests per minute, {lo['jobs']} → {hi['jobs']} jobs: "
            f"leader {lo['leader_req_per_min']:.0f} → {hi['leader_req_per_min']:.0f}, "
            f"follower {lo['follower_req_per_min']:.0f} → {hi['follower_req_per_min']:.0f}."
        )
    return t


def _secs(xs: list[float | None]) -> str:
    got = [x for x in xs if x is not None]
    if not got:
        return "—"
    if len(got) == 1 and len(xs) == 1:
        return f"{got[0]:.2f} s"
    lost = f" ({len(xs) - len(got)} not moved)" if len(got) < len(xs) else ""
    return f"{min(got):.2f}–{max(got):.2f} s over {len(got)} jobs{lost}"


def render_pods(p: dict[str, Any]) -> str:
    c, t = p["crash"], p["term"]
    settle_t = "—" if t["settle_s"] is None else f"{t['settle_s']:.1f} s"
    return table(
        [f"{p['daemons']} daemons × {p['jobs']} jobs (`@every 10s`), TTL {p['ttl']} s", "value"],
        [
            ["all daemons spawned (from the first spawn)", f"{p['spawned_s']:.1f} s"],
            ["first job led / every job led",
             f"{p['first_lead_s']:.1f} s / {p['all_led_s']:.1f} s"],
            ["settled: every daemon ≤ ⌈jobs/daemons⌉ and nothing moves",
             f"{p['settle_s']:.1f} s (quiet {p['quiet']:.0f} s after)"],
            ["moves (releases) until settled", str(p["settle_moves"])],
            ["jobs per daemon when settled", _shape(p["settle_led"])],
            [f"`kill -9` of a daemon leading {len(c['jobs'])} job(s): its job(s) led elsewhere "
             "after", _secs(c["failover_s"])],
            ["… moves (releases) that followed, until settled", str(c["moves"])],
            ["… last change after", f"{c['settle_s']:.1f} s (then {_shape(c['led'])})"],
            [f"SIGTERM of a daemon leading {len(t['jobs'])} job(s): handover",
             _secs(t["handover_s"])],
            ["… moves (releases) that followed, until settled", str(t["moves"])],
            ["… last change after", f"{settle_t} (then {_shape(t['led'])})"],
        ],
    )  # fmt: skip


def _shape(led: list[int]) -> str:
    counts: dict[int, int] = {}
    for n in led:
        counts[n] = counts.get(n, 0) + 1
    return ", ".join(
        f"{k} job{'s' if k != 1 else ''}: {v}" for k, v in sorted(counts.items(), reverse=True)
    )


def section(results: dict[str, Any]) -> str:
    a = results["args"]
    counts = [r["jobs"] for r in results["idle"]]
    pace = a["pace"] or "5s (the daemon's default)"
    cmd = "make bench" if not a["quick"] else "make bench-quick"
    return "\n".join([
        BEGIN,
        "## Many jobs",
        "",
        f"- **Date:** {results['date']} (start of the run; it took {results['minutes']:.1f} min)",
        f"- **Machine:** {results['machine']}",
        f"- **etcd:** {results['etcd']}, single member on loopback from the test harness",
        f"- **Command:** `.venv/bin/python bench/many_jobs.py{results['argv']}` (part of `{cmd}`)",
        f"- **Spreading pace:** {pace}; TTL {a['ttl_pods']} s for the group, "
        f"{a['ttl_idle']} s for the footprint",
        "",
        "**Caveat.** The machine is shared (2 cores; other test suites ran during the "
        f"run), and the {len(counts)} footprint runs ran side by side, each on an etcd of its own. "
        "CPU per hour over a minute is a few clock ticks (10 ms each): read it to ±1 s per "
        "tick.",
        "",
        f"### One daemon leading {_words(counts)} idle jobs (`{IDLE_SCHEDULE}`), "
        f"TTL {a['ttl_idle']} s",
        "",
        "`--spread off` on both, so the leader keeps every job and the follower only waits; "
        f"each phase measured over {a['window']:.0f} s once the start-up reads were over (no "
        "`Range` for 3 s: a thousand jobs' first reads take about 10 s). Requests are etcd's "
        "`grpc_server_msg_received_total` (every unary call and every message on a stream).",
        "",
        render_idle(results["idle"]),
        "",
        f"### {a['daemons']} daemons × {a['jobs']} jobs on one etcd",
        "",
        "All daemons started at once; leadership from their logs (`election.acquired` / "
        "`election.lost` timestamps), a move is a `spread.released`. The crashed daemon's process "
        "group (daemon and watchdogs) got SIGKILL; the stopped one got SIGTERM.",
        "",
        render_pods(results["pods"]),
        "",
        "### What it shows",
        "",
        *notes(results),
        "",
        "Reproduce: `make bench` (after failover.py), or alone "
        "`.venv/bin/python bench/many_jobs.py --doc docs/benchmarks.md`; a smoke run: "
        "`.venv/bin/python bench/many_jobs.py --quick`. Logs of each daemon and `results.json` go "
        "to `/tmp/ljbench-many-<time>/`; `--render results.json --doc FILE` rewrites this section "
        "from a saved run.",
        END,
    ])  # fmt: skip


def _words(xs: list[int]) -> str:
    return ", ".join(map(str, xs[:-1])) + f" and {xs[-1]}" if len(xs) > 1 else str(xs[0])


def notes(results: dict[str, Any]) -> list[str]:
    """The goals, checked against the numbers: each a bullet that says met or missed, and why."""
    out: list[str] = []
    rows = results.get("idle") or []
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        span = hi["jobs"] - lo["jobs"]
        grow = (hi["leader_req_per_min"] - lo["leader_req_per_min"]) / span
        if grow >= 1.0:
            by = {k: (hi["leader_by_method"].get(k, 0.0) - lo["leader_by_method"].get(k, 0.0))
                  / span for k in hi["leader_by_method"]}  # fmt: skip
            worst = max(by, key=lambda k: by[k])
            out.append(
                f"- **Goal missed: a leader's requests per minute are not flat in the number of "
                f"jobs.** They grow by {grow:.0f} a minute per job ({lo['leader_req_per_min']:.0f} "
                f"at {lo['jobs']} job(s), {hi['leader_req_per_min']:.0f} at {hi['jobs']}), nearly "
                f"all of it `{worst}` ({by[worst]:.0f} a minute per job). Every job "
                "a daemon leads should add nothing: its control switches ride in the one `Txn` "
                "per renew interval that confirms the daemon's keys (two operations per job, up "
                "to 64 jobs per Txn). Look for a per-job request that bypasses it."
            )
        else:
            out.append(
                f"- A leader's requests per minute are flat in the number of jobs "
                f"({lo['leader_req_per_min']:.0f} → {hi['leader_req_per_min']:.0f}, "
                f"{grow:.2f} a minute per job): a keepalive and, per renew interval, one `Txn` "
                "for every 64 keys the daemon holds, which confirms them and reads each led "
                "job's control switches (suspend, triggers) and the replicas' fingerprints in the "
                "same read (goal: ≤ 24 a minute at TTL 15 s up to 64 jobs)."
            )
        fgrow = (hi["follower_req_per_min"] - lo["follower_req_per_min"]) / span
        out.append(
            f"- A follower's requests per minute: {lo['follower_req_per_min']:.0f} → "
            f"{hi['follower_req_per_min']:.0f} ("
            + (f"{fgrow:.2f} a minute per job: one keepalive stream and, per renew interval, one "
               "confirmation `Txn` for every 64 keys; waiting candidates watch, they do not poll)"
               if abs(fgrow) < 1.0
               else f"{fgrow:.1f} a minute per job)")
        )  # fmt: skip
        per = max(hi["leader_rss"] - lo["leader_rss"], hi["follower_rss"] - lo["follower_rss"])
        per_kib = per / span / 1024
        verdict = "met" if per_kib <= 300 else "**missed**"
        out.append(
            f"- Memory per job: at most {per_kib:.0f} KiB (goal: KiB, not MiB: {verdict}). "
            "RSS is dominated by the interpreter and gRPC; a job adds its runner, planner and "
            "election state."
        )
        cpu = (hi["leader_cpu_per_hour"] - lo["leader_cpu_per_hour"]) / span
        fcpu = (hi["follower_cpu_per_hour"] - lo["follower_cpu_per_hour"]) / span
        out.append(
            f"- CPU of an idle leader: {lo['leader_cpu_per_hour']:.0f} → "
            f"{hi['leader_cpu_per_hour']:.0f} s per hour ({cpu:.1f} s per hour per job: each "
            "cycle looks at every led job's schedule and switches); a follower's: "
            f"{fcpu:+.1f} s per hour per job."
        )
    pods = results.get("pods")
    if pods:
        c, t = pods["crash"], pods["term"]
        ttl = pods["ttl"]
        fo = [x for x in c["failover_s"] if x is not None]
        ho = [x for x in t["handover_s"] if x is not None]
        if fo:
            ok = "within" if max(fo) <= ttl + 1.5 else "**over**"
            out.append(f"- Crash: the dead daemon's job(s) led elsewhere after {max(fo):.2f} s at "
                       f"most, {ok} TTL + 1.5 s = {ttl + 1.5:.1f} s; {c['moves']} move(s) "
                       "followed.")  # fmt: skip
        if ho:
            ok = "within" if max(ho) <= 1.0 else "**over**"
            out.append(f"- SIGTERM: handover after {max(ho):.2f} s at most ({ok} the ~1 s "
                       f"goal); {t['moves']} move(s) followed.")  # fmt: skip
        out.append(
            f"- Cold start: {pods['settle_moves']} move(s) until every daemon led at most "
            f"⌈{pods['jobs']}/{pods['daemons']}⌉ job(s), settled {pods['settle_s']:.0f} s after "
            "the first spawn. The daemons started at once, yet when every job first had a leader "
            f"one daemon led {pods.get('first_most', '?')} of the {pods['jobs']} (the first to "
            "queue for a job leads it); the excess then moved one `pace` apart per releasing "
            "daemon."
        )
    return out


def write_doc(path: Path, text: str) -> None:
    write_section(path, text, BEGIN, END)


# -- main ------------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1/5 idle jobs over 15 s, 5 daemons × 5 jobs",
    )
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--counts", default="1,10,50,1000")
    p.add_argument("--ttl-idle", type=int, default=15)
    p.add_argument("--daemons", type=int, default=20)
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--ttl-pods", type=int, default=3)
    p.add_argument("--pace", default=None, help="--spread-pace of the daemons (default: theirs)")
    p.add_argument(
        "--quiet",
        type=float,
        default=15.0,
        help="nothing moved this long: settled (default 15 s: three default paces)",
    )
    p.add_argument("--parts", default="idle,pods")
    p.add_argument("--doc", default=None, help="replace the 'Many jobs' section of this file")
    p.add_argument("--render", metavar="RESULTS_JSON", help="only render a saved run (and --doc)")
    a = p.parse_args()
    if a.quick:
        a.window, a.counts, a.daemons, a.jobs = 15.0, "1,5", 5, 5
    results: dict[str, Any]
    logdir = Path("/tmp") / f"ljbench-many-{int(time.time())}"
    logdir.mkdir(parents=True, exist_ok=True)
    if a.render:
        results = json.loads(Path(a.render).read_text())
        print(section(results))
        if a.doc:
            write_doc(Path(a.doc), section(results))
        return 0
    parts = set(a.parts.split(","))
    results = {"args": vars(a), "logdir": str(logdir)}
    args = [f" --{k.replace('_', '-')} {v}" for k, v in vars(a).items()
            if k not in ("doc", "quick", "render") and v != p.get_default(k)]  # fmt: skip
    results["argv"] = " --quick" if a.quick else "".join(args)
    results["machine"] = (f"{os.cpu_count()} cores, Linux {platform.release()}; "
                          f"Python {platform.python_version()}")  # fmt: skip
    results["etcd"] = ".".join(map(str, etcd_version(find_etcd())))
    start = time.time()
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start))
    try:
        if "idle" in parts:
            results["idle"] = idle_all([int(x) for x in a.counts.split(",")], a.ttl_idle,
                                       a.window, logdir)  # fmt: skip
            print(render_idle(results["idle"]), flush=True)
        if "pods" in parts:
            results["pods"] = twenty(a.daemons, a.jobs, a.ttl_pods, a.pace, a.quiet, logdir)
            print(render_pods(results["pods"]), flush=True)
    finally:
        results["minutes"] = (time.time() - start) / 60
        (logdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"logs and results.json: {logdir}")
    print("\n".join(notes(results)))
    if a.doc and {"idle", "pods"} <= parts:
        write_doc(Path(a.doc), section(results))
        print(f"wrote the 'Many jobs' section of {a.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
