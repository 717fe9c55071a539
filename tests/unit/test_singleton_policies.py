"""``@leaderjob.singleton`` has the daemon's policies: overlap, timeout, retries, triggers,
suspension, skip records — on the fake clock and MemoryStore, stepped by hand.

Each test builds one tenure (:meth:`Singleton.tenure_for`) on a seat that holds a real key in the
store (so every claim is the daemon's fenced Txn, S3) and steps it with :meth:`cycle` while the
fake clock moves. Runs do not start threads: their bodies are queued, and the test runs each one
when it wants — so "a run still going" is exact, not a race. Schedule ``@every 10s``; the fake
wall clock starts at 2026-01-01T00:00:00Z, so slots fire at :10, :20, …
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

import leaderjob
from leaderjob.clock import FakeClock
from leaderjob.election.memory import MemoryStore
from leaderjob.history.audit import audit, fire_times
from leaderjob.history.records import ElectionData
from leaderjob.inprocess.singleton import Singleton, SlotRun
from leaderjob.inprocess.singleton_tenure import SingletonTenure
from leaderjob.schedule import parse_schedule

PREFIX = "/leaderjob/rep/leader/"


def inline(target: Callable[[], None], name: str) -> None:
    """The tenure's ``spawn`` that runs the run's body at once, in the calling thread."""
    target()


class Seat:
    """A tenure's key in the store, held for as long as the test says (a long lease)."""

    identity = "a"

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.lease = store.grant(3600, timeout=1).lease_id
        self.key: str | None = f"{PREFIX}{self.lease:x}"
        self.token: int | None = store.create(self.key, b"a", self.lease, timeout=1).create_revision
        self.leading = True

    def valid(self) -> bool:
        return self.leading

    def remaining(self) -> float:
        return 10.0 if self.leading else 0.0

    def depose(self) -> None:
        self.store.expire(self.lease)
        self.leading = False


class World:
    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        wall: datetime | None = None,
        last_slot: str | None = None,
        **options: Any,
    ) -> None:
        """``wall``: the fake wall clock's start; ``last_slot``: the newest slot a previous
        leader claimed (a leaderless window follows it, until ``wall``)."""
        self.clock = FakeClock(wall=wall)
        self.store = MemoryStore(self.clock)
        self.seat = Seat(self.store)
        self.data = ElectionData(self.store, "/leaderjob", "rep")
        if last_slot is not None:
            self.store.put(self.data.last_slot_key, last_slot.encode(), timeout=1)
        self.singleton = Singleton(
            fn,
            election="rep",
            schedule="@every 10s",
            ttl=3,
            store=self.store,
            clock=self.clock,
            **options,
        )
        self.queued: list[Callable[[], None]] = []
        self.tenure: SingletonTenure = self.singleton.tenure_for(self.seat, self.data)
        self.tenure.spawn = self.queue
        self.tenure.cycle()  # catch-up (nothing: a new election) and the first control poll

    def queue(self, target: Callable[[], None], name: str) -> None:
        """The tenure's ``spawn``: keep the run's body for the test to run (:meth:`finish`)."""
        self.queued.append(target)

    def at(self, seconds: float) -> str:
        """Move the fake clock to ``seconds`` after the start, and step once."""
        self.clock.advance(1000.0 + seconds - self.clock.monotonic())
        return self.tenure.cycle()

    def finish(self, i: int = 0) -> None:
        """Let the ``i``-th queued run's function run to its end (in this thread)."""
        self.queued.pop(i)()

    def history(self) -> list[dict[str, Any]]:
        return list(reversed(self.data.history(50, timeout=1)))

    def outcomes(self) -> list[tuple[str, str]]:
        return [(r["slot"], r["outcome"]) for r in self.history()]


