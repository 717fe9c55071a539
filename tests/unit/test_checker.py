"""The history checker catches each kind of violation: hand-written histories, one fault each.

A clean history (two tenures, each with a claimed slot, a job and accepted writes) passes; every
other test breaks it in exactly one way and asserts the checker names that property.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.checker import check

BASE = "/t/job"
LEADER = f"{BASE}/leader"


def _key(t: float, lease: str, rev: int, owner: str) -> dict[str, Any]:
    return {
        "t": t, "kind": "key.put", "key": f"{LEADER}/{lease}", "create_revision": rev,
        "mod_revision": rev, "version": 1, "lease": int(lease, 16), "value": owner,
    }  # fmt: skip


def _delete(t: float, lease: str, rev: int, alive: list | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "t": t,
        "kind": "key.delete",
        "key": f"{LEADER}/{lease}",
        "revision": rev,
    }
    rec["alive_jobs"] = alive or []
    return rec


def _claim(t: float, slot: str, rev: int, token: int, status: str = "running") -> dict[str, Any]:
    return {
        "t": t, "kind": "key.put", "key": f"{BASE}/slots/{slot}", "create_revision": rev,
        "mod_revision": rev, "version": 1, "lease": 0,
        "value": {"slot": slot, "token": token, "identity": "x", "status": status},
    }  # fmt: skip


def _daemon(t: float, pod: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "kind": "daemon", "pod": pod, "identity": pod, "event": event, **fields}


def _job(t: float, ev: str, token: int, pod: str, slot: str, run: str, **f: Any) -> dict[str, Any]:
    return {
        "t": t, "kind": "job", "ev": ev, "token": token, "identity": pod, "slot": slot, "run": run,
        "pid": 100 + token, **f,
    }  # fmt: skip


def _store(t: float, seq: int, token: int, accepted: bool, high: int) -> dict[str, Any]:
    return {
        "t": t, "kind": "store", "seq": seq, "op": "write", "token": token,
        "accepted": accepted, "high_water": high, "writer": "x", "slot": None, "data": None,
    }  # fmt: skip


def _fault(t: float, phase: str, name: str, target: str, on_leader: bool = True) -> dict:
    return {
        "t": t, "kind": "fault", "phase": phase, "fault": name, "target": target,
        "id": f"{name}-1", "on_leader": on_leader,
    }  # fmt: skip


def clean() -> list[dict[str, Any]]:
    """p0 leads with token 10 and is killed; p1 takes over with token 20."""
    return [
        {"t": 0.0, "kind": "meta", "base": BASE, "leader_prefix": LEADER, "ttl": 3},
        _key(1.0, "a", 10, "p0"),
        _key(1.1, "b", 11, "p1"),
        _daemon(1.2, "p0", "election.acquired", token=10),
        _claim(2.0, "s1", 12, 10),
        _daemon(2.01, "p0", "job.started", token=10, run_id="r1"),
        _job(2.02, "start", 10, "p0", "s1", "r1"),
        _job(2.03, "attempt", 10, "p0", "s1", "r1", seq=0),
        _store(2.04, 1, 10, True, 10),
        _job(2.05, "answer", 10, "p0", "s1", "r1", seq=0, status=200),
        _fault(3.0, "start", "kill9", "p0"),
        _fault(3.01, "end", "kill9", "p0"),
        _delete(6.0, "a", 19),
        _delete(6.05, "b", 18),  # p1 re-campaigned on a new lease
        _key(6.1, "c", 20, "p1"),
        _daemon(6.2, "p1", "election.acquired", token=20),
        _claim(7.0, "s2", 21, 20),
        _daemon(7.01, "p1", "job.started", token=20, run_id="r2"),
        _job(7.02, "start", 20, "p1", "s2", "r2"),
        _job(7.03, "attempt", 20, "p1", "s2", "r2", seq=0),
        _store(7.04, 2, 20, True, 20),
        _job(7.5, "end", 20, "p1", "s2", "r2", how="done"),
    ]


def _props(history: list[dict[str, Any]]) -> set[str]:
    return {v.prop for v in check(history).violations}


def test_clean_history_passes_with_statistics():
    verdict = check(clean())
    assert verdict.ok, verdict.report()
    s = verdict.stats
    assert (s["tenures"], s["jobs_started"], s["writes_accepted"]) == (2, 2, 2)
    assert s["failover"]["kill9"]["taken_over"] == 1
    assert s["failover"]["kill9"]["max"] == pytest.approx(3.2)
    assert "verdict: OK" in verdict.report()


def test_s1_stale_write_accepted():
    h = [*clean(), _store(7.2, 3, 10, True, 20)]  # the old token accepted after 20
    assert _props(h) == {"S1"}
    assert "accepted token 10" in str(check(h).violations[0])


def test_s1_stale_write_rejected_is_fine():
    h = [*clean(), _store(7.2, 3, 10, False, 20)]
    verdict = check(h)
    assert verdict.ok and verdict.stats["writes_rejected_stale"] == 1


def test_s2_accepted_token_is_no_leader_key():
    h = [*clean(), _store(7.2, 3, 25, True, 25)]
    assert _props(h) == {"S2"}


def test_s2_a_daemon_never_rejoins_with_a_lower_token():
    h = [*clean(), _daemon(8.0, "p1", "election.acquired", token=11)]  # its old, lower key
    assert any("after its token 20" in str(v) for v in check(h).violations)


def test_s2_claims_never_go_back_to_a_lower_token():
    h = [*clean(), _claim(7.5, "s3", 22, 10, status="skipped_overlap")]  # deposed p0 claims
    assert _props(h) == {"S2"}


def test_s2_token_acquired_twice():
    h = [*clean(), _daemon(8.0, "p2", "election.acquired", token=20, identity="p1")]
    assert any("acquired twice" in str(v) for v in check(h).violations)


def test_s3_slot_claimed_twice():
    h = [*clean(), _claim(7.2, "s2", 22, 20)]
    assert _props(h) == {"S3"}


def _slot_delete(t: float, slot: str, rev: int) -> dict[str, Any]:
    return {"t": t, "kind": "key.delete", "key": f"{BASE}/slots/{slot}", "revision": rev}


def test_s3_a_claim_given_back_before_its_slot_ran_may_be_claimed_again():
    """A leader leaving on purpose with its next slot claimed ahead gives the claim back (a
    fenced delete) and the successor claims it again: one run, no violation."""
    given_back = [_claim(2.5, "s9", 13, 10), _slot_delete(2.6, "s9", 14)]
    h = [*clean(), *given_back, _claim(7.2, "s9", 22, 20)]
    assert _props(h) == set()


def test_s3_a_slot_run_then_deleted_then_claimed_again_is_a_violation():
    """Positive control: a deleted claim whose token ran the slot does not excuse a second."""
    h = [
        *clean(),
        _claim(2.5, "s9", 13, 10),
        _job(2.55, "start", 10, "p0", "s9", "r9"),
        _slot_delete(2.6, "s9", 14),
        _claim(7.2, "s9", 22, 20),
    ]
    assert "S3" in _props(h)


def test_s3_slot_run_twice():
    h = [*clean(), _job(7.6, "start", 20, "p1", "s2", "r3")]
    assert "S3" in _props(h)


def test_s3_job_without_claim():
    h = [r for r in clean() if not (r["kind"] == "key.put" and r["key"].endswith("/slots/s2"))]
    assert _props(h) == {"S3"}


def test_s5_job_started_before_acquiring():
    h = clean()
    i = next(
        i for i, r in enumerate(h) if r.get("event") == "election.acquired" and r["pod"] == "p1"
    )
    acquired = h.pop(i)
    h.append(acquired | {"t": 7.9})  # logged after its job started
    assert "S5" in _props(h)


def test_s5_claim_while_a_lower_key_was_live():
    h = clean()
    # p0's key was deleted only after p1's claim: p1 claimed without being the leader.
    for r in h:
        if r["kind"] == "key.delete" and r["key"].endswith("/a"):
            r["revision"], r["t"] = 25, 8.0
    assert "S5" in _props(h)


def test_s6_job_executing_after_its_key_was_gone():
    h = sorted([*clean(), _delete(7.01, "c", 30)], key=lambda r: r["t"])
    assert _props(h) == {"S6"}
    assert "began executing" in str(check(h).violations[0])


def test_s6_job_frozen_while_starting_is_exempt():
    """The daemon started the job, then the whole pod froze before the job's first instruction:
    it runs only after the thaw, after its key is gone. Exempt from S6; S1 still guards."""
    h = clean()
    for r in h:
        if r["kind"] == "job" and r["token"] == 20:
            r["t"] += 5  # start 12.02, attempt 12.03, end 12.5
    h += [
        _fault(7.015, "start", "pod_freeze", "p1"),
        _delete(9.0, "c", 30),
        _fault(12.0, "end", "pod_freeze", "p1"),
    ]
    h = [r for r in h if not (r["kind"] == "store" and r["token"] == 20)]
    verdict = check(sorted(h, key=lambda r: r["t"]))
    assert verdict.ok, verdict.report()
    assert verdict.stats["s6_exempt_frozen"] == 2


def test_s6_job_alive_when_key_deleted():
    h = clean()
    for r in h:
        if r["kind"] == "key.delete" and r["key"].endswith("/a"):
            r["alive_jobs"] = [{"pid": 110, "state": "S", "ev": "start"}]
    assert _props(h) == {"S6"}


def test_s6_grandchild_alive_when_key_deleted():
    h = clean()
    for r in h:
        if r["kind"] == "key.delete" and r["key"].endswith("/a"):
            r["alive_jobs"] = [{"pid": 999, "state": "S", "ev": "grandchild"}]
    assert _props(h) == {"S6"}


def test_s6_write_attempt_after_key_deleted():
    h = [*clean(), _job(6.5, "attempt", 10, "p0", "s1", "r1", seq=5)]
    assert _props(h) == {"S6"}


def _bracket_a(present_at: float, gone_by: float, delivered: float = 6.0) -> list[dict[str, Any]]:
    """clean(), with p0's key a deleted between the recorder's reads at present_at and
    gone_by, and the deletion delivered by the watch at ``delivered``."""
    h = clean()
    for r in h:
        if r["kind"] == "key.delete" and r["key"].endswith("/a"):
            r.update(t=delivered, present_at=present_at, gone_by=gone_by)
    return sorted(h, key=lambda r: r["t"])


def _exit(t: float, alive_until: float | None, token: int = 10, pid: int = 110) -> dict:
    return {
        "t": t, "kind": "proc.exit", "pid": pid, "token": token, "ev": "start",
        "alive_until": alive_until,
    }  # fmt: skip


def test_s6_a_job_seen_alive_after_the_deletion_was_proven_though_the_watch_was_late():
    """The watch delivered the deletion 1.5 s late (t=6.0) and found nothing alive; the
    recorder's reads prove it happened by 4.52, and the job was seen alive until 5.0."""
    h = [*_bracket_a(4.49, 4.52), _exit(5.01, 5.0)]
    assert _props(h) == {"S6"}
    assert any("was alive 0.480s after etcd deleted its key" in m for m in _messages(h))


