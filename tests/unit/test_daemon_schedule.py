"""The daemon's scheduling on the pure core: Daemon + MemoryStore + FakeClock, no processes.

Jobs are :class:`FakeRun`s: they start at once, end when their time is up (or when stopped, after
``term_delay``), and wake the loop then, as the watchdog's report does. Time only moves when the
loop waits, so every test runs in milliseconds and counts cycles exactly.

Timing: ttl 3 s (renew every 1 s, grace 0.3 s). Wall time starts at 2026-01-01T00:00:00Z, a fire
time of every ``@every`` schedule. Properties defended (docs/safety.md): S3 at most one claim per
slot, L3 every slot of a stable tenure runs on time, L4 no leadership change without a fault —
and the operational promises of docs/scheduling.md (suspend, history, bounded etcd use).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

import leaderjob.daemon.starts as daemon_mod
from leaderjob.clock import FakeClock, Wakeable
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Report, Settings
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import StoreUnavailable
from leaderjob.guard.run import Signal
from leaderjob.history.records import SLOT_FORMAT, ElectionData
from leaderjob.ops.metrics import Metrics
from leaderjob.schedule import parse_schedule

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMING = Timing.from_ttl(3)
PREFIX = "/lj"
ELECTION = "job"


# -- the fake world ------------------------------------------------------------------------------


class Clock(FakeClock):
    """FakeClock whose waits stop early at an alarm (a fake job ending), as a real report would."""

    def __init__(self) -> None:
        super().__init__(start=1000.0, wall=T0)
        self.alarms: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self.alarms.append((when, next(self._seq), fn))

    def wait(self, event: Wakeable, timeout: float) -> bool:
        if event.is_set():
            return True
        until = self.monotonic() + max(0.0, timeout)
        due = sorted(a for a in self.alarms if a[0] <= until)
        if due:
            when, seq, fn = due[0]
            self.alarms.remove((when, seq, fn))
            self.advance(max(0.0, when - self.monotonic()))
            fn()
            return event.is_set()
        self.advance(until - self.monotonic())
        return event.is_set()

    def step_wall(self, seconds: float) -> None:
        """A wall-clock step (NTP, a VM restore): monotonic time does not move."""
        self._wall0 += timedelta(seconds=seconds)


@dataclass
class Job:
    """How the fake job behaves: runs ``duration`` s (None: until stopped), exits ``rc``; after
    SIGTERM it takes ``term_delay`` s to die."""

    duration: float | None = 0.1
    rc: int = 0
    term_delay: float = 0.0


class FakeRun:
    clock: Clock
    job: Job
    started: list[FakeRun]
    _pids = itertools.count(1000)
    # What the runner reads of a real run's start (no watchdog here: none started ahead).
    watchdog_ready_at: float | None = None
    exec_at: float | None = None
    exec_reported_at: float | None = None

    def __init__(
        self,
        argv: Any,
        env: Any,
        deadline: float,
        grace: float,
        wakeup: Wakeable,
        run_id: str = "",
        token: int = 0,
        cwd: str | None = None,
    ) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.deadline = deadline
        self.wakeup = wakeup
        self.run_id = run_id
        self.token = token
        self.started_at = 0.0
        self.pid: int | None = None
        self.returncode: int | None = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.stopped_at: float | None = None
        self.confirmed = False
        self.signals: list[Any] = []
        self.tails: dict[str, Any] = {}
        self.spec = self.job

    @property
    def slot(self) -> str:
        return str(self.env["LEADERJOB_SLOT"])

    def request(self, now: float, wait: float = 0.0) -> None:
        self.start(now, wait)

    def confirm(self, wait: float = 0.0) -> bool | None:
        """The start's answer: a fake run answers at once (``start`` says which)."""
        return True if self.confirmed else False if self.error or self.done else None

    def start(self, now: float, wait: float = 0.0) -> None:
        del wait  # a fake run confirms its start at once
        self.started_at = now
        self.pid = next(self._pids)
        self.confirmed = True
        self.started.append(self)
        if self.spec.duration is not None:
            self.clock.at(now + self.spec.duration, lambda: self._end(self.spec.rc))

    def _end(self, rc: int) -> None:
        if self.returncode is None:
            self.returncode = rc
            self.wakeup.set()

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stopped_at = self.clock.monotonic()
            self.signals.append(Signal("SIGTERM", reason))  # as the watchdog reports it
            self.clock.at(self.stopped_at + self.spec.term_delay, lambda: self._end(-15))

    def kill(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self._end(-9)

    def extend(self, deadline: float) -> None:
        self.deadline = max(self.deadline, deadline)

    def take_events(self) -> list[dict[str, Any]]:
        return []

    @property
    def done(self) -> bool:
        return self.returncode is not None

    def wait(self, timeout: float | None = None) -> bool:
        return self.done

    def close(self) -> None:
        pass

    @property
    def outcome(self) -> str:
        if self.stop_reason is not None and self.returncode is not None and self.returncode < 0:
            return self.stop_reason
        return "succeeded" if self.returncode == 0 else "failed"


@dataclass
class World:
    clock: Clock
    store: MemoryStore
    logs: list[dict[str, Any]]
    started: list[FakeRun]

    def daemon(self, expr: str = "@every 1s", identity: str = "a", **kw: Any) -> Daemon:
        settings = Settings(
            election=ELECTION,
            prefix=PREFIX,
            identity=identity,
            timing=TIMING,
            command=("job",),
            schedule=parse_schedule(expr, "UTC") if expr else None,
            rpc_timeout=1.0,
            **kw,
        )
        metrics = Metrics(CollectorRegistry(), ELECTION)
        return Daemon(settings, self.store.client(), clock=self.clock, metrics=metrics)

    @property
    def data(self) -> ElectionData:
        return ElectionData(self.store, PREFIX, ELECTION)

    def keys(self, under: str) -> list[str]:
        return [k.key for k in self.store.get_prefix(f"{self.data.base}/{under}", timeout=1)]

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs
            if e["event"] == name and all(e.get(k) == v for k, v in match.items())
        ]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    clock = Clock()
    started: list[FakeRun] = []
    FakeRun.clock, FakeRun.job, FakeRun.started = clock, Job(), started
    monkeypatch.setattr(daemon_mod, "Run", FakeRun)
    with structlog.testing.capture_logs() as logs:
        yield World(clock, MemoryStore(clock), logs, started)


