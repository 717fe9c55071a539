"""In-process leadership: the driver on the fake clock and MemoryStore, the handle on real threads.

Timing: ttl 3 s (renew every 1 s, grace 0.3 s, margin 0.12 s): ``D`` is 2.874 s after the last
answered keepalive was sent, and ``valid()`` turns False at ``D − grace`` = 2.574 s after it.
The driver tests step it by hand (``cycle`` then ``wait``, which jumps the fake clock to the next
wake-up); the handle tests run its real thread on the system clock against MemoryStore, where
nothing waits for a TTL.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from leaderjob.clock import FakeClock, SystemClock
from leaderjob.config import Timing
from leaderjob.election.memory import MemoryStore
from leaderjob.fencing import StaleToken
from leaderjob.inprocess.leadership import (
    Driver,
    Leadership,
    LeadershipError,
    LeadershipTimeout,
    LeadershipUnavailable,
    metrics_for,
)
from leaderjob.log import get_logger
from leaderjob.ops.metrics import Metrics

TIMING = Timing.from_ttl(3)
PREFIX = "/leaderjob/app/leader"


def driver(
    store: MemoryStore,
    clock: FakeClock,
    name: str = "a",
    etcd_timeout: float = 3.0,
    metrics: Metrics | None = None,
) -> tuple[Driver, list[str]]:
    calls: list[str] = []
    d = Driver(
        store,
        TIMING,
        PREFIX,
        name,
        clock=clock,
        rpc_timeout=1.0,
        etcd_timeout=etcd_timeout,
        log=get_logger(identity=name),
        on_lost=calls.append,
        metrics=metrics,
        label="app",
    )
    return d, calls


def run(clock: FakeClock, seconds: float, *drivers: Driver) -> None:
    """Cycle every driver until ``seconds`` of fake time passed (each waits to its wake-up)."""
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        for d in drivers:
            if not d.done:
                d.cycle()
        now = clock.monotonic()
        wake = min(d.elector.next_wakeup(now, True) for d in drivers if not d.done)
        clock.advance(max(0.01, min(wake, end) - now))


@pytest.fixture
def world() -> tuple[FakeClock, MemoryStore]:
    clock = FakeClock()
    return clock, MemoryStore(clock)


def test_leads_with_the_daemons_token_and_key(world: tuple[FakeClock, MemoryStore]) -> None:
    """S2: the token is our election key's create revision, under the daemon's key layout."""
    clock, store = world
    d, _ = driver(store, clock)
    assert d.cycle() == "leading"
    assert d.tenure is not None
    info = store.get(d.tenure.key, timeout=1)
    assert info is not None and info.create_revision == d.tenure.token
    assert d.tenure.key.startswith(PREFIX + "/")
    assert d.valid() and d.settled.is_set()


def test_valid_stays_true_while_renewals_pass(world: tuple[FakeClock, MemoryStore]) -> None:
    """L4: no fault, no change: a healthy leader stays valid over many TTLs."""
    clock, store = world
    d, lost = driver(store, clock)
    d.cycle()
    for _ in range(100):
        run(clock, 0.1, d)
        assert d.valid()
    assert not lost and d.remaining() > TIMING.ttl / 3


def test_valid_is_false_after_d_minus_grace_even_if_the_thread_never_runs(
    world: tuple[FakeClock, MemoryStore],
) -> None:
    """S6 in-process: valid() reads the clock itself. A starved or frozen driver thread (no
    cycle at all) does not keep a tenure valid past D − grace."""
    clock, store = world
    d, _ = driver(store, clock)
    d.cycle()
    deadline = d.elector.machine.deadline
    assert deadline is not None
    left = d.remaining()
    assert left == pytest.approx(deadline - TIMING.grace - clock.monotonic())
    clock.advance(left - 0.01)
    assert d.valid() and 0 < d.remaining() <= 0.011
    clock.advance(0.02)  # past D − grace: no cycle ran, nothing renewed
    assert not d.valid()
    assert d.remaining() == 0.0


def test_a_frozen_process_thaws_invalid_and_is_deposed(
    world: tuple[FakeClock, MemoryStore],
) -> None:
    """The SIGSTOP case on the fake clock: frozen 2·TTL, the successor leads meanwhile; after the
    thaw the first valid() is False, the fenced write is refused (S1) and on_lost says why."""
    clock, store = world
    a, lost = driver(store, clock, "a")
    b, _ = driver(store.client(), clock, "b")
    a.cycle()
    b.cycle()
    assert a.valid() and b.tenure is None
    clock.advance(2 * TIMING.ttl)  # a is frozen: neither its thread nor its caller runs
    run(clock, 1.0, b)
    assert b.valid()
    assert not a.valid()  # the caller's first check after the thaw
    assert a.tenure is not None
    fence_ok = store.guarded_put(a.tenure.key, a.tenure.token, [("/x", b"1")], timeout=1)
    assert not fence_ok
    a.cycle()  # the thread's first act after the thaw: the deadline check
    assert a.lost.is_set() and lost == ["deadline_passed"]


def test_leaving_resigns_and_revokes_so_the_successor_leads_at_once(
    world: tuple[FakeClock, MemoryStore],
) -> None:
    """L2: leaving the block resigns and revokes; the waiting candidate leads on its next cycle,
    with no TTL wait (it is woken by the deletion of our key)."""
    clock, store = world
    a, lost = driver(store, clock, "a")
    b, _ = driver(store.client(), clock, "b")
    a.cycle()
    b.cycle()
    run(clock, 1.0, a, b)
    assert a.valid() and b.tenure is None
    lease = a.elector.lease_id
    a.request_leave()
    assert a.cycle() == "left" and a.done
    assert lost == []  # a planned handover is no loss: on_lost is not called
    assert lease is not None and store.lease_remaining(lease, timeout=1) == -1  # revoked
    assert b.waker.is_set()  # the watch on our key fired
    assert b.cycle() == "leading"  # at once: the clock did not move


def test_a_refused_fenced_write_ends_the_tenure(world: tuple[FakeClock, MemoryStore]) -> None:
    """S1: once etcd refuses our guard, valid() is False at once and on_lost is called."""
    clock, store = world
    a, lost = driver(store, clock)
    a.cycle()
    lease = a.elector.lease_id
    assert lease is not None
    store.expire(lease)
    a.deposed()
    assert not a.valid()
    a.cycle()
    assert a.lost.is_set() and lost == ["stale_token"]


def test_a_lost_tenure_is_never_resumed(world: tuple[FakeClock, MemoryStore]) -> None:
    """L5: after a loss this acquisition is over: no new campaign until the caller leaves and
    acquires again (which takes a new lease and a larger token)."""
    clock, store = world
    a, lost = driver(store, clock)
    a.cycle()
    store.partition()
    run(clock, 2 * TIMING.ttl, a)
    assert a.lost.is_set() and len(lost) == 1
    store.heal()
    run(clock, 2 * TIMING.ttl, a)
    assert not a.valid() and a.elector.lease_id is None and len(lost) == 1


def test_unreachable_etcd_gives_up_after_etcd_timeout(
    world: tuple[FakeClock, MemoryStore],
) -> None:
    """Never hang for ever: waiting to lead with etcd unreachable fails after etcd_timeout."""
    clock, store = world
    store.partition()
    d, _ = driver(store, clock, etcd_timeout=4.0)
    start = clock.monotonic()
    while d.fatal is None:
        assert clock.monotonic() - start < 4.0 + TIMING.renew_interval
        d.cycle()
        d.wait()
    assert isinstance(d.fatal, LeadershipUnavailable)
    assert clock.monotonic() - start >= 4.0
    assert d.settled.is_set() and d.tenure is None


# -- the handle, with its real thread -------------------------------------------------------------


def test_bad_options_raise_the_clis_one_line_messages() -> None:
    with pytest.raises(ValueError, match=r"^--ttl 2\.5s: etcd leases are granted in whole"):
        Leadership("cleanup", ttl=2.5)
    expected = "; ".join(Timing.from_ttl(3, grace=2).validate())
    with pytest.raises(ValueError, match=r"renew deadline \+ grace \+ margin") as info:
        Leadership("cleanup", ttl=3, grace=2)
    assert str(info.value) == expected and "\n" not in expected
    with pytest.raises(ValueError, match="--election 'a b'"):
        Leadership("a b")
    with pytest.raises(ValueError, match="is not host:port"):
        Leadership("cleanup", endpoints=["etcd-0"])


def test_with_block_hands_over_on_exit_and_try_acquire_times_out() -> None:
    """L2 on real threads: while A leads, B's try_acquire returns False in time; once A's block
    ends, B leads within a fraction of a second."""
    store = MemoryStore(SystemClock())
    a = Leadership("app", ttl=3, store=store, timeout=2)
    b = Leadership("app", ttl=3, store=store.client())
    with a as lead:
        assert lead.valid() and lead.token is not None
        started = time.monotonic()
        assert not b.try_acquire(timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 1.0
        token = lead.token
    assert not a.valid() and a.lost.is_set()
    started = time.monotonic()
    assert b.try_acquire(timeout=2)
    assert time.monotonic() - started < 0.5
    try:
        assert b.token is not None and b.token > token
        assert b.valid()
    finally:
        b.release()


def test_acquire_timeout_raises_and_leaves_the_queue() -> None:
    store = MemoryStore(SystemClock())
    with Leadership("app", ttl=3, store=store):
        c = Leadership("app", ttl=3, store=store.client(), timeout=0.2)
        with pytest.raises(LeadershipTimeout), c:
            pass
        assert len(store.candidates("/leaderjob/app/leader", timeout=1)) == 1


def test_fenced_put_writes_while_leading_and_refuses_once_deposed() -> None:
    """S1 on the handle: the guard is our key; an expired lease refuses the write."""
    store = MemoryStore(SystemClock())
    lost: list[str] = []
    with Leadership("app", ttl=3, store=store, on_lost=lost.append) as lead:
        lead.fenced_put("/app/cursor", "1")
        info = store.get("/app/cursor", timeout=1)
        assert info is not None and info.value == b"1"
        assert lead.key is not None
        own = store.get(lead.key, timeout=1)
        assert own is not None
        store.expire(own.lease_id)
        with pytest.raises(StaleToken):
            lead.fenced_put("/app/cursor", "2")
        assert not lead.valid()
        assert lead.lost.wait(2.0)
        info = store.get("/app/cursor", timeout=1)
        assert info is not None and info.value == b"1"
    # Whichever sees the expiry first ends the tenure: the refused write, or the driver thread
    # (its watch fires when the key goes). Either way once, and the write was refused.
    assert len(lost) == 1 and lost[0] in ("stale_token", "key_lost"), lost


def test_fenced_put_without_leading_is_an_error() -> None:
    lead = Leadership("app", ttl=3, store=MemoryStore(SystemClock()))
    with pytest.raises(LeadershipError, match="not leading"):
        lead.fenced_put("/k", "v")


def test_async_with_leads_and_hands_over() -> None:
    store = MemoryStore(SystemClock())

    async def main() -> tuple[bool, bool]:
        async with Leadership("app", ttl=3, store=store) as lead:
            inside = lead.valid()
        return inside, lead.valid()

    inside, after = asyncio.run(main())
    assert inside and not after
    assert store.candidates("/leaderjob/app/leader", timeout=1) == []


def test_import_leaderjob_stays_cheap() -> None:
    """The export is lazy: importing the package loads neither the driver nor gRPC."""
    code = (
        "import sys, leaderjob\n"
        "assert 'leaderjob.inprocess' not in sys.modules and 'grpc' not in sys.modules\n"
        "from leaderjob import Leadership\n"
        "assert Leadership.__module__ == 'leaderjob.inprocess.leadership'\n"
        "assert callable(leaderjob.singleton) and leaderjob.singleton.SlotRun\n"
        "assert leaderjob.SlotRun is leaderjob.singleton.SlotRun and leaderjob.Leader\n"
        "assert leaderjob.Singleton is leaderjob.singleton.Singleton\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_cancelled_async_with_leaves_the_queue() -> None:
    """Cancelling a task waiting in ``async with`` withdraws its candidacy: no key left behind
    to lead with nobody using it."""
    store = MemoryStore(SystemClock())

    async def wait_behind_leader() -> None:
        async with Leadership("app", ttl=3, store=store.client()):
            raise AssertionError("must not lead while the other holds it")

    with Leadership("app", ttl=3, store=store):
        with pytest.raises(TimeoutError):
            asyncio.run(asyncio.wait_for(wait_behind_leader(), 0.3))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if len(store.candidates("/leaderjob/app/leader", timeout=1)) == 1:
                break
            time.sleep(0.02)
        assert len(store.candidates("/leaderjob/app/leader", timeout=1)) == 1


def test_unreachable_etcd_raises_after_the_callers_timeout() -> None:
    """Never hang for ever, and never call an unreachable etcd "someone else leads": the
    caller's timeout ends the wait with LeadershipUnavailable, not False."""
    store = MemoryStore(SystemClock())
    store.partition()
    lead = Leadership("app", ttl=3, store=store)
    started = time.monotonic()
    with pytest.raises(LeadershipUnavailable, match="etcd unreachable"):
        lead.try_acquire(timeout=0.3)
    assert time.monotonic() - started < 0.3 + 1.5  # the timeout, then resign and join
    with pytest.raises(LeadershipUnavailable):
        Leadership("app", ttl=3, store=store, timeout=0.3).acquire()