def test_s6_a_job_dead_before_the_deletion_is_fine():
    h = [*_bracket_a(4.49, 4.52), _exit(4.3, 4.29)]
    verdict = check(h)
    assert verdict.ok, verdict.report()


def test_s6_an_exit_inside_the_bracket_is_not_proof():
    """Seen alive at 4.50, gone at 4.51, key gone by 4.52: the death may have come first."""
    h = [*_bracket_a(4.49, 4.52), _exit(4.51, 4.50)]
    assert check(h).ok


def test_s6_a_write_attempted_after_the_proven_deletion_before_the_watch_delivered_it():
    h = [*_bracket_a(4.49, 4.52), _job(4.8, "attempt", 10, "p0", "s1", "r1", seq=7)]
    assert _props(h) == {"S6"}
    assert any("attempted write 7 0.280s after its key was deleted" in m for m in _messages(h))


def test_s6_without_a_bracket_the_watch_stamp_is_used():
    h = [*clean(), _exit(6.3, 6.2)]  # deletion delivered at 6.0, no reads around it
    assert _props(h) == {"S6"}


def test_s6_whole_pod_frozen_is_exempt_but_s1_still_applies():
    """A frozen pod's job outlives its key (only fencing protects): not an S6 violation, but
    the store must still reject its stale write."""
    h = [
        *clean(),
        _fault(2.5, "start", "pod_freeze", "p0"),
        _fault(9.0, "end", "pod_freeze", "p0"),
        _job(9.1, "attempt", 10, "p0", "s1", "r1", seq=1),
        _store(9.2, 3, 10, False, 20),
    ]
    for r in h:
        if r["kind"] == "key.delete" and r["key"].endswith("/a"):
            r["alive_jobs"] = [{"pid": 110, "state": "T", "ev": "start"}]
    verdict = check(h)
    assert verdict.ok, verdict.report()
    assert verdict.stats["s6_exempt_frozen"] == 2
    accepted = [*h, _store(9.3, 4, 10, True, 20)]
    assert _props(accepted) == {"S1"}