def run_for(d: Daemon, seconds: float, max_cycles: int = 100_000) -> list[Report]:
    """Cycle and wait, as ``serve`` does, for ``seconds`` of fake time."""
    end = d.clock.monotonic() + seconds
    reports: list[Report] = []
    while d.clock.monotonic() < end:
        reports.append(d.cycle())
        assert len(reports) < max_cycles, "the loop does not let time pass (busy loop)"
        d._wait()
    return reports


def lead(w: World, d: Daemon) -> None:
    run_for(d, 0.05)
    assert d.tenure is not None, "the daemon should lead an empty election at once"


def slot_at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime(SLOT_FORMAT)


def metric(d: Daemon, name: str, **labels: str) -> float:
    assert d.metrics is not None
    # A daemon of one job: its job's series are named like the election (job_name).
    value = d.metrics.registry.get_sample_value(
        name, {"election": ELECTION, "job_name": ELECTION, **labels}
    )
    return 0.0 if value is None else value


def test_harness_runs_every_slot_of_a_stable_tenure_L3(world: World) -> None:
    d = world.daemon()
    lead(world, d)
    run_for(d, 10)
    assert [r.slot for r in world.started] == [slot_at(s) for s in range(1, 11)]


# -- slot claims stay bounded -----------------------------------------------------------------


def test_slot_claims_stay_bounded_while_suspended(world: World) -> None:
    """Skips claim slots too: every claim prunes, so etcd never grows with a suspension."""
    d = world.daemon(history_limit=20)
    lead(world, d)
    world.data.suspend("ops", timeout=1)
    run_for(d, 300)
    assert not world.started
    assert len(world.keys("slots/")) <= 20 + 1


