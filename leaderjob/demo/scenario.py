"""`leaderjob demo`: a throwaway etcd, three replicas running a three-job file, a crash and a
graceful stop.

The replicas run `leaderjob run --election demo --jobs jobs.toml`; leadership of the three jobs
spreads one per replica. Then the replica that started first is killed (`kill -9`): its job moves
to a survivor within TTL + 1.5 s (L1). Then the survivor leading the most jobs gets SIGTERM: its
jobs move at once (L2). Everything the demo starts it stops, by pid, even when interrupted. The
summary's verdict (:mod:`leaderjob.demo.verdict`) checks what matters.

This module is the scenario: the replicas started, their log lines read and shown, the faults,
the summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from leaderjob.demo.localetcd import EtcdNotFound, LocalEtcd, free_port
from leaderjob.demo.verdict import EVERY, Move, Run, Skip, judge

REPLICAS = 3
JOBS = ("cleanup", "report", "reindex")
LABELS = {"crash": "crash (kill -9)", "graceful": "graceful stop"}
JOBS_FILE = "".join(
    f"""
[jobs.{job}]
schedule = "@every {EVERY:g}s"
command = ["sh", "-c", "echo {job} token=$LEADERJOB_FENCING_TOKEN slot=$LEADERJOB_SCHEDULED_TIME; \
sleep 0.5"]
"""
    for job in JOBS
)


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    job_pids: dict[str, int] = field(default_factory=dict)  # job -> pid of its running run


@dataclass
class _Pending:
    kind: str
    victim: str
    at: float
    wall: datetime
    jobs: set[str]


class Demo:
    def __init__(self, ttl: float, workdir: Path) -> None:
        self.ttl = ttl
        self.jobs_file = workdir / "jobs.toml"
        self.jobs_file.write_text(JOBS_FILE)
        self.t0 = time.monotonic()
        self.events: queue.Queue[tuple[float, str, dict[str, Any]]] = queue.Queue()
        self.replicas: dict[str, Replica] = {}
        self.leads: dict[str, str] = {}  # job -> replica
        self.runs: list[Run] = []
        self.open: dict[tuple[str, str], int] = {}  # (replica, run_id) -> index in runs
        self.pending: list[_Pending] = []
        self.moves: list[Move] = []
        self.skips: list[Skip] = []
        #: Each replica's /metrics port, chosen up front so that Prometheus can be told them.
        self.ports = {f"replica-{i}": free_port() for i in range(1, REPLICAS + 1)}

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f}s] {text}", flush=True)

    def start_replica(self, name: str, endpoint: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "leaderjob",
            "run",
            "--election",
            "demo",
            "--identity",
            name,
            "--endpoints",
            endpoint,
            "--ttl",
            f"{self.ttl:g}s",
            "--jobs",
            str(self.jobs_file),
            "--spread-pace",
            "1s",
            "--log-format",
            "json",
            "--metrics-addr",
            f"127.0.0.1:{self.ports.get(name) or free_port()}",
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.replicas[name] = Replica(name, proc)
        self.say(f"{name} started (pid {proc.pid})")
        assert proc.stderr is not None
        threading.Thread(target=self._pump, args=(name, proc.stderr), daemon=True).start()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "raw", "text": line}
            self.events.put((time.monotonic(), name, ev))

    def drain(self, until: float) -> None:
        while (timeout := until - time.monotonic()) > 0:
            try:
                at, name, ev = self.events.get(timeout=timeout)
            except queue.Empty:
                return
            self.show(at, name, ev)

    def drain_until(self, done: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if done():
                return True
            self.drain(min(end, time.monotonic() + 0.05))
        return bool(done())

    def show(self, at: float, name: str, ev: dict[str, Any]) -> None:
        r = self.replicas[name]
        kind = ev.get("event")
        job = str(ev.get("job", ""))
        if kind == "election.acquired":
            self.leads[job] = name
            extra = ""
            for p in self.pending:
                if job in p.jobs:
                    p.jobs.discard(job)
                    took = at - p.at
                    self.moves.append(
                        Move(p.kind, job, p.victim, name, took, p.wall, datetime.now().astimezone())
                    )
                    extra = f" — {took:.2f}s after the {LABELS[p.kind]} of {p.victim}"
            self.say(f"{name} leads {job} (token {ev.get('token')}){extra}")
        elif kind == "election.lost":
            if self.leads.get(job) == name:
                del self.leads[job]
            self.say(f"{name} no longer leads {job} ({ev.get('reason')})")
        elif kind == "spread.released":
            self.say(f"{name} hands {job} over to spread the load")
        elif kind == "job.started":
            slot = datetime.fromisoformat(str(ev["scheduled_time"]).replace("Z", "+00:00"))
            self.open[(name, str(ev["run_id"]))] = len(self.runs)
            self.runs.append(Run(job, name, slot, int(ev.get("token", 0)), at, None))
            r.job_pids[job] = int(ev["pid"])
        elif kind == "job.finished":
            r.job_pids.pop(job, None)
            i = self.open.pop((name, str(ev["run_id"])), None)
            if i is not None:
                self._end_run(i, at)
        elif kind == "slot.skipped" and ev.get("slot"):
            slot_id = str(ev["slot"])
            with contextlib.suppress(ValueError):  # trigger-… ids are not fire times
                at_slot = datetime.strptime(slot_id.removesuffix("Z") + "+0000", "%Y%m%dT%H%M%S%z")
                self.skips.append(Skip(job, at_slot, str(ev.get("reason"))))
            self.say(f"{name} skips {job} slot {slot_id} ({ev.get('reason')})")
        elif kind == "schedule.catch_up" and ev.get("run"):
            self.say(f"{name} catches {job} up: runs missed slot {ev['run']} now")
        elif kind == "daemon.stopped":
            self.say(f"{name} stopped ({ev.get('reason')})")
        elif kind == "raw" and ev["text"].strip():
            self.say(f"{name} ! {ev['text']}")
        elif ev.get("level") in ("warning", "error") and kind not in (
            "job.signalled",
            "election.lost",
        ):
            self.say(f"{name} {kind}: {ev.get('reason') or ev.get('error') or ''}")

    def _end_run(self, i: int, at: float) -> None:
        r = self.runs[i]
        self.runs[i] = Run(r.job, r.replica, r.slot, r.token, r.start, at)

    def table(self) -> None:
        width = max(len(j) for j in JOBS)
        print(f"\n    {'job':<{width}}  leader      runs per replica", flush=True)
        for job in JOBS:
            counts = ", ".join(
                f"{n}: {sum(1 for r in self.runs if r.job == job and r.replica == n)}"
                for n in self.replicas
            )
            print(f"    {job:<{width}}  {self.leads.get(job, '-'):<10}  {counts}")
        print(flush=True)

    def settled(self) -> bool:
        live = [n for n, r in self.replicas.items() if r.proc.poll() is None]
        share = -(-len(JOBS) // len(live))
        return set(self.leads) == set(JOBS) and all(
            sum(1 for v in self.leads.values() if v == n) <= share for n in live
        )

    def hit(self, victim: str, sig: signal.Signals, kind: str) -> None:
        r = self.replicas[victim]
        jobs = {j for j, n in self.leads.items() if n == victim}
        running = dict(r.job_pids)
        self.say(
            f"--> {LABELS[kind]}: {sig.name} to {victim} (pid {r.proc.pid}), "
            f"leader of {sorted(jobs)}"
        )
        at = time.monotonic()
        self.pending.append(_Pending(kind, victim, at, datetime.now().astimezone(), jobs))
        for job in jobs:
            del self.leads[job]
        os.kill(r.proc.pid, sig)
        if sig is signal.SIGKILL:
            self.watch_jobs_die(victim, running, at)
            r.proc.wait()

    def watch_jobs_die(self, name: str, running: dict[str, int], since: float) -> None:
        """After a crash, show that the dead replica's runs died with it (no orphan)."""
        if not running:
            self.say(f"{name} was between runs: no job to orphan")
        for job, pid in running.items():
            end = since + 2.0
            while time.monotonic() < end and _alive(pid):
                time.sleep(0.005)
            if _alive(pid):
                self.say(f"{name}'s {job} run (pid {pid}) is STILL RUNNING after its daemon died")
                continue
            at = time.monotonic()
            for i, run in enumerate(self.runs):
                if run.replica == name and run.job == job and run.end is None:
                    self._end_run(i, at)
            ms = 1000 * (at - since)
            self.say(f"{name}'s {job} run (pid {pid}) died with it, {ms:.0f} ms later")

    def close_pending(self) -> None:
        for p in self.pending:
            for job in sorted(p.jobs):
                self.moves.append(Move(p.kind, job, p.victim, None, None, p.wall, None))
        self.pending = []

    def stop_all(self) -> None:
        for r in self.replicas.values():
            if r.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(r.proc.pid, signal.SIGTERM)
        end = time.monotonic() + 5
        for r in self.replicas.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(max(0.1, end - time.monotonic()))
        for r in self.replicas.values():  # whatever is left, by process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(r.proc.pid, signal.SIGKILL)
            r.proc.wait()

    def summary(self) -> int:
        # Runs cut short by the demo's own final stop are not the demo's subject.
        runs = [r for r in self.runs if r.end is not None]
        problems = judge(runs, self.moves, self.ttl, self.skips)
        print("\nSummary")
        for job in JOBS:
            rs = [r for r in runs if r.job == job]
            tokens = sorted({r.token for r in rs})
            print(f"  {job}: {len(rs)} runs, {len({r.slot for r in rs})} slots, tokens {tokens}")
        for k in self.skips:
            print(f"  {k.job}: slot {k.slot:%H:%M:%S} skipped by the daemon ({k.reason})")
        for m in self.moves:
            took = f"{m.took:.2f}s" if m.took is not None else "never"
            print(f"  {LABELS[m.kind]} of {m.victim}: {m.job} moved to {m.to or '-'} in {took}")
        for p in problems:
            print(f"  PROBLEM: {p}")
        print(
            "  verdict: "
            + (
                "OK (each slot ran once or was skipped with a reason, no overlap, "
                "tokens only grew, moves in bound)"
                if not problems
                else "PROBLEM"
            )
        )
        return 0 if not problems else 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _start_ui(demo: Demo, endpoint: str) -> tuple[Any, Any, str]:
    """The run explorer (`leaderjob ui`) on the demo's etcd: (server, store, URL)."""
    from leaderjob.election.etcd import EtcdStore
    from leaderjob.explorer.data import Source
    from leaderjob.explorer.server import App, serve
    from leaderjob.inprocess.leadership_options import build_connection

    store = EtcdStore(build_connection(endpoint))
    httpd = serve(App(Source(store, "/leaderjob", "demo", 5.0)), ("127.0.0.1", free_port()))
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    demo.say(
        f"the run explorer is up at {url} (`leaderjob ui --election demo --endpoints {endpoint}`)"
    )
    return httpd, store, url


