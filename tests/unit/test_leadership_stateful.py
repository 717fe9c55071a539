"""A Hypothesis state machine of one in-process ``Leadership`` and one ``@singleton`` beside it,
on the in-memory etcd and the real deadline clock (SAFETY.md §5b).

Rules: acquire (with a timeout), an ``async with`` cancelled at any moment (``asyncio.timeout``
of 0-50 ms), release, release from inside ``on_lost``, a fork (the child's view: the hook
``os.register_at_fork`` runs, applied to this handle only), an etcd stall (the client cut off
for a while), a suspend of the host (CLOCK_BOOTTIME jumps; the fake etcd's lease clock with it),
the singleton started, stopped from inside its function, stopped with a timeout.

Invariants, after every step:

* ``valid()`` is never True unless etcd holds our key with our token (D comes before etcd's
  expiry: a True after it would be a True past D);
* no lease outlives its owner's interest (released, cancelled, forked away) by more than one
  TTL (+ slack for the sweep);
* after the last step, every thread of the election is gone.

Bounded and seeded in ``make test`` (a few seconds); ``LEADERJOB_STATEFUL_LONG=1`` (``make
stateful-inprocess``) runs many more examples, randomised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import leaderjob
from leaderjob.clock import SystemClock
from leaderjob.election.memory import MemoryStore
from leaderjob.leadership import Leadership, LeadershipError
from leaderjob.singleton import Singleton, SlotRun

TTL = 2
SLACK = 0.8  # the fake server's sweep and a loaded machine
LONG = bool(os.environ.get("LEADERJOB_STATEFUL_LONG"))

#: A suspend of the host, faked: seconds added to CLOCK_BOOTTIME (CLOCK_MONOTONIC stays put).
_SUSPENDED = [0.0]
_REAL = time.clock_gettime


def _clock_gettime(clock: int) -> float:
    return _REAL(clock) + (_SUSPENDED[0] if clock == time.CLOCK_BOOTTIME else 0.0)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore(SystemClock())
        self.observer = self.store.client()
        self.client = self.store.client()
        self.release_on_lost = False
        self.lead = Leadership(
            "app", ttl=TTL, store=self.client, identity="lead", on_lost=self._on_lost
        )
        #: lease id -> when its owner lost interest (deadline clock)
        self.abandoned: dict[int, float] = {}
        self.single: Singleton | None = None
        self.stop_inside = threading.Event()

    def _on_lost(self, reason: str) -> None:
        if self.release_on_lost:
            self.lead.release()

    def _lease(self) -> int | None:
        d = self.lead._driver
        return None if d is None else d.elector.lease_id

    def _abandon(self, lease: int | None) -> None:
        if lease is not None:
            self.abandoned.setdefault(lease, SystemClock().monotonic())

    # -- rules ------------------------------------------------------------------------------

    @rule(timeout=st.sampled_from([0.0, 0.2]))
    def acquire(self, timeout: float) -> None:
        with contextlib.suppress(LeadershipError):
            self.lead.try_acquire(timeout)

    @rule(delay=st.sampled_from([0.0, 0.001, 0.005, 0.02, 0.05]))
    def async_with_cancelled(self, delay: float) -> None:
        lease_before = self._lease()

        async def main() -> None:
            with contextlib.suppress(TimeoutError, LeadershipError):
                async with asyncio.timeout(delay), self.lead:
                    await asyncio.sleep(10)

        if self.lead._thread is not None:
            return  # held: entering again is a usage error, not a rule
        asyncio.run(main())
        if self._lease() != lease_before:
            self._abandon(self._lease())
        assert not self.lead.valid()

    @rule()
    def release(self) -> None:
        self._abandon(self._lease())
        self.lead.release()

    @rule(on=st.booleans())
    def release_inside_on_lost(self, on: bool) -> None:
        self.release_on_lost = on

    @rule()
    def fork(self) -> None:
        """The child's view after ``os.fork()``: its copy of the handle (the parent's lease,
        which the child never renews nor revokes)."""
        if self.lead._thread is None:
            return
        self._abandon(self._lease())
        self.lead._after_fork_in_child()
        assert not self.lead.valid() and self.lead.lost.is_set()

    @rule(seconds=st.sampled_from([0.3, 1.0]))
    def etcd_stall(self, seconds: float) -> None:
        self.client.partition()
        time.sleep(seconds)
        self.client.heal()

    @rule(seconds=st.sampled_from([1.0, 2.0 * TTL]))
    def suspend(self, seconds: float) -> None:
        _SUSPENDED[0] += seconds

    @rule()
    def singleton_start(self) -> None:
        if self.single is None:
            self.single = leaderjob.singleton(
                election="job", schedule="@every 1s", ttl=TTL, store=self.store.client()
            )(self._work)
        self.single.start()

    @rule()
    def singleton_stop_from_inside(self) -> None:
        self.stop_inside.set()

    @rule(timeout=st.sampled_from([0.0, 0.3]))
    def singleton_stop(self, timeout: float) -> None:
        if self.single is not None:
            lease = self.single.leadership._driver
            self.single.stop(timeout)
            if lease is not None:
                self._abandon(lease.elector.lease_id)

    def _work(self, run: SlotRun) -> None:
        if self.stop_inside.is_set() and self.single is not None:
            self.stop_inside.clear()
            self.single.stop()
        run.cancelled.wait(0.2)

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def valid_only_while_etcd_holds_our_key(self) -> None:
        key, token = self.lead.key, self.lead.token
        present = key is not None and any(
            k.key == key and k.create_revision == token
            for k in self.observer.candidates("/leaderjob/app/leader", timeout=1)
        )
        assert not self.lead.valid() or present

    @invariant()
    def no_lease_outlives_its_owners_interest_by_a_ttl(self) -> None:
        now = SystemClock().monotonic()
        for lease, since in self.abandoned.items():
            if now > since + TTL + SLACK:
                assert self.observer.lease_expiry(lease) is None, (lease, now - since)

    def teardown(self) -> None:
        if self.single is not None:
            self.single.stop(3)
        self.lead.release()
        end = time.monotonic() + 3
        names = ("leaderjob-app", "leaderjob-job", "leaderjob-singleton-job", "leaderjob-run-")
        while time.monotonic() < end:
            left = [t for t in threading.enumerate() if t.name.startswith(names)]
            if not left:
                break
            time.sleep(0.05)
        assert not left, [t.name for t in left]


@pytest.fixture(autouse=True)
def suspendable(monkeypatch: pytest.MonkeyPatch) -> None:
    _SUSPENDED[0] = 0.0
    monkeypatch.setattr(time, "clock_gettime", _clock_gettime)


Lifecycle.TestCase.settings = settings(
    max_examples=60 if LONG else 3,
    stateful_step_count=12 if LONG else 6,
    derandomize=not LONG,
    deadline=None,
)
TestLifecycle = Lifecycle.TestCase


def test_threads_are_named_as_the_teardown_expects() -> None:
    """The teardown's thread check would pass vacuously if the names changed."""
    lead = Leadership("app", ttl=TTL, store=MemoryStore(SystemClock()))
    lead.acquire(timeout=2)
    try:
        assert any(t.name == "leaderjob-app" for t in threading.enumerate())
    finally:
        lead.release()