def test_slot_claims_stay_bounded_while_a_forbid_run_blocks(world: World) -> None:
    FakeRun.job = Job(duration=300)
    d = world.daemon(history_limit=20)
    lead(world, d)
    run_for(d, 299)
    assert len(world.started) == 1
    assert len(world.keys("slots/")) <= 20 + 1


class CountingStore(MemoryStore):
    """Counts the keys each write deletes, per call."""

    def __init__(self, inner: MemoryStore) -> None:
        self.__dict__.update(inner.client().__dict__)
        self.deleted: list[int] = []

    def delete(self, key: str, *, timeout: float, prefix: bool = False) -> int:
        self.deleted.append(1)
        return super().delete(key, timeout=timeout, prefix=prefix)

    def guarded_put(self, guard_key: str, guard_revision: int, puts: Any, **kw: Any) -> bool:
        self.deleted.append(len(kw.get("deletes", ())))
        return super().guarded_put(guard_key, guard_revision, puts, **kw)


def test_a_pile_of_old_claims_is_pruned_in_bounded_batches_L4(world: World) -> None:
    """Thousands of old claims go a bounded batch per claim, not all in one cycle (which would
    hold up the keepalive past the renew deadline)."""
    for s in range(-5000, 0):
        world.store.put(world.data.slot_key(slot_at(s)), b"{}", timeout=1)
    d = world.daemon(history_limit=20)
    counting = CountingStore(world.store)
    d.store = d.data.store = counting
    lead(world, d)
    run_for(d, 1.0)
    assert 0 < sum(counting.deleted) <= 128
    assert max(counting.deleted) <= 64
    run_for(d, 200)
    assert len(world.keys("slots/")) <= 20 + 1
    assert d.tenure is not None  # never lost the lease on the way


def test_trigger_claims_do_not_prune_timed_claims(world: World) -> None:
    """Each kind of claim is pruned by its own time: 50 triggers leave the timed claims."""
    d = world.daemon(history_limit=10)
    lead(world, d)
    run_for(d, 5)
    timed = [k for k in world.keys("slots/") if "trigger-" not in k]
    assert len(timed) == 5
    for i in range(30):
        world.store.put(
            f"{world.data.trigger_prefix}20260101T0000{i:02d}-{i:08x}",
            b'{"requested_at": "x"}',
            timeout=1,
        )
        run_for(d, 0.2)
    keys = world.keys("slots/")
    assert len([k for k in keys if "trigger-" in k]) <= 10 + 1
    assert len([k for k in keys if "trigger-" not in k]) >= 5


# -- suspension is part of the claim ----------------------------------------------------------


def test_new_leader_that_cannot_read_the_switch_starts_nothing(world: World) -> None:
    """Suspension unknown means "don't start": a failed control read does not let a run out."""
    world.data.suspend("ops", timeout=1)
    d = world.daemon()
    d.store.fail_next(3, "get_prefix")  # type: ignore[attr-defined]
    run_for(d, 5)
    assert d.tenure is not None
    assert not world.started


def test_retry_does_not_start_while_suspended(world: World) -> None:
    FakeRun.job = Job(duration=0.5, rc=1)
    d = world.daemon("@every 1h", retries=3)
    lead(world, d)
    world.data.trigger("ops", timeout=1)
    run_for(d, 1.2)
    assert len(world.started) == 1
    world.data.suspend("ops", timeout=1)
    run_for(d, 30)
    assert len(world.started) == 1, "a retry started while suspended"


def test_suspend_takes_effect_for_the_very_next_slot(world: World) -> None:
    d = world.daemon("@every 1s")
    world.clock.advance(0.5)  # the switch is read between slots, not with them
    world.clock.at(1002.6, lambda: world.data.suspend("ops", timeout=1))
    lead(world, d)
    run_for(d, 5)
    assert [r.slot for r in world.started] == [slot_at(1), slot_at(2)]
    assert world.events("slot.skipped", reason="suspended", slot=slot_at(3))