def test_daemon_only_freeze_is_not_exempt():
    h = [
        *clean(),
        _fault(2.5, "start", "daemon_freeze", "p0"),
        _fault(9.0, "end", "daemon_freeze", "p0"),
    ]
    for r in h:
        if r["kind"] == "key.delete" and r["key"].endswith("/a"):
            r["alive_jobs"] = [{"pid": 110, "state": "S", "ev": "start"}]
    assert _props(h) == {"S6"}


def _messages(history: list[dict[str, Any]]) -> list[str]:
    return [str(v) for v in check(history).violations]


def test_s2_acquisition_with_a_token_no_leader_key_has():
    h = [*clean(), _daemon(8.0, "p2", "election.acquired", token=25)]
    assert _props(h) == {"S2"}
    assert any("p2 acquired with token 25: no leader key has it" in m for m in _messages(h))


def test_s2_acquisition_of_another_daemons_key():
    h = [*clean(), _daemon(8.0, "p2", "election.acquired", token=11)]  # p1's first key
    assert _props(h) == {"S2"}
    assert any("p2 acquired token 11 of p1's key" in m for m in _messages(h))


def test_s2_job_ran_with_a_token_no_leader_key_has():
    h = [*clean(), _claim(7.6, "s3", 22, 25), _job(7.7, "start", 25, "p1", "s3", "r3")]
    assert any("ran with token 25: no such key" in m for m in _messages(h))


