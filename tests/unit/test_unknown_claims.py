"""A slot whose claim's outcome is unknown (the Txn timed out: applied or not) is settled, not
assumed: the claim is read back, and the slot runs (once, S3) or gets a not-run record (L3: no
fire time of a tenure is lost without a trace). The first slot of a new election included: it
has no claim before it to catch up from. Daemon + MemoryStore + FakeClock, as in
test_daemon_schedule.py (@every 20s, ttl 3 s)."""

from __future__ import annotations

from typing import Any

from tests.unit.test_daemon_schedule import T0, World, lead, run_until, slot_at, world

__all__ = ["world"]


def records(w: World) -> list[dict[str, Any]]:
    return w.data.history(50, timeout=1)


def test_the_first_slot_claimed_ahead_with_its_reply_lost_runs_once_l3_s3(world: World) -> None:
    """The claim made ahead of the first slot applied, its reply was lost: it is read back at the
    slot's start, found ours, and the slot runs at its time — not skipped as "already claimed"."""
    d = world.daemon("@every 20s")
    lead(world, d)
    run_until(d, 19.9)
    d.store.lose_reply_next(1, "guarded_put")  # type: ignore[attr-defined]
    run_until(d, 21)
    assert world.events("slot.claim_unknown", slot=slot_at(20))
    assert not world.events("slot.skipped", slot=slot_at(20), reason="already_claimed")
    assert [r.slot for r in world.started] == [slot_at(20)]
    run_until(d, 41)
    assert [r.slot for r in world.started] == [slot_at(20), slot_at(40)]


def test_a_claim_that_did_not_apply_is_claimed_again_and_runs_late_once_l3_s3(
    world: World,
) -> None:
    d = world.daemon("@every 20s")
    lead(world, d)
    d.store.fail_next(2, "guarded_put")  # type: ignore[attr-defined]  # ahead, and at the start
    run_until(d, 22)
    assert world.events("slot.claim_unknown", slot=slot_at(20))
    assert [r.slot for r in world.started] == [slot_at(20)]
    assert world.store.get(world.data.slot_key(slot_at(20)), timeout=1) is not None


def test_the_first_slot_of_a_new_election_is_caught_up_after_an_outage_l3(world: World) -> None:
    """The scenario of a frozen etcd around the first slot: its claim fails, the lease expires,
    and the same replica leads again once etcd is back. It catches that slot up (it is within
    its starting deadline) instead of finding "nothing to catch up on" in a new election."""
    d = world.daemon("@every 20s")
    lead(world, d)
    run_until(d, 19.0)
    d.store.partition()  # type: ignore[attr-defined]
    run_until(d, 26.0)
    assert world.events("slot.claim_unknown", slot=slot_at(20))
    assert d.tenure is None, "the lease expired during the outage"
    d.store.heal()  # type: ignore[attr-defined]
    run_until(d, 30.0)
    assert d.tenure is not None
    assert [r.slot for r in world.started] == [slot_at(20)]


def test_a_slot_claimed_by_a_lost_tenure_gets_a_not_run_record_l3(world: World) -> None:
    """The claim of the first slot applied but its reply was lost, and the tenure ended before
    it could be read back: the slot is claimed (nobody else runs it, S3) and never ran. The
    replica's next tenure finds the claim its own and records the slot as not run."""
    d = world.daemon("@every 20s")
    lead(world, d)
    run_until(d, 19.9)
    d.store.lose_reply_next(1, "guarded_put")  # type: ignore[attr-defined]
    run_until(d, 19.99)  # claimed ahead
    d.store.partition()  # type: ignore[attr-defined]  # cut off before it is read back
    run_until(d, 26)
    assert world.events("slot.claim_unknown", slot=slot_at(20))
    assert d.tenure is None
    d.store.heal()  # type: ignore[attr-defined]
    run_until(d, 30)
    assert d.tenure is not None
    assert not world.started
    [rec] = [r for r in records(world) if r.get("slot") == slot_at(20)]
    assert rec["not_run"] == "missed"


def test_another_replica_that_takes_over_catches_the_first_slot_up_too_l3(world: World) -> None:
    """Only the replica that made a claim knows its answer was lost. A new election therefore
    marks where it starts (state/last_slot just before its first slot) before any claim: the
    replica that takes over after the outage plans from there and catches the slot up."""
    d = world.daemon("@every 20s")
    lead(world, d)
    assert world.data.last_slot(timeout=1) == T0  # where the tenure began, never ahead
    run_until(d, 19.0)
    d.store.partition()  # type: ignore[attr-defined]  # d is cut off for good
    run_until(d, 21.0)
    assert world.events("slot.claim_unknown", slot=slot_at(20))
    successor = world.daemon("@every 20s", identity="b")
    run_until(successor, 28.0)
    assert successor.tenure is not None
    assert [r.slot for r in world.started] == [slot_at(20)]