def test_resume_just_before_a_slot_runs_it(world: World) -> None:
    world.data.suspend("ops", timeout=1)
    world.clock.at(1009.95, lambda: world.data.resume(timeout=1))
    d = world.daemon("@every 10s")
    world.clock.advance(0.5)  # the switch is read between slots, not with them
    lead(world, d)
    run_for(d, 10)
    assert [r.slot for r in world.started] == [slot_at(10)]


def test_suspended_trigger_waits_and_runs_after_resume(world: World) -> None:
    world.data.suspend("ops", timeout=1)
    d = world.daemon("@every 1h")
    lead(world, d)
    world.data.trigger("ops", timeout=1)
    run_for(d, 5)
    assert not world.started
    world.data.resume(timeout=1)
    run_for(d, 2)
    assert len(world.started) == 1
    assert world.started[0].slot.startswith("trigger-")


# -- a clock that ran ahead ---------------------------------------------------------------------


def test_claim_from_a_fast_clock_is_logged_every_cycle_counted_and_repairable(world: World) -> None:
    """A replica a day ahead led and died: its claim is newest. The correct leader reports the
    skew on every cycle and in a metric; after ``repair_last_slot`` the slots run again (L3), and
    the slot the fast clock claimed keeps its claim: it does not run a second time (S3)."""
    ahead = T0 + timedelta(days=1)
    world.data.store.put(world.data.last_slot_key, ahead.strftime(SLOT_FORMAT).encode(), timeout=1)
    world.store.put(world.data.slot_key(ahead.strftime(SLOT_FORMAT)), b"{}", timeout=1)
    d = world.daemon("@every 10s")
    lead(world, d)
    reports = run_for(d, 30)
    assert not world.started
    assert len(world.events("schedule.clock_skew")) >= len(reports) - 1
    assert metric(d, "leaderjob_schedule_clock_skew_seconds") > 86_000
    prev, later = world.data.repair_last_slot(d.clock.wall(), timeout=1)
    assert prev == ahead and later == 1
    run_for(d, 25)
    assert len(world.started) == 2
    assert world.events("schedule.repaired")
    assert metric(d, "leaderjob_schedule_clock_skew_seconds") == 0


def test_after_a_repair_a_slot_the_fast_clock_claimed_does_not_run_again_S3(world: World) -> None:
    early = slot_at(30)
    world.store.put(world.data.last_slot_key, early.encode(), timeout=1)
    world.store.put(world.data.slot_key(early), b'{"status": "running"}', timeout=1)
    d = world.daemon("@every 10s")
    lead(world, d)
    run_for(d, 3)
    world.data.repair_last_slot(d.clock.wall(), timeout=1)
    run_for(d, 45)
    assert [r.slot for r in world.started] == [slot_at(10), slot_at(20), slot_at(40)]
    assert world.events("slot.claim_rejected", slot=early)
    assert d.tenure is not None


def _fired(slot: str) -> datetime:
    return datetime.strptime(slot, SLOT_FORMAT).replace(tzinfo=UTC)


def test_a_day_forward_step_on_the_leader_neither_runs_tomorrow_nor_stops_L3(world: World) -> None:
    """+1 day on the leader's wall clock for 30 s, then undone: slots keep their pace on the
    monotonic clock throughout (each logged `schedule.clock_step`), tomorrow's slot is not run,
    and nothing is held back afterwards (no claim ahead, no skew)."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_for(d, 15)
    world.clock.step_wall(86_400)
    run_for(d, 30)
    assert world.events("schedule.clock_step")
    assert metric(d, "leaderjob_schedule_clock_step_seconds") == 86_400
    world.clock.step_wall(-86_400)
    run_for(d, 30)
    slots = [r.slot for r in world.started]
    assert slots == [slot_at(s) for s in range(10, 80, 10)]
    assert not world.events("schedule.clock_skew")
    assert metric(d, "leaderjob_schedule_clock_skew_seconds") == 0
    assert metric(d, "leaderjob_schedule_clock_step_seconds") == 0


def test_a_forward_step_that_holds_is_accepted_after_ten_minutes(world: World) -> None:
    """A jump that is not undone is a correction after all: after STEP_TRUST_AFTER the slots
    follow the new wall clock (the slots it jumped over are skipped, not run in a burst)."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_for(d, 5)
    world.clock.step_wall(3600)
    run_for(d, 590)
    assert all(_fired(r.slot) < T0 + timedelta(seconds=600) for r in world.started)
    run_for(d, 30)
    late = [r for r in world.started if _fired(r.slot) > T0 + timedelta(hours=1)]
    assert late, "the new wall clock was never accepted"
    assert world.events("slot.skipped", reason="deadline")
    slots = [r.slot for r in world.started]
    assert len(slots) == len(set(slots))


