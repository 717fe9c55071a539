"""The history checker judges reloads, health gates and the runs themselves (overlap, R1, G1,
orphans; tests/faults/checker_features.py): hand-written histories.

The clean history: p0 leads job ``ja`` (token 10) and runs slot s1 (r1, ended 2.6); a reload
removes ``ja`` at 3.0 and p0 retires it at 3.2; p1 leads ``jb`` (token 11), its gate closes at
4.0 and it loses ``jb`` at 4.3, and the gate opens at 6.0; a service ``svc`` runs on p1 without
a slot claim. Every other test breaks it in exactly one way and asserts the checker names that
property.
"""

from __future__ import annotations

from typing import Any

from tests.faults.checker import check
from tests.unit.test_checker_jobs import BASE, _claim, _key


def _daemon(t: float, pod: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "kind": "daemon", "pod": pod, "identity": pod, "event": event, **fields}


def _job(t: float, ev: str, job: str, token: int, pod: str, slot: str, run: str) -> dict:
    return {
        "t": t, "kind": "job", "ev": ev, "job": job, "token": token, "identity": pod,
        "slot": slot, "run": run, "pid": 100 + token + len(run),
    }  # fmt: skip


def clean() -> list[dict[str, Any]]:
    return [
        {"t": 0.0, "kind": "meta", "base": BASE, "leader_prefix": f"{BASE}/leader", "ttl": 3},
        _key(1.0, "ja", "a", 10, "p0"),
        _key(1.1, "jb", "b", 11, "p1"),
        _key(1.15, "svc", "c", 12, "p1"),
        _daemon(1.2, "p0", "election.acquired", job="ja", token=10),
        _daemon(1.3, "p1", "election.acquired", job="jb", token=11),
        _daemon(1.35, "p1", "election.acquired", job="svc", token=12),
        _claim(2.0, "ja", "s1", 13, 10),
        _daemon(2.1, "p0", "job.started", job="ja", token=10, run_id="r1"),
        _job(2.2, "start", "ja", 10, "p0", "s1", "r1"),
        _job(2.6, "end", "ja", 10, "p0", "s1", "r1"),
        _daemon(2.3, "p1", "job.started", job="svc", token=12, run_id="sv"),
        _job(2.4, "start", "svc", 12, "p1", "service", "sv"),
        _daemon(3.0, "p0", "config.reloaded", added=[], removed=["ja"], changed=[]),
        _daemon(3.1, "p0", "election.lost", job="ja", reason="resigned"),
        _daemon(3.2, "p0", "job.retired", job="ja"),
        _daemon(4.0, "p1", "health.job_failed", job="jb"),
        _daemon(4.3, "p1", "election.lost", job="jb", reason="resigned"),
        _daemon(6.0, "p1", "health.job_recovered", job="jb"),
    ]


def _props(h: list[dict[str, Any]]) -> dict[str, list[str]]:
    v = check(h)
    out: dict[str, list[str]] = {}
    for x in v.violations:
        out.setdefault(x.prop, []).append(x.message)
    return out


def test_clean_history_with_a_reload_a_gate_and_a_service_passes():
    v = check(clean())
    assert v.ok, v.report()
    f = v.stats["features"]
    assert f["reloads_applied"] == 1 and f["retire_s"]["n"] == 1
    assert f["handover_s"]["job"]["n"] == 1 and f["gates_closed"] == 1


def test_two_runs_of_a_job_alive_at_once_overlap():
    # A second run of ja (another replica, a larger token) begins while r1 still writes.
    h = [
        *clean(),
        _key(2.3, "ja", "d", 20, "p2"),
        _daemon(2.35, "p2", "election.acquired", job="ja", token=20),
        _claim(2.4, "ja", "s2", 21, 20),
        _job(2.45, "start", "ja", 20, "p2", "s2", "r2"),
    ]
    assert "overlap" in _props(h), check(h).report()


def test_a_run_alive_after_its_job_retired_R1():
    h = [*clean(), _job(3.5, "answer", "ja", 10, "p0", "s1", "r1")]
    assert any("outlived its retiring" in m for m in _props(h).get("R1", [])), check(h).report()


def test_a_run_of_a_retired_job_R1():
    h = [
        *clean(),
        _key(3.3, "ja", "e", 22, "p0"),
        _daemon(3.4, "p0", "election.acquired", job="ja", token=22),
        _claim(3.5, "ja", "s3", 23, 22),
        _job(3.6, "start", "ja", 22, "p0", "s3", "r3"),
    ]
    assert any("after retiring it" in m for m in _props(h).get("R1", [])), check(h).report()


def test_a_removed_job_never_retired_R1():
    h = [x for x in clean() if x.get("event") != "job.retired"]
    h.append(_daemon(70.0, "p0", "daemon.stopped"))
    assert any("never retired" in m for m in _props(h).get("R1", [])), check(h).report()


def test_a_job_acquired_while_its_gate_is_closed_G1():
    h = [
        *clean(),
        _key(5.0, "jb", "f", 24, "p1"),
        _daemon(5.5, "p1", "election.acquired", job="jb", token=24),
    ]
    assert any("after its gate closed" in m for m in _props(h).get("G1", [])), check(h).report()


def test_a_gated_off_job_kept_G1():
    h = [x for x in clean() if not (x.get("event") == "election.lost" and x.get("job") == "jb")]
    h = [x for x in h if x.get("event") != "health.job_recovered"]
    h.append(_daemon(14.0, "p1", "health.job_recovered", job="jb"))  # 10 s later, still led
    assert any("job gate closed" in m for m in _props(h).get("G1", [])), check(h).report()


def test_a_gate_never_opened_while_the_job_is_kept_G1():
    h = [x for x in clean() if not (x.get("event") == "election.lost" and x.get("job") == "jb")]
    h = [x for x in h if x.get("event") != "health.job_recovered"]
    h.append(_daemon(20.0, "p1", "daemon.stopped"))
    assert any("job gate closed" in m for m in _props(h).get("G1", [])), check(h).report()


def test_the_replica_gate_hands_over_every_job_G1():
    h = [
        *clean(),
        _daemon(7.0, "p1", "health.failed"),
        _daemon(17.0, "p1", "health.recovered"),  # svc still led after 10 s
    ]
    assert any("replica gate" in m for m in _props(h).get("G1", [])), check(h).report()


def test_a_process_left_after_the_daemons_orphan():
    h = [*clean(), {"t": 9.0, "kind": "orphan", "pid": 7, "token": 10, "ev": "grandchild"}]
    assert "orphan" in _props(h), check(h).report()


def test_a_run_started_before_a_whole_pod_freeze_and_executing_after_it_is_exempt() -> None:
    """As for S6: p2's run, started just before its pod was frozen whole, executes its first
    line after the thaw, while its successor's run goes on; only fencing protects then."""
    h = [
        *clean(),
        {"t": 2.25, "kind": "fault", "phase": "start", "fault": "pod_freeze", "target": "p2",
         "id": "f"},
        {"t": 2.5, "kind": "fault", "phase": "end", "fault": "pod_freeze", "target": "p2",
         "id": "f"},
        _key(2.0, "ja", "d", 5, "p2"),
        _claim(2.05, "ja", "s0", 6, 5),
        _job(2.45, "start", "ja", 5, "p2", "s0", "r0"),
    ]  # fmt: skip
    v = check(h)
    assert not v.by_prop("overlap"), v.report()
    assert v.stats["features"]["overlaps_exempt_frozen"] == 1
