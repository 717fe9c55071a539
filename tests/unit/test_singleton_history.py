"""What a ``@leaderjob.singleton`` tenure leaves behind (leaderjob/inprocess/singleton_history.py):
the series a user alerts on (docs/metrics.md) and the history ``leaderjob history`` shows, on the
fake clock and MemoryStore with a fresh registry.

These are the records of S3's claims and L3's runs: a slot skipped, or a run that ended, must be
visible as such, in the counts the daemon would show for the same events.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry

from leaderjob.clock import FakeClock
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from leaderjob.inprocess.singleton_history import SingletonHistory
from leaderjob.inprocess.singleton_run import Active, SlotRun
from leaderjob.ops.metrics import Metrics
from leaderjob.schedule import slot_id
from leaderjob.schedule.planner import Slot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Seat:
    identity = "a"
    key = "/leaderjob/rep/leader/1"
    token = 7

    def valid(self) -> bool:
        return True

    def remaining(self) -> float:
        return 10.0


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore(self.clock)
        self.data = ElectionData(self.store, "/leaderjob", "rep")
        self.registry = CollectorRegistry()
        self.history = SingletonHistory(
            Seat(),
            self.data,
            self.clock,
            structlog.get_logger(),
            "rep",
            rpc_timeout=1.0,
            metrics=Metrics(self.registry, "rep"),
        )

    def value(self, name: str, **labels: str) -> float | None:
        """A per-job series (a function's job is named like its election)."""
        return self.registry.get_sample_value(
            name, {"election": "rep", "job_name": "rep", **labels}
        )

    def election_value(self, name: str, **labels: str) -> float | None:
        """A series of the whole election (etcd errors)."""
        return self.registry.get_sample_value(name, {"election": "rep", **labels})

    def active(self) -> Active:
        run = SlotRun(slot_id(T0), T0, 7, "r1", Seat())
        return Active(run, self.clock.monotonic(), self.clock.wall(), None, done=True)


def test_job_running_falls_to_zero_only_when_the_last_run_has_returned() -> None:
    """``leaderjob_job_running`` says whether a run is active: 1 while another still runs
    (``allow``), 0 once none does."""
    w = World()
    w.history.finished(w.active(), retries=0, running=True)
    assert w.value("leaderjob_job_running") == 1
    w.history.finished(w.active(), retries=0, running=False)
    assert w.value("leaderjob_job_running") == 0
    assert w.value("leaderjob_job_runs_total", outcome="succeeded") == 2


def test_slots_skipped_together_are_each_counted_and_recorded_once() -> None:
    """A catch-up that skips the newest expired slot and ``also`` older ones counts every one of
    them, as the daemon does, and writes one history record for the newest."""
    w = World()
    with structlog.testing.capture_logs() as logs:
        w.history.skipped(Slot(T0, T0, slot_id(T0)), "deadline", also=3)
    assert w.value("leaderjob_slots_skipped_total", reason="deadline") == 4
    assert logs[0]["event"] == "slot.skipped" and logs[0]["also_skipped"] == 3
    records = w.data.history(10, timeout=1)
    assert [r["outcome"] for r in records] == ["skipped_deadline"]


def test_a_record_etcd_did_not_take_is_dropped_and_counted_never_raised() -> None:
    """History is informational: a failed write is one warning and one etcd error, and the
    tenure goes on."""
    w = World()
    w.store.fail_next()
    with structlog.testing.capture_logs() as logs:
        w.history.record({"slot": "s", "outcome": "succeeded"})
    assert [e["event"] for e in logs] == ["etcd.unavailable", "history.dropped"]
    assert w.data.history(10, timeout=1) == []
    assert w.election_value("leaderjob_etcd_errors_total", operation="put") == 1


def test_a_skipped_slot_is_a_not_run_record_counted_as_the_daemon_counts_it() -> None:
    """L3: a skip leaves the daemon's not-run record — ``not_run`` says why (a ``deadline``
    skip is ``late``), a skip that stands for older slots too names the first and the count —
    and ``leaderjob_slots_not_run_total`` counts every slot in it."""
    w = World()
    first = T0.replace(second=10)
    last = T0.replace(second=40)
    w.history.skipped(
        Slot(last, last, slot_id(last)),
        "deadline",
        also=3,
        first=Slot(first, first, slot_id(first)),
    )
    w.clock.advance(1)  # records sort by when they were written: the overlap skip is newer
    w.history.skipped(Slot(T0, T0, slot_id(T0)), "overlap")
    records = w.data.history(10, timeout=1)
    assert [(r["slot"], r["outcome"], r["not_run"]) for r in records] == [
        (slot_id(T0), "skipped_overlap", "skipped"),
        (slot_id(last), "skipped_deadline", "late"),
    ]
    assert (records[1]["first_slot"], records[1]["count"]) == (slot_id(first), 4)
    assert "first_slot" not in records[0]
    assert w.value("leaderjob_slots_not_run_total", reason="late") == 4
    assert w.value("leaderjob_slots_not_run_total", reason="skipped") == 1