def test_runs_resume_at_once_when_a_backward_step_is_undone(world: World) -> None:
    """-1 day for 30 s: nothing runs twice (slots only move forward) and, once undone, the next
    slot runs on time."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_for(d, 15)
    world.clock.step_wall(-86_400)
    run_for(d, 30)
    assert len(world.started) == 1
    world.clock.step_wall(86_400)
    run_for(d, 21)
    slots = [r.slot for r in world.started]
    assert len(slots) == len(set(slots)) and len(slots) >= 3
    assert world.events("schedule.clock_skew"), "a clock behind the newest claim is reported"
    assert metric(d, "leaderjob_schedule_clock_skew_seconds") == 0, "and no longer once undone"


# -- replace supersedes ---------------------------------------------------------------------------


def test_replace_keeps_only_the_newest_replacement_waiting(world: World) -> None:
    """A job that takes 2.5 s to die on SIGTERM, every second: no queue builds up, older
    replacements are recorded as superseded, and none starts past its starting deadline."""
    FakeRun.job = Job(duration=None, term_delay=2.5)
    d = world.daemon("@every 1s", concurrency="replace")
    lead(world, d)
    for _ in range(20):
        run_for(d, 1)
        assert d.tenure is not None
        assert len([p for p in d.tenure.pending if p.replacing]) <= 1
    assert len(world.started) >= 4
    for r in world.started:
        fired = datetime.strptime(r.slot, SLOT_FORMAT).replace(tzinfo=UTC)
        lag = (T0 + timedelta(seconds=r.started_at - 1000) - fired).total_seconds()
        assert lag <= 1.0 + 0.01
    assert world.events("slot.skipped", reason="superseded")


def test_a_replacement_past_its_starting_deadline_does_not_start(world: World) -> None:
    """The old run takes 2.5 s to die; with a 1 s starting deadline the replacement is skipped
    (recorded `skipped_deadline`), not started late."""
    FakeRun.job = Job(duration=None, term_delay=2.5)
    d = world.daemon("@every 10s", concurrency="replace", starting_deadline=1.0)
    lead(world, d)
    run_for(d, 15)
    assert [r.slot for r in world.started] == [slot_at(10)]
    assert world.events("slot.skipped", reason="deadline", slot=slot_at(20)) == []
    run_for(d, 10)
    assert [r.slot for r in world.started] == [slot_at(10)]
    assert world.events("slot.skipped", reason="deadline", slot=slot_at(20))


# -- history ------------------------------------------------------------------------------------


def test_history_keeps_a_long_runs_outcome(world: World) -> None:
    """Records are keyed by completion: a failed 100 s run outlives the skips made during it."""
    FakeRun.job = Job(duration=100, rc=3)
    d = world.daemon("@every 1s", history_limit=10)
    lead(world, d)
    run_for(d, 102)
    history = world.data.history(10, timeout=1)
    assert any(h.get("outcome") == "failed" for h in history)
    assert len(world.keys("history/")) <= 10


def test_deposed_leader_records_no_skip_for_a_slot_it_did_not_claim(world: World) -> None:
    """S3: a skip is recorded (and counted) only when our claim made the slot ours."""
    FakeRun.job = Job(duration=100)
    d = world.daemon("@every 1s")
    lead(world, d)
    run_for(d, 1.5)
    assert len(world.started) == 1
    # A successor (after a pause we did not notice yet) claimed and ran the next slot.
    assert d.planner is not None
    nxt = d.planner.peek()
    assert nxt is not None
    world.store.put(world.data.slot_key(nxt.id), b'{"status": "running"}', timeout=1)
    run_for(d, 0.9)
    assert world.events("slot.claim_rejected", slot=nxt.id)
    assert not [h for h in world.data.history(10, timeout=1) if h["slot"] == nxt.id]
    overlap = [h for h in world.data.history(10, timeout=1) if h["outcome"] == "skipped_overlap"]
    assert metric(d, "leaderjob_slots_skipped_total", reason="overlap") == len(overlap)


@pytest.mark.parametrize("fault", ["fail_next", "lose_reply_next"])
def test_claim_of_unknown_outcome_is_read_back_and_the_slot_runs_once(
    world: World, fault: str
) -> None:
    """S3/L3: a claim whose reply is lost may have applied: the slot never runs on a guess. Its
    claim is read back (test_unknown_claims.py): not applied, it is claimed again; applied, it
    is ours. Either way the slot runs once, on time."""
    d = world.daemon("@every 10s")
    lead(world, d)
    getattr(d.store, fault)(1, "guarded_put")
    run_for(d, 15)
    assert world.events("slot.claim_unknown", slot=slot_at(10))
    run_for(d, 10)
    assert [r.slot for r in world.started] == [slot_at(10), slot_at(20)]


# -- the loop's own cost ------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", ["forbid", "replace"])
def test_a_blocked_pending_run_adds_no_wakeups(world: World, concurrency: str) -> None:
    """L4: a retry (forbid) or a replacement (replace) waiting for the active run does not spin
    the loop: at most a few cycles per second of fake time, as when idle."""
    FakeRun.job = Job(duration=0.5, rc=1, term_delay=2.5)
    d = world.daemon("@every 1h", concurrency=concurrency, retries=3)
    lead(world, d)
    world.data.trigger("ops", timeout=1)
    run_for(d, 1.0)
    assert len(world.started) == 1
    FakeRun.job = Job(duration=30, rc=1, term_delay=2.5)
    if concurrency == "forbid":
        world.data.trigger("ops", timeout=1)  # a second run while the retry waits
    reports = run_for(d, 20, max_cycles=2000)
    assert len(reports) / 20 < 10


class SlowStore:
    """The daemon's own etcd calls (not the elector's) take ``delay`` s of fake time each; a
    call whose timeout is shorter waits out its timeout and fails, as a gRPC call does."""

    def __init__(self, inner: MemoryStore, clock: Clock, delay: float) -> None:
        self.inner, self.clock, self.delay = inner.client(), clock, delay
        self.spent = 0.0
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            timeout = kw.get("timeout")
            if timeout is not None:
                took = min(timeout, self.delay)
                self.clock.advance(took)
                self.spent += took
                self.calls.append(name)
                if timeout < self.delay:
                    raise StoreUnavailable(name, "timed out")
            return attr(*args, **kw)

        return call


def test_one_cycle_spends_at_most_its_budget_on_etcd_L4(world: World) -> None:
    """However many calls a cycle makes (claim, prune, history, publish), their etcd time
    together stays within half a renew interval, so the keepalive is never held up."""
    FakeRun.job = Job(duration=0.2, rc=1)
    d = world.daemon("@every 1s", retries=0, history_limit=5)
    lead(world, d)
    slow = SlowStore(world.store, world.clock, 0.15)
    d.store = d.data.store = slow  # type: ignore[assignment]
    spent: list[float] = []
    cycle = d.cycle

    def measured() -> Report:
        slow.spent, slow.calls = 0.0, []
        try:
            return cycle()
        finally:
            spent.append(slow.spent)

    d.cycle = measured  # type: ignore[method-assign]
    run_for(d, 30)
    assert max(spent) <= TIMING.renew_interval / 2 + 0.05 + 1e-9
    assert len(world.started) >= 20  # the schedule still keeps up
    assert d.tenure is not None
    assert world.data.history(5, timeout=1)  # bookkeeping caught up in cycles with time
    # Bookkeeping waited for cycles with time rather than running out of it: no call failed.
    assert d.metrics is not None
    errors = [
        s for m in d.metrics.etcd_errors.collect() for s in m.samples if s.name.endswith("_total")
    ]
    assert sum(s.value for s in errors) == 0, errors


# -- what an operator sees and does -------------------------------------------------------------


def test_status_shows_the_slot_the_leader_will_run_and_repair_schedule_fixes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claim a day ahead: `status` shows the next slot after it (not "in 5 minutes" from the
    caller's clock) and the skew; `repair-schedule` moves it back and deletes the later claims.
    (Nobody campaigns here: `status` also says so on stderr, and exits 1.)"""
    import json

    from click.testing import CliRunner

    from leaderjob import cli
    from leaderjob.clock import SystemClock

    store = MemoryStore(SystemClock())
    data = ElectionData(store, "/leaderjob", ELECTION)
    now = datetime.now(UTC)
    ahead = (now + timedelta(days=1)).replace(microsecond=0)
    data.store.put(data.last_slot_key, ahead.strftime(SLOT_FORMAT).encode(), timeout=1)
    store.put(data.slot_key(ahead.strftime(SLOT_FORMAT)), b"{}", timeout=1)
    store.put(data.schedule_key, b'{"expr": "*/5 * * * *", "timezone": "UTC"}', timeout=1)
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: store)
    runner = CliRunner()

    doc = json.loads(runner.invoke(cli.main, ["status", "--election", ELECTION, "--json"]).stdout)
    assert doc["next_fire"] > ahead.isoformat().replace("+00:00", "Z")
    assert doc["claims_ahead_seconds"] > 86_000
    text = runner.invoke(cli.main, ["status", "--election", ELECTION]).output
    assert "CLOCK SKEW" in text and "repair-schedule" in text

    result = runner.invoke(cli.main, ["repair-schedule", "--election", ELECTION])
    assert result.exit_code == 0, result.output
    assert "1 claim(s) of later slots stay" in result.output
    doc = json.loads(runner.invoke(cli.main, ["status", "--election", ELECTION, "--json"]).stdout)
    assert doc["claims_ahead_seconds"] == 0
    next_fire = datetime.fromisoformat(doc["next_fire"].replace("Z", "+00:00"))
    assert next_fire - now <= timedelta(minutes=5)

    bad = runner.invoke(cli.main, ["repair-schedule", "--election", ELECTION, "--to", "noon"])
    assert bad.exit_code == 2 and "--to" in bad.output