def test_s2_job_ran_with_another_daemons_token():
    h = [*clean(), _claim(7.6, "s3", 22, 20), _job(7.7, "start", 20, "p2", "s3", "r3")]
    assert _props(h) == {"S2"}
    assert any("job of p2 ran with token 20 of p1's key" in m for m in _messages(h))


@pytest.mark.parametrize("status", ["skipped_overlap", "skipped", "failed_to_start"])
def test_s3_job_ran_a_slot_claimed_as_not_running(status):
    h = clean()
    for r in h:
        if r["kind"] == "key.put" and r["key"].endswith("/slots/s2"):
            r["value"]["status"] = status
    assert _props(h) == {"S3"}
    assert any(f"ran slot s2 claimed as {status}" in m for m in _messages(h))


def test_s5_slot_claimed_while_the_claimants_key_was_not_live():
    """p1's key c (token 20) was deleted at revision 21; its claim of s2 committed at 22."""
    h = [r for r in clean() if not (r["kind"] == "key.put" and r["key"].endswith("/slots/s2"))]
    h = sorted([*h, _delete(7.6, "c", 21), _claim(7.0, "s2", 22, 20)], key=lambda r: r["t"])
    assert _props(h) == {"S5"}
    assert any("while the key of token 20 was not live" in m for m in _messages(h))


