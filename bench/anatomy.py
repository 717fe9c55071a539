"""Where the time goes: a graceful handover and a slot firing, step by step.

    python bench/anatomy.py [--quick] [--doc docs/benchmarks.md] [--tree DIR]

**Handover.** For ``leaderjob lock``, ``leaderjob run`` (no schedule) and python-etcd3's ``Lock``
(bench/pylock.py, refresh form), each with the same job (a Python job that appends its label and
wall time to a file, then sleeps): runner A runs the job, runner B queues, A gets SIGTERM. Each step
is a wall-clock time after the SIGTERM, from the runners' JSON logs (their ``timestamp``), an etcd
watch of the lock's keys held by this script, and the job's own first write:

SIGTERM → old job dead (A's ``job.finished``) → key deleted (the watch sees A's key go) → successor
confirmed (B's ``election.acquired``) → start requested, watchdog ready, job exec'd (B's
``job.started``: its time minus ``lag_seconds`` is the request; ``watchdog_ready_seconds`` and
``exec_seconds`` are after it) → first write (the job's file).

**Slot firing.** ``leaderjob run --schedule '@every 1s'`` with a shell job that appends its slot
and the wall time: fire time → claim committed → watchdog ready → job exec'd → first write, from
each ``job.started`` line (``claimed_seconds``, ``watchdog_ready_seconds``, ``exec_seconds``,
``lag_seconds``: seconds after the fire time) and the job's file. Also the CPU of the daemon and
its watchdogs (and the jobs they reaped: ``sh`` + ``date``, a few ms each) per hour.

Every time is one machine's wall clock (``CLOCK_REALTIME``): fine for differences of a few
milliseconds within one run, on one machine. A step a runner does not log is "—" (python-etcd3
logs nothing; an older tree lacks the start's step fields). ``--tree DIR`` runs the daemons from
another checkout of leaderjob (a before/after comparison in the same conditions). The machine's
load average is printed with the results: measure before and after under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import etcd3
from benchlib import (
    PYTHON,
    ROOT,
    EtcdServer,
    ProcessGroup,
    etcd_server,
    median,
    percentile,
    table,
    wait_for,
    write_section,
)

BEGIN = "<!-- anatomy.py: begin -->"
END = "<!-- anatomy.py: end -->"
PYLOCK = str(Path(__file__).resolve().parent / "pylock.py")
#: The handover job: one line "LABEL WALLTIME" to the file, then nothing for ten minutes.
PY_JOB = (
    "import sys, time\n"
    "with open(sys.argv[1], 'a') as f: f.write(f'{sys.argv[2]} {time.time():.6f}\\n')\n"
    "time.sleep(600)\n"
)
#: The slot job: one line "SLOT WALLTIME" per run (sh + date: a few ms).
SH_JOB = 'echo "$LEADERJOB_SLOT $(date +%s.%N)" >> "$1"'
HANDOVER_STEPS = [
    ("dead", "old job dead"),
    ("deleted", "key deleted"),
    ("confirmed", "successor confirmed"),
    ("requested", "start requested"),
    ("ready", "watchdog ready"),
    ("exec", "job exec'd"),
    ("write", "first write"),
]
SLOT_STEPS = [
    ("claimed", "claim committed"),
    ("sent", "start request sent"),
    ("ready", "watchdog ready"),
    ("exec", "job exec'd"),
    ("write", "first write"),
]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-") or "x"


def ts(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def read_log(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with contextlib.suppress(OSError):
        for raw in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                msg = json.loads(raw)
                if isinstance(msg, dict) and "event" in msg:
                    out.append(msg)
    return out


def first(log: list[dict[str, Any]], event: str, after: float = 0.0) -> dict[str, Any] | None:
    for line in log:
        if line["event"] == event and ts(line) >= after:
            return line
    return None


def written(path: Path) -> dict[str, float]:
    """label → wall time of its first line."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for raw in path.read_text().splitlines():
            label, _, at = raw.partition(" ")
            with contextlib.suppress(ValueError):
                out.setdefault(label, float(at))
    return out


