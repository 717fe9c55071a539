"""Pure rules, driven through their real callers: what the daemon hands them is the real value.

Each pure rule has careful tests of its own (test_machine, test_planner, test_schedule, ...).
These check the other half, on the daemon over the in-memory etcd and the fake clock: the run is
handed the leader's key and its create revision (S2, for the fences), and the local deadline D
the machine computed, then every later D (S6); the machine is handed the TTL etcd granted, not
the one asked for (S6), and the clock first thing after a freeze (S6); the planner is handed
the job's jitter and starting deadline (L3); leaving stops the run, then revokes (L2).

The one-line mutation of each caller that these tests catch is in tests/mutations/catalog.py.
"""

from __future__ import annotations

from datetime import timedelta

from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import Grant
from leaderjob.schedule import slot_jitter
from tests.unit.test_daemon_schedule import (
    ELECTION,
    PREFIX,
    T0,
    TIMING,
    FakeRun,
    Job,
    World,
    lead,
    run_for,
    run_until,
    slot_at,
    world,
)

__all__ = ["world"]  # the fixture


def test_a_run_is_handed_the_leaders_key_and_its_create_revision_S2(world: World) -> None:
    """S1/S2: the fences (etcd, SQL, HTTP) compare the run's token with the create revision of
    the leader's key; the daemon must hand the run exactly that key and that revision — the
    key etcd holds for it, first in its queue."""
    world.store.put("/unrelated", b"x", timeout=1)  # revisions move on: a token is not a count
    d = world.daemon("@every 1s")
    lead(world, d)
    run_for(d, 1.5)
    assert world.started
    key = d.runner.seat.key
    assert key is not None
    info = world.store.get(key, timeout=1)
    assert info is not None
    [first] = world.store.candidates(f"{PREFIX}/{ELECTION}/leader", timeout=1)[:1]
    assert first.key == key
    for run in world.started:
        assert run.env["LEADERJOB_LEADER_KEY"] == key
        assert run.env["LEADERJOB_FENCING_TOKEN"] == str(info.create_revision)
        assert run.token == info.create_revision
        assert run.env["LEADERJOB_LEASE_ID"] == f"{info.lease_id:x}"


def test_a_run_is_handed_D_and_every_later_D_S6(world: World) -> None:
    """S6: the watchdog kills the job at the D it was handed. The run starts with the machine's
    D, and each renewal's new D reaches it; never a D past the lease's expiry at etcd."""
    FakeRun.job = Job(duration=None)  # runs until stopped
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 10.05)
    [run] = world.started
    machine = d.session.machine
    assert run.deadline == machine.deadline
    first = run.deadline
    lease_id = d.session.group.lease_id
    assert lease_id is not None
    for _ in range(5):
        run_for(d, TIMING.renew_interval)
        assert run.deadline == machine.deadline
        expiry = world.store.lease_expiry(lease_id)
        assert expiry is not None and run.deadline <= expiry
    assert run.deadline > first + 4 * TIMING.renew_interval


class ShortGrants(MemoryStore):
    """etcd granting less than asked (it may: a server-side cap); every client alike."""

    def client(self) -> MemoryStore:
        other = ShortGrants(self._server.clock)
        other._server = self._server
        return other

    def grant(self, ttl: int, *, timeout: float) -> Grant:
        return super().grant(ttl - 1, timeout=timeout)


def test_the_machine_is_handed_the_ttl_etcd_granted_S6(world: World) -> None:
    """S6: D counts the TTL etcd granted (2 s), not the 3 s asked for: with the asked TTL, D
    would lie a second past the lease's expiry."""
    world.store = ShortGrants(world.clock)
    d = world.daemon("@every 10s")
    lead(world, d)
    lease_id = d.session.group.lease_id
    assert lease_id is not None
    expiry = world.store.lease_expiry(lease_id)
    deadline = d.session.machine.deadline
    assert expiry is not None and deadline is not None
    lease = d.session.machine.lease
    assert lease is not None and abs(expiry - lease.last_ok_sent - 2.0) < 1e-9  # 2 s, not 3
    assert deadline <= expiry
    run_for(d, 3 * TIMING.renew_interval)  # and after renewals
    expiry = world.store.lease_expiry(lease_id)
    deadline = d.session.machine.deadline
    assert expiry is not None and deadline is not None and deadline <= expiry


