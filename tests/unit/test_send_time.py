"""The election's driver hands the pure machine the real send times (S6).

``Machine.granted``, ``renewed`` and ``confirmed`` take the send time of the request they learn
from; ``D = send_time + TTL·(1 − 2ρ) − margin`` is below etcd's expiry only if that time is read
*before* the request leaves (SAFETY.md §2). test_machine.py proves the rule for whatever time it
is given; these tests drive the real caller (``Elector`` over its ``LeaseGroup``, in-memory etcd,
fake clock) with replies that come back late, within the keepalive's timeout — 0.4 s on a 0.5 s
timeout, so the reply is used — and check the time the caller passed in, and that the resulting
``D`` is no later than the lease's expiry at etcd.

With a reply time in place of a send time, ``D`` overshoots the server's expiry by the reply's
time in flight less the margin's slack (0.126 s here): a 0.4 s late reply puts ``D`` 0.27 s
after the moment etcd may expire the lease and a successor start.
"""

from __future__ import annotations

import threading

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.election.elector import Elector
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import Grant, KeyInfo, Standing
from tests.unit.slowstore import SlowStore

TIMING = Timing.from_ttl(3)  # renew every 1 s; a keepalive's timeout is 0.5 s
PREFIX = "/leaderjob/test/leader"
LATE = 0.4  # a late reply, inside the keepalive's timeout


class SpyStore(SlowStore):
    """A SlowStore that notes the fake clock's time as each call is sent."""

    def __init__(self, server: MemoryStore, clock: FakeClock) -> None:
        super().__init__(server, clock)
        self.sent: dict[str, list[float]] = {}

    def _note(self, operation: str) -> None:
        self.sent.setdefault(operation, []).append(self.clock.monotonic())

    def grant(self, ttl: int, *, timeout: float) -> Grant:
        self._note("grant")
        return super().grant(ttl, timeout=timeout)

    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        self._note("keepalive")
        return super().keepalive(lease_id, timeout=timeout)

    def standing(
        self, prefix: str, key: str, create_revision: int, *, timeout: float, **kw: object
    ) -> Standing:
        self._note("standing")
        return super().standing(prefix, key, create_revision, timeout=timeout, **kw)


def _world() -> tuple[FakeClock, MemoryStore, SpyStore, Elector]:
    clock = FakeClock()
    server = MemoryStore(clock)
    store = SpyStore(server, clock)
    elector = Elector(store, TIMING, PREFIX, "a", clock, threading.Event())
    return clock, server, store, elector


def _lead(clock: FakeClock, e: Elector) -> None:
    for _ in range(10):
        e.step(may_campaign=True)
        if e.machine.is_leader(clock.monotonic()):
            return
        clock.advance(0.01)
    raise AssertionError("did not lead an empty election")


def _own_key(server: MemoryStore, e: Elector) -> KeyInfo:
    assert e.key is not None
    info = server.get(e.key, timeout=1)
    assert info is not None
    return info


def test_a_late_keepalive_reply_counts_D_from_the_send_time_S6() -> None:
    clock, server, store, e = _world()
    _lead(clock, e)
    clock.advance(TIMING.renew_interval)
    store.slow_next("keepalive", LATE, "reply")
    before = len(store.sent.get("keepalive", []))
    e.step(may_campaign=True)
    sent = store.sent["keepalive"][before:]
    assert len(sent) == 1, "one keepalive expected"
    assert e.machine.is_leader(clock.monotonic()), "a late reply within the timeout still counts"
    assert e.machine.deadline == TIMING.deadline_after(sent[0])
    assert e.lease_id is not None
    expiry = server.lease_expiry(e.lease_id)
    assert expiry is not None and e.machine.deadline <= expiry


def test_a_late_grant_reply_counts_D_from_the_send_time_S6() -> None:
    _, server, store, e = _world()
    store.slow_next("grant", LATE, "reply")
    e.step(may_campaign=True)
    [sent] = store.sent["grant"]
    assert e.machine.deadline == TIMING.deadline_after(sent)
    assert e.lease_id is not None
    expiry = server.lease_expiry(e.lease_id)
    assert expiry is not None and e.machine.deadline <= expiry


def test_a_late_confirmation_counts_from_the_send_time_S6() -> None:
    """The confirmation of our key (a linearizable read) proves the key held when the read was
    sent, not when its answer came: a leader with no confirmation for the renew deadline steps
    down counting from the send time."""
    clock, _, store, e = _world()
    _lead(clock, e)
    clock.advance(TIMING.renew_interval)
    store.slow_next("standing", LATE, "reply")
    before = len(store.sent.get("standing", []))
    e.step(may_campaign=True)
    sent = store.sent["standing"][before:]
    assert sent, "the confirmation was not due"
    assert e.machine.confirmed_sent == sent[-1]


def test_the_token_is_the_create_revision_of_our_key_at_etcd_S2() -> None:
    clock, server, _, e = _world()
    server.put("/unrelated", b"x", timeout=1)  # revisions move on: the token is not a count
    _lead(clock, e)
    assert e.machine.token == _own_key(server, e).create_revision
