"""The history checker judges every job of a jobs file on its own: hand-written histories.

Two jobs of one group, ``ja`` led by p0 (token 10) and ``jb`` led by p1 (token 11), each claim
and run the same slot name and write to a resource of their own. That is clean: a checker that
ignored the job dimension would see one slot claimed twice (S3), a lower token accepted after a
higher one (S1) and a lower leader key live at a claim (S5). Every other test breaks it in
exactly one way, within one job, and asserts the checker names that property.
"""

from __future__ import annotations

from typing import Any

from tests.faults.checker import check, job_of_leader_key, job_slot_of_key

BASE = "/t/grp"


def _key(t: float, job: str, lease: str, rev: int, owner: str) -> dict[str, Any]:
    return {
        "t": t, "kind": "key.put", "key": f"{BASE}/jobs/{job}/leader/{lease}",
        "create_revision": rev, "mod_revision": rev, "version": 1, "lease": int(lease, 16),
        "value": owner,
    }  # fmt: skip


def _claim(t: float, job: str, slot: str, rev: int, token: int) -> dict[str, Any]:
    return {
        "t": t, "kind": "key.put", "key": f"{BASE}/jobs/{job}/slots/{slot}",
        "create_revision": rev, "mod_revision": rev, "version": 1, "lease": 0,
        "value": {"slot": slot, "token": token, "identity": "x", "status": "running"},
    }  # fmt: skip


def _acquired(t: float, pod: str, job: str, token: int) -> dict[str, Any]:
    return {
        "t": t, "kind": "daemon", "pod": pod, "identity": pod, "event": "election.acquired",
        "job": job, "token": token,
    }  # fmt: skip


def _started(t: float, pod: str, job: str, token: int, run: str) -> dict[str, Any]:
    return {
        "t": t, "kind": "daemon", "pod": pod, "identity": pod, "event": "job.started",
        "job": job, "token": token, "run_id": run,
    }  # fmt: skip


def _job(t: float, ev: str, job: str, token: int, pod: str, slot: str, run: str) -> dict:
    return {
        "t": t, "kind": "job", "ev": ev, "job": job, "token": token, "identity": pod,
        "slot": slot, "run": run, "pid": 100 + token,
    }  # fmt: skip


def _store(t: float, seq: int, resource: str, token: int, accepted: bool) -> dict[str, Any]:
    return {
        "t": t, "kind": "store", "seq": seq, "op": "write", "resource": resource,
        "token": token, "accepted": accepted, "high_water": token, "writer": "x", "slot": None,
        "data": None,
    }  # fmt: skip


def clean() -> list[dict[str, Any]]:
    return [
        {"t": 0.0, "kind": "meta", "base": BASE, "leader_prefix": f"{BASE}/leader", "ttl": 3},
        _key(1.0, "ja", "a", 10, "p0"),
        _key(1.1, "jb", "b", 11, "p1"),
        _acquired(1.2, "p0", "ja", 10),
        _acquired(1.3, "p1", "jb", 11),
        _claim(2.0, "jb", "s1", 12, 11),
        _claim(2.1, "ja", "s1", 13, 10),
        _started(2.2, "p1", "jb", 11, "rb"),
        _started(2.3, "p0", "ja", 10, "ra"),
        _job(2.4, "start", "jb", 11, "p1", "s1", "rb"),
        _job(2.5, "start", "ja", 10, "p0", "s1", "ra"),
        _store(2.6, 1, "fault/jb", 11, True),
        _store(2.7, 2, "fault/ja", 10, True),
    ]


def test_keys_name_their_job():
    assert job_of_leader_key(BASE, f"{BASE}/leader", f"{BASE}/jobs/ja/leader/a") == "ja"
    assert job_of_leader_key(BASE, f"{BASE}/leader", f"{BASE}/leader/a") == ""
    assert job_of_leader_key(BASE, f"{BASE}/leader", f"{BASE}/jobs/ja/slots/s1") is None
    assert job_slot_of_key(BASE, f"{BASE}/jobs/ja/slots/s1") == ("ja", "s1")
    assert job_slot_of_key(BASE, f"{BASE}/slots/s1") == ("", "s1")
    assert job_slot_of_key(BASE, f"{BASE}/jobs/ja/leader/a") is None


def test_two_jobs_same_slot_name_each_its_own_resource_is_clean_S1_S3_S5():
    verdict = check(clean())
    assert verdict.ok, verdict.report()
    assert verdict.stats["slots_claimed"] == 2


def test_a_job_slot_claimed_and_run_twice_S3():
    h = [
        *clean(),
        _key(3.0, "ja", "c", 20, "p2"),
        _acquired(3.1, "p2", "ja", 20),
        _claim(3.2, "ja", "s1", 21, 20),
        _started(3.3, "p2", "ja", 20, "rc"),
        _job(3.4, "start", "ja", 20, "p2", "s1", "rc"),
    ]
    msgs = [v.message for v in check(h).by_prop("S3")]
    assert any("slot s1 (job ja) claimed 2 times" in m for m in msgs), msgs
    assert any("slot s1 (job ja) ran 2 times" in m for m in msgs), msgs


def test_a_lower_token_accepted_on_the_same_resource_S1():
    h = [*clean(), _store(2.8, 3, "fault/jb", 10, True)]
    assert check(h).by_prop("S1"), check(h).report()


def test_a_job_claim_while_a_lower_key_of_that_job_lives_S5():
    h = [*clean()[:3], _key(1.05, "ja", "d", 9, "p2"), *clean()[3:]]
    s5 = check(h).by_prop("S5")
    assert any("lower leader keys [9]" in v.message for v in s5), check(h).report()


def test_a_job_acquired_with_another_jobs_token_S2():
    h = [*clean(), _acquired(3.0, "p1", "ja", 11)]
    assert any("job 'jb''s token" in v.message for v in check(h).by_prop("S2")), check(h).report()
