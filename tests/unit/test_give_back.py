"""Giving back a slot claimed ahead, driven through the daemon: the claim's owner hands the
fenced Txn its own key and token, and a slot whose run has started is never given back.

The rule (``records.unclaim_slot``: delete the claim and move ``state/last_slot`` back, guarded by
``CreateRevision(own_key) == token``) is a single Txn; what these tests check is its caller
(``Runner.give_back_ahead`` on a graceful stop): that it passes the leader's real key and token,
that a refusal is reported and recorded rather than lost, and that a slot already started is not
handed to the successor to run again.

The daemon on the pure core (in-memory etcd, fake clock, fake runs), as in test_daemon_schedule.
"""

from __future__ import annotations

from tests.unit.test_daemon_schedule import (
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


def _claim(w: World, seconds: float) -> bytes | None:
    info = w.store.get(w.data.slot_key(slot_at(seconds)), timeout=1)
    return None if info is None else info.value


def _last_slot(w: World) -> str | None:
    info = w.store.get(w.data.last_slot_key, timeout=1)
    return None if info is None else info.value.decode()


def test_a_deposed_leader_cannot_give_back_its_claim_and_records_the_slot_S3(world: World) -> None:
    """S3: the give-back is fenced by the leader's own key. A leader claims slot 10 ahead; its
    key is then removed at etcd behind its back (an operator, or an old etcd revoking a live
    lease) before it notices, and SIGTERM lands. Its give-back must be refused: the claim and
    ``state/last_slot`` stay as they were, so no successor plans that slot a second time, and
    the slot — lost, as in a crash — gets a ``skipped_leaving`` not-run record (none lost
    without a record)."""
    d = world.daemon("@every 10s", history_limit=100)
    lead(world, d)
    run_until(d, 9.97)
    claim = _claim(world, 10)
    assert claim is not None, "the slot should be claimed ahead"
    assert _last_slot(world) == slot_at(10)
    key = d.runner.seat.key
    assert key is not None
    world.store.delete(key, timeout=1)  # at etcd, not yet seen by the daemon
    d.request_stop("signal")
    d.cycle()  # no run: straight to leaving, the give-back first
    assert _claim(world, 10) == claim, "a deposed leader deleted a claim"
    assert _last_slot(world) == slot_at(10), "a deposed leader moved state/last_slot back"
    assert world.events("slot.give_back_failed", slot=slot_at(10))
    assert not world.events("slot.given_back")
    run_for(d, 1.0)
    records = [r for r in world.data.history(100, timeout=1) if r.get("slot") == slot_at(10)]
    assert [(r.get("not_run"), r.get("outcome")) for r in records] == [
        ("missed", "skipped_leaving")
    ], records
    # The successor plans after the claim: slot 10 is not run (by anyone), slot 20 is.
    successor = world.daemon("@every 10s", identity="b")
    run_until(successor, 21.0)
    assert [r.slot for r in world.started] == [slot_at(20)]


def test_a_give_back_carries_the_leaders_own_key_and_token_S3(world: World) -> None:
    """S3: the caller hands the fenced Txn the key and token of this tenure — those etcd holds
    for the leader (the token is the key's create revision, S2) — and the slot it claimed."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 9.97)
    calls: list[tuple[str, int, str, str]] = []
    unclaim = d.runner.data.unclaim_slot

    def spy(own_key: str, token: int, slot: str, previous: str, *, timeout: float) -> bool:
        calls.append((own_key, token, slot, previous))
        return unclaim(own_key, token, slot, previous, timeout=timeout)

    d.runner.data.unclaim_slot = spy  # type: ignore[method-assign]
    key = d.runner.seat.key
    assert key is not None
    info = world.store.get(key, timeout=1)
    assert info is not None
    d.request_stop("signal")
    run_for(d, 1.0)
    # No claim before slot 10: the claim goes back to a second before its fire time.
    assert calls == [(key, info.create_revision, slot_at(10), slot_at(9))]
    assert world.events("slot.given_back", slot=slot_at(10))


def test_a_slot_whose_run_started_is_not_given_back_S3(world: World) -> None:
    """S3: only a claim not yet started is given back. A leader claims slot 10 ahead, starts
    it at its time, and SIGTERM lands while it runs: the run is stopped and the claim stays —
    the successor must not run slot 10 again (it runs slot 20)."""
    FakeRun.job = Job(duration=None)  # runs until stopped
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 10.5)
    assert [r.slot for r in world.started] == [slot_at(10)]
    d.request_stop("signal")
    run_for(d, 1.0)
    assert d.tenure is None and world.started[0].done
    assert _claim(world, 10) is not None, "the claim of a slot that ran was given back"
    assert _last_slot(world) == slot_at(10)
    assert not world.events("slot.given_back")
    FakeRun.job = Job()
    successor = world.daemon("@every 10s", identity="b")
    run_until(successor, 21.0)
    assert [r.slot for r in world.started] == [slot_at(10), slot_at(20)]