def test_the_daemons_leadership_metrics_on_the_applications_registry(
    world: tuple[FakeClock, MemoryStore],
) -> None:
    """Observability parity: is_leader, fencing_token, transitions, keepalives and the deadline
    left, as the daemon exports them, under election="app"; back to 0 once the tenure is lost."""
    clock, store = world
    registry = CollectorRegistry()
    d, _ = driver(store, clock, metrics=metrics_for(registry, "app"))

    def value(name: str, **labels: str) -> float | None:
        # Keepalives are the session's (election only); the rest are the job's, named like
        # the election, as for a daemon of one job.
        job = {} if "keepalives" in name else {"job_name": "app"}
        return registry.get_sample_value(name, {"election": "app", **job, **labels})

    assert value("leaderjob_is_leader") == 0
    d.cycle()
    assert d.tenure is not None
    assert value("leaderjob_is_leader") == 1
    assert value("leaderjob_fencing_token") == d.tenure.token
    assert value("leaderjob_leader_transitions_total", direction="acquired") == 1
    run(clock, 2.5, d)
    assert (value("leaderjob_lease_keepalives_total", result="ok") or 0) >= 2
    assert 0 < (value("leaderjob_lease_deadline_remaining_seconds") or 0) <= TIMING.ttl
    store.partition()
    run(clock, 3.0, d)
    assert d.lost.is_set()
    assert value("leaderjob_is_leader") == 0 and value("leaderjob_fencing_token") == 0
    assert value("leaderjob_leader_transitions_total", direction="lost") == 1
    assert (value("leaderjob_lease_keepalives_total", result="failed") or 0) >= 1
    assert value("leaderjob_lease_deadline_remaining_seconds") == 0