def _hold_ui(explorer: tuple[Any, Any, str], code: int) -> int:
    """After the summary: the explorer (and the demo's etcd) stay up until Ctrl-C."""
    print(f"\nThe run explorer stays up at {explorer[2]} until Ctrl-C.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    explorer[0].shutdown()
    explorer[1].close()
    return code


def run_demo(
    ttl: float = 3.0, duration: float = 30.0, prometheus: bool = False, ui: bool = False
) -> int:
    """`duration` is how long the jobs run after each step (a third before the crash, ...).
    With `prometheus`, a real Prometheus scrapes the replicas meanwhile. With `ui`, the run
    explorer serves the demo's etcd, and stays up after the summary until Ctrl-C."""
    try:
        etcd = LocalEtcd()
    except EtcdNotFound as exc:
        print(f"leaderjob demo: {exc}", file=sys.stderr)
        return 2
    step = max(duration / 3, 2 * EVERY)
    print(f"Starting a throwaway etcd ({etcd.binary})")
    with etcd, tempfile.TemporaryDirectory(prefix="leaderjob-demo-") as tmp:
        demo = Demo(ttl, Path(tmp))
        demo.say(f"etcd is up at {etcd.endpoint}")
        prom = None
        if prometheus:
            from leaderjob.demo.prometheus import start_beside

            prom = start_beside(demo.ports.values(), Path(tmp) / "prometheus", demo.say)
        explorer = _start_ui(demo, etcd.endpoint) if ui else None
        print(
            f"Three replicas of `leaderjob run --election demo --ttl {ttl:g}s --jobs jobs.toml "
            f"--spread-pace 1s`,\njobs.toml: {', '.join(JOBS)}, each `@every {EVERY:g}s`.\n"
        )
        try:
            first = "replica-1"
            demo.start_replica(first, etcd.endpoint)
            demo.drain_until(lambda: set(demo.leads) == set(JOBS), 10)
            for i in range(2, REPLICAS + 1):
                demo.start_replica(f"replica-{i}", etcd.endpoint)
            if not demo.drain_until(demo.settled, 25):
                demo.say("leadership did not spread within 25 s")
            demo.drain(time.monotonic() + step / 2)
            demo.table()
            demo.hit(next(iter(demo.replicas)), signal.SIGKILL, "crash")
            demo.drain_until(lambda: not any(p.jobs for p in demo.pending), ttl + 5)
            demo.drain(time.monotonic() + step / 2)
            demo.table()
            live = [n for n, r in demo.replicas.items() if r.proc.poll() is None]
            busiest = max(live, key=lambda n: sum(1 for v in demo.leads.values() if v == n))
            demo.hit(busiest, signal.SIGTERM, "graceful")
            demo.drain_until(lambda: not any(p.jobs for p in demo.pending), 5)
            demo.drain(time.monotonic() + step / 2)
            demo.table()
        except KeyboardInterrupt:
            demo.say("interrupted")
        finally:
            demo.say("stopping the replicas and etcd")
            demo.close_pending()
            demo.stop_all()
            if prom is not None:
                prom.stop()
                demo.say(f"Prometheus (pid {prom.proc.pid}) stopped")
        if explorer is not None:
            return _hold_ui(explorer, demo.summary())
    return demo.summary()