def test_forbid_skips_a_slot_that_fires_while_the_run_goes_on_and_records_it() -> None:
    """S3 with --concurrency forbid: the slot is claimed as skipped (never run later), recorded
    as the daemon does (``skipped_overlap``), and the next free slot runs."""
    calls: list[str] = []
    w = World(lambda run: calls.append(run.slot))
    assert w.at(10) == "job_started"
    assert w.at(20) == "skipped"
    w.finish()
    w.at(21)
    assert w.at(30) == "job_started"
    w.finish()
    w.at(31)
    assert calls == ["20260101T000010Z", "20260101T000030Z"]
    assert w.outcomes() == [
        ("20260101T000020Z", "skipped_overlap"),
        ("20260101T000010Z", "succeeded"),
        ("20260101T000030Z", "succeeded"),
    ]
    claim = w.store.get(w.data.slot_key("20260101T000020Z"), timeout=1)
    assert claim is not None and b"skipped_overlap" in claim.value


def test_replace_cancels_the_old_run_and_starts_the_new_one_only_after_it_returned() -> None:
    """--concurrency replace in-process: the old run's cancel event is set (reason ``replaced``);
    the new run waits for it to return — two runs never overlap — and the old one is recorded
    ``replaced``."""
    seen: list[tuple[str, bool, str | None]] = []
    w = World(
        lambda run: seen.append((run.slot, run.cancelled.is_set(), run.cancel_reason)),
        concurrency="replace",
    )
    w.at(10)
    old = w.tenure.runs[0].run
    assert w.at(20) == "replacing"
    assert old.cancelled.is_set() and old.cancel_reason == "replaced" and not old.valid()
    assert w.at(21) == "idle" and len(w.queued) == 1  # waits: the old run has not returned
    w.finish()
    assert w.at(22) == "job_started"
    w.finish()
    w.at(23)
    assert seen == [("20260101T000010Z", True, "replaced"), ("20260101T000020Z", False, None)]
    assert [o for _, o in w.outcomes()] == ["replaced", "succeeded"]


def test_replace_skips_the_new_slot_once_its_starting_deadline_passed_waiting() -> None:
    """A run that ignores its cancel event holds the replacement back past the starting deadline
    (one interval): the new slot is skipped (``skipped_deadline``), not run late."""
    w = World(lambda run: None, concurrency="replace")
    w.at(10)
    w.at(20)
    w.at(31)  # the :30 slot is due too: it supersedes the waiting :20 replacement
    assert ("20260101T000020Z", "skipped_superseded") in w.outcomes()
    w.finish()  # the :10 run returns only now, 31 s in
    w.at(45)
    assert ("20260101T000030Z", "skipped_deadline") in w.outcomes()
    assert not w.queued


def test_allow_starts_the_new_run_beside_the_old_one() -> None:
    w = World(lambda run: None, concurrency="allow")
    w.at(10)
    assert w.at(20) == "job_started"
    assert len(w.tenure.runs) == 2 and len(w.queued) == 2


def test_timeout_cancels_the_run_and_records_timed_out() -> None:
    """--timeout in-process is cooperative: at the timeout the run's cancel event is set and its
    ``remaining()`` is bounded by it; however it then returns, the outcome is ``timed_out``."""
    left: list[float] = []
    w = World(lambda run: left.append(run.remaining()), timeout=4)
    w.at(10)
    run = w.tenure.runs[0].run
    w.clock.advance(1.5)
    assert run.remaining() == pytest.approx(2.5)
    assert w.at(13.9) == "idle" and not run.cancelled.is_set()
    w.at(14)
    assert run.cancel_reason == "timed_out" and not run.valid()
    w.finish()
    w.at(15)
    assert left == [0.0]
    assert w.outcomes() == [("20260101T000010Z", "timed_out")]


