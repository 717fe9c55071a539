"""``@leaderjob.singleton`` on MemoryStore and the system clock (``@every 1s``: ~3 s per test).

Slot claims are the daemon's (S3): claimed with a Txn guarded by our own key, so a deposed
leader's claim fails and its function never runs; history records are the daemon's, so
``leaderjob history`` shows the runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

import leaderjob
from leaderjob.clock import SystemClock
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from leaderjob.inprocess.singleton import Singleton, SlotRun
from leaderjob.schedule import slot_id
from leaderjob.schedule.planner import Slot
from tests.harness.procs import wait_until


def inline(target: Callable[[], None], name: str) -> None:
    """Run a run's body in the calling thread (the test's), at once."""
    target()


def test_runs_each_slot_once_across_replicas_and_records_history() -> None:
    """S3: two replicas, a handover in the middle; every slot ran once, and is in the history."""
    store = MemoryStore(SystemClock())
    runs: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def replica(name: str, client: MemoryStore) -> Singleton:
        def work(run: SlotRun) -> None:
            assert run.valid()
            with lock:
                runs.append((name, run.slot, run.token))

        return leaderjob.singleton(
            election="rep", schedule="@every 1s", ttl=3, store=client, identity=name
        )(work)

    def ran_by(name: str, at_least: int = 1) -> bool:
        with lock:
            return sum(1 for who, _, _ in runs if who == name) >= at_least

    a = replica("a", store).start()
    time.sleep(0.3)
    b = replica("b", store.client()).start()
    assert wait_until(lambda: ran_by("a", 2), 10), runs
    a.stop(5)  # hands over: b leads at once and carries on
    assert wait_until(lambda: ran_by("b", 2), 10), runs
    b.stop(5)
    slots = [slot for _, slot, _ in runs]
    assert len(slots) == len(set(slots)), runs
    assert {name for name, _, _ in runs} == {"a", "b"}, runs
    history = ElectionData(store, "/leaderjob", "rep").history(50, timeout=1)
    ran = sorted(r["slot"] for r in history if r["outcome"] == "succeeded")
    assert ran == sorted(slots)
    assert all(r["token"] and r["identity"] in ("a", "b") for r in history)


def test_a_deposed_leaders_claim_fails_and_its_function_never_runs() -> None:
    """S3: the claim is guarded by our key; once the lease is gone the slot is not ours."""
    store = MemoryStore(SystemClock())
    called: list[str] = []
    s = Singleton(lambda: called.append("ran"), election="rep", schedule="@every 1s", ttl=3,
                  store=store)  # fmt: skip
    data = ElectionData(store, "/leaderjob", "rep")
    now = datetime.now(UTC).replace(microsecond=0)
    with s.leadership as lead:
        tenure = s.tenure_for(lead, data)
        tenure.spawn = inline
        tenure._fire(Slot(now, now, slot_id(now)))
        assert called == ["ran"]
        assert lead.key is not None
        own = store.get(lead.key, timeout=1)
        assert own is not None
        store.expire(own.lease_id)
        later = now.replace(year=now.year + 1)
        tenure._fire(Slot(later, later, slot_id(later)))
    assert called == ["ran"]
    assert data.last_slot(timeout=1) == now


def test_a_failing_function_is_recorded_and_the_schedule_goes_on() -> None:
    store = MemoryStore(SystemClock())
    calls: list[int] = []

    @leaderjob.singleton(election="rep", schedule="@every 1s", ttl=3, store=store)
    def flaky() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    flaky.start()
    # Two slots a second apart; the bound is generous, the behaviour is "the schedule goes on".
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(calls) < 2:
        time.sleep(0.05)
    flaky.stop(5)
    assert len(calls) >= 2
    history = ElectionData(store, "/leaderjob", "rep").history(10, timeout=1)
    # Every run is recorded as failed; a slot may also be skipped (overlap) on a slow machine.
    runs = [r for r in history if r.get("run_id") is not None]
    assert runs and all(r["outcome"] == "failed" for r in runs)
    assert "boom" in runs[0]["error"]


def test_decorated_function_still_calls_directly_and_bad_options_fail_at_decoration() -> None:
    @leaderjob.singleton(election="rep", schedule="@daily", store=MemoryStore(SystemClock()))
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42 and double.__name__ == "double"
    with pytest.raises(ValueError, match=r"^--schedule '61 \* \* \* \*'"):
        leaderjob.singleton(election="rep", schedule="61 * * * *")(double.fn)
    with pytest.raises(ValueError, match=r"--ttl 2\.5s"):
        leaderjob.singleton(election="rep", schedule="@daily", ttl=2.5)(double.fn)


def _outcomes(store: MemoryStore, election: str) -> list[tuple[str, str | None]]:
    history = ElectionData(store, "/leaderjob", election).history(50, timeout=1)
    return [(r["outcome"], r.get("error")) for r in history]


def _first_run(store: MemoryStore, fn: Callable[..., object], election: str) -> Singleton:
    single = leaderjob.singleton(election=election, schedule="@every 1s", ttl=3, store=store)(fn)
    single.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _outcomes(store, election):
        time.sleep(0.05)
    single.stop(5)
    return single


def test_an_async_def_function_is_awaited_on_a_loop_of_its_own() -> None:
    """An ``async def`` used to be called, never awaited (a RuntimeWarning) and recorded
    ``succeeded``; now it runs to completion on an event loop in the run's thread."""
    store = MemoryStore(SystemClock())
    done: list[int] = []

    async def work(run: SlotRun) -> None:
        import asyncio

        await asyncio.sleep(0.01)
        done.append(run.token)

    _first_run(store, work, "coro")
    assert done
    assert _outcomes(store, "coro")[0][0] == "succeeded"


def test_a_run_that_raises_systemexit_is_recorded_failed() -> None:
    """``sys.exit(1)`` escaped ``except Exception`` and was recorded ``succeeded``."""
    store = MemoryStore(SystemClock())

    def work() -> None:
        raise SystemExit(1)

    _first_run(store, work, "exits")
    outcome, error = _outcomes(store, "exits")[0]
    assert outcome == "failed"
    assert error is not None and "SystemExit" in error


def test_start_after_a_timed_out_stop_serves_again_and_concurrent_starts_make_one_thread() -> None:
    """``stop(t)`` timing out then ``start()`` used to leave it stopped (the old thread was
    still alive); two concurrent ``start()``s made two scheduler threads."""
    store = MemoryStore(SystemClock())
    release = threading.Event()
    runs: list[int] = []

    def work(run: SlotRun) -> None:
        runs.append(run.token)
        if len(runs) == 1:
            release.wait(5)  # ignores its cancel event

    single = leaderjob.singleton(election="again", schedule="@every 1s", ttl=3, store=store)(work)
    starters = [threading.Thread(target=single.start) for _ in range(4)]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    names = [t.name for t in threading.enumerate()]
    assert names.count("leaderjob-singleton-again") == 1, names
    deadline = time.monotonic() + 5
    while not runs and time.monotonic() < deadline:
        time.sleep(0.05)
    single.stop(0.2)  # the run ignores it: the lease is revoked, the thread lives on
    single.start()
    release.set()
    deadline = time.monotonic() + 6
    while len(runs) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    single.stop(5)
    assert len(runs) >= 2 and runs[1] > runs[0], runs  # a new tenure, a larger token (L5)
