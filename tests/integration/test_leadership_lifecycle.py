"""A leadership's lifecycle against a real etcd (SAFETY.md §5b): cancellation, fork, stop.

Each test checks the one thing a leak would break: once the owner gave up, another candidate
leads at once (``try_acquire`` within a second or two), and the one that gave up is not valid.
TTL 3 s; each test takes about a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import leaderjob
from leaderjob import Leadership
from leaderjob.fencing import FencingError
from leaderjob.inprocess.leadership import LeadershipError
from leaderjob.inprocess.singleton import Singleton, SlotRun
from tests.harness.etcd import EtcdServer

TTL = 3


@pytest.fixture
def new(etcd: EtcdServer, prefix: str) -> Iterator[type[Leadership]]:
    made: list[Leadership] = []

    def make(identity: str = "x", **options: object) -> Leadership:
        lead = Leadership(
            "app",
            endpoints=[etcd.endpoint],
            prefix=prefix,
            ttl=TTL,
            identity=identity,
            **options,  # type: ignore[arg-type]
        )
        made.append(lead)
        return lead

    yield make  # type: ignore[misc]
    for lead in made:
        lead.release()


def outside(lead: Leadership, name: str) -> str:
    """A key of the test's prefix outside the election's own keys."""
    return lead.prefix.rsplit("/app/", 1)[0] + f"/data/{name}"


def others_lead_at_once(new: type[Leadership]) -> bool:
    """Another candidate leads within 1.5 s: nobody holds the election."""
    other = new(identity="other")  # type: ignore[call-arg]
    try:
        return other.try_acquire(1.5)
    finally:
        other.release()


# -- 1. cancellation is part of acquire ----------------------------------------------------------


def test_a_cancel_after_etcd_made_it_leader_withdraws_the_candidacy(
    new: type[Leadership],
) -> None:
    """§5b: the task is cancelled after the driver thread already won, before the coroutine
    resumed (the loop is held up on purpose). Before: the lease renewed for ever, unowned."""
    lead = new(identity="b")  # type: ignore[call-arg]

    async def enter() -> None:
        async with lead:
            await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(enter())
        await asyncio.sleep(0)  # the task starts waiting
        end = time.monotonic() + 5
        while not lead.valid() and time.monotonic() < end:
            time.sleep(0.005)  # the loop stands still: the win cannot reach the coroutine
        assert lead.valid()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not lead.valid()
    assert others_lead_at_once(new)


def test_asyncio_timeout_around_async_with_never_leaks_a_leader(new: type[Leadership]) -> None:
    """The reported race: ``asyncio.timeout`` around ``async with`` while etcd answers; whatever
    the moment the timeout hits, nobody leads afterwards."""
    for delay in (0.0, 0.002, 0.005, 0.01, 0.02, 0.05):
        lead = new(identity=f"t{delay}")  # type: ignore[call-arg]

        async def main(lead: Leadership = lead, delay: float = delay) -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay), lead:
                    await asyncio.sleep(60)

        asyncio.run(main())
        assert not lead.valid()
    assert others_lead_at_once(new)


def test_ctrl_c_while_waiting_in_with_leaves_the_queue(new: type[Leadership]) -> None:
    """Sync: SIGINT while ``with Leadership`` waits behind a leader withdraws the candidacy.
    Before: it stayed queued, won when the leader left, and led unowned."""
    holder = new(identity="holder")  # type: ignore[call-arg]
    holder.acquire()
    waiter = new(identity="waiter")  # type: ignore[call-arg]
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread().ident == main
    # Python's own Ctrl-C, whatever this process inherited: a suite started in the background
    # of a shell without job control starts with SIGINT ignored, and nothing would arrive.
    signal.signal(signal.SIGINT, signal.default_int_handler)  # set back after the test
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt), waiter:
        raise AssertionError("must not lead while the holder does")
    holder.release()
    assert others_lead_at_once(new)
    assert not waiter.valid()


def test_waiting_to_lead_holds_no_thread_of_the_default_pool(new: type[Leadership]) -> None:
    """Defect 7: six waiters with a pool of two; ``asyncio.to_thread`` still runs at once."""
    holder = new(identity="holder")  # type: ignore[call-arg]
    holder.acquire()
    from concurrent.futures import ThreadPoolExecutor

    async def main() -> float:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        waiters = [new(identity=f"w{i}") for i in range(6)]  # type: ignore[call-arg]

        async def wait_to_lead(w: Leadership) -> None:
            async with w:
                raise AssertionError("must not lead while the holder does")

        tasks = [asyncio.create_task(wait_to_lead(w)) for w in waiters]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.to_thread(lambda: None), 3)
        took = time.monotonic() - started
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return took

    assert asyncio.run(main()) < 0.5
    holder.release()
    assert others_lead_at_once(new)


# -- 5. fork invalidates ----------------------------------------------------------------------


def test_a_forked_child_never_believes_it_leads_and_cannot_depose_the_parent(
    new: type[Leadership],
) -> None:
    """§5b: after ``os.fork()`` the child holds no keepalive: ``valid()`` False, ``lost`` set,
    no fenced write; its ``release()`` leaves the parent's lease alone."""
    lead = new(identity="parent")  # type: ignore[call-arg]
    lead.acquire()
    token = lead.token
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            said: dict[str, object] = {"valid": lead.valid(), "lost": lead.lost.is_set()}
            try:
                lead.fenced_put("/ljtest/forked", "child")
                said["fenced"] = "written"
            except LeadershipError as exc:
                said["fenced"] = type(exc).__name__
            lead.release()
            os.write(w, json.dumps(said).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        said = json.loads(f.read())
    os.waitpid(pid, 0)
    assert said == {"valid": False, "lost": True, "fenced": "LeadershipError"}
    time.sleep(0.3)
    assert lead.valid() and lead.token == token
    lead.fenced_put(outside(lead, "parent"), "still leading")  # the parent's key stands


# -- 2. stop from anywhere ----------------------------------------------------------------------


def singleton_on(etcd: EtcdServer, prefix: str, fn: object, **options: object) -> Singleton:
    return leaderjob.singleton(  # type: ignore[no-any-return]
        election="app",
        schedule="@every 1s",
        endpoints=[etcd.endpoint],
        prefix=prefix,
        ttl=TTL,
        identity="single",
        **options,
    )(fn)


def test_stop_from_inside_the_scheduled_function_returns_and_hands_over(
    etcd: EtcdServer, prefix: str, new: type[Leadership]
) -> None:
    """§5b: ``stop()`` from the function's own thread does not deadlock; once the function
    returns, the singleton resigns and revokes. Before: stop joined the thread waiting for it."""
    returned = threading.Event()
    single: list[Singleton] = []

    def work(run: SlotRun) -> None:
        single[0].stop()
        returned.set()

    single.append(singleton_on(etcd, prefix, work))
    single[0].start()
    try:
        assert returned.wait(5), "stop() from inside the function never returned"
        assert others_lead_at_once(new)
    finally:
        single[0].stop(2)


def test_stop_with_a_timeout_revokes_even_if_the_run_ignores_cancel(
    etcd: EtcdServer, prefix: str, new: type[Leadership]
) -> None:
    """§5b: ``stop(timeout)`` that cannot finish its run still revokes the lease: the run is
    cancelled, no longer valid, and another candidate leads. Before: the lease kept renewing."""
    running = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def stubborn(run: SlotRun) -> None:
        running.set()
        release.wait(10)  # ignores run.cancelled
        seen.append(run.valid())

    single = singleton_on(etcd, prefix, stubborn).start()
    try:
        assert running.wait(5)
        started = time.monotonic()
        single.stop(0.5)
        assert time.monotonic() - started < 2.0
        assert others_lead_at_once(new)
    finally:
        release.set()
        single.stop(5)
    assert seen == [False]


# -- 4. the election's own keys ---------------------------------------------------------------


def test_a_fenced_write_inside_the_elections_keys_is_refused_and_proclaim_keeps_the_lease(
    new: type[Leadership], etcd: EtcdServer
) -> None:
    """A ``fenced_put`` on the leader key used to pass the guard and drop the key's lease: the
    key outlived the revoke and no candidate could ever lead again. Refused now, nothing sent;
    ``proclaim`` re-puts the value with the lease, so leaving still hands over."""
    lead = new(identity="a")
    lead.acquire()
    key = lead.key
    assert key is not None
    for target in (key, f"{lead.prefix}/other", lead.prefix.rsplit("/", 1)[0] + "/slots/x"):
        with pytest.raises(FencingError, match="inside the election's own keys"):
            lead.fenced_put(target, "mine")
    assert lead.valid()
    lead.proclaim("serving on :8080")
    store = lead.store
    info = store.get(key, timeout=2)
    assert info is not None and info.value == b"serving on :8080"
    assert info.lease_id == lead._hold.driver.elector.lease_id  # type: ignore[union-attr]
    lead.release()
    assert others_lead_at_once(new)


# -- what a Python developer expects ------------------------------------------------------------


def test_an_exiting_interpreter_hands_over_without_a_ttl_wait(
    new: type[Leadership], etcd: EtcdServer, prefix: str
) -> None:
    """atexit: a process that ends while leading (no release, TTL 10 s) revokes on the way out;
    another candidate leads at once instead of after the TTL."""
    code = (
        "import sys\n"
        "from leaderjob import Leadership\n"
        "lead = Leadership('app', endpoints=[sys.argv[1]], prefix=sys.argv[2], ttl=10)\n"
        "lead.acquire(timeout=5)\n"
        "print(lead.token, flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, etcd.endpoint, prefix],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert int(out.stdout.strip()) > 0
    assert others_lead_at_once(new)


def test_leader_observe_and_run_forever_with_client_go_callbacks(new: type[Leadership]) -> None:
    """leader()/observe() as etcd's Election and kazoo; run_forever campaigns again after each
    tenure (a new lease, a larger token: L5), calling on_started/on_stopped/on_new_leader."""
    looper = new(identity="looper")
    watcher = new(identity="watcher")
    assert watcher.leader() is None
    tokens: list[int] = []
    stopped: list[bool] = []
    seen: list[object] = []
    stop = threading.Event()

    def on_started(lead: Leadership) -> None:
        assert lead.token is not None and lead.valid()
        now = watcher.leader()
        assert now is not None and now.token == lead.token and now.value == "looper"
        tokens.append(lead.token)
        end = time.monotonic() + 3
        while not any(getattr(x, "token", 0) == lead.token for x in seen):
            assert time.monotonic() < end, seen
            time.sleep(0.02)  # on_new_leader reports us, from its own thread
        if len(tokens) == 3:
            stop.set()

    looper.run_forever(
        on_started, lambda: stopped.append(True), on_new_leader=seen.append, stop=stop
    )
    assert len(tokens) == 3 and tokens == sorted(set(tokens)), tokens
    assert stopped == [True, True, True]
    assert watcher.leader() is None

    async def main() -> str | None:
        async with looper:
            await looper.fenced_put_async(outside(looper, "x"), "1")
            waiting = asyncio.create_task(looper.wait_lost())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await looper.release_async()
            return await asyncio.wait_for(waiting, 2)

    assert asyncio.run(main()) is None  # left on purpose: no loss reason
