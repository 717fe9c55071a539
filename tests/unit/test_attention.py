"""Which of a group's jobs a pass of the loop visits (:mod:`leaderjob.daemon.attention`): the
pure rule on its own, then the daemon handing it the real values — each job's own wake-up time
from ``next_wakeup``, the news of its runs, a leadership change — on the fake clock.

The promise: a busy group does not pay for its idle jobs (a thousand-job burst's CPU went to
jobs with nothing due), and no job's slot is late for it (a slot runs at its time, a trigger
within a renew interval)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leaderjob.daemon import Daemon, Settings
from leaderjob.daemon.attention import Attention
from leaderjob.daemon.runner import Runner
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import SLOT_FORMAT
from leaderjob.schedule import parse_schedule
from tests.unit.test_daemon_jobs import GROUP, PREFIX, TIMING, fake_runs
from tests.unit.test_daemon_schedule import T0, Clock, run_for

# --- the rule ----------------------------------------------------------------------------------


def test_the_first_pass_visits_every_job_then_only_those_due_or_with_news() -> None:
    a = Attention(full_every=1.0)
    jobs = ["x", "y", "z"]
    assert a.visit(jobs, 0.0) == jobs
    a.woke("x", 0.5)
    a.woke("y", 10.0)
    a.woke("z", 10.0)
    assert a.visit(jobs, 0.1) == []
    a.note("z")
    assert a.visit(jobs, 0.2) == ["z"]
    assert a.visit(jobs, 0.5) == ["x", "z"], "z has no new wake-up time yet: visited again"


def test_a_job_never_given_a_wake_up_time_is_visited_at_every_pass() -> None:
    """A loop driven pass by pass without its wait behaves as before: every job, every time."""
    a = Attention(full_every=100.0)
    jobs = ["x", "y"]
    for t in (0.0, 0.1, 0.2):
        assert a.visit(jobs, t) == jobs


def test_everyone_and_the_full_pass_bound_what_a_missed_news_can_delay() -> None:
    a = Attention(full_every=1.0)
    jobs = ["x", "y"]
    a.visit(jobs, 0.0)
    a.woke("x", 50.0)
    a.woke("y", 50.0)
    a.everyone()
    assert a.visit(jobs, 0.1) == jobs
    a.woke("x", 50.0)
    a.woke("y", 50.0)
    assert a.visit(jobs, 1.05) == [], "the full pass counts from the last one (at 0.1)"
    a.woke("x", 50.0)
    a.woke("y", 50.0)
    assert a.visit(jobs, 1.1) == jobs


def test_the_order_of_the_pass_is_the_caller_s() -> None:
    a = Attention()
    assert a.visit(["c", "a", "b"], 0.0) == ["c", "a", "b"]


def test_only_the_wake_up_times_that_may_have_moved_are_asked_again() -> None:
    a = Attention(full_every=10.0)
    jobs = ["x", "y", "z"]
    a.visit(jobs, 0.0)
    assert all(a.stale(j) for j in jobs)
    for j in jobs:
        a.woke(j, 5.0)
    a.settled()
    assert not any(a.stale(j) for j in jobs)
    a.note("y")
    assert [j for j in jobs if a.stale(j)] == ["y"]
    assert a.visit(jobs, 1.0) == ["y"]
    a.woke("y", 2.0)
    a.settled()
    assert a.earliest(jobs) == 2.0
    assert a.visit(jobs, 2.0) == ["y"]
    assert a.earliest(jobs) == float("-inf"), "y's time is unknown until asked again"
    a.everyone()
    assert all(a.stale(j) for j in jobs)


# --- the joint: the daemon hands it the real values ------------------------------------------

#: One busy job among idle ones (a slot a year): the idle ones have nothing due in the test.
IDLE = tuple(f"idle{i:02d}" for i in range(30))


def _daemon(clock: Clock, busy: str = "@every 1s") -> Daemon:
    def spec(name: str, expr: str) -> Settings:
        return Settings(
            election=name,
            prefix=f"{PREFIX}/{GROUP}/jobs",
            identity="a",
            timing=TIMING,
            command=("job", name),
            schedule=parse_schedule(expr, "UTC"),
            rpc_timeout=1.0,
        )

    specs = [spec("busy", busy)] + [spec(name, "0 0 1 1 *") for name in IDLE]
    settings = Settings(
        election=GROUP, prefix=PREFIX, identity="a", timing=TIMING, command=(), rpc_timeout=1.0
    )
    return Daemon(settings, MemoryStore(clock).client(), clock=clock, environ={}, jobs=specs)


def _count_visits(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    visits: Counter[str] = Counter()
    real = Runner.start_due

    def counted(self: Runner) -> Any:
        visits[self.job.s.election] += 1
        return real(self)

    monkeypatch.setattr(Runner, "start_due", counted)
    return visits


def _count_asked(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Each job's wake-up time asked, by job."""
    asked: Counter[str] = Counter()
    real = Runner.next_wakeup

    def counted(self: Runner, now: float, leading: bool) -> float:
        asked[self.job.s.election] += 1
        return real(self, now, leading)

    monkeypatch.setattr(Runner, "next_wakeup", counted)
    return asked


