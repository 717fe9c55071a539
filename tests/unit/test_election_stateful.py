"""A machine searches the election core for faults: Hypothesis drives several candidates
(Elector + Machine) over one in-memory etcd on the fake clock, with faults a reader would not
think to combine.

Rules: slow grants, creates, reads and keepalives (the fake clock jumps inside the store call,
before the server applies it or after, while the reply is on its way); late replies that still
come back in time — any delay in (0, the call's timeout), so the caller uses the answer (the
window where a deadline counted from the reply instead of the send overshoots etcd's expiry),
followed by one renew interval of every candidate stepping, so the invariants are checked
after the late answer is used and before the next keepalive could hide it; failed calls; calls
applied at the server whose reply is lost; watches
that stay open and silent (a member that lost its peers); one candidate paused while the others
run; the whole host frozen (a monotonic jump with nobody
stepping); a lease expired, a key deleted, and a key put again without a lease at the server.

Invariants after every step:

* S6 / one leader: no two candidates both think they lead with a deadline in the future (a
  candidate whose key or lease was removed at the server behind its back is left out until it
  notices: that is tampering, not a fault the election can see).
* S6: no leader's local deadline lies past its lease's expiry at the store.

Liveness (L1): once the faults stop, someone leads within TTL + 1.5 s.

The run is reproducible (derandomized, no example database) and kept to a few seconds in
``make test``; ``LEADERJOB_HYPOTHESIS_EXAMPLES=2000`` searches longer, and
``LEADERJOB_HYPOTHESIS_RANDOM=1`` elsewhere than the seeded run.
"""

from __future__ import annotations

import os
import threading

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.election.elector import Elector
from leaderjob.election.memory import MemoryStore
from tests.unit.slowstore import SlowStore

TIMING = Timing.from_ttl(3)
PREFIX = "/leaderjob/test/leader"
CANDIDATES = 3
TICK = 0.1
T = 1.0
LIVENESS = TIMING.ttl + 1.5

#: Delays: any length up to the TTL, and often just either side of a timing boundary (renew
#: interval, renew deadline, D − grace, D, TTL), where off-by-a-little rules break.
_D = TIMING.deadline_after(0.0)
_BOUNDARIES = [TIMING.renew_interval, TIMING.renew_deadline, _D - TIMING.grace, _D, TIMING.ttl]
DELAYS = st.one_of(
    st.floats(0.0, TIMING.ttl),
    st.sampled_from([round(b + d, 3) for b in _BOUNDARIES for d in (-0.05, 0.05)]),
)

OPS = ("grant", "create", "standing", "keepalive", "revoke")

#: A keepalive's timeout (the group's: half a renew interval). A reply later than this is a
#: failed call; one earlier is used, and a reply-time deadline would overshoot etcd's expiry by
#: more than the margin leaves once the reply takes longer than ttl·2ρ + margin (0.126 s).
KEEPALIVE_TIMEOUT = TIMING.renew_interval / 2
_OVERSHOOT = TIMING.ttl - TIMING.deadline_after(0.0)
IN_TIME = st.one_of(
    st.floats(0.0, KEEPALIVE_TIMEOUT, exclude_max=True),
    st.sampled_from([round(b, 3) for b in (_OVERSHOOT + 0.01, KEEPALIVE_TIMEOUT - 0.01)]),
)


