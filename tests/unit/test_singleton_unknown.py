"""``@leaderjob.singleton`` settles a slot whose claim's outcome is unknown as the daemon does
(leaderjob/schedule/unknown_claims.py), instead of dropping it: the claim's Txn failed (a timeout,
a lost reply), so it may or may not have applied. It is read back at a later step: ours → the slot
runs, once (S3); absent → claimed again and run (late, within its starting deadline); absent
and too late → a not-run record (L3: no fire time of a tenure is lost without a trace).
On the fake clock and MemoryStore, stepped by hand (tests/unit/test_singleton_policies.py).
"""

from __future__ import annotations

from tests.unit.test_singleton_policies import World

SLOT = "20260101T000010Z"


def test_a_claim_applied_with_its_reply_lost_is_read_back_and_runs_once_s3_l3() -> None:
    calls: list[str] = []
    w = World(lambda run: calls.append(run.slot))
    w.store.lose_reply_next(1, "guarded_put")
    assert w.at(10) == "claim_failed"
    assert w.at(10.5) == "job_started"  # read back: ours
    w.finish()
    w.at(11)
    assert w.at(20) == "job_started"
    w.finish()
    w.at(21)
    assert calls == [SLOT, "20260101T000020Z"]
    assert [(s, o) for s, o in w.outcomes()] == [
        (SLOT, "succeeded"),
        ("20260101T000020Z", "succeeded"),
    ]


def test_a_claim_that_did_not_apply_is_claimed_again_and_runs_late_once_s3_l3() -> None:
    calls: list[str] = []
    w = World(lambda run: calls.append(run.slot))
    w.store.fail_next(1, "guarded_put")
    assert w.at(10) == "claim_failed"
    assert w.at(11) == "job_started"  # read back: absent, claimed now
    w.finish()
    w.at(12)
    assert calls == [SLOT]
    assert w.store.get(w.data.slot_key(SLOT), timeout=1) is not None


def test_a_claim_that_did_not_apply_and_is_too_late_gets_a_not_run_record_l3() -> None:
    w = World(lambda run: None, starting_deadline=2.0)
    w.store.fail_next(1, "guarded_put")
    assert w.at(10) == "claim_failed"
    w.store.fail_next(1, "get")  # the read back fails too: tried again at a later step
    w.at(11)
    w.at(13)  # past the starting deadline: not run, and said so
    assert [(r["slot"], r["not_run"]) for r in w.history()] == [(SLOT, "late")]