@pytest.mark.parametrize("mode", ["service", "once"])
def test_a_leader_without_a_schedule_does_not_spin_L4(world: World, mode: str) -> None:
    """L4: in service mode and under ``lock`` the leader's loop waits for the renewal, the run's
    end or the restart — it does not cycle on a switch poll or catch-up that never applies."""
    FakeRun.job = Job(duration=30)
    d = world.daemon("", mode=mode)
    lead(world, d)
    run_for(d, 0.1)
    assert len(world.started) == 1
    reports = run_for(d, 20, max_cycles=2000)
    assert len(reports) / 20 < 10


# -- claims made ahead of the start --------------------------------------------------------------


def run_until(d: Daemon, seconds_after_t0: float) -> None:
    """Cycle until ``seconds_after_t0`` of fake time after T0 (monotonic 1000.0)."""
    run_for(d, seconds_after_t0 - (d.clock.monotonic() - 1000.0))


def test_a_slot_is_claimed_ahead_and_starts_on_time_without_another_round_trip_L3(
    world: World,
) -> None:
    """L3: the claim's round trip is taken off the fire path — the next slot is claimed up to
    CLAIM_AHEAD before its start (fenced as ever, S3), and started at its start time."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 9.99)
    assert world.store.get(world.data.slot_key(slot_at(10)), timeout=1) is not None
    assert not world.started, "started before its time"
    run_for(d, 0.5)
    assert [r.slot for r in world.started] == [slot_at(10)]
    [started] = world.events("job.started", slot=slot_at(10))
    assert started["lag_seconds"] <= 0.001
    assert started["claimed_seconds"] < 0  # committed before the start time


def test_a_slot_claimed_ahead_runs_nowhere_if_leadership_is_lost_before_its_start_S3(
    world: World,
) -> None:
    """S3: a leader claims the next slot ahead, then is frozen past its lease (its loop stops
    while only the successor's runs). The successor leads once the lease expires and runs only
    the slots after the newest claim; the old leader, on resume, steps down first thing (its
    deadline passed) and drops its tenure with the claim made ahead. The slot runs nowhere,
    and certainly not twice."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 9.97)
    assert world.store.get(world.data.slot_key(slot_at(10)), timeout=1) is not None
    assert not world.started
    # d is frozen from here on: only the successor's loop runs.
    successor = world.daemon("@every 10s", identity="b")
    run_for(successor, 15)
    assert successor.tenure is not None, "the successor never led"
    run_for(d, 0.5)  # d resumes
    assert d.tenure is None
    assert world.events("election.lost", reason="deadline_passed")
    assert [r.slot for r in world.started] == [slot_at(20)]


def test_a_graceful_stop_gives_back_a_slot_claimed_ahead_and_the_successor_runs_it_L2(
    world: World,
) -> None:
    """L2/L3: a graceful stop never costs a slot. SIGTERM lands after the next slot was claimed
    ahead and before its start: the leader gives the claim back (fenced by its key, so only
    while it still leads) before it resigns, and the successor runs that slot — once (S3)."""
    d = world.daemon("@every 10s")
    lead(world, d)
    run_until(d, 9.97)
    assert world.store.get(world.data.slot_key(slot_at(10)), timeout=1) is not None
    d.request_stop("signal")
    run_for(d, 1.0)
    assert d.tenure is None and not world.started
    assert world.store.get(world.data.slot_key(slot_at(10)), timeout=1) is None
    assert world.events("slot.given_back", slot=slot_at(10))
    successor = world.daemon("@every 10s", identity="b")
    run_for(successor, 2.0)
    assert [r.slot for r in world.started] == [slot_at(10)]


def test_a_job_with_a_slot_claimed_ahead_is_not_idle_so_it_does_not_move_L2(world: World) -> None:
    """L2: spreading and reloads move a job only between runs; a slot claimed ahead is as good
    as started — a job holding one is not idle."""
    from leaderjob.daemon.model import Tenure
    from leaderjob.schedule.planner import Slot

    r = world.daemon().runner
    assert not r.runs
    r.tenure = Tenure(token=7)
    assert r.idle
    fire = T0 + timedelta(seconds=10)
    r.tenure.ahead = Slot(fire_time=fire, start_time=fire, id=slot_at(10))
    assert not r.idle


def test_the_daemon_exports_when_it_last_saw_the_job_suspended(world: World) -> None:
    """The freshness alert's excuse (LeaderjobJobNotSucceeding): a slot due no later than the
    last moment the job was seen suspended owes no success. The leader exports 0 before any
    suspension, its wall clock while suspended, and the moment of the resume after it."""
    d = world.daemon("@every 10s")
    assert d.metrics is not None

    def seen() -> float | None:
        labels = {"election": ELECTION, "job_name": ELECTION}
        assert d.metrics is not None
        name = "leaderjob_job_suspended_timestamp_seconds"
        return d.metrics.registry.get_sample_value(name, labels)

    lead(world, d)
    run_for(d, 2)
    assert seen() == 0.0
    world.data.suspend("ops", timeout=1)
    run_for(d, 5)
    assert seen() == world.clock.wall().timestamp()  # now, while suspended
    world.data.resume(timeout=1)
    run_for(d, 3)
    resumed = seen()
    assert resumed is not None and 0 < resumed < world.clock.wall().timestamp()
    run_for(d, 30)
    assert seen() == resumed  # kept after the resume
