"""The history checker: reads what the recorder saw and judges it against docs/SAFETY.md.

A history is a list of records ``{"t": monotonic seconds, "kind": ..., ...}`` (see
:mod:`tests.faults.recorder`):

* ``meta`` -- ``base`` (the election's key space), ``leader_prefix``, ``ttl``;
* ``key.put`` / ``key.delete`` -- etcd watch events (``create_revision``, ``mod_revision``,
  ``version``, ``value``; ``revision``, and for leader keys ``alive_jobs`` at deletion and the
  bracket ``present_at`` .. ``gone_by`` of the deletion from the recorder's own reads);
* ``proc.exit`` -- a job process's exit: ``alive_until`` (seen alive then) and ``t`` (gone by);
* ``daemon`` -- a daemon log line (``pod``, ``event``, its fields);
* ``store`` -- a fenced-store decision (``seq``, ``token``, ``accepted``, ``high_water``);
* ``job`` -- a job journal line (``ev``: start, attempt, answer, end, term, grandchild);
* ``fault`` -- ``phase`` start/end of a ``fault`` on a ``target``.

Under a jobs file (``leaderjob run --jobs``) every job is judged on its own: its leader keys
are ``<base>/jobs/<job>/leader/<lease>`` and its slots ``<base>/jobs/<job>/slots/<slot>``, its
runs journal ``job`` and write to a resource of their own, and each property below holds per
job (one leader per job at a time, tokens per job increasing, no (job, slot) twice). Tokens are
etcd revisions, unique across jobs, so "which key has this token" needs no job.

Safety properties (any violation fails a run):

* **S1** in the store's decision order, no accepted write carries a token lower than one
  accepted before it on the same resource.
* **S2** every token a job ran with, a store accepted, or a daemon acquired is the
  ``create_revision`` of a real leader key created for that daemon; no token is acquired twice;
  each daemon's successive tenures carry strictly increasing tokens (L5); and in etcd's revision
  order, slot claims never go back to a lower token (tenures succeed each other in token order).
  Revisions and per-daemon log order are exact; cross-daemon wall or stamp order is not used
  (a daemon frozen just after winning logs its acquisition late).
* **S3** no slot key is created twice, no slot starts two jobs, and every job runs a slot its
  own token claimed as ``running``.
* **S5** every job started after its daemon logged ``election.acquired`` for its token (its
  own log order), and its slot claim was committed at a revision where its key was live with no
  lower leader key live (exact: etcd revisions).
* **S6** no job (or a process it forked) was alive when etcd deleted its leader key, and no job
  began executing or attempted a write after that -- unless the whole pod was frozen (fault
  ``pod_freeze``), where only S1 protects. "After the deletion" means after ``gone_by`` (the
  watch's own stamp when no read brackets it): proven, however late the watch delivered it.
  (A job the daemon started just before a whole-pod freeze may run its first instruction only
  after the thaw: that is this exemption, not S5.)

Statistics: tenures, jobs, writes accepted and rejected (stale), and for every fault the time
from its start to the first acquisition with a larger token (L1 for ``kill9``, L2 for
``sigterm``). Liveness bounds that are missed are *warnings*, not violations.

    python -m tests.faults.checker HISTORY.jsonl      # prints the verdict; exit 1 on violation
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.checker_features import check_features

#: Faults whose takeover time is a liveness bound: name -> bound beyond TTL (seconds).
L1_EXTRA = 1.5  # crash failover within TTL + 1.5 s
L2_BOUND = 1.0  # graceful handover within 1 s


@dataclass
class Violation:
    prop: str
    message: str
    t: float | None = None
    fault: str | None = None  # for liveness misses: the fault they follow

    def __str__(self) -> str:
        at = f" at t={self.t:.3f}" if self.t is not None else ""
        return f"{self.prop}: {self.message}{at}"


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    #: Liveness bounds missed (L1 after ``kill9``, L2 after ``sigterm``) and anomalies.
    liveness: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_prop(self, prop: str) -> list[Violation]:
        return [v for v in self.violations if v.prop == prop]

    def liveness_of(self, *faults: str) -> list[Violation]:
        """Liveness misses after any of ``faults``, and every anomaly (a daemon that did not
        stop on SIGTERM breaks L2 whatever the scenario was about)."""
        return [m for m in self.liveness if m.prop == "anomaly" or m.fault in faults]

    def report(self) -> str:
        lines = [f"verdict: {'OK' if self.ok else 'VIOLATED'}"]
        counts = {
            p: len(self.by_prop(p))
            for p in ("S1", "S2", "S3", "S5", "S6", "overlap", "R1", "G1", "orphan")
        }
        lines.append("  " + "  ".join(f"{p}={n}" for p, n in counts.items()))
        for v in self.violations[:50]:
            lines.append(f"  VIOLATION {v}")
        for w in self.warnings[:50]:
            lines.append(f"  warning {w}")
        s = self.stats
        for key in (
            "span_seconds",
            "tenures",
            "leader_keys",
            "jobs_started",
            "slots_claimed",
            "writes_accepted",
            "writes_rejected_stale",
            "s6_exempt_frozen",
            "faults",
            "anomalies",
            "features",
        ):
            if key in s:
                lines.append(f"  {key}: {s[key]}")
        for name, f in sorted(s.get("failover", {}).items()):
            lines.append(f"  failover {name}: {_fmt_dist(f)}")
        return "\n".join(lines)


def _fmt_dist(f: dict[str, Any]) -> str:
    out = f"n={f['n']} taken_over={f['taken_over']} kept={f['kept']}"
    if f.get("not_on_leader"):
        out += f" (not on the leader: {f['not_on_leader']})"
    if f["taken_over"]:
        out += (
            f" takeover_s min={f['min']:.2f} median={f['median']:.2f} "
            f"p95={f['p95']:.2f} max={f['max']:.2f}"
        )
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def job_of_leader_key(base: str, leader_prefix: str, key: str) -> str | None:
    """The job whose leader key ``key`` is ("" for the single election), or None."""
    if key.startswith(leader_prefix.rstrip("/") + "/"):
        return ""
    base = base.rstrip("/") + "/"
    parts = key[len(base) :].split("/") if key.startswith(base) else []
    if len(parts) == 4 and parts[0] == "jobs" and parts[2] == "leader":
        return parts[1]
    return None


def job_slot_of_key(base: str, key: str) -> tuple[str, str] | None:
    """(job, slot) of a slot claim key ("" for the single election's job), or None."""
    base = base.rstrip("/") + "/"
    if key.startswith(base + "slots/"):
        return "", key[len(base) + len("slots/") :]
    parts = key[len(base) :].split("/", 3) if key.startswith(base) else []
    if len(parts) == 4 and parts[0] == "jobs" and parts[2] == "slots":
        return parts[1], parts[3]
    return None


def _in(job: str) -> str:
    return f" (job {job})" if job else ""


@dataclass
class _Key:
    key: str
    token: int  # create_revision
    lease: int
    owner: str
    t_put: float
    job: str = ""
    deleted_rev: int | None = None
    t_del: float | None = None  # when the watch delivered the deletion
    t_gone: float | None = None  # proven deleted by then: min(t_del, the recorder's gone_by)
    alive_at_delete: list[dict[str, Any]] = field(default_factory=list)

    def live_at(self, revision: int) -> bool:
        return self.token <= revision and (self.deleted_rev is None or self.deleted_rev > revision)


def check(history: list[dict[str, Any]], *, slack: float = 1.0) -> Verdict:
    v = Verdict()
    hist = sorted(history, key=lambda r: r["t"])
    meta = next((r for r in hist if r["kind"] == "meta"), None)
    if meta is None:
        v.violations.append(Violation("S2", "history has no meta record (which keys are which?)"))
        return v
    leader_prefix = str(meta["leader_prefix"]).rstrip("/") + "/"
    base = str(meta["base"])
    ttl = float(meta.get("ttl", 3))

    # -- etcd: leader keys and slot claims ------------------------------------------------------
    keys: dict[int, _Key] = {}
    latest_by_name: dict[str, _Key] = {}
    claims: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    #: Revisions at which a slot's claim key was deleted: a claim given back by a leader that
    #: left on purpose before the slot started (or pruned, long after it ran).
    claim_deletes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in hist:
        if r["kind"] not in ("key.put", "key.delete"):
            continue
        key_job = job_of_leader_key(base, leader_prefix, r["key"])
        if r["kind"] == "key.put" and key_job is not None:
            if r.get("version", 1) == 1:
                k = _Key(
                    r["key"],
                    int(r["create_revision"]),
                    int(r.get("lease", 0)),
                    str(r.get("value")),
                    r["t"],
                    key_job,
                )
                keys[k.token] = k
                latest_by_name[k.key] = k
        elif r["kind"] == "key.delete" and key_job is not None:
            k2 = latest_by_name.get(r["key"])
            if k2 is not None and k2.deleted_rev is None:
                k2.deleted_rev = int(r["revision"])
                k2.t_del = r["t"]
                gone_by = r.get("gone_by")
                k2.t_gone = r["t"] if gone_by is None else min(r["t"], float(gone_by))
                k2.alive_at_delete = list(r.get("alive_jobs") or [])
        elif (
            r["kind"] == "key.put"
            and (job_slot := job_slot_of_key(base, r["key"])) is not None
            and r.get("version", 1) == 1
        ):
            doc = r.get("value") if isinstance(r.get("value"), dict) else {}
            claims[job_slot].append({"revision": int(r["create_revision"]), "t": r["t"], **doc})
        elif r["kind"] == "key.delete" and (job_slot := job_slot_of_key(base, r["key"])):
            claim_deletes[job_slot].append(int(r["revision"]))

    # -- faults: whole-pod freezes exempt S6 ----------------------------------------------------
    freezes: list[tuple[str, float, float]] = []
    open_faults: dict[str, dict[str, Any]] = {}
    fault_starts: list[dict[str, Any]] = []
    for r in hist:
        if r["kind"] != "fault":
            continue
        if r["phase"] == "start":
            open_faults[r["id"]] = r
            fault_starts.append(r)
        else:
            start = open_faults.pop(r["id"], None)
            if start is not None and start["fault"] == "pod_freeze":
                freezes.append((str(start["target"]), start["t"], r["t"]))
    end_of_run = hist[-1]["t"] if hist else 0.0
    for start in open_faults.values():
        if start["fault"] == "pod_freeze":
            freezes.append((str(start["target"]), start["t"], end_of_run))

    def frozen_pod_before(pod: str | None, t_del: float) -> bool:
        """The whole pod was frozen at some point in the TTL before the key went away."""
        return any(
            target == pod and s <= t_del and e >= t_del - ttl - slack for target, s, e in freezes
        )

    # -- S1: the store's decisions in order -----------------------------------------------------
    decisions = sorted((r for r in hist if r["kind"] == "store"), key=lambda r: r["seq"])
    highs: dict[str, int] = defaultdict(int)  # per resource: a job of a jobs file has its own
    accepted_n = rejected_n = 0
    for d in decisions:
        tok = int(d["token"])
        res = str(d.get("resource") or "")
        if d["accepted"]:
            accepted_n += 1
            if tok < highs[res]:
                v.violations.append(
                    Violation(
                        "S1",
                        f"store accepted token {tok} on {res or 'the resource'} "
                        f"(writer {d.get('writer')}, seq {d['seq']}) after accepting {highs[res]}",
                        d["t"],
                    )
                )
            highs[res] = max(highs[res], tok)
        else:
            rejected_n += 1
            if tok >= highs[res]:
                v.warnings.append(f"store rejected token {tok} though the mark was {highs[res]}")

    # -- S2: tokens are real leader keys, acquired in increasing order ---------------------------
    for d in decisions:
        if d["accepted"] and int(d["token"]) not in keys:
            v.violations.append(
                Violation("S2", f"store accepted token {d['token']}: no leader key has it", d["t"])
            )
    acquisitions = [r for r in hist if r["kind"] == "daemon" and r["event"] == "election.acquired"]
    seen_tokens: dict[int, str] = {}
    last_of_pod: dict[tuple[str, str], int] = {}  # (pod, job): tokens increase per job
    for a in acquisitions:
        tok = int(a.get("token", 0))
        pod = str(a.get("pod"))
        job = str(a.get("job") or "")
        k = keys.get(tok)
        if k is None:
            v.violations.append(
                Violation("S2", f"{pod} acquired with token {tok}: no leader key has it", a["t"])
            )
        elif k.owner != str(a.get("identity", pod)):
            v.violations.append(
                Violation("S2", f"{pod} acquired token {tok} of {k.owner}'s key", a["t"])
            )
        elif k.job != job:
            v.violations.append(
                Violation("S2", f"{pod} acquired job {job!r} with job {k.job!r}'s token", a["t"])
            )
        if tok in seen_tokens:
            v.violations.append(
                Violation("S2", f"token {tok} acquired twice ({seen_tokens[tok]}, {pod})", a["t"])
            )
        seen_tokens[tok] = pod
        # L5/S2: a daemon rejoins with a larger token, never a stale one (its own log order).
        if tok <= last_of_pod.get((pod, job), 0):
            v.violations.append(
                Violation(
                    "S2",
                    f"{pod} acquired token {tok} after its token {last_of_pod[pod, job]}{_in(job)}",
                    a["t"],
                )
            )
        last_of_pod[pod, job] = max(last_of_pod.get((pod, job), 0), tok)
    # Across tenures, in etcd's own order: no slot is claimed with a token lower than one that
    # claimed a slot at an earlier revision (a deposed leader's claim must fail).
    tops: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))  # per job
    ordered = sorted(
        ((job, c) for (job, _), cs in claims.items() for c in cs), key=lambda jc: jc[1]["revision"]
    )
    for job, c in ordered:
        tok = int(c.get("token", 0))
        top, top_rev = tops[job]
        if tok < top:
            v.violations.append(
                Violation(
                    "S2",
                    f"slot {c.get('slot')}{_in(job)} claimed at revision {c['revision']} with "
                    f"token {tok} after token {top} claimed at revision {top_rev}",
                    c["t"],
                )
            )
        elif tok > top:
            tops[job] = (tok, c["revision"])

    # -- jobs ------------------------------------------------------------------------------------
    jobs = [r for r in hist if r["kind"] == "job"]
    starts = [r for r in jobs if r.get("ev") == "start"]
    daemon_by_pod: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in hist:
        if r["kind"] == "daemon":
            daemon_by_pod[str(r["pod"])].append(r)

    # Per pod, in log order: the index of each token's acquisition and of each job's start.
    order: dict[str, tuple[dict[int, int], dict[str, int]]] = {}
    for pod_name, evs in daemon_by_pod.items():
        acq_i: dict[int, int] = {}
        start_i: dict[str, int] = {}
        for i, e in enumerate(evs):
            if e["event"] == "election.acquired":
                acq_i.setdefault(int(e.get("token", 0)), i)
            elif e["event"] == "job.started":
                start_i[str(e.get("run_id"))] = i
        order[pod_name] = (acq_i, start_i)
    runs_by_slot: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in starts:
        tok = int(s["token"])
        pod = s.get("identity")
        job = str(s.get("job") or "")
        service = s.get("slot") == "service"  # a service's run claims no slot
        if not service:
            runs_by_slot[job, str(s.get("slot"))].append(s)
        k = keys.get(tok)
        if k is None:
            v.violations.append(
                Violation(
                    "S2", f"job {s.get('run')} of {pod} ran with token {tok}: no such key", s["t"]
                )
            )
        elif k.owner != pod:
            v.violations.append(
                Violation("S2", f"job of {pod} ran with token {tok} of {k.owner}'s key", s["t"])
            )
        elif k.job != job:
            v.violations.append(
                Violation("S2", f"job {job!r} of {pod} ran with job {k.job!r}'s token", s["t"])
            )
        # S5: the daemon acquired this token before it logged the job's start (log order).
        acq, started = order.get(str(pod), ({}, {}))
        run_at = started.get(str(s.get("run")))
        if run_at is not None and not (tok in acq and acq[tok] < run_at):
            v.violations.append(
                Violation(
                    "S5",
                    f"{pod} started job {s.get('run')} with token {tok} before acquiring it",
                    s["t"],
                )
            )
        if service:
            continue
        # S3/S5: its slot was claimed as running by this token, at a revision where it led.
        slot = str(s.get("slot"))
        mine = [c for c in claims.get((job, slot), []) if c.get("token") == tok]
        if not mine:
            v.violations.append(
                Violation(
                    "S3",
                    f"job {s.get('run')} ran slot {slot}{_in(job)} without a claim by token {tok}",
                    s["t"],
                )
            )
            continue
        c = mine[0]
        if c.get("status") not in ("running", "replacing"):
            v.violations.append(
                Violation(
                    "S3", f"job {s.get('run')} ran slot {slot} claimed as {c.get('status')}", s["t"]
                )
            )
        if k is not None:
            if not k.live_at(c["revision"]):
                v.violations.append(
                    Violation(
                        "S5",
                        f"slot {slot} claimed at revision {c['revision']} while the "
                        f"key of token {tok} was not live",
                        c["t"],
                    )
                )
            lower = [
                o.token
                for o in keys.values()
                if o.job == k.job and o.token < tok and o.live_at(c["revision"])
            ]
            if lower:
                v.violations.append(
                    Violation(
                        "S5",
                        f"slot {slot} claimed by token {tok} at revision "
                        f"{c['revision']} while lower leader keys {lower} were live",
                        c["t"],
                    )
                )

    # -- S3: one claim and one run per slot --------------------------------------------------------
    for (job, slot), all_claims in claims.items():
        # A claim given back (deleted, fenced, by a leader leaving before the slot started)
        # lets the successor claim the slot again; it is still run at most once (below). Only
        # a claim whose key was deleted before the next one, by a token that never ran the
        # slot, was given back.
        ran_by = {int(r["token"]) for r in runs_by_slot.get((job, slot), [])}
        cs = [
            c
            for c, after in zip(all_claims, [*all_claims[1:], None], strict=True)
            if after is None
            or c.get("token") in ran_by
            or not any(
                c["revision"] < d < after["revision"] for d in claim_deletes.get((job, slot), [])
            )
        ]
        if len(cs) > 1:
            v.violations.append(
                Violation(
                    "S3",
                    f"slot {slot}{_in(job)} claimed {len(cs)} times "
                    f"(tokens {[c.get('token') for c in cs]})",
                    cs[1]["t"],
                )
            )
    for (job, slot), rs in runs_by_slot.items():
        if len(rs) > 1:
            v.violations.append(
                Violation(
                    "S3",
                    f"slot {slot}{_in(job)} ran {len(rs)} times "
                    f"({[(r.get('identity'), r.get('token')) for r in rs]})",
                    rs[1]["t"],
                )
            )

    # -- S6: the job is gone before its key is -------------------------------------------------
    exempt = 0
    pod_of_token = {int(s["token"]): s.get("identity") for s in starts}
    for k in keys.values():
        if k.t_del is None:
            continue
        pod = pod_of_token.get(k.token, k.owner)
        for proc in k.alive_at_delete:
            if frozen_pod_before(pod, k.t_del):
                exempt += 1
                continue
            v.violations.append(
                Violation(
                    "S6",
                    f"{proc.get('ev')} pid {proc.get('pid')} "
                    f"(state {proc.get('state')}) of token {k.token} on {pod} alive "
                    "when etcd deleted its key",
                    k.t_del,
                )
            )
    # Processes whose exit was seen after the deletion was proven (however late the watch was).
    exits = [r for r in hist if r["kind"] == "proc.exit" and r.get("alive_until") is not None]
    for r in exits:
        k = keys.get(int(r["token"]))
        if k is None or k.t_gone is None or float(r["alive_until"]) <= k.t_gone:
            continue
        if any(p.get("pid") == r["pid"] for p in k.alive_at_delete):
            continue  # already reported at the deletion
        pod = pod_of_token.get(k.token, k.owner)
        if frozen_pod_before(pod, k.t_del or k.t_gone):
            exempt += 1
            continue
        v.violations.append(
            Violation(
                "S6",
                f"{r.get('ev')} pid {r['pid']} of token {k.token} on {pod} was alive "
                f"{float(r['alive_until']) - k.t_gone:.3f}s after etcd deleted its key",
                float(r["alive_until"]),
            )
        )
    for r in jobs:
        if r.get("ev") not in ("attempt", "start"):
            continue
        k = keys.get(int(r["token"]))
        if k is None or k.t_gone is None or r["t"] <= k.t_gone:
            continue
        if frozen_pod_before(r.get("identity"), k.t_del):
            exempt += 1
            continue
        what = f"attempted write {r.get('seq')}" if r["ev"] == "attempt" else "began executing"
        v.violations.append(
            Violation(
                "S6",
                f"job {r.get('run')} of {r.get('identity')} (token {k.token}) {what} "
                f"{r['t'] - k.t_gone:.3f}s after its key was deleted",
                r["t"],
            )
        )

    feature_stats = check_features(
        hist,
        ttl=ttl,
        frozen_pod_before=frozen_pod_before,
        violation=lambda prop, msg, t: v.violations.append(Violation(prop, msg, t)),
        liveness=lambda prop, msg, t: v.liveness.append(Violation(prop, msg, t)),
    )

    anomalies = [r for r in hist if r["kind"] == "anomaly"]
    for a in anomalies:
        v.liveness.append(
            Violation("anomaly", f"on {a.get('pod')}: {a.get('what')}", a["t"], a.get("fault"))
        )

    # -- statistics and liveness -----------------------------------------------------------------
    failover: dict[str, dict[str, Any]] = {}
    # Per job: under a jobs file a fault counts once for every job ("fault x job"), and a job
    # the target did not lead counts as "not on the leader" (``leading_jobs`` of the fault).
    acquisitions_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in acquisitions:
        acquisitions_of[str(a.get("job") or "")].append(a)
    for i, f, job in (
        (i, f, job) for i, f in enumerate(fault_starts) for job in sorted(acquisitions_of) or [""]
    ):
        acquired = acquisitions_of[job]
        before = [a for a in acquired if a["t"] <= f["t"]]
        held = max((int(a["token"]) for a in before), default=0)
        window_end = fault_starts[i + 1]["t"] if i + 1 < len(fault_starts) else end_of_run
        later = [a for a in acquired if f["t"] < a["t"] <= window_end and int(a["token"]) > held]
        entry = failover.setdefault(
            f["fault"], {"n": 0, "not_on_leader": 0, "taken_over": 0, "kept": 0, "times": []}
        )
        entry["n"] += 1
        hit = job in f["leading_jobs"] if "leading_jobs" in f else f.get("on_leader", True)
        if not hit:
            entry["not_on_leader"] += 1
        elif later:
            dt = later[0]["t"] - f["t"]
            entry["taken_over"] += 1
            entry["times"].append(round(dt, 3))
            if f["fault"] == "kill9" and dt > ttl + L1_EXTRA + slack:
                v.liveness.append(
                    Violation(
                        "L1",
                        f"takeover{_in(job)} {dt:.2f}s after kill -9 (bound TTL+1.5 s)",
                        f["t"],
                        "kill9",
                    )
                )
            if f["fault"] == "sigterm" and dt > L2_BOUND + slack:
                v.liveness.append(
                    Violation(
                        "L2",
                        f"handover{_in(job)} {dt:.2f}s after SIGTERM (bound 1 s)",
                        f["t"],
                        "sigterm",
                    )
                )
        elif f["fault"] in ("kill9", "sigterm"):
            # The leader was hit and nobody with a larger token led before the next fault.
            entry["kept"] += 1
            prop = "L1" if f["fault"] == "kill9" else "L2"
            v.liveness.append(
                Violation(prop, f"no successor{_in(job)} after the fault", f["t"], f["fault"])
            )
        else:
            entry["kept"] += 1
    v.warnings.extend(f"{m.prop}: {m.message} (t={m.t:.1f})" for m in v.liveness)
    for entry in failover.values():
        t = entry["times"]
        if t:
            entry.update(min=min(t), median=statistics.median(t), p95=_pct(t, 0.95), max=max(t))
    v.stats = {
        "span_seconds": round(end_of_run - hist[0]["t"], 1) if hist else 0,
        "tenures": len(acquisitions),
        "leader_keys": len(keys),
        "jobs_started": len(starts),
        "slots_claimed": sum(len(c) for c in claims.values()),
        "writes_accepted": accepted_n,
        "writes_rejected_stale": rejected_n,
        "s6_exempt_frozen": exempt,
        "faults": len(fault_starts),
        "anomalies": len(anomalies),
        "features": feature_stats,
        "failover": failover,
    }
    return v


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.faults.checker HISTORY.jsonl", file=sys.stderr)
        return 2
    history = [json.loads(line) for line in Path(args[0]).read_text().splitlines() if line]
    verdict = check(history)
    print(verdict.report())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
