"""`leaderjob history`: runs by default, the slots that did not run with --all, one run in full
with --run (what an operator needs to see what a run did and why a slot did not run, L3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result

from leaderjob import cli
from leaderjob.clock import SystemClock
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData

T0 = datetime(2026, 11, 30, 2, 45, tzinfo=UTC)
RUN_ID = "1a2b3c4d5e6f"


def run_record(run_id: str, slot: str, **kw: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "slot": slot,
        "scheduled_time": "2026-11-30T02:45:00Z",
        "started_at": "2026-11-30T02:45:00.041Z",
        "finished_at": "2026-11-30T02:45:00.291Z",
        "duration_seconds": 0.25,
        "exit_code": 0,
        "signal": None,
        "outcome": "succeeded",
        "token": 1234,
        "identity": "app-1",
        "attempt": 0,
        **kw,
    }


@pytest.fixture
def data(monkeypatch: pytest.MonkeyPatch) -> ElectionData:
    store = MemoryStore(SystemClock())
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: store)
    d = ElectionData(store, "/leaderjob", "job")
    records = [
        run_record("0000aaaa1111", "20261130T024000Z", outcome="failed", exit_code=1),
        {
            "run_id": None,
            "slot": "20261130T024100Z",
            "outcome": "missed",
            "not_run": "missed",
            "first_slot": "20261130T023000Z",
            "count": 11,
            "token": 1234,
        },
        {"run_id": None, "slot": "20261130T024200Z", "outcome": "skipped_overlap",
         "not_run": "skipped", "token": 1234},
        run_record(
            RUN_ID,
            "20261130T024500Z",
            outcome="timed_out",
            exit_code=None,
            signal="SIGTERM",
            attempt=1,
            signals=[{"signal": "SIGTERM", "reason": "timed_out"}],
            stdout_tail="line 1\nline 2\n",
            stderr_tail="oops\n",
            stderr_truncated=True,
        ),
        run_record("0000bbbb2222", "20261130T024500Z", outcome="failed", exit_code=1),
    ]  # fmt: skip
    for i, r in enumerate(records):
        d.record(r, T0 + timedelta(seconds=i), timeout=1)
    return d


def history(*args: str) -> Result:
    return CliRunner().invoke(cli.main, ["history", "--election", "job", *args])


def test_history_shows_runs_with_their_short_ids_and_no_slots_that_did_not_run(
    data: ElectionData,
) -> None:
    out = history()
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:4] == ["STARTED", "RUN", "SLOT", "OUTCOME"]
    assert len(lines) == 1 + 3
    assert RUN_ID[:8] in out.output and RUN_ID not in out.output
    assert "missed" not in out.output and "skipped" not in out.output
    runs = json.loads(history("--json").output)
    assert [r["run_id"] for r in runs] == ["0000bbbb2222", RUN_ID, "0000aaaa1111"]


def test_history_all_shows_why_each_slot_did_not_run_L3(data: ElectionData) -> None:
    out = history("--all")
    assert out.exit_code == 0, out.output
    assert "skipped_overlap" in out.output
    assert "missed (11 slots from 20261130T023000Z)" in out.output
    records = json.loads(history("--all", "--json").output)
    assert len(records) == 5
    assert {r.get("not_run") for r in records} == {None, "missed", "skipped"}


def test_history_limit_counts_runs_not_the_records_between_them(data: ElectionData) -> None:
    runs = json.loads(history("--json", "--limit", "3").output)
    assert len(runs) == 3 and all(r["run_id"] for r in runs)


def test_history_run_shows_one_run_in_full(data: ElectionData) -> None:
    out = history("--run", RUN_ID[:6])
    assert out.exit_code == 0, out.output
    text = out.output
    for expected in (
        f"run {RUN_ID}",
        "timed_out (SIGTERM)",
        "20261130T024500Z",
        "2026-11-30T02:45:00Z",  # scheduled
        "2026-11-30T02:45:00.041Z",  # actually started
        "0.250s",
        "app-1",
        "1234",
        "SIGTERM (timed_out)",
        "0000bbbb2222 #0 failed",  # the other attempt of the slot
        "line 2",
        "stderr (cut",
        "oops",
    ):
        assert expected in text, (expected, text)
    doc = json.loads(history("--run", RUN_ID, "--json").output)
    assert doc["run_id"] == RUN_ID and doc["stdout_tail"] == "line 1\nline 2\n"
    assert [a["run_id"] for a in doc["other_attempts"]] == ["0000bbbb2222"]


def test_history_run_unknown_exits_1_and_ambiguous_is_a_usage_error(data: ElectionData) -> None:
    missing = history("--run", "ffff")
    assert missing.exit_code == 1 and "no run 'ffff'" in missing.output
    ambiguous = history("--run", "0000")
    assert ambiguous.exit_code == 2 and "0000aaaa1111" in ambiguous.output
    assert history("--run", " ").exit_code == 2


def test_a_runs_record_keeps_the_signals_sent_to_it_and_why() -> None:
    """`history --run` shows the signals: the record must carry them (here: --timeout)."""
    import structlog

    import leaderjob.daemon.starts as daemon_mod
    from tests.unit.test_daemon_schedule import Clock, FakeRun, Job, World, lead, run_for

    clock = Clock()
    FakeRun.clock, FakeRun.job, FakeRun.started = clock, Job(duration=None), []
    mp = pytest.MonkeyPatch()
    mp.setattr(daemon_mod, "Run", FakeRun)
    try:
        with structlog.testing.capture_logs() as logs:
            w = World(clock, MemoryStore(clock), logs, FakeRun.started)
            d = w.daemon("@every 10s", timeout=2.0)
            lead(w, d)
            run_for(d, 13)
    finally:
        mp.undo()
    (record,) = [r for r in w.data.history(10, timeout=1) if r.get("run_id")]
    assert record["outcome"] == "timed_out"
    assert record["signals"] == [{"signal": "SIGTERM", "reason": "timed_out"}]


def test_a_runs_output_tail_is_kept_beside_its_record_in_one_write_and_pruned_with_it() -> None:
    """The tails go under output/ in the same Txn as the record (one write per run, as before),
    `history --run` shows them, the table's records stay small, and pruning takes both."""
    import structlog

    import leaderjob.daemon.starts as daemon_mod
    from tests.unit.test_daemon_schedule import Clock, FakeRun, Job, World, lead, run_for

    tails = {"stdout_tail": "x" * 4096, "stdout_truncated": True, "stderr_tail": "oops\n",
             "stderr_truncated": False}  # fmt: skip

    class Talker(FakeRun):
        def start(self, now: float, wait: float = 0.0) -> None:
            super().start(now, wait)
            self.tails = dict(tails)

    clock = Clock()
    Talker.clock, Talker.job, Talker.started = clock, Job(duration=0.1), []
    mp = pytest.MonkeyPatch()
    mp.setattr(daemon_mod, "Run", Talker)
    try:
        with structlog.testing.capture_logs() as logs:
            store = MemoryStore(clock)
            w = World(clock, store, logs, Talker.started)
            d = w.daemon("@every 1s", history_limit=5)
            lead(w, d)
            writes = {"put": 0, "guarded_put": 0}
            for name in writes:
                original = getattr(d.data.store, name)

                def counted(*a: Any, _n: str = name, _f: Any = original, **k: Any) -> Any:
                    # What is written: a put's key, a Txn's puts (its guard may be our key).
                    keys = [str(a[0])] if _n == "put" else [str(key) for key, _ in a[2]]
                    if any(key.startswith(w.data.base + "/history/") for key in keys):
                        writes[_n] += 1
                    return _f(*a, **k)

                setattr(d.data.store, name, counted)
            run_for(d, 20.5)
    finally:
        mp.undo()
    assert not [e for e in logs if "x" * 100 in str(e)], "the tail was logged"
    records = w.data.history(100, timeout=1)
    outputs = w.keys("output/")
    assert 0 < len(records) <= 5 and len(outputs) == len(records)
    assert all(r["output"] is True and "stdout_tail" not in r for r in records)
    # One write per run: the record and its output in one Txn, no separate put.
    assert writes["put"] == 0
    assert writes["guarded_put"] == len([r for r in Talker.started if r.done]) > 5
    (full,) = w.data.find_run(records[0]["run_id"], timeout=1)
    assert full["stdout_tail"] == "x" * 4096 and full["stderr_tail"] == "oops\n"
    assert "oops" in format_run_text(full)