def start_steps(started: dict[str, Any]) -> dict[str, float]:
    """Wall times of a start's steps, from one ``job.started`` line."""
    requested = ts(started) - float(started.get("lag_seconds") or 0.0)
    out = {"requested": requested}
    claimed = started.get("claimed_seconds")
    if claimed is not None:
        out["claimed"] = requested + float(claimed)
    sent = started.get("requested_seconds")
    if sent is not None:
        out["sent"] = requested + float(sent)
    ready = started.get("watchdog_ready_seconds")
    if ready is not None:
        # Started ahead: ready when the request was sent (the watchdog waited for it).
        out["ready"] = max(out.get("sent", requested), requested + float(ready))
    exec_s = started.get("exec_seconds")
    if exec_s is not None:
        out["exec"] = requested + float(exec_s)
    return out


@dataclass
class Bench:
    server: EtcdServer
    procs: ProcessGroup
    work: Path
    tree: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return str(self.server.endpoint)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.tree)}

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as f:
            return self.procs.spawn(argv, stdout=f, stderr=f, cwd=str(self.tree), env=self.env())

    def leaderjob(self, sub: str, who: str, name: str, job: list[str], *extra: str) -> list[str]:
        return [
            PYTHON, "-m", "leaderjob", sub, *extra,
            "--election", name, "--identity", who, "--endpoints", self.endpoint,
            "--prefix", "/anatomy", "--ttl", "3s", "--log-format", "json",
            "--metrics-addr", "off", "--", *job,
        ]  # fmt: skip

    # -- handover --------------------------------------------------------------------------

    def handover(self, kind: str, i: int, tag: str = "") -> dict[str, float] | None:
        name = f"{kind.replace(' ', '-')}-{i}-{_slug(tag)}"
        out_file = self.work / f"{name}.writes"
        logs = {who: self.work / f"{name}-{who}.log" for who in "ab"}

        def argv(who: str) -> list[str]:
            job = [PYTHON, "-S", "-c", PY_JOB, str(out_file), who]
            if kind == "python-etcd3":
                return [PYTHON, PYLOCK, self.endpoint, name, "3", "refresh", *job]
            return self.leaderjob(kind.rsplit(maxsplit=1)[-1], who, name, job)

        prefix = f"/anatomy/{name}/leader/" if kind != "python-etcd3" else f"/locks/{name}"
        host, _, port = self.endpoint.rpartition(":")
        client = etcd3.client(host=host, port=int(port))
        deleted: list[float] = []
        events, cancel = client.watch_prefix(prefix)

        def watch() -> None:
            with contextlib.suppress(Exception):
                for ev in events:
                    if isinstance(ev, etcd3.events.DeleteEvent) and not deleted:
                        deleted.append(time.time())

        threading.Thread(target=watch, daemon=True).start()
        try:
            a = self.spawn(argv("a"), logs["a"])
            if not wait_for(lambda: "a" in written(out_file), 20):
                return None
            b = self.spawn(argv("b"), logs["b"])
            if kind == "python-etcd3":
                time.sleep(1.0)
            elif not wait_for(lambda: sum(1 for _ in client.get_prefix(prefix)) >= 2, 20):
                return None
            time.sleep(0.3)  # B settles into its watch
            t0 = time.time()
            a.send_signal(signal.SIGTERM)
            if not wait_for(lambda: "b" in written(out_file), 15):
                return None
            time.sleep(0.1)
            steps: dict[str, float] = {"write": written(out_file)["b"]}
            if deleted:
                steps["deleted"] = deleted[0]
            la, lb = read_log(logs["a"]), read_log(logs["b"])
            fin = first(la, "job.finished", t0)
            if fin is not None:
                steps["dead"] = ts(fin)
            acq = first(lb, "election.acquired", t0)
            if acq is not None:
                steps["confirmed"] = ts(acq)
            started = first(lb, "job.started", t0)
            if started is not None:
                steps.update(start_steps(started))
            b.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                b.wait(10)
            return {k: v - t0 for k, v in steps.items()}
        finally:
            cancel()
            client.close()
            self.procs.cleanup()

    # -- a slot firing ---------------------------------------------------------------------

    def slots(self, seconds: float, tag: str = "") -> dict[str, Any]:
        name = f"slots-{_slug(tag)}"
        out_file = self.work / f"{name}.writes"
        log = self.work / f"{name}.log"
        job = ["/bin/sh", "-c", SH_JOB, "job", str(out_file)]
        d = self.spawn(self.leaderjob("run", "slots", name, job, "--schedule", "@every 1s"), log)
        if not wait_for(lambda: first(read_log(log), "job.started") is not None, 30):
            return {}
        time.sleep(1.5)  # past the first slot (catch-up) and the first spare
        cpu0, t0 = self.cpu(d.pid), time.monotonic()
        since = time.time()
        time.sleep(seconds)
        cpu1, t1 = self.cpu(d.pid), time.monotonic()
        lines = [x for x in read_log(log) if x["event"] == "job.started" and ts(x) >= since]
        writes = written(out_file)
        rows: list[dict[str, float]] = []
        for line in lines:
            steps = start_steps(line)
            fire = steps["requested"]
            row = {k: v - fire for k, v in steps.items() if k != "requested"}
            at = writes.get(str(line.get("slot")))
            if at is not None:
                row["write"] = at - fire
            rows.append(row)
        d.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.wait(10)
        self.procs.cleanup()
        per_hour = {k: (cpu1[k] - cpu0[k]) / (t1 - t0) * 3600 for k in cpu0}
        return {"rows": rows, "cpu_per_hour": per_hour}

    @staticmethod
    def cpu(pid: int) -> dict[str, float]:
        """CPU seconds so far: the daemon itself; its watchdogs (live ones, and the reaped ones
        with whatever they reaped); the jobs its live watchdogs reaped."""
        own, reaped = Bench._cpu_split(pid)
        out = {"daemon": own, "watchdogs": reaped, "jobs": 0.0}
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    for child in (task / "children").read_text().split():
                        wd_own, wd_reaped = Bench._cpu_split(int(child))
                        out["watchdogs"] += wd_own
                        out["jobs"] += wd_reaped
        return out

    @staticmethod
    def _cpu_split(pid: int) -> tuple[float, float]:
        """(own, reaped children's) CPU seconds of ``pid``."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0.0, 0.0
        f = [int(x) for x in stat[stat.rfind(")") + 2 :].split()[11:15]]
        tick = os.sysconf("SC_CLK_TCK")
        return (f[0] + f[1]) / tick, (f[2] + f[3]) / tick


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:.0f}"


def summary(runs: list[list[dict[str, float]]], steps: list[tuple[str, str]]) -> list[list[str]]:
    """One row per step: median and p99 (ms) of each tree's rows, side by side."""
    out = []
    for key, title in steps:
        row = [title]
        for rows in runs:
            vals = [r[key] for r in rows if key in r]
            row += [ms(median(vals)), ms(percentile(vals, 0.99))]
        out.append(row)
    return out