def test_retries_back_off_one_then_two_seconds_within_the_slot() -> None:
    """--retries 2: a failed run is re-run in the same slot after 1 s, then 2 s; then no more."""
    attempts: list[int] = []

    def fail(run: SlotRun) -> None:
        attempts.append(run.attempt)
        raise RuntimeError("boom")

    w = World(fail, retries=2)
    w.tenure.spawn = inline
    w.at(10)
    w.at(10.5)  # collected: a retry at 11.5 (failed 10 s in, plus 1 s)
    assert attempts == [0]
    w.at(11.4)
    assert attempts == [0]
    w.at(11.5)
    assert attempts == [0, 1]
    w.at(12)  # collected: the next retry at 12 + 2
    w.at(13.9)
    assert attempts == [0, 1]
    w.at(14)
    w.at(15)
    w.at(19)
    assert attempts == [0, 1, 2]
    history = w.history()
    assert [(r["attempt"], r["outcome"]) for r in history] == [
        (0, "failed"),
        (1, "failed"),
        (2, "failed"),
    ]
    assert {r["slot"] for r in history} == {"20260101T000010Z"}
    assert "boom" in history[0]["error"]


def test_a_trigger_runs_the_function_once_under_a_fenced_claim() -> None:
    """``leaderjob trigger``: the request is claimed like a slot (S3) and consumed in the same
    Txn, so it runs once; with forbid it waits for the current run instead of being lost."""
    calls: list[str] = []
    w = World(lambda run: calls.append(run.slot))
    w.at(10)  # a run is going
    w.data.trigger("operator", timeout=1)
    w.at(11.5)
    assert calls == [] and len(w.queued) == 1  # waits for the run (forbid)
    w.finish()
    assert w.at(12.5) == "job_started"
    w.finish()
    w.at(13.5)
    w.at(15)
    assert calls[0] == "20260101T000010Z" and calls[1].startswith("trigger-") and len(calls) == 2
    assert not w.data.control(timeout=1).triggers
    assert w.outcomes()[-1] == (calls[1], "succeeded")


def test_a_suspended_election_records_its_slots_as_skipped_and_runs_again_on_resume() -> None:
    """``leaderjob suspend``: the claim to run is refused while suspended (the switch is in the
    Txn); the slot is claimed and recorded ``skipped_suspended``, so resume catches nothing up."""
    calls: list[str] = []
    w = World(lambda run: calls.append(run.slot))
    w.data.suspend("operator", timeout=1)
    assert w.at(10) == "skipped"
    w.data.resume(timeout=1)
    assert w.at(20) == "job_started"
    w.finish()
    w.at(21)
    assert calls == ["20260101T000020Z"]
    assert w.outcomes() == [
        ("20260101T000010Z", "skipped_suspended"),
        ("20260101T000020Z", "succeeded"),
    ]


def test_a_deposed_tenure_claims_nothing_and_records_no_skip() -> None:
    """S3: once our key is gone the claim fails; nothing runs and no skip is recorded for a slot
    the successor may run."""
    w = World(lambda run: None)
    w.seat.depose()
    w.seat.leading = True  # even a seat that still believes it leads
    assert w.at(10) == "claim_failed"
    assert not w.queued and w.outcomes() == []


def test_the_tenure_ends_only_once_its_runs_returned() -> None:
    """The tenure's end cancels every run (reason given) and waits for each: the lease is not
    revoked, and no new campaign starts, while in-process work of the old tenure still runs."""
    reasons: list[str | None] = []
    w = World(lambda run: reasons.append(run.cancel_reason))
    w.at(10)
    run = w.tenure.runs[0].run
    w.tenure.end("leadership_lost", wait=0)  # the run is still going
    assert run.cancel_reason == "leadership_lost" and not w.tenure.idle
    w.finish()
    w.tenure.end("leadership_lost")
    assert reasons == ["leadership_lost"] and w.tenure.idle


def test_runs_and_skips_are_counted_on_the_registry_the_application_passes() -> None:
    registry = CollectorRegistry()
    w = World(lambda run: None, registry=registry)
    w.at(10)
    w.at(20)
    w.finish()
    w.at(21)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"election": "rep", "job_name": "rep", **labels})

    assert value("leaderjob_job_runs_total", outcome="succeeded") == 1
    assert value("leaderjob_slots_skipped_total", reason="overlap") == 1
    assert value("leaderjob_job_duration_seconds_count") == 1
    assert value("leaderjob_job_last_success_timestamp_seconds") == pytest.approx(
        w.clock.wall().timestamp()
    )