def test_a_busy_job_s_passes_leave_the_idle_jobs_alone_and_run_every_slot_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every second the busy job fires and its run reports twice (exec'd, ended): three or
    more passes a second. The idle jobs are visited, and their wake-up times asked, only by the
    full pass (once a second) and after each read of the keys (once per renew interval) — and
    the busy job's slots all run, each at its fire time: the wake-up time the daemon recorded
    for it is its real next slot."""
    with fake_runs(monkeypatch) as (clock, started):
        d = _daemon(clock)
        run_for(d, 2.0)
        assert d.runners["busy"].tenure is not None
        visits = _count_visits(monkeypatch)
        asked = _count_asked(monkeypatch)
        first = len(started)
        reports = run_for(d, 10.0)
        busy = [r for r in started[first:] if r.env["LEADERJOB_JOB"] == "busy"]
    assert len(busy) >= 9, [r.env["LEADERJOB_SLOT"] for r in busy]
    assert visits["busy"] >= 2 * 9
    # Once a second (the full pass; the reads of the keys come with it at TTL 3 s), against a
    # visit per pass without the rule.
    assert len(reports) >= 25
    assert all(visits[name] <= 12 for name in IDLE), visits
    assert all(asked[name] <= 12 for name in IDLE), asked
    for r in busy:
        fired = datetime.strptime(r.slot, SLOT_FORMAT).replace(tzinfo=UTC)
        lag = (T0 + timedelta(seconds=r.started_at - 1000) - fired).total_seconds()
        assert 0 <= lag <= 0.06, (r.slot, lag)


def test_a_run_s_end_is_news_its_job_is_visited_in_the_same_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run's report is its job's news: the pass of the cycle that reads it visits the job
    (its retry, its replacement, its next start are decided there), even with the job's own
    wake-up time far off and no full pass due."""
    with fake_runs(monkeypatch) as (clock, started):
        d = _daemon(clock)
        run_for(d, 2.0)
        for _ in range(1000):  # up to the cycle that starts a run of the busy job
            d.cycle()
            running = [r for r in started if r.env["LEADERJOB_JOB"] == "busy" and not r.done]
            if running:
                break
            d._wait()
        run = running[0]
        d.next_wakeup(clock.monotonic())
        for name in d.runners:
            d.attention.woke(name, clock.monotonic() + 3600)
        d.attention._full_at = clock.monotonic() + 3600  # no full pass in this one
        clock.advance(0.5)
        run._end(0)  # the guardian's report of its end
        visits = _count_visits(monkeypatch)
        d.cycle()
    assert visits == {"busy": 1}, visits


def test_a_pass_over_an_idle_cron_job_does_not_walk_its_calendar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each visit asks a job's starting deadline (one schedule interval, worked out from fifty
    fire times: about a millisecond for a monthly or yearly cron). The schedule works it out
    once: ten seconds of passes over thirty yearly jobs, once they lead, walk no calendar at
    all — where each full pass walked fifty years for each of them (an idle thousand-job
    leader spent 45 % of a core on it)."""
    from leaderjob.schedule.cron import Cron

    with fake_runs(monkeypatch) as (clock, _started):
        d = _daemon(clock)
        run_for(d, 2.0)
        assert all(d.runners[name].tenure is not None for name in IDLE)
        walks = Counter[str]()
        real = Cron.walls_from

        def counted(self: Cron, *args: Any, **kwargs: Any) -> Any:
            walks["walls_from"] += 1
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Cron, "walls_from", counted)
        visits = _count_visits(monkeypatch)
        run_for(d, 10.0)
    assert all(visits[name] >= 5 for name in IDLE), visits  # the full passes did visit them
    assert walks["walls_from"] == 0, walks