def render(data: dict[str, Any]) -> str:
    labels: list[str] = data["labels"]
    headers = ["step"] + [f"{lab}: {q}" for lab in labels for q in ("median", "p99")]
    lines = [
        BEGIN,
        "## Where the time goes: handover and slot anatomy",
        "",
        f"Machine: {data['machine']}, shared with other work: load average {data['load']}. "
        f"Generated by `bench/anatomy.py` ({data['mode']}); with two trees their trials "
        "alternate, so both see the same load. Milliseconds after the first event of each "
        'table; "—": a step the runner does not log.',
        "",
    ]
    if data.get("note"):
        lines += [str(data["note"]), ""]
    for kind in data["kinds"]:
        # python-etcd3 is the same in every tree: measured once, under the last label.
        labs = labels[-1:] if kind == "python-etcd3" else labels
        n = ", ".join(f"{len(data['trees'][lab]['handover'][kind])}" for lab in labs)
        hdr = ["step"] + [f"{lab}: {q}" for lab in labs for q in ("median", "p99")]
        lines += [
            f"### Graceful handover, `{kind}` (TTL 3 s; ms after SIGTERM; trials: {n})",
            "",
            table(
                hdr, summary([data["trees"][lab]["handover"][kind] for lab in labs], HANDOVER_STEPS)
            ),
            "",
        ]
    n = ", ".join(str(len(data["trees"][lab]["slots"]["rows"])) for lab in labels)

    def cpu(lab: str) -> str:
        c = data["trees"][lab]["slots"]["cpu_per_hour"]
        return (
            f"{lab}: {c['daemon'] + c['watchdogs']:.0f} s per hour (daemon {c['daemon']:.0f}, "
            f"watchdogs {c['watchdogs']:.0f}), jobs {c['jobs']:.0f}"
        )

    cpu_text = "; ".join(map(cpu, labels))
    lines += [
        "### A slot firing, `leaderjob run --schedule '@every 1s'` "
        f"(ms after the fire time; slots: {n})",
        "",
        table(
            headers, summary([data["trees"][lab]["slots"]["rows"] for lab in labels], SLOT_STEPS)
        ),
        "",
        "CPU of the daemon and its watchdogs, and of the `sh`/`date` jobs apart (a watchdog "
        f"that exits takes its jobs' CPU into the watchdogs' figure): {cpu_text}.",
        "",
        "Reproduce: `.venv/bin/python bench/anatomy.py --doc docs/benchmarks.md` (`make bench`); "
        "`--quick` is a smoke run (`make bench-quick`); `--compare DIR --compare-label NAME` "
        "runs another checkout's daemons alongside, trial for trial; `--json FILE` saves the "
        "results and `--render FILE --doc docs/benchmarks.md` rewrites this section from them.",
        END,
    ]
    return "\n".join(lines)