def test_without_a_registry_nothing_is_registered_globally() -> None:
    before = set(REGISTRY._names_to_collectors)
    World(lambda run: None).at(10)
    assert set(REGISTRY._names_to_collectors) == before


def test_bad_policy_options_fail_at_decoration_with_the_clis_message() -> None:
    with pytest.raises(ValueError, match=r"--concurrency 'sometimes': use forbid, replace"):
        leaderjob.singleton(election="rep", schedule="@daily", concurrency="sometimes")(print)
    with pytest.raises(ValueError, match=r"--timeout must be a positive duration"):
        leaderjob.singleton(election="rep", schedule="@daily", timeout=0)(print)
    with pytest.raises(ValueError, match=r"--retries must be a whole number"):
        leaderjob.singleton(election="rep", schedule="@daily", retries=-1)(print)


def test_slots_missed_while_nobody_led_are_recorded_as_the_daemon_records_them() -> None:
    """L3: slots that fell in a leaderless window follow the catch-up policy and each leaves a
    record saying why it did not run (``not_run: missed``: the newest one by one, the older as
    one range), counted in ``leaderjob_slots_not_run_total`` — so ``leaderjob audit`` finds no
    slot missing and ``history --all`` shows the window."""
    registry = CollectorRegistry()
    start = datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    w = World(lambda run: None, wall=start, last_slot="20260101T000000Z", registry=registry)
    missed = [r for r in w.history() if r.get("not_run") == "missed"]
    singles = [r for r in missed if "first_slot" not in r]
    ranges = [r for r in missed if "first_slot" in r]
    assert len(singles) == 10
    assert [(r["first_slot"], r["slot"], r["count"]) for r in ranges] == [
        ("20260101T000010Z", "20260101T000110Z", 7)
    ]
    assert all(r["token"] == w.seat.token and r["outcome"] == "missed" for r in missed)
    labels = {"election": "rep", "job_name": "rep", "reason": "missed"}
    assert registry.get_sample_value("leaderjob_slots_not_run_total", labels) == 17
    w.finish()  # catch-up "once": the newest missed slot ran
    w.at(1)
    claims = w.data.claims(timeout=1)
    records = w.data.history(100, timeout=1)
    fires = fire_times(parse_schedule("@every 10s", "UTC"), start.replace(minute=0), start)
    verdicts = audit(fires, records, claims, leader_token=w.seat.token, complete=True)
    assert [v.slot for v in verdicts if v.status != "not_run"] == ["20260101T000300Z"]
    assert {v.status for v in verdicts if v.status != "not_run"} == {"ran"}


def test_a_slot_claimed_to_run_that_can_no_longer_start_is_recorded_late() -> None:
    """S5/L3: a run is not started once the tenure is no longer valid (too little lease left);
    its slot, claimed to run, gets the daemon's not-run record (``late``) so no audit finds it
    missing. A retry's slot ran already: it records nothing."""
    w = World(lambda run: None)
    w.seat.leading = False
    fire = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert w.tenure._start("20260101T000010Z", fire, 1) == "skipped"
    assert w.tenure._start("20260101T000010Z", fire, 0) == "skipped"
    assert [(r["slot"], r["outcome"], r["not_run"]) for r in w.history()] == [
        ("20260101T000010Z", "skipped_deadline", "late")
    ]


def test_a_new_tenure_of_the_same_function_records_no_missed_slot_twice() -> None:
    """L3: slots never claimed stay "missed" for the next catch-up too (nothing moved
    ``state/last_slot``); a second tenure of the same function records none of them again."""
    start = datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    w = World(lambda run: None, wall=start, last_slot="20260101T000000Z", catch_up="skip")
    before = len(w.history())
    w.store.put(w.data.last_slot_key, b"20260101T000000Z", timeout=1)  # as if nothing claimed
    w.singleton.tenure = w.tenure
    second = w.singleton.tenure_for(w.seat, w.data)
    assert second.cycle() in ("idle", "job_started")
    assert len(w.history()) == before
