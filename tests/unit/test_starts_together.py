"""Starts requested together, answered later (daemon/runs.py, daemon/starts.py), on the fake
clock: a pass of the loop requests every due run's start before it reads any answer, and a run
whose answer has not come yet counts as running (S1, S6).

The runs are :class:`SlowRun`: the guardian's answer comes ``DELAY`` after the request (or
never); the loop reads it at its next pass, as it does when the guardian's report wakes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from leaderjob.daemon import starts
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from tests.unit.test_daemon_jobs import GROUP, PREFIX, Group, fake_runs, group_daemon
from tests.unit.test_daemon_schedule import FakeRun


class SlowRun(FakeRun):
    """The guardian answers ``delay`` seconds after the request (None: never)."""

    delay: ClassVar[float | None] = 0.1
    events: ClassVar[list[tuple[str, str]]] = []
    requested_at: float | None = None  # not sent to the guardian yet
    limit = 0.0

    def request(self, now: float, wait: float = 0.0) -> None:
        self.requested_at, self.limit = now, now + wait
        SlowRun.events.append(("request", self.env["LEADERJOB_JOB"]))

    def confirm(self, wait: float = 0.0) -> bool | None:
        if self.confirmed:
            return True
        if self.error is not None:
            return False
        if self.requested_at is None:
            return None  # waiting in the starter: no answer can come yet
        now = self.clock.monotonic()
        if SlowRun.delay is not None and now >= self.requested_at + SlowRun.delay:
            self.start(self.requested_at)
            SlowRun.events.append(("answer", self.env["LEADERJOB_JOB"]))
            return True
        if now >= self.limit:
            self.error = "the guardian did not confirm the start in time"
            return False
        return None


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Group, list[Any]]]:
    with fake_runs(monkeypatch) as (clock, started):
        monkeypatch.setattr(starts, "Run", SlowRun)
        SlowRun.events, SlowRun.delay = [], 0.1
        yield Group(clock, MemoryStore(clock)), started


def daemon(g: Group, n: int) -> Any:
    d = group_daemon(g.store, g.clock, "a", jobs=[f"j{i}" for i in range(n)])
    g.daemons["a"] = d
    return d


def test_a_pass_requests_every_due_start_before_it_reads_an_answer(world: Any) -> None:
    """Eight jobs on one fire time: the eight start requests go out in one pass, then the
    answers are read (job.started for each); before, each start waited for its answer."""
    g, started = world
    daemon(g, 8)
    g.run(3.0)
    ev = SlowRun.events
    assert len(started) >= 16
    # Every burst: eight requests, then eight answers, never interleaved.
    for i in range(0, len(ev) - 15, 16):
        burst = ev[i : i + 16]
        assert [e for e, _ in burst] == ["request"] * 8 + ["answer"] * 8, burst


def test_a_start_not_answered_yet_counts_as_running_s1_s6(world: Any) -> None:
    """S1/S6: between its request and its answer a run is tracked: the job is not idle, may
    not campaign (a new tenure would overlap it), and its next slot is skipped for the overlap
    (concurrency forbid) instead of starting a second copy."""
    g, started = world
    d = daemon(g, 2)
    g.run(2.0)
    SlowRun.delay = 1.5  # the answer comes after the next slot's start
    t = g.clock.monotonic()
    g.run(0.9)
    r = d.runners["j0"]
    starting = [a for a in r.runs if not a.run.confirmed]
    assert starting, "a start requested and not answered"
    assert not r.idle and not r.may_campaign()
    g.run(1.5)
    slots = [x.env["LEADERJOB_SLOT"] for x in started if x.started_at >= t]
    assert len(set(slots)) == len(slots) // 2, "one run per job per slot"
    data = ElectionData(g.store, f"{PREFIX}/{GROUP}/jobs", "j0")
    skipped = [h for h in data.history(100, timeout=1) if h.get("outcome") == "skipped_overlap"]
    assert skipped, "the slot after a start not yet answered is skipped for the overlap"


def test_a_start_never_answered_fails_by_its_limit_and_stays_tracked_s1(world: Any) -> None:
    """A start the guardian never answers: the loop wakes by its limit (D − grace), records it
    as failed_to_start, and keeps tracking the run (it may have just started) until it ends."""
    g, _ = world
    d = daemon(g, 1)
    g.run(2.0)
    SlowRun.delay = None
    g.run(1.0)
    r = d.runners["j0"]
    (active,) = r.runs
    run = active.run
    assert r.next_wakeup(g.clock.monotonic(), True) <= run.limit
    g.run(run.limit - g.clock.monotonic() + 0.1)
    assert run in [a.run for a in r.runs], "given up on, still tracked until it ends"
    assert not r.may_campaign()
    data = ElectionData(g.store, f"{PREFIX}/{GROUP}/jobs", "j0")
    assert [h for h in data.history(100, timeout=1) if h.get("outcome") == "failed_to_start"]


def test_at_most_in_flight_start_requests_wait_in_the_guardian_s6(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guardian reads its pipe in order: a deadline extension sent during a burst waits
    behind every start request sent before it. So at most IN_FLIGHT requests are unanswered at
    once (here 3 of 10 jobs); the others wait, tracked as starting, and go as answers come —
    every job still runs every slot, once."""
    monkeypatch.setattr(starts, "IN_FLIGHT", 3)
    g, started = world
    daemon(g, 10)
    g.run(3.0)
    out = most = 0
    for e, _ in SlowRun.events:
        out += 1 if e == "request" else -1
        most = max(most, out)
    assert most == 3
    by_slot: dict[str, int] = {}
    for r in started:
        by_slot[r.env["LEADERJOB_SLOT"]] = by_slot.get(r.env["LEADERJOB_SLOT"], 0) + 1
    assert sorted(set(by_slot.values()))[-1] == 10 and max(by_slot.values()) == 10