class ElectionSearch(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.server = MemoryStore(self.clock)
        self.stores = [SlowStore(self.server, self.clock) for _ in range(CANDIDATES)]
        self.electors = [
            Elector(s, TIMING, PREFIX, f"replica-{i}", self.clock, threading.Event())
            for i, s in enumerate(self.stores)
        ]
        #: Leases whose key or lease the server lost behind the candidate's back.
        self.tampered: set[int] = set()
        #: Candidates that have started (replicas start at different times).
        self.joined = [False] * CANDIDATES

    # -- the world ---------------------------------------------------------------------------

    def _step(self, i: int) -> None:
        e = self.electors[i]
        e.step(may_campaign=self.joined[i])
        e.release()  # no job runs in this world: an abandoned lease is revoked at once
        self._check()

    def _run(self, seconds: float, skip: int | None = None) -> None:
        for _ in range(max(1, round(seconds / TICK))):
            self.clock.advance(TICK)
            for i in range(CANDIDATES):
                if i != skip:
                    self._step(i)

    def _leaders(self) -> list[Elector]:
        now = self.clock.monotonic()
        return [e for e in self.electors if e.machine.is_leader(now)]

    def _check(self) -> None:
        now = self.clock.monotonic()
        trusted = [e for e in self._leaders() if e.lease_id not in self.tampered]
        assert len(trusted) <= 1, f"two leaders at {now:.3f}: " + ", ".join(
            f"{e.identity} D={e.machine.deadline:.3f}" for e in trusted
        )
        for e in trusted:
            assert e.lease_id is not None
            expiry = self.server.lease_expiry(e.lease_id)
            deadline = e.machine.deadline
            assert deadline is not None
            assert expiry is not None and deadline <= expiry, (
                f"{e.identity} leads until D={deadline:.3f} but its lease expires at {expiry}"
            )

    # -- rules -------------------------------------------------------------------------------

    @rule(i=st.integers(0, CANDIDATES - 1))
    def join(self, i: int) -> None:
        self.joined[i] = True
        self._step(i)

    @rule(i=st.integers(0, CANDIDATES - 1))
    def step(self, i: int) -> None:
        self._step(i)

    @rule(seconds=st.floats(0.05, 1.5))
    def time_passes(self, seconds: float) -> None:
        self._run(seconds)

    @rule(
        i=st.integers(0, CANDIDATES - 1),
        operation=st.sampled_from(OPS),
        seconds=DELAYS,
        where=st.sampled_from(["request", "reply"]),
    )
    def slow_call(self, i: int, operation: str, seconds: float, where: str) -> None:
        self.stores[i].slow_next(operation, seconds, where)

    @rule(
        i=st.integers(0, CANDIDATES - 1),
        operation=st.sampled_from(("grant", "keepalive", "standing")),
        seconds=IN_TIME,
    )
    def late_reply_in_time(self, i: int, operation: str, seconds: float) -> None:
        # Applied at the server at once, answered ``seconds`` later, inside the timeout: then
        # a renew interval passes, so the late answer is used and the invariants see it.
        self.joined[i] = True
        self.stores[i].slow_next(operation, seconds, "reply")
        self._run(TIMING.renew_interval)

    @rule(i=st.integers(0, CANDIDATES - 1), operation=st.sampled_from(OPS), n=st.integers(1, 8))
    def failed_calls(self, i: int, operation: str, n: int) -> None:
        self.stores[i].inner.fail_next(n, operation)

    @rule(i=st.integers(0, CANDIDATES - 1), operation=st.sampled_from(OPS), n=st.integers(1, 3))
    def replies_lost(self, i: int, operation: str, n: int) -> None:
        self.stores[i].inner.lose_reply_next(n, operation)  # applied at the server, then an error

    @rule(i=st.integers(0, CANDIDATES - 1))
    def watches_go_silent(self, i: int) -> None:
        # For good: their member lost its peers (or froze) and the stream stays open, silent.
        self.stores[i].silent_watches = True

    @rule(i=st.integers(0, CANDIDATES - 1), seconds=st.floats(0.1, 2 * TIMING.ttl))
    def pause_one(self, i: int, seconds: float) -> None:
        self._run(seconds, skip=i)

    @rule(seconds=st.floats(0.1, 2 * TIMING.ttl))
    def host_frozen(self, seconds: float) -> None:
        self.clock.advance(seconds)  # nobody steps: the monotonic clock jumps for everyone

    @rule(i=st.integers(0, CANDIDATES - 1))
    def lease_expired_at_server(self, i: int) -> None:
        lease_id = self.electors[i].lease_id
        if lease_id is not None:
            self.tampered.add(lease_id)
            self.server.expire(lease_id)

    @rule(i=st.integers(0, CANDIDATES - 1))
    def key_deleted_at_server(self, i: int) -> None:
        e = self.electors[i]
        if e.key is not None and e.lease_id is not None:
            self.tampered.add(e.lease_id)
            self.server.delete(e.key, timeout=T)

    @rule(i=st.integers(0, CANDIDATES - 1))
    def key_put_again_without_a_lease(self, i: int) -> None:
        # ``etcdctl put`` of a candidate's key: same name, no lease. Nothing would ever remove
        # it: the candidate whose name it bears must (liveness, checked at the end).
        e = self.electors[i]
        if e.key is not None and e.lease_id is not None:
            self.tampered.add(e.lease_id)
            self.server.put(e.key, b"by hand", timeout=T)

    @rule()
    def faults_stop(self) -> None:
        self._faults_stop_then_someone_leads()

    def _faults_stop_then_someone_leads(self) -> None:
        for s in self.stores:
            s.calm()
        self.joined = [True] * CANDIDATES
        stopped = self.clock.monotonic()
        limit = stopped + LIVENESS
        while self.clock.monotonic() < limit and not self._leaders():
            self._run(TICK)
        assert self._leaders(), (
            f"nobody leads {self.clock.monotonic() - stopped:.1f} s after the faults stopped: "
            + ", ".join(f"{e.identity}={e.phase.value}" for e in self.electors)
        )

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def safety(self) -> None:
        self._check()

    def teardown(self) -> None:
        self._faults_stop_then_someone_leads()


ElectionSearch.TestCase.settings = settings(
    max_examples=int(os.environ.get("LEADERJOB_HYPOTHESIS_EXAMPLES", "200")),
    stateful_step_count=30,
    derandomize=os.environ.get("LEADERJOB_HYPOTHESIS_RANDOM") is None,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_election_search = ElectionSearch.TestCase
