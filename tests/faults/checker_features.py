"""What the checker adds for reloads, health gates and the runs themselves (see
:mod:`tests.faults.features`); called by :func:`tests.faults.checker.check`.

* **overlap** -- no two runs of one job are alive at once, whichever pods and tokens ran them
  (across a reload, a reconfigured service, a hand-over): a run's start (its journal line, when
  it was executing) must come after every earlier run of the job was last seen alive. Two runs
  either of whose pods was wholly frozen in the TTL before are exempt (as for S6: a run started
  just before a freeze executes its first line after the thaw; only fencing protects then).
* **R1** a removed job's runs end: after ``config.reloaded`` removes job J, the daemon logs
  ``job.retired`` for J (unless J came back or the daemon stopped first; a daemon that lives
  on for a minute without retiring it is a violation), no run of J it started is seen alive after
  that line, and it starts no run of J until a reload adds J back.
* **G1** a gated-off job hands over: after ``health.job_failed`` (J) or ``health.failed`` (every
  job), the pod acquires no such job later than :data:`ACQUIRE_SLACK` after the gate closed, and
  a tenure it held then ends (``election.lost``) before the gate opens again, unless the gate
  was open again within :func:`handover_bound`.
* **orphan** -- a job process (or a grandchild) still alive once every daemon has exited.

Times to retire and to hand over are statistics; bounds exceeded are liveness warnings.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A campaign already answered when the gate closed may still report its win this long after.
ACQUIRE_SLACK = 1.0
#: A removed job still not retired by a daemon alive this long after the reload: a violation.
RETIRE_NEVER = 60.0
#: Beyond this, a retirement is a liveness warning (a run ends in ~1 s, a service's stop takes
#: at most its grace; a fault right after the reload may delay it by 2·TTL).
RETIRE_WARN = 10.0


def handover_bound(ttl: float) -> float:
    """A gated-off job's run is stopped at once (grace TTL/10) and its key deleted; a pod frozen
    by the next fault may delay it by 2·TTL."""
    return 3 * ttl


def _dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {
        "n": len(s),
        "min": round(s[0], 3),
        "median": round(statistics.median(s), 3),
        "max": round(s[-1], 3),
    }


def check_features(
    hist: list[dict[str, Any]],
    *,
    ttl: float,
    frozen_pod_before: Callable[[str | None, float], bool],
    violation: Callable[[str, str, float | None], None],
    liveness: Callable[[str, str, float | None], None],
) -> dict[str, Any]:
    """Judge ``hist`` (sorted by time); report through ``violation`` / ``liveness``; return
    statistics."""
    end = hist[-1]["t"] if hist else 0.0
    starts = [r for r in hist if r["kind"] == "job" and r.get("ev") == "start"]
    # The last moment each run's process was seen alive: its exit's lower bound, or the last
    # line it journaled itself (no record of either: unknown).
    seen: dict[tuple[int, int], float] = {}
    for r in hist:
        if r["kind"] == "proc.exit" and r.get("ev") == "start" and r.get("alive_until") is not None:
            key = (int(r["pid"]), int(r["token"]))
            seen[key] = max(seen.get(key, 0.0), float(r["alive_until"]))
        elif r["kind"] == "job" and r.get("ev") != "grandchild" and "pid" in r:
            key = (int(r["pid"]), int(r["token"]))
            seen[key] = max(seen.get(key, 0.0), float(r["t"]))

    def alive_until(s: dict[str, Any]) -> float | None:
        return seen.get((int(s["pid"]), int(s["token"])))

    # -- overlap ----------------------------------------------------------------------------
    overlaps_exempt = 0
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in starts:
        by_job[str(s.get("job") or "")].append(s)
    for job, runs in by_job.items():
        runs.sort(key=lambda r: r["t"])
        live: list[tuple[float, dict[str, Any]]] = []  # (alive until, run) of earlier runs
        for b in runs:
            live = [(u, a) for u, a in live if u > b["t"]]
            for _, a in live:
                # Either pod wholly frozen: its run outlived its key, or began only after the
                # thaw although started before the freeze (S6's exemption; fencing protects).
                if frozen_pod_before(a.get("identity"), b["t"]) or frozen_pod_before(
                    b.get("identity"), b["t"]
                ):
                    overlaps_exempt += 1
                    continue
                violation(
                    "overlap",
                    f"run {b.get('run')} of job {job} on {b.get('identity')} (token "
                    f"{b['token']}) began while run {a.get('run')} on {a.get('identity')} "
                    f"(token {a['token']}) was alive",
                    b["t"],
                )
            u = alive_until(b)
            if u is not None:
                live.append((float(u), b))

    # -- per pod, in log order: reloads, retirements, gates ----------------------------------
    runs_of: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in starts:
        runs_of[str(s.get("identity")), str(s.get("job") or "")].append(s)
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in hist:
        if r["kind"] == "daemon":
            events[str(r["pod"])].append(r)
    judged = _Totals()
    for pod, evs in events.items():
        judge = _PodJudge(pod, handover_bound(ttl), judged, violation, liveness)
        for e in evs:
            judge.event(e, runs_of, alive_until)
        judge.reset(end)
        judge.nothing_after_retiring(evs, runs_of)

    orphans = [r for r in hist if r["kind"] == "orphan"]
    for o in orphans:
        violation(
            "orphan",
            f"{o.get('ev')} pid {o.get('pid')} of token {o.get('token')} alive after every "
            "daemon exited",
            o["t"],
        )
    return {
        "reloads_applied": judged.reloads,
        "retire_s": _dist(judged.retire_times),
        "gates_closed": judged.gates_closed,
        "handover_s": {k: _dist(v) for k, v in sorted(judged.handovers.items())},
        "overlaps_exempt_frozen": overlaps_exempt,
        "orphans": len(orphans),
    }


@dataclass
class _Totals:
    reloads: int = 0
    gates_closed: int = 0
    retire_times: list[float] = field(default_factory=list)
    handovers: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


class _PodJudge:
    """One pod's log, in order: what its reloads removed, its gates closed, the jobs it led."""

    def __init__(
        self,
        pod: str,
        bound: float,
        totals: _Totals,
        violation: Callable[[str, str, float | None], None],
        liveness: Callable[[str, str, float | None], None],
    ) -> None:
        self.pod = pod
        self.bound = bound
        self.totals = totals
        self.violation = violation
        self.liveness = liveness
        self.removed: dict[str, float] = {}  # job -> removed at, not yet retired
        self.retirements: list[tuple[str, float]] = []
        self.leading: set[str] = set()
        self.down: dict[str, float] = {}  # job ("*": the replica) -> gate closed at
        self.held_when_closed: dict[str, set[str]] = {}
        self.last_t = 0.0  # its last line: a daemon killed with -9 says nothing after it

    def reset(self, t: float) -> None:
        """The daemon started or stopped (or the history ends): it forgets everything."""
        for job, since in self.removed.items():
            if t - since > RETIRE_NEVER:
                self.violation(
                    "R1", f"{self.pod} never retired job {job} removed at {since:.1f}", t
                )
        for key in list(self.down):  # a gate still closed: judged as if it opened now
            self._gate_open(key, t)
        self.removed.clear()
        self.leading.clear()
        self.down.clear()
        self.held_when_closed.clear()

    def event(
        self,
        e: dict[str, Any],
        runs_of: dict[tuple[str, str], list[dict[str, Any]]],
        alive_until: Callable[[dict[str, Any]], float | None],
    ) -> None:
        ev, t, job = e["event"], e["t"], str(e.get("job") or "")
        last, self.last_t = self.last_t, t
        if ev == "daemon.started":
            self.reset(last)  # the daemon before it ended after its last line
        elif ev == "daemon.stopped":
            self.reset(t)
        elif ev == "config.reloaded":
            self.totals.reloads += 1
            for j in e.get("removed") or []:
                self.removed[str(j)] = t
            for j in e.get("added") or []:
                self.removed.pop(str(j), None)
        elif ev == "job.retired":
            self._retired(job, t, runs_of, alive_until)
        elif ev == "election.acquired":
            for key, since in self.down.items():
                if key in ("*", job) and t > since + ACQUIRE_SLACK:
                    self.violation(
                        "G1", f"{self.pod} acquired {job} {t - since:.1f}s after its gate closed", t
                    )
            self.leading.add(job)
        elif ev == "election.lost" and job in self.leading:
            self.leading.discard(job)
            for key, held in self.held_when_closed.items():
                if job in held:
                    held.discard(job)
                    kind = "replica" if key == "*" else "job"
                    self.totals.handovers[kind].append(round(t - self.down[key], 3))
        elif ev in ("health.job_failed", "health.failed"):
            key = job if ev == "health.job_failed" else "*"
            if key not in self.down:
                self.totals.gates_closed += 1
                self.down[key] = t
                held = {job} if key != "*" else self.leading
                self.held_when_closed[key] = held & self.leading
        elif ev in ("health.job_recovered", "health.recovered"):
            key = job if ev == "health.job_recovered" else "*"
            if key in self.down:
                self._gate_open(key, t)

    def _retired(
        self,
        job: str,
        t: float,
        runs_of: dict[tuple[str, str], list[dict[str, Any]]],
        alive_until: Callable[[dict[str, Any]], float | None],
    ) -> None:
        if job in self.removed:
            dt = t - self.removed.pop(job)
            self.totals.retire_times.append(dt)
            if dt > RETIRE_WARN:
                self.liveness("R1", f"{self.pod} retired job {job} {dt:.1f}s after its removal", t)
        self.retirements.append((job, t))
        for s in runs_of.get((self.pod, job), []):
            u = alive_until(s)
            if s["t"] < t and u is not None and float(u) > t:
                self.violation(
                    "R1", f"run {s.get('run')} of job {job} on {self.pod} outlived its retiring", t
                )

    def _gate_open(self, key: str, t: float) -> None:
        since = self.down.pop(key)
        still = self.held_when_closed.pop(key) & self.leading
        if still and t - since > self.bound:
            gate = "replica" if key == "*" else "job"
            self.violation(
                "G1",
                f"{self.pod} kept {sorted(still)} {t - since:.1f}s with its {gate} gate closed",
                t,
            )

    def nothing_after_retiring(
        self, evs: list[dict[str, Any]], runs_of: dict[tuple[str, str], list[dict[str, Any]]]
    ) -> None:
        """It starts no run of a job it retired until a reload adds the job back (or the daemon
        starts again)."""
        for job, since in self.retirements:
            for s in runs_of.get((self.pod, job), []):
                if s["t"] > since and not any(
                    since < e["t"] < s["t"]
                    and (
                        e["event"] == "daemon.started"
                        or (e["event"] == "config.reloaded" and job in (e.get("added") or []))
                    )
                    for e in evs
                ):
                    self.violation("R1", f"{self.pod} ran job {job} after retiring it", s["t"])