def format_run_text(record: dict[str, Any]) -> str:
    from leaderjob.cli.read import format_run

    return format_run(record, [])


def test_a_record_with_the_largest_tails_is_far_below_etcds_request_limit() -> None:
    """etcd refuses requests over 1.5 MiB by default: a run's record and its output, at their
    worst (4 KiB of control characters per stream, 6 bytes each in JSON), stay far below."""
    from leaderjob.history.records import _dump

    worst = {"stdout_tail": "\x01" * 4096, "stdout_truncated": True,
             "stderr_tail": "\x01" * 4096, "stderr_truncated": True}  # fmt: skip
    record = run_record("a" * 12, "20261130T024500Z", output=True, error="e" * 1000)
    assert len(_dump(worst)) + len(_dump(record)) < 64 * 1024 < 1.5 * 1024 * 1024 / 20


def test_runs_only_reads_past_many_not_run_records_in_bounded_pages() -> None:
    """A long suspension leaves hundreds of not-run records after the last runs: `history` still
    finds the runs, reading growing pages (never more than READ_MAX records at once)."""
    from leaderjob.history.records import READ_MAX

    store = MemoryStore(SystemClock())
    d = ElectionData(store, "/leaderjob", "job")
    for i in range(3):
        d.record(run_record(f"run{i:09d}", f"S{i}"), T0 + timedelta(seconds=i), timeout=1)
    for i in range(500):
        d.record({"run_id": None, "slot": f"N{i}", "outcome": "skipped_suspended",
                  "not_run": "suspended"}, T0 + timedelta(seconds=10 + i), timeout=1)  # fmt: skip
    asked: list[int] = []
    get_prefix = store.get_prefix

    def spy(prefix: str, **kw: Any) -> Any:
        asked.append(kw.get("limit", 0))
        return get_prefix(prefix, **kw)

    store.get_prefix = spy  # type: ignore[method-assign]
    runs = d.history(2, timeout=1, runs_only=True)
    assert [r["run_id"] for r in runs] == ["run000000002", "run000000001"]
    assert asked and max(asked) <= READ_MAX and all(n > 0 for n in asked)