def test_leaderships_share_a_registry_and_never_touch_the_global_one() -> None:
    """Two elections (or a singleton and a Leadership) on one registry: one metric set, a label
    each. Without a registry, nothing is registered anywhere."""
    before = set(REGISTRY._names_to_collectors)
    clock = FakeClock()
    registry = CollectorRegistry()
    store = MemoryStore(clock)
    a = Leadership("one", store=store, clock=clock, ttl=3, registry=registry)
    b = Leadership("two", store=store, clock=clock, ttl=3, registry=registry)
    assert a.metrics is b.metrics is not None
    two = {"election": "two", "job_name": "two"}
    assert registry.get_sample_value("leaderjob_is_leader", two) == 0
    assert Leadership("three", store=store, clock=clock, ttl=3).metrics is None
    assert set(REGISTRY._names_to_collectors) == before


def test_a_suspend_of_the_host_counts_against_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SAFETY §5b: deadlines are kept on CLOCK_BOOTTIME, which counts a suspend of the host
    (CLOCK_MONOTONIC stops meanwhile, and etcd's lease does not). A suspend is faked as
    CLOCK_BOOTTIME jumping 60 s while CLOCK_MONOTONIC does not: ``valid()`` must turn False,
    and the daemon names that clock to its guardian process, which reads it too. Before:
    time.monotonic(), valid() stayed True."""
    import leaderjob.clock
    from leaderjob.guard import guardian, supervisor

    assert supervisor.CLOCK == "boottime"  # what the daemon hands the guardian (Linux)
    guardian_clock = guardian.clock_id(supervisor.CLOCK)

    real = time.clock_gettime
    before = real(time.CLOCK_BOOTTIME)
    assert before <= SystemClock().monotonic() <= real(time.CLOCK_BOOTTIME)
    store = MemoryStore(SystemClock())
    lead = Leadership("app", ttl=3, store=store)
    lead.acquire(timeout=2)
    try:
        assert lead.valid()
        guardian_before = time.clock_gettime(guardian_clock)
        monkeypatch.setattr(
            time,
            "clock_gettime",
            lambda c: real(c) + (60.0 if c == time.CLOCK_BOOTTIME else 0.0),
        )
        assert not lead.valid()
        assert lead.remaining() == 0.0
        assert time.clock_gettime(guardian_clock) - guardian_before >= 60.0
        assert leaderjob.clock.SOURCE == "CLOCK_BOOTTIME"  # Linux
    finally:
        monkeypatch.undo()
        lead.release()


def test_the_library_logs_nowhere_until_the_application_configures_logging() -> None:
    """A library must not print: without ``leaderjob.log.configure()`` (or the application's
    own logging set-up) a Leadership's events go to the standard library's ``leaderjob``
    logger, which has only a NullHandler. Before: INFO lines on stdout."""
    code = (
        "from leaderjob.clock import SystemClock\n"
        "from leaderjob.election.memory import MemoryStore\n"
        "from leaderjob.inprocess.leadership import Leadership\n"
        "with Leadership('app', ttl=3, store=MemoryStore(SystemClock())) as lead:\n"
        "    assert lead.valid()\n"
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "with Leadership('app', ttl=3, store=MemoryStore(SystemClock())) as lead:\n"
        "    pass\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert lines and all(line.startswith("INFO:leaderjob:") for line in lines), out.stdout
    assert any("election.acquired" in line for line in lines)


def test_a_reserved_word_is_no_fence_table_name() -> None:
    from leaderjob.fencing import FencingError
    from leaderjob.fencing.sql import ddl

    for name in ("user", "public.order", "SELECT"):
        with pytest.raises(FencingError, match="reserved word"):
            ddl(name)
    assert "app.leaderjob_fence" in ddl("app.leaderjob_fence")


def test_release_inside_on_lost_and_lost_kept_across_acquires() -> None:
    """``release()`` from the ``on_lost`` callback (the driver thread) used to raise; ``lost``
    was a new Event on every acquire, so a reference taken before acquiring never fired."""
    store = MemoryStore(SystemClock())
    errors: list[BaseException] = []
    lead: list[Leadership] = []

    def on_lost(reason: str) -> None:
        try:
            lead[0].release()
        except BaseException as exc:
            errors.append(exc)

    lead.append(Leadership("app", ttl=3, store=store, on_lost=on_lost))
    lost = lead[0].lost
    lead[0].acquire(timeout=2)
    store.expire(lead[0]._hold.driver.elector.lease_id)  # type: ignore[union-attr,arg-type]
    assert lost.wait(5)
    time.sleep(0.2)
    assert errors == []
    assert not lead[0].valid()
    lead[0].acquire(timeout=2)  # the handle is free again: a new tenure
    assert not lost.is_set() and lead[0].valid()
    lead[0].release()
    assert lost.is_set()


def test_try_acquire_zero_takes_one_look() -> None:
    """``try_acquire(0)`` on a healthy etcd used to raise LeadershipUnavailable."""
    store = MemoryStore(SystemClock())
    first = Leadership("app", ttl=3, store=store)
    assert first.try_acquire(0)
    second = Leadership("app", ttl=3, store=store.client())
    assert not second.try_acquire(0)
    first.release()
    assert second.try_acquire(0)
    second.release()


def test_lost_is_set_by_the_first_valid_that_says_false(
    world: tuple[FakeClock, MemoryStore],
) -> None:
    """After a thaw the driver thread may be held up (an RPC in flight until its deadline):
    ``lost`` fired up to a grace after ``valid()`` said False. Now the first False sets it, and
    a tenure never turns valid again."""
    clock, store = world
    d, calls = driver(store, clock)
    d.cycle()
    deadline = d.elector.machine.deadline
    assert d.valid() and deadline is not None
    clock.advance(deadline - TIMING.grace - clock.monotonic() + 0.01)  # frozen past D − grace
    assert not d.lost.is_set()
    assert not d.valid()
    assert d.lost.is_set()  # at once, before the driver thread ran
    d.cycle()
    assert not d.valid() and calls and calls[0] in ("deadline_passed", "renew_deadline")


def test_the_handle_is_composed_not_inherited() -> None:
    """``Leadership``'s public surface is built of parts handed its ``Hold`` (the fenced writes,
    asyncio's side, the conveniences): no method's meaning hangs on base order."""
    from leaderjob.inprocess.leadership_api import Conveniences
    from leaderjob.inprocess.leadership_async import AsyncLeadership
    from leaderjob.inprocess.leadership_fenced import FencedWrites
    from leaderjob.inprocess.leadership_hold import Hold

    parts = (Leadership, Hold, FencedWrites, AsyncLeadership, Conveniences)
    assert [c for c in parts if c.__mro__ != (c, object)] == []


def test_every_name_the_docs_call_on_a_handle_is_on_it() -> None:
    """What docs/inprocess.md, docs/fencing.md and the README call on ``lead`` (or
    ``Leadership.``) exists on a handle, so a change of its parts keeps the documented API."""
    root = Path(__file__).resolve().parents[2]
    text = "".join(
        (root / name).read_text() for name in ("README.md", "docs/inprocess.md", "docs/fencing.md")
    )
    names = set(re.findall(r"\b(?:lead|Leadership)\.([a-z_]+)", text))
    assert {"fenced_put", "acquire_async", "run_forever", "lost", "token"} <= names
    lead = vars(Leadership("app", ttl=3, store=MemoryStore(SystemClock())))
    assert sorted(n for n in names if not hasattr(Leadership, n) and n not in lead) == []


def test_a_key_put_by_hand_in_the_queue_is_removed_and_said_so(
    world: tuple[FakeClock, MemoryStore],
) -> None:
    """In-process, as in the daemon: the leader's key put again by hand without a lease ends
    the tenure (``on_lost``: the key is not the one granted). The key would hold the queue for
    ever: the handle whose name it bears removes it and says so in its log
    (``election.stray_key_removed``), and the next handle leads."""
    import structlog.testing

    clock, store = world
    with structlog.testing.capture_logs() as logs:  # before the handle's logger is first used
        d, lost = driver(store, clock)
        d.cycle()
        assert d.tenure is not None
        key, token = d.tenure.key, d.tenure.token
        store.put(key, b"by hand", timeout=1)
        run(clock, 2 * TIMING.renew_interval, d)
    assert lost == ["key_lost"]
    removed = [e for e in logs if e["event"] == "election.stray_key_removed"]
    assert [(e["key"], e["create_revision"]) for e in removed] == [(key, token)]
    assert store.get(key, timeout=1) is None
    nxt, _ = driver(store, clock, name="b")
    run(clock, 2 * TIMING.renew_interval, nxt)
    assert nxt.tenure is not None and nxt.tenure.token > token