def test_the_planner_is_handed_the_jobs_jitter_L3(world: World) -> None:
    """L3: a job with a jitter starts each slot at its fire time plus that slot's jitter, the
    same on every replica (a hash of the election and the fire time)."""
    d = world.daemon("@every 10s", jitter=5.0)
    lead(world, d)
    run_until(d, 30)
    assert len(world.started) >= 2, "nothing ran"
    for run in world.started:
        fire = T0 + timedelta(seconds=10 * round((run.started_at - 1000.0) // 10))
        expected = slot_jitter(ELECTION, fire, 5.0)
        assert expected > 0.01, "a jitter this small would not show the rule was applied"
        assert abs((run.started_at - 1000.0) - (fire - T0).total_seconds() - expected) < 0.01
        assert run.slot == slot_at((fire - T0).total_seconds())


def test_the_planner_is_handed_the_jobs_starting_deadline_L3(world: World) -> None:
    """L3: a slot found later than the job's starting deadline is skipped and recorded, not run
    late. The leader stops (frozen) after slot 10; its successor leads once the lease expires,
    more than the 1 s starting deadline after slot 20 fired (within one interval, 10 s, the
    default deadline, under which it would run)."""
    d = world.daemon("@every 10s", starting_deadline=1.0, history_limit=10)
    lead(world, d)
    run_until(d, 19.5)
    assert [r.slot for r in world.started] == [slot_at(10)]
    successor = world.daemon("@every 10s", identity="b", starting_deadline=1.0)
    while successor.tenure is None and world.clock.monotonic() < 1030.0:
        run_for(successor, 0.05)
    late_by = world.clock.monotonic() - 1020.0
    assert 1.0 < late_by < 10.0, f"the successor led {late_by:.2f} s after slot 20 fired"
    run_until(successor, 30.5)
    assert [r.slot for r in world.started] == [slot_at(10), slot_at(30)]
    late = [r for r in world.data.history(10, timeout=1) if r.get("slot") == slot_at(20)]
    assert [r.get("not_run") for r in late] == ["missed"], late


def test_a_graceful_stop_stops_the_run_then_revokes_the_lease_L2(world: World) -> None:
    """L2 and S6: SIGTERM while a run goes on (its job takes 0.5 s to die after SIGTERM): the
    daemon stops the run and keeps leading (and renewing) until it ended, then revokes its
    lease at once — the key goes within a cycle of the run's end, not a TTL later."""
    FakeRun.job = Job(duration=None, term_delay=0.5)
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 10.2)
    [run] = world.started
    key, lease_id = d.runner.seat.key, d.session.group.lease_id
    assert key is not None and lease_id is not None
    d.request_stop("signal")
    ended_at = gone_at = None
    while gone_at is None and world.clock.monotonic() < 1020.0:
        d.cycle()
        now = world.clock.monotonic()
        if run.done and ended_at is None:
            ended_at = now
        if world.store.get(key, timeout=1) is None:
            gone_at = now
        d._wait()
    assert ended_at is not None and gone_at is not None, "the run never ended or the key stayed"
    assert run.stopped_at is not None, "the run was not stopped"
    assert ended_at <= gone_at, "the key went while the run still ran"
    assert gone_at - run.stopped_at < 0.5 + 0.2, "no revoke: the key waited for its lease"
    assert world.store.lease_expiry(lease_id) is None, "the lease was not revoked"


def test_after_a_freeze_past_D_the_loop_steps_down_before_any_other_act_S6(world: World) -> None:
    """S6: the daemon issues nothing under the old token after D. It is frozen past D with the
    next slot claimed ahead, and SIGTERM arrives meanwhile: on resume its first act is to hand
    the machine the clock and step down, so the graceful stop finds no tenure and sends no
    fenced give-back under the expired lease."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 9.97)
    assert world.store.get(world.data.slot_key(slot_at(10)), timeout=1) is not None
    deadline = d.session.machine.deadline
    assert deadline is not None
    world.clock.advance(deadline - world.clock.monotonic() + 0.05)  # frozen just past D
    d.request_stop("signal")
    calls: list[str] = []
    unclaim = d.runner.data.unclaim_slot

    def spy(own_key: str, token: int, slot: str, previous: str, *, timeout: float) -> bool:
        calls.append(slot)
        return unclaim(own_key, token, slot, previous, timeout=timeout)

    d.runner.data.unclaim_slot = spy  # type: ignore[method-assign]
    d.cycle()
    assert world.events("election.lost", reason="deadline_passed")
    assert calls == [], "a fenced write under a lease past its deadline"
