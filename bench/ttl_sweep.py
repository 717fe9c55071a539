"""Which lease TTL should be the default? A sweep over TTLs, etcd versions and faults.

    python bench/ttl_sweep.py [--ttls 2,3,5,10,15] [--etcd BIN ...] [--doc docs/benchmarks.md]
    python bench/ttl_sweep.py --quick                 # a smoke run, tables on stdout only
    python bench/ttl_sweep.py --render results.json --doc docs/benchmarks.md --svg FILE

For each etcd binary and each TTL: a 3-member etcd cluster at etcd's default raft timing
(heartbeat 100 ms, election timeout 1 s: what a user runs, not the test suite's fast settings),
three ``leaderjob run --schedule '@every 1s' -- true`` daemons, each reaching every member through
a fault proxy of its own, and these conditions one after another:

* ``quiet``: nothing happens for ``--quiet`` seconds; etcd requests per minute per replica (all
  members' ``grpc_server_msg_received_total``, divided by the three replicas).
* ``etcd-leader-kill``: ``kill -9`` of the etcd raft leader, restarted ``--down`` seconds later.
* ``etcd-leader-stall``: SIGSTOP of the etcd raft leader for 1 s (a disk or VM stall).
* ``jitter``: every daemon-to-etcd path delays each byte by 100 ms ± 50 ms each way (round trip
  +200 ms ± 100 ms, redrawn every 200 ms) for ``--jitter`` seconds.
* ``daemon-kill``: ``kill -9`` of the leading daemon's process group; crash failover is the time
  from the signal to another daemon's ``election.acquired`` (log timestamps). The killed daemon is
  started again, under a new name, before the next repeat.

A *spurious loss* is an ``election.lost`` logged by any daemon in a condition that aims no fault
at the leading daemon (all but ``daemon-kill``, where only the killed daemon loses and it cannot
log). Each fault is followed by a wait of at least one TTL, so a loss it causes late is still
counted in its own condition. Everything runs on whatever else the machine runs: starvation of
CPU is one of the conditions a default TTL must survive, and the report says what shared it.

``--doc FILE`` replaces (or appends) the "TTL sweep" section of FILE; ``--svg FILE`` draws the
curve (TTL → crash failover and spurious losses, one line per etcd version) by hand, no plotting
library. Logs and ``results.json`` go to ``/tmp/ljbench-ttl-<time>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    PYTHON,
    ROOT,
    ProcessGroup,
    etcd_requests,
    etcd_version,
    find_etcd,
    median,
    write_section,
)

from tests.harness.etcd import EtcdCluster
from tests.harness.procs import JsonLogProcess
from tests.harness.proxy import FaultMode, MultiProxy

BEGIN = "<!-- ttl_sweep.py: begin -->"
END = "<!-- ttl_sweep.py: end -->"
CONDITIONS = ("quiet", "etcd-leader-kill", "etcd-leader-stall", "jitter", "daemon-kill")
DEBIAN_ETCD34 = "/opt/etcd34/usr/bin/etcd"


@dataclass
class Params:
    ttls: list[int]
    binaries: list[str]
    quiet: float = 30.0
    member_kills: int = 2
    down: float = 3.0
    stalls: int = 2
    stall: float = 1.0
    jitter: float = 60.0
    daemon_kills: int = 3
    daemons: int = 3


@dataclass
class Cell:
    """One (etcd version, TTL): what each condition showed."""

    etcd: str
    ttl: int
    failovers: list[float] = field(default_factory=list)
    failover_misses: int = 0
    losses: dict[str, int] = field(default_factory=dict)
    loss_reasons: dict[str, list[str]] = field(default_factory=dict)
    exposure: dict[str, float] = field(default_factory=dict)
    req_per_min_per_replica: float | None = None
    req_by_method: dict[str, float] = field(default_factory=dict)
    etcd_election_seconds: list[float] = field(default_factory=list)
    stalls_done: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def spurious(self) -> int:
        return sum(n for c, n in self.losses.items() if c != "daemon-kill")


def _wall(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()


class World:
    """One 3-member cluster and its daemons, for one TTL."""

    def __init__(self, binary: str, ttl: int, p: Params, logdir: Path, procs: ProcessGroup):
        self.ttl = ttl
        self.p = p
        self.logdir = logdir
        self.procs = procs
        self.cluster = EtcdCluster(3, binary=binary, heartbeat_ms=100, election_ms=1000)
        self.proxies: list[MultiProxy] = []
        self.daemons: list[JsonLogProcess] = []
        self.lost_seen: dict[int, int] = {}
        self.prefix = f"/ttlsweep/{ttl}"
        self.serial = 0
        for _ in range(p.daemons):
            self.proxies.append(MultiProxy(self.cluster.endpoints))
            self.spawn(len(self.proxies) - 1)

    def spawn(self, slot: int) -> JsonLogProcess:
        self.serial += 1
        name = f"t{self.ttl}-d{slot}-{self.serial}"
        argv = [
            PYTHON, "-m", "leaderjob", "run", "--election", "sweep", "--identity", name,
            "--endpoints", ",".join(self.proxies[slot].endpoints), "--prefix", self.prefix,
            "--ttl", f"{self.ttl}s", "--log-format", "json", "--metrics-addr", "off",
            "--schedule", "@every 1s", "--", "true",
        ]  # fmt: skip
        d = JsonLogProcess(self.procs, argv, self.logdir / f"{name}.log", cwd=str(ROOT))
        d.slot = slot  # type: ignore[attr-defined]
        self.daemons.append(d)
        return d

    def live(self) -> list[JsonLogProcess]:
        return [d for d in self.daemons if d.alive]

    def leader(self, timeout: float) -> JsonLogProcess | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for d in self.live():
                if len(d.events("election.acquired")) > len(d.events("election.lost")):
                    return d
            time.sleep(0.2)
        return None

    def new_losses(self) -> list[str]:
        """election.lost records not counted before (every daemon, dead or alive)."""
        out: list[str] = []
        for d in self.daemons:
            lost = d.events("election.lost")
            seen = self.lost_seen.get(d.pid, 0)
            out += [f"{r.get('identity', '?')}: {r.get('reason', '?')}" for r in lost[seen:]]
            self.lost_seen[d.pid] = len(lost)
        return out

    def close(self) -> None:
        for d in self.daemons:
            d.signal_group(signal.SIGKILL)
        for m in self.proxies:
            m.close()
        self.cluster.close()


def _requests(cluster: EtcdCluster) -> dict[str, float]:
    total: dict[str, float] = {}
    for m in cluster.running_members():
        for k, v in etcd_requests(m.client_url).items():
            total[k] = total.get(k, 0.0) + v
    return total


def _settle(w: World, start: float, at_least: float) -> None:
    """Wait until ``at_least`` seconds after ``start`` and one TTL after it, whichever is later."""
    time.sleep(max(0.0, start + max(at_least, float(w.ttl)) - time.monotonic()))


def _condition(
    w: World, cell: Cell, name: str, body: Callable[[], None], log: Callable[[str], None]
) -> None:
    w.new_losses()
    t0 = time.monotonic()
    try:
        body()
    except Exception as exc:  # one failed fault must not end the sweep
        cell.errors.append(f"{name}: {exc!r}"[:300])
    lost = w.new_losses()
    cell.losses[name] = cell.losses.get(name, 0) + len(lost)
    cell.loss_reasons.setdefault(name, []).extend(lost)
    cell.exposure[name] = cell.exposure.get(name, 0.0) + time.monotonic() - t0
    log(f"  {name}: {time.monotonic() - t0:.0f} s, losses {len(lost)} {lost}")


def sweep_one(binary: str, ttl: int, p: Params, logdir: Path, log: Callable[[str], None]) -> Cell:
    version = ".".join(map(str, etcd_version(binary)))
    cell = Cell(etcd=version, ttl=ttl)
    with ProcessGroup() as procs:
        w = World(binary, ttl, p, logdir / f"{version}-ttl{ttl}", procs)
        try:
            if w.leader(30) is None:
                cell.errors.append("no leader after 30 s")
                return cell
            time.sleep(3.0)  # every daemon queued, the first runs done

            def quiet() -> None:
                if p.quiet <= 0:
                    return
                r0, t0 = _requests(w.cluster), time.monotonic()
                time.sleep(p.quiet)
                r1, t1 = _requests(w.cluster), time.monotonic()
                per_min = {
                    k: (v - r0.get(k, 0.0)) / (t1 - t0) * 60 / p.daemons
                    for k, v in r1.items()
                    if v > r0.get(k, 0.0)
                }
                cell.req_by_method = per_min
                cell.req_per_min_per_replica = sum(per_min.values())

            def member_kill() -> None:
                for _ in range(p.member_kills):
                    t0 = time.monotonic()
                    victim = w.cluster.leader(10)
                    victim.kill()
                    k0 = time.monotonic()
                    nxt = w.cluster.leader(15)
                    cell.etcd_election_seconds.append(time.monotonic() - k0)
                    time.sleep(max(0.0, k0 + p.down - time.monotonic()))
                    victim.start(30)
                    _ = nxt
                    _settle(w, t0, p.down + 3.0)

            def stall() -> None:
                for _ in range(p.stalls):
                    t0 = time.monotonic()
                    victim = w.cluster.leader(10)
                    victim.pause()
                    time.sleep(p.stall)
                    victim.resume()
                    cell.stalls_done += 1
                    _settle(w, t0, p.stall + 3.0)

            def jitter() -> None:
                rng = random.Random(ttl)
                t0 = time.monotonic()
                if p.jitter <= 0:
                    return
                try:
                    while time.monotonic() < t0 + p.jitter:
                        for multi in w.proxies:
                            for proxy in multi:
                                d = rng.uniform(0.05, 0.15)
                                proxy.set_mode(FaultMode(request_delay=d, response_delay=d))
                        time.sleep(0.2)
                finally:
                    for multi in w.proxies:
                        multi.heal()
                _settle(w, t0, p.jitter + 3.0)

            def daemon_kill() -> None:
                for _ in range(p.daemon_kills):
                    lead = w.leader(ttl * 3 + 10)
                    if lead is None:
                        cell.failover_misses += 1
                        continue
                    others = [d for d in w.live() if d is not lead]
                    before = {d.pid: len(d.events("election.acquired")) for d in others}
                    t_kill = time.time()
                    lead.signal_group(signal.SIGKILL)
                    lead.wait(10)
                    end = time.monotonic() + ttl + 15
                    took: float | None = None
                    while time.monotonic() < end and took is None:
                        for d in others:
                            acq = d.events("election.acquired")[before[d.pid] :]
                            if acq:
                                took = _wall(acq[0]) - t_kill
                        time.sleep(0.1)
                    if took is None:
                        cell.failover_misses += 1
                    else:
                        cell.failovers.append(took)
                    log(f"    failover {took}")
                    slot = getattr(lead, "slot", 0)
                    w.proxies[slot].heal()
                    fresh = w.spawn(slot)
                    try:
                        fresh.wait_event("lease.granted", 30)
                    except AssertionError:
                        time.sleep(3.0)
                    time.sleep(1.0)

            for name, body in (
                ("quiet", quiet),
                ("etcd-leader-kill", member_kill),
                ("etcd-leader-stall", stall),
                ("jitter", jitter),
                ("daemon-kill", daemon_kill),
            ):
                _condition(w, cell, name, body, log)
        finally:
            w.close()
    return cell


def run_all(p: Params, logdir: Path, log: Callable[[str], None]) -> list[Cell]:
    cells: list[Cell] = []
    for binary in p.binaries:
        for ttl in p.ttls:
            log(f"etcd {binary}, TTL {ttl} s")
            cells.append(sweep_one(binary, ttl, p, logdir, log))
            (logdir / "results.json").write_text(json.dumps([asdict(c) for c in cells], indent=1))
    return cells


# -- the report ----------------------------------------------------------------------------------


def _f(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def render_table(cells: Sequence[Cell]) -> str:
    head = (
        "| etcd | TTL | crash failover median / max (n) | spurious losses: etcd leader kill "
        "/ stall / jitter / quiet | etcd leader kills / stalls tried "
        "| etcd requests/min per replica | etcd re-election |"
    )
    rows = [head, "|---|---|---|---|---|---|---|"]
    for c in cells:
        fo = c.failovers
        n = f"{len(fo)}" + (f", {c.failover_misses} missed" if c.failover_misses else "")
        losses = " / ".join(
            str(c.losses.get(k, 0)) for k in ("etcd-leader-kill", "etcd-leader-stall", "jitter")
        ) + f" / {c.losses.get('quiet', 0)}"
        el = c.etcd_election_seconds
        rows.append(
            f"| {c.etcd} | {c.ttl} s | {_f(median(fo))} / {_f(max(fo) if fo else None)} s ({n}) "
            f"| {losses} | {len(c.etcd_election_seconds)} / {c.stalls_done} "
            f"| {_f(c.req_per_min_per_replica, 1)} "
            f"| {_f(median(el), 1)} s |"
        )
    return "\n".join(rows)



def render_svg(cells: Sequence[Cell]) -> str:
    """TTL → crash failover (left panel) and spurious losses (right panel), one line per etcd
    version. Plain SVG written by hand, as docs/tools/draw_timeline.py does."""
    versions = sorted({c.etcd for c in cells})
    ttls = sorted({c.ttl for c in cells})
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    W, H, PAD = 820, 340, 56
    pw = (W - 3 * PAD) / 2
    ph = H - 2 * PAD
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
    ]
    tmax = max(ttls) if ttls else 1
    fo_max = float(math.ceil(max([tmax + 3.0] + [max(c.failovers) for c in cells if c.failovers])))
    fo_max += -fo_max % 2
    loss_max = max([3] + [c.spurious for c in cells])

    def panel(x0: float, title: str, ymax: float, ylabel: str, value: Callable[[Cell], float | None]
              ) -> None:  # fmt: skip
        def X(t: float) -> float:
            return x0 + t / tmax * pw

        def Y(v: float) -> float:
            return PAD + ph - v / ymax * ph

        out.append(f'<text x="{x0 + pw / 2}" y="{PAD - 24}" text-anchor="middle" '
                   f'font-weight="bold">{title}</text>')  # fmt: skip
        out.append(f'<line x1="{x0}" y1="{PAD + ph}" x2="{x0 + pw}" y2="{PAD + ph}" '
                   'stroke="black"/>')  # fmt: skip
        out.append(f'<line x1="{x0}" y1="{PAD}" x2="{x0}" y2="{PAD + ph}" stroke="black"/>')
        for t in ttls:
            out.append(f'<line x1="{X(t)}" y1="{PAD + ph}" x2="{X(t)}" y2="{PAD + ph + 4}" '
                       'stroke="black"/>')  # fmt: skip
            out.append(f'<text x="{X(t)}" y="{PAD + ph + 16}" text-anchor="middle">{t}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{PAD + ph + 34}" text-anchor="middle">'
                   "TTL (s)</text>")  # fmt: skip
        step = next(x for x in (1, 2, 5, 10, 20, 50, 100) if ymax / x <= 6)
        for i in range(int(ymax // step) + 1):
            v = float(i * step)
            out.append(f'<line x1="{x0 - 4}" y1="{Y(v)}" x2="{x0 + pw}" y2="{Y(v)}" '
                       'stroke="#ddd"/>' if i else "")  # fmt: skip
            out.append(f'<text x="{x0 - 6}" y="{Y(v) + 4}" text-anchor="end">'
                       f"{v:.0f}</text>")  # fmt: skip
        out.append(f'<text x="{x0 - 38}" y="{PAD + ph / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {x0 - 38} {PAD + ph / 2})">{ylabel}</text>')  # fmt: skip
        for k, ver in enumerate(versions):
            values = [(c.ttl, value(c)) for c in sorted(cells, key=lambda c: c.ttl)
                      if c.etcd == ver]  # fmt: skip
            pts = [(X(t), Y(v)) for t, v in values if v is not None]
            colour = colours[k % len(colours)]
            if pts:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                           'stroke-width="2"/>')  # fmt: skip
                for x, y in pts:
                    out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
            out.append(f'<line x1="{x0 + 10}" y1="{PAD + 8 + 16 * k}" x2="{x0 + 30}" '
                       f'y2="{PAD + 8 + 16 * k}" stroke="{colour}" stroke-width="2"/>')  # fmt: skip
            out.append(f'<text x="{x0 + 36}" y="{PAD + 12 + 16 * k}">etcd {ver}</text>')

    panel(PAD, "crash failover after kill -9 (median)", fo_max, "seconds",
          lambda c: median(c.failovers))  # fmt: skip
    for k, ver in enumerate(versions):
        # the worst of each TTL, as open circles
        for c in cells:
            if c.etcd == ver and c.failovers:
                x = PAD + c.ttl / tmax * pw
                y = PAD + ph - max(c.failovers) / fo_max * ph
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="none" '
                           f'stroke="{colours[k % len(colours)]}"/>')  # fmt: skip
    out.append(f'<text x="{PAD + 10}" y="{PAD + 12 + 16 * len(versions)}" fill="#555">'
               "○ worst of the kills</text>")  # fmt: skip
    if ttls:
        # the floor: a dead leader's lease lives one TTL
        x0 = PAD
        pts = " ".join(
            f"{x0 + t / tmax * pw:.1f},{PAD + ph - t / fo_max * ph:.1f}" for t in ttls
        )
        out.append(f'<polyline points="{pts}" fill="none" stroke="#999" '
                   'stroke-dasharray="4 3"/>')  # fmt: skip
        out.append(f'<text x="{x0 + pw - 4}" y="{PAD + ph - tmax / fo_max * ph - 6}" '
                   'text-anchor="end" fill="#777">failover = TTL</text>')  # fmt: skip
    panel(2 * PAD + pw, "spurious leadership losses (all conditions)", float(loss_max),
          "losses", lambda c: float(c.spurious))  # fmt: skip
    out.append("</svg>")
    return "\n".join(x for x in out if x) + "\n"


def smallest_clean_ttl(cells: Sequence[Cell]) -> int | None:
    """The smallest TTL with no spurious loss on any etcd version, nor at any larger TTL."""
    ttls = sorted({c.ttl for c in cells})
    clean = [t for t in ttls if all(c.spurious == 0 for c in cells if c.ttl >= t)]
    return clean[0] if clean else None


def _findings(cells: Sequence[Cell]) -> list[str]:
    out = []
    best = smallest_clean_ttl(cells)
    for c in cells:
        if c.spurious:
            why = sorted({r.split(": ", 1)[-1] for k, v in c.loss_reasons.items()
                          if k != "daemon-kill" for r in v})  # fmt: skip
            where = ", ".join(f"{k} {n}" for k, n in c.losses.items() if n and k != "daemon-kill")
            out.append(
                f"- etcd {c.etcd}, TTL {c.ttl} s: {c.spurious} spurious loss(es) ({where}; "
                f"reason {', '.join(why)})."
            )
    out.append(
        f"- **The smallest TTL with no spurious loss in any condition on either etcd, nor at any "
        f"longer TTL: {best} s** — the default (docs/configuration.md says why). Losses are "
        "counted per fault tried, not per hour: a few minutes of each fault per TTL make an "
        "hourly rate meaningless." if best is not None else "- Every TTL lost leadership."
    )
    return out


def render_doc(cells: Sequence[Cell], meta: dict[str, Any]) -> str:
    return "\n".join([
        BEGIN,
        "## TTL sweep: which default TTL survives etcd's own faults",
        "",
        f"- **Date:** {meta['date']} (start of the run; it took {meta['minutes']:.1f} min)",
        f"- **Machine:** {meta['machine']}. {meta['shared']}",
        f"- **Per TTL:** {meta['plan']}",
        "",
        "![TTL against crash failover and spurious leadership losses, one line per etcd "
        "version](img/ttl-sweep.svg)",
        "",
        render_table(cells),
        "",
        "Crash failover is the time from `kill -9` of the leading daemon's process group to "
        "another daemon's `election.acquired` (log timestamps); with this few repeats the maximum "
        "stands in for the p99. A spurious loss is an `election.lost` logged in a condition that "
        "aims no fault at the leading daemon. \"etcd re-election\" is how long the cluster took to "
        "name a new raft leader after the kill, as `etcdctl endpoint status` saw it. Requests per "
        "minute are every member's `grpc_server_msg_received_total` over the quiet window, "
        "divided by the three replicas (leader and followers together).",
        "",
        *_findings(cells),
        "",
        f"Command: `{meta['command']}` (`make bench-ttl`). A smoke run: `.venv/bin/python "
        "bench/ttl_sweep.py --quick`. `--render results.json [--render more.json] --doc FILE "
        "--svg FILE` redraws from saved runs (docs/data/ttl-sweep*.json; `make bench` does).",
        END,
    ])  # fmt: skip


def write_doc(path: Path, text: str) -> None:
    write_section(path, text, BEGIN, END)


def _binaries(given: Sequence[str]) -> list[str]:
    if given:
        return list(given)
    out = [find_etcd()]
    if os.access(DEBIAN_ETCD34, os.X_OK) and etcd_version(DEBIAN_ETCD34) != etcd_version(out[0]):
        out.append(DEBIAN_ETCD34)
    return out


def _load(path: Path) -> tuple[list[Cell], dict[str, Any]]:
    data = json.loads(path.read_text())
    meta: dict[str, Any] = {}
    if isinstance(data, dict):
        meta, data = data["meta"], data["cells"]
    return [Cell(**c) for c in data], meta


def merge(runs: Sequence[tuple[list[Cell], dict[str, Any]]]) -> tuple[list[Cell], dict[str, Any]]:
    """One cell per (etcd, TTL): repeats add up; the first run's meta, with the others' plans."""
    cells: dict[tuple[str, int], Cell] = {}
    for run, _ in runs:
        for c in run:
            m = cells.get((c.etcd, c.ttl))
            if m is None:
                cells[(c.etcd, c.ttl)] = c
                continue
            m.failovers += c.failovers
            m.failover_misses += c.failover_misses
            m.etcd_election_seconds += c.etcd_election_seconds
            m.stalls_done += c.stalls_done
            m.errors += c.errors
            for k, n in c.losses.items():
                m.losses[k] = m.losses.get(k, 0) + n
                m.loss_reasons.setdefault(k, []).extend(c.loss_reasons.get(k, []))
                m.exposure[k] = m.exposure.get(k, 0.0) + c.exposure.get(k, 0.0)
            if m.req_per_min_per_replica is None:
                m.req_per_min_per_replica = c.req_per_min_per_replica
    meta = dict(runs[0][1]) if runs else {}
    for _, extra in runs[1:]:
        if extra:
            meta["plan"] = f"{meta.get('plan', '')} Then: {extra.get('plan', '')}"
            meta["command"] = f"{meta.get('command', '')}`, then `{extra.get('command', '')}"
            meta["minutes"] = meta.get("minutes", 0.0) + extra.get("minutes", 0.0)
    order = sorted(cells.values(), key=lambda c: (c.etcd, c.ttl))
    return order, meta


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ttls", default="2,3,5,10,15", help="TTLs in whole seconds")
    p.add_argument("--etcd", action="append", default=[], help="etcd binary (repeatable); "
                   f"default: the test harness's etcd and {DEBIAN_ETCD34} if present")  # fmt: skip
    p.add_argument("--quiet", type=float, default=30.0, help="seconds of the quiet baseline")
    p.add_argument("--member-kills", type=int, default=2, help="etcd leader kills per TTL")
    p.add_argument("--down", type=float, default=3.0, help="seconds a killed member stays down")
    p.add_argument("--stalls", type=int, default=2, help="1 s etcd leader stalls per TTL")
    p.add_argument("--jitter", type=float, default=60.0, help="seconds of latency jitter")
    p.add_argument("--daemon-kills", type=int, default=3, help="kill -9 of the leader per TTL")
    p.add_argument("--quick", action="store_true", help="TTL 2 and 5, one of each, short windows")
    p.add_argument("--doc", default=None, help="replace the 'TTL sweep' section of this file")
    p.add_argument("--svg", default=None, help="write the plot here (e.g. docs/img/ttl-sweep.svg)")
    p.add_argument("--json", default=None, help="also keep the results here (for --render)")
    p.add_argument("--shared", default="", help="what else ran on the machine, for the report")
    p.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        action="append",
        help="only render saved runs (repeatable: the cells of one etcd version and TTL are "
        "merged, e.g. a sweep and a run of extra etcd leader kills)",
    )
    a = p.parse_args()

    if a.render:
        cells, meta = merge([_load(Path(r)) for r in a.render])
    else:
        if a.quick:
            a.ttls, a.quiet, a.member_kills, a.stalls, a.jitter, a.daemon_kills = (
                "2,5", 10.0, 1, 1, 10.0, 1)  # fmt: skip
        params = Params(
            ttls=[int(x) for x in a.ttls.split(",")],
            binaries=_binaries(a.etcd),
            quiet=a.quiet,
            member_kills=a.member_kills,
            down=a.down,
            stalls=a.stalls,
            jitter=a.jitter,
            daemon_kills=a.daemon_kills,
        )
        logdir = Path(f"/tmp/ljbench-ttl-{time.strftime('%Y%m%d-%H%M%S')}")
        logdir.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()

        def log(msg: str) -> None:
            with lock:
                print(msg, flush=True)

        started = datetime.now(UTC)
        t0 = time.monotonic()
        log(f"ttl sweep: logs in {logdir}")
        cells = run_all(params, logdir, log)
        cpus = os.cpu_count()
        meta = {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": (time.monotonic() - t0) / 60,
            "machine": f"{platform.machine()}, {cpus} cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}",
            "shared": a.shared
            or f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}.",
            "plan": (
                f"3-member etcd (heartbeat 100 ms, election timeout 1 s), 3 daemons running "
                f"`@every 1s`; quiet {params.quiet:.0f} s; etcd leader kill ×{params.member_kills} "
                f"(down {params.down:.0f} s, then restarted); etcd leader SIGSTOP "
                f"{params.stall:.0f} s ×{params.stalls}; jitter {params.jitter:.0f} s "
                f"(100 ± 50 ms each way on every daemon↔member path); `kill -9` of the leading "
                f"daemon ×{params.daemon_kills}. At least one TTL of waiting after each fault."
            ),
            "command": shlex.join([".venv/bin/python", "bench/ttl_sweep.py", *sys.argv[1:]]),
        }
        saved = json.dumps({"meta": meta, "cells": [asdict(c) for c in cells]}, indent=1)
        (logdir / "results.json").write_text(saved)
        if a.json:
            Path(a.json).write_text(saved)
    print(render_table(cells))
    for c in cells:
        for e in c.errors:
            print(f"etcd {c.etcd} TTL {c.ttl}: {e}")
    if a.svg:
        Path(a.svg).write_text(render_svg(cells))
    if a.doc:
        write_doc(Path(a.doc), render_doc(cells, meta))
    return 0


if __name__ == "__main__":
    _ = ROOT  # benchlib puts the repository root on sys.path for the harness imports
    raise SystemExit(main())