def write_doc(path: Path, text: str) -> None:
    write_section(path, text, BEGIN, END)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    yield Path(tempfile.mkdtemp(prefix=f"ljbench-anatomy-{int(time.time())}-"))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="3 handovers each, 10 s of slots")
    p.add_argument("--trials", type=int, default=None, help="handovers per runner (default 15)")
    p.add_argument("--seconds", type=float, default=None, help="slot window (default 60 s)")
    p.add_argument("--doc", default=None, help="replace the anatomy section of this file")
    p.add_argument("--label", default="this tree", help="this tree's name in the tables")
    p.add_argument("--compare", default=None, help="another leaderjob checkout, run alongside")
    p.add_argument("--compare-label", default="other", help="its name in the tables")
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--render", default=None, help="only render a saved --json file")
    p.add_argument("--note", default=None, help="a line under the heading (what the trees are)")
    a = p.parse_args()
    if a.render:
        text = render(json.loads(Path(a.render).read_text()))
        print(text)
        if a.doc:
            write_doc(Path(a.doc), text)
        return 0
    trials = a.trials or (3 if a.quick else 15)
    seconds = a.seconds or (10.0 if a.quick else 60.0)
    kinds = ["leaderjob lock", "leaderjob run", "python-etcd3"]
    trees = {a.label: ROOT}
    if a.compare:
        trees = {a.compare_label: Path(a.compare).resolve(), **trees}
    results: dict[str, Any] = {
        lab: {
            "handover": {k: [] for k in kinds},
            "slots": {"rows": [], "cpu_per_hour": {"daemon": 0.0, "watchdogs": 0.0, "jobs": 0.0}},
        }
        for lab in trees
    }
    load0 = os.getloadavg()
    chunks = 4 if a.compare else 1
    with workdir() as work, etcd_server() as server:
        benches = {lab: Bench(server, ProcessGroup(), work, tree) for lab, tree in trees.items()}
        for i in range(trials):
            for kind in kinds:
                for lab, bench in benches.items():
                    if kind == "python-etcd3" and lab != a.label:
                        continue  # not leaderjob: one tree's trials are enough
                    r = bench.handover(kind, i, tag=lab)
                    if r is not None:
                        results[lab]["handover"][kind].append(r)
                    print(f"{lab} {kind} #{i}: {r}", file=sys.stderr)
        for c in range(chunks):
            for lab, bench in benches.items():
                got = bench.slots(seconds / chunks, tag=f"{lab}-{c}")
                results[lab]["slots"]["rows"] += got.get("rows", [])
                for k, v in got.get("cpu_per_hour", {}).items():
                    results[lab]["slots"]["cpu_per_hour"][k] += v / chunks
    for lab in trees:
        if lab != a.label:
            results[lab]["handover"]["python-etcd3"] = results[a.label]["handover"]["python-etcd3"]
    load1 = os.getloadavg()
    data = {
        "machine": f"{os.cpu_count()} CPUs",
        "load": f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (1-min)",
        "mode": f"{trials} handovers per runner, {seconds:.0f} s of slots per tree",
        "labels": list(trees),
        "kinds": kinds,
        "trees": results,
        "note": a.note,
    }
    text = render(data)
    print(text)
    print(f"logs: {work}", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps(data, indent=1))
    if a.doc:
        write_doc(Path(a.doc), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
