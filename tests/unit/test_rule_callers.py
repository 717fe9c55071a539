"""Pure rules, driven through their real callers (as tests/unit/test_callers.py does for the
daemon's): the in-process singleton's rules (leaderjob/inprocess/singleton_rules.py) and the
fingerprint comparison (fingerprint.Checker) must be handed the real time, token, lease and set
— a rule proven right on the values it is given is wrong in production if its caller hands it
others.
Fake clocks and the in-memory store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import iso
from leaderjob.ops.fingerprint import fingerprints_prefix
from tests.unit.test_daemon_schedule import ELECTION, PREFIX, lead, run_for, world
from tests.unit.test_daemon_schedule import World as DaemonWorld
from tests.unit.test_singleton_policies import World

__all__ = ["world"]  # the fixture

# -- @leaderjob.singleton (singleton_rules) -----------------------------------------------------


def test_the_tenures_wakeup_is_handed_the_time_to_the_next_slot_L3() -> None:
    """``wakeup``: handed how far the next slot's start is on the wall clock, so the owner
    sleeps until then — not a renew interval past it."""
    w = World(lambda run: None)
    w.at(9.5)  # the slot of :10 is 0.5 s away; the next control poll a second
    now = w.clock.monotonic()
    assert w.tenure.next_wakeup(now) == pytest.approx(now + 0.5)


def test_a_runs_record_is_handed_its_token_slot_and_times_S2() -> None:
    """``run_record``: the run's own token (the create revision of the leader's key, as its
    claim), its slot and fire time, and the times measured on the tenure's clocks."""
    w = World(lambda run: None)
    assert w.at(10) == "job_started"
    w.at(13.5)
    w.finish()
    w.at(13.5)
    [rec] = w.history()
    t0 = w.clock.wall() - timedelta(seconds=13.5)
    assert rec["token"] == w.seat.token
    assert (rec["slot"], rec["scheduled_time"]) == (
        "20260101T000010Z",
        iso(t0 + timedelta(seconds=10)),
    )
    assert rec["started_at"] == iso(t0 + timedelta(seconds=10))
    assert rec["finished_at"] == iso(w.clock.wall())
    assert rec["duration_seconds"] == 3.5


def test_a_retry_is_handed_whether_its_tenure_still_holds_S3() -> None:
    """``retry_backoff``: a failed run of a tenure that has ended is not retried (its retry
    would start under a token that no longer leads); within its tenure it is."""

    def boom(run: object) -> None:
        raise RuntimeError("boom")

    kept = World(boom, retries=1)
    assert kept.at(10) == "job_started"
    kept.finish()
    kept.at(10.1)
    assert len(kept.tenure.pending) == 1

    lost = World(boom, retries=1)
    assert lost.at(10) == "job_started"
    lost.seat.depose()
    lost.finish()
    lost.at(10.1)
    assert lost.tenure.pending == []


# -- the fingerprint comparison (fingerprint.Checker through ConfigWatch) -----------------------


def _conflict(d: object) -> float | None:
    return d.metrics.registry.get_sample_value(  # type: ignore[attr-defined]
        "leaderjob_config_conflict", {"election": ELECTION}
    )


def test_the_fingerprint_is_published_under_the_daemons_current_lease(world: DaemonWorld) -> None:
    """The checker is handed the daemon's lease of the moment: after the lease is lost, the
    fingerprint is published again under the new one (and goes with the old)."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_for(d, 1)
    prefix = fingerprints_prefix(PREFIX, ELECTION)

    def published() -> list[tuple[str, int]]:
        return [(k.key, k.lease_id) for k in world.store.get_prefix(prefix, timeout=1)]

    first = d.elector.lease_id
    assert first is not None and published() == [(f"{prefix}{first:x}", first)]
    assert isinstance(world.store, MemoryStore)
    world.store.expire(first)
    run_for(d, 8)
    second = d.elector.lease_id
    assert second is not None and second != first
    assert published() == [(f"{prefix}{second:x}", second)]


def test_the_leader_compares_the_set_of_fingerprints_it_read(world: DaemonWorld) -> None:
    """The leader compares the fingerprints its confirmations read (the set of every
    candidate's), at the time of each: another replica with another schedule is flagged within
    a few renewals, and the flag goes once it has left."""
    d = world.daemon("@every 10s")
    lead(world, d)
    other = world.daemon("@every 20s", identity="b")
    for _ in range(40):  # 4 s: both cycle in turn
        d.cycle()
        other.cycle()
        world.clock.advance(0.1)
    assert d.tenure is not None and other.tenure is None
    assert _conflict(d) == 1 and _conflict(other) == 1
    other.request_stop("SIGTERM")
    for _ in range(20):
        other.cycle()
        world.clock.advance(0.05)
    run_for(d, 4)
    assert _conflict(d) == 0
