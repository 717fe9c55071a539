"""`leaderjob demo`: a throwaway etcd, three replicas, a crash and a graceful handover.

Everything it starts it stops, by pid, even when interrupted. It prints a live account of what the
replicas log, then a summary that checks what matters: one leader at a time, tokens that only grow,
and no two runs of the job at once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from leaderjob.localetcd import EtcdNotFound, LocalEtcd, free_port

REPLICAS = 3
JOB = (
    'echo "cleanup: token=$LEADERJOB_FENCING_TOKEN slot=$LEADERJOB_SCHEDULED_TIME '
    'by $LEADERJOB_IDENTITY"; sleep 1.2'
)


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    runs: list[tuple[float, float | None, int]] = field(default_factory=list)  # start, end, token
    job_pid: int | None = None
    tokens: list[int] = field(default_factory=list)


class Demo:
    def __init__(self, ttl: float, duration: float) -> None:
        self.ttl = ttl
        self.duration = duration
        self.t0 = time.monotonic()
        self.events: queue.Queue[tuple[float, str, dict[str, Any]]] = queue.Queue()
        self.replicas: dict[str, Replica] = {}
        self.leader: str | None = None
        self.fault: tuple[str, float, str] | None = None  # kind, time, victim
        self.handovers: list[tuple[str, float]] = []

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f}s] {text}", flush=True)

    def start_replica(self, name: str, endpoint: str) -> None:
        port = free_port()
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
            "--schedule",
            "@every 2s",
            "--log-format",
            "json",
            "--metrics-addr",
            f"127.0.0.1:{port}",
            "--",
            "sh",
            "-c",
            JOB,
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.replicas[name] = Replica(name, proc)
        self.say(f"{name} started (pid {proc.pid}), metrics on http://127.0.0.1:{port}/metrics")
        assert proc.stdout is not None and proc.stderr is not None
        for stream, kind in ((proc.stderr, "log"), (proc.stdout, "out")):
            threading.Thread(target=self._pump, args=(name, stream, kind), daemon=True).start()

    def _pump(self, name: str, stream: IO[bytes], kind: str) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if kind == "out":
                self.events.put((time.monotonic(), name, {"event": "job.output", "text": line}))
                continue
            try:
                self.events.put((time.monotonic(), name, json.loads(line)))
            except ValueError:
                self.events.put((time.monotonic(), name, {"event": "raw", "text": line}))

    def drain(self, until: float) -> None:
        while True:
            timeout = until - time.monotonic()
            if timeout <= 0:
                return
            try:
                at, name, ev = self.events.get(timeout=timeout)
            except queue.Empty:
                return
            self.show(at, name, ev)

    def show(self, at: float, name: str, ev: dict[str, Any]) -> None:
        r = self.replicas[name]
        kind = ev.get("event")
        if kind == "election.acquired":
            token = int(ev["token"])
            r.tokens.append(token)
            self.leader = name
            extra = ""
            if self.fault is not None:
                what, when, victim = self.fault
                took = at - when
                self.handovers.append((what, took))
                extra = f" — {took:.2f}s after {what} of {victim}"
                self.fault = None
            self.say(f"{name} LEADS with fencing token {token}{extra}")
        elif kind == "election.lost":
            self.say(f"{name} lost leadership ({ev.get('reason')})")
        elif kind == "job.started":
            r.runs.append((at, None, int(ev.get("token", 0))))
            r.job_pid = int(ev["pid"])
            self.say(f"{name} runs the job (token {ev.get('token')}, slot {ev['scheduled_time']})")
        elif kind == "job.finished":
            self._end_run(r, at)
            self.say(f"{name} job finished: {ev.get('outcome')}")
        elif kind == "job.output":
            self.say(f"{name}   | {ev['text']}")
        elif kind == "schedule.catch_up":
            ran = f"runs missed slot {ev['run']} now" if ev.get("run") else "nothing to run"
            self.say(f"{name} catch-up after the leaderless gap: {ran}")
        elif kind == "slot.skipped":
            self.say(f"{name} skips slot {ev.get('slot')} ({ev.get('reason')})")
        elif kind == "daemon.stopped":
            self.say(f"{name} stopped ({ev.get('reason')})")
        elif kind == "raw" and ev["text"].strip():
            self.say(f"{name} ! {ev['text']}")
        elif ev.get("level") in ("warning", "error") and kind not in ("job.signalled",):
            self.say(f"{name} {kind}: {ev.get('reason') or ev.get('error') or ''}")

    @staticmethod
    def _end_run(r: Replica, at: float) -> None:
        r.job_pid = None
        if r.runs and r.runs[-1][1] is None:
            start, _, token = r.runs[-1]
            r.runs[-1] = (start, at, token)

    def watch_job_die(self, r: Replica, since: float) -> None:
        """After a crash, show that the dead replica's job died with it (no orphan)."""
        pid = r.job_pid
        if pid is None:
            self.say(f"{r.name} was between runs: no job to orphan")
            return
        end = since + 2.0
        while time.monotonic() < end and _alive(pid):
            time.sleep(0.005)
        if _alive(pid):
            self.say(f"{r.name}'s job (pid {pid}) is STILL RUNNING after its daemon died")
            return
        at = time.monotonic()
        self._end_run(r, at)
        self.say(f"{r.name}'s job (pid {pid}) died with it, {1000 * (at - since):.0f} ms later")

    def wait_for_leader_job(self, timeout: float) -> None:
        """Let events flow until the leader is mid-run, so a crash has a job to orphan."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.leader is not None and self.replicas[self.leader].job_pid is not None:
                self.drain(time.monotonic() + 0.3)
                return
            self.drain(min(end, time.monotonic() + 0.05))

    def hit_leader(self, sig: signal.Signals, what: str) -> None:
        victim = self.leader
        if victim is None:
            self.say("no leader yet; skipping the fault")
            return
        proc = self.replicas[victim].proc
        self.say(f"--> {what}: sending {sig.name} to {victim} (the leader, pid {proc.pid})")
        self.fault = (what, time.monotonic(), victim)
        self.leader = None
        os.kill(proc.pid, sig)
        if sig is signal.SIGKILL:
            self.watch_job_die(self.replicas[victim], self.fault[1])

    def stop_all(self) -> None:
        for r in self.replicas.values():
            if r.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(r.proc.pid, signal.SIGTERM)
        end = time.monotonic() + 5
        for r in self.replicas.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(max(0.1, end - time.monotonic()))
        self.drain(time.monotonic() + 0.3)
        for r in self.replicas.values():  # whatever is left, by process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(r.proc.pid, signal.SIGKILL)
            r.proc.wait()

    def summary(self) -> int:
        runs = sorted(
            (start, end or time.monotonic(), token, r.name)
            for r in self.replicas.values()
            for start, end, token in r.runs
        )
        overlaps = sum(1 for a, b in itertools.pairwise(runs) if b[0] < a[1])
        tokens = [t for _, _, t, _ in runs]
        increasing = all(a <= b for a, b in itertools.pairwise(tokens))
        print("\nSummary")
        for r in self.replicas.values():
            print(f"  {r.name}: led with tokens {r.tokens or '-'}, ran the job {len(r.runs)} times")
        for what, took in self.handovers:
            print(f"  {what}: successor led {took:.2f}s later")
        print(f"  runs overlapping another run: {overlaps}")
        print(f"  tokens never went down: {'yes' if increasing else 'NO'}")
        handed_over = len(self.handovers) == 2
        if not handed_over:
            print("  PROBLEM: not every fault was followed by a new leader")
        ok = overlaps == 0 and increasing and len(runs) > 0 and handed_over
        print("  verdict: " + ("OK" if ok else "PROBLEM"))
        return 0 if ok else 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def run_demo(ttl: float = 3.0, duration: float = 30.0) -> int:
    try:
        etcd = LocalEtcd()
    except EtcdNotFound as exc:
        print(f"leaderjob demo: {exc}", file=sys.stderr)
        return 2
    demo = Demo(ttl, duration)
    print(f"Starting a throwaway etcd ({etcd.binary})")
    with etcd:
        demo.say(f"etcd is up at {etcd.endpoint}")
        print(
            f"Three replicas of `leaderjob run --election demo --ttl {ttl:g}s --schedule "
            f"'@every 2s' -- sh -c '...'`:\n"
        )
        try:
            for i in range(1, REPLICAS + 1):
                demo.start_replica(f"replica-{i}", etcd.endpoint)
            third = duration / 3
            demo.drain(demo.t0 + third)
            demo.wait_for_leader_job(3.0)
            demo.hit_leader(signal.SIGKILL, "crash (kill -9)")
            demo.drain(demo.t0 + 2 * third)
            demo.hit_leader(signal.SIGTERM, "graceful stop")
            demo.drain(demo.t0 + duration)
        except KeyboardInterrupt:
            demo.say("interrupted")
        finally:
            demo.say("stopping the replicas and etcd")
            demo.stop_all()
    return demo.summary()