def _alive_at_deletion_of_a(h: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in h:
        if r["kind"] == "key.delete" and r["key"].endswith("/a"):
            r["alive_jobs"] = [{"pid": 110, "state": "S", "ev": "start"}]
    return h


def test_s6_a_pod_freeze_that_ended_long_before_the_deletion_exempts_nothing():
    """The exemption covers a whole-pod freeze within TTL + slack before the key went (t=6.0,
    TTL 3, slack 1): one that ended at t=1.9 cannot explain a job alive at t=6.0."""
    h = _alive_at_deletion_of_a(
        [*clean(), _fault(1.5, "start", "pod_freeze", "p0"), _fault(1.9, "end", "pod_freeze", "p0")]
    )
    assert _props(sorted(h, key=lambda r: r["t"])) == {"S6"}


def test_s6_a_pod_freeze_that_began_after_the_deletion_exempts_nothing():
    h = _alive_at_deletion_of_a(
        [*clean(), _fault(6.5, "start", "pod_freeze", "p0"), _fault(9.0, "end", "pod_freeze", "p0")]
    )
    assert _props(h) == {"S6"}


def test_s6_a_freeze_of_another_pod_exempts_nothing():
    h = _alive_at_deletion_of_a(
        [*clean(), _fault(5.0, "start", "pod_freeze", "p1"), _fault(9.0, "end", "pod_freeze", "p1")]
    )
    assert _props(h) == {"S6"}


def test_s6_a_freeze_just_within_the_window_exempts():
    h = _alive_at_deletion_of_a(
        [*clean(), _fault(1.5, "start", "pod_freeze", "p0"), _fault(2.1, "end", "pod_freeze", "p0")]
    )
    verdict = check(h)
    assert verdict.ok and verdict.stats["s6_exempt_frozen"] == 1, verdict.report()


def test_l1_takeover_too_late_is_a_liveness_miss_of_kill9_not_a_violation():
    h = clean()
    for r in h:
        if r["t"] >= 6.0:
            r["t"] += 3.0  # takeover 6.2 s after kill -9: beyond TTL + 1.5 s + slack
    verdict = check(h)
    assert verdict.ok, verdict.report()
    assert [m.prop for m in verdict.liveness_of("kill9")] == ["L1"]
    assert verdict.liveness_of("sigterm") == []
    assert any(w.startswith("L1") for w in verdict.warnings)


def test_l1_takeover_within_the_bound_is_no_miss():
    verdict = check(clean())  # 3.2 s after kill -9: within TTL + 1.5 s
    assert verdict.liveness == []


def _sigterm_history(takeover_at: float) -> list[dict[str, Any]]:
    h = [r for r in clean() if r["kind"] != "fault"]
    h += [_fault(3.0, "start", "sigterm", "p0"), _fault(3.01, "end", "sigterm", "p0")]
    for r in h:
        if r.get("event") == "election.acquired" and r["pod"] == "p1":
            r["t"] = takeover_at
    return sorted(h, key=lambda r: r["t"])


def test_l2_handover_too_late_is_a_liveness_miss_of_sigterm():
    verdict = check(_sigterm_history(3.0 + 2.5))  # bound: 1 s + 1 s slack
    assert verdict.ok
    assert [m.prop for m in verdict.liveness_of("sigterm")] == ["L2"]
    assert "handover 2.50s" in str(verdict.liveness[0])
    assert any(w.startswith("L2") for w in verdict.warnings)


def test_l2_handover_in_time_is_no_miss():
    verdict = check(_sigterm_history(3.0 + 0.4))
    assert verdict.ok and verdict.liveness == [], verdict.report()


def test_l2_no_successor_at_all_after_sigterm_is_a_miss():
    h = [r for r in _sigterm_history(3.4) if not (r.get("pod") == "p1" or r.get("token") == 20)]
    verdict = check(h)
    assert [m.prop for m in verdict.liveness_of("sigterm")] == ["L2"]


def test_an_anomaly_fails_every_scenario():
    h = [*clean(), {"t": 8.0, "kind": "anomaly", "pod": "p1", "what": "still running 15s"}]
    verdict = check(h)
    assert verdict.ok
    assert [m.prop for m in verdict.liveness_of()] == ["anomaly"]
    assert [m.prop for m in verdict.liveness_of("kill9")] == ["anomaly"]


def test_a_history_without_meta_is_rejected():
    assert not check(clean()[1:]).ok
