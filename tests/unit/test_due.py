"""The freshness alert's input: ``leaderjob_job_due_timestamp_seconds``, the fire time before the
newest one, from each job's own schedule (leaderjob.schedule.due).

What is defended: the alert (deploy/prometheus/alerts.yml, LeaderjobJobNotSucceeding) pages when
no run has succeeded since that time — so a weekday job is due its success by Monday, not every
morning of the weekend, and an hourly job pages once two runs in a row did not succeed; a
replica that has not watched two fire times says 0 (a fresh deployment is never overdue); and
the daemon exports it from its real schedule and wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore
from leaderjob.ops.metrics import Metrics
from leaderjob.schedule import parse_schedule
from leaderjob.schedule.due import DueWatch

FRIDAY = datetime(2026, 1, 9, tzinfo=UTC)  # a Friday


def test_a_weekday_job_is_due_fridays_success_all_weekend() -> None:
    at = lambda days, hours: FRIDAY + timedelta(days=days, hours=hours)  # noqa: E731
    watch = DueWatch(parse_schedule("0 6 * * 1-5", "UTC"), at(-2, 12))
    assert watch.due(at(-1, 5)) is None  # watching since Wednesday noon: no fire time yet
    assert watch.due(at(-1, 7)) is None  # one (Thursday's): not two
    assert watch.due(at(0, 7)) == at(-1, 6)  # Friday 07:00: Thursday's run should have succeeded
    for day, hour in ((1, 9), (2, 23), (3, 5)):  # Saturday, Sunday, Monday 05:00
        assert watch.due(at(day, hour)) == at(-1, 6)
    assert watch.due(at(3, 6)) == at(0, 6)  # Monday 06:00: Friday's, three days on
    assert watch.due(at(4, 6)) == at(3, 6)  # Tuesday 06:00: Monday's


def test_an_hourly_job_is_due_the_success_of_the_run_before_the_newest() -> None:
    start = FRIDAY + timedelta(minutes=30)
    watch = DueWatch(parse_schedule("@hourly", "UTC"), start)
    assert watch.due(start + timedelta(hours=1)) is None  # 01:00 passed: one fire time
    assert watch.due(FRIDAY + timedelta(hours=2)) == FRIDAY + timedelta(hours=1)
    assert watch.timestamp(FRIDAY + timedelta(hours=5, minutes=59)) == (
        FRIDAY + timedelta(hours=4)
    ).timestamp()
    assert DueWatch(parse_schedule("@hourly", "UTC"), start).timestamp(start) == 0.0


def test_a_clock_far_ahead_catches_up_without_a_long_stall() -> None:
    watch = DueWatch(parse_schedule("@every 1s", "UTC"), FRIDAY)
    later = FRIDAY + timedelta(days=1)
    first = watch.due(later)  # steps at most MAX_STEPS fire times per call: lags, never ahead
    assert first is not None and first < later
    for _ in range(9):
        watch.due(later)
    assert watch.due(later) == later - timedelta(seconds=1)


def test_the_daemon_exports_each_jobs_due_time_from_its_schedule_and_clock() -> None:
    """The caller hands the rule the real values: a replica (a follower here: nothing runs) of
    an ``@every 10s`` job exports 0 until two fire times passed on its wall clock, then the one
    before the newest; a service-mode job exports 0."""
    clock = FakeClock(wall=FRIDAY + timedelta(seconds=5))
    metrics = Metrics(CollectorRegistry(), "e")
    settings = Settings(
        election="e",
        prefix="/lj",
        identity="me",
        timing=Timing.from_ttl(3),
        command=("true",),
        schedule=parse_schedule("@every 10s", "UTC"),
    )
    Daemon(settings, MemoryStore(clock), clock=clock, metrics=metrics, environ={})

    def due() -> float | None:
        labels = {"election": "e", "job_name": "e"}
        return metrics.registry.get_sample_value("leaderjob_job_due_timestamp_seconds", labels)

    assert due() == 0.0
    clock.advance(10)  # 00:00:15: one fire time (00:00:10)
    assert due() == 0.0
    clock.advance(10)  # 00:00:25: 00:00:10 and 00:00:20
    assert due() == (FRIDAY + timedelta(seconds=10)).timestamp()

    service = Metrics(CollectorRegistry(), "s")
    Daemon(
        Settings(election="s", prefix="/lj", identity="me", timing=Timing.from_ttl(3),
                 command=("true",)),
        MemoryStore(clock), clock=clock, metrics=service, environ={},
    )  # fmt: skip
    labels = {"election": "s", "job_name": "s"}
    assert service.registry.get_sample_value("leaderjob_job_due_timestamp_seconds", labels) == 0
