"""The run explorer end to end, on a real etcd with real daemons (about 15 s): `status` shows the
run in progress and the last success, `history --run` one run in full with its output tail (the
output also reached the daemon's stdout), and after a leaderless window `audit` finds every fire
time accounted for — run, skipped (overlap) or missed — L3."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

from tests.harness.daemons import cli, job, leaderjob, wait_for


def _audit(etcd: Any, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "leaderjob", "audit", "--election", "job", *args,
            "--endpoints", etcd.endpoint, "--prefix", prefix]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_status_history_run_and_audit_after_a_leaderless_window_L3(etcd, prefix, procs, tmp_path):
    journal = tmp_path / "journal"
    # Longer than the interval: every other slot is skipped. It says hello on stdout first.
    cmd = ["/bin/sh", "-c", 'echo "hello from $LEADERJOB_RUN_ID"; exec "$@"', "job",
           *job(journal, "--duration", "1.5")]  # fmt: skip
    a = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, cmd, schedule="@every 1s")
    a.wait_event("election.acquired", 10)
    assert wait_for(lambda: len(a.events("job.finished")) >= 1, 15), a.tail()

    # A run in progress, and the last success, from any machine.
    def running() -> bool:
        return len(a.events("job.started")) > len(a.events("job.finished"))

    assert wait_for(running, 5), a.tail()
    starts = a.events("job.started")
    started = starts[-1]
    doc = json.loads(cli(etcd.endpoint, prefix, "status", "--election", "job", "--json"))
    # The run neither ended nor made way for the next while `status` read (1.5 s runs).
    if running() and len(a.events("job.started")) == len(starts):
        assert doc["current_run"]["slot"] == started["slot"], doc["current_run"]
        assert doc["current_run"]["running_for_seconds"] < 5
    assert doc["last_success"] is not None and doc["last_success"]["seconds_ago"] < 10

    # One run in full, by the short id the table shows.
    finished = a.events("job.finished")[0]
    table = cli(etcd.endpoint, prefix, "history", "--election", "job")
    assert finished["run_id"][:8] in table and "skipped" not in table
    text = cli(
        etcd.endpoint, prefix, "history", "--election", "job", "--run", finished["run_id"][:8]
    )
    for expected in (finished["run_id"], finished["slot"], "succeeded", "by         a"):
        assert expected in text, text
    # Its output tail is in the record, and its output passed through to the daemon's stdout.
    assert f"hello from {finished['run_id']}" in text, text
    daemon_stdout = (tmp_path / "a.log.stdout").read_text()
    assert f"hello from {finished['run_id']}\n" in daemon_stdout
    assert "skipped_overlap" in cli(etcd.endpoint, prefix, "history", "--election", "job", "--all")

    # Nobody leads for ~3 s; the successor records the slots it does not run as missed.
    a.signal(signal.SIGTERM)
    assert a.wait(10) == 0
    ended = len(json.loads(cli(etcd.endpoint, prefix, "history", "--election", "job", "--json")))
    assert ended >= 1
    wait_for(lambda: False, 3)
    b = leaderjob(procs, tmp_path, "b", etcd.endpoint, prefix, cmd, schedule="@every 1s")
    b.wait_event("schedule.catch_up", 15)
    every = json.loads(
        cli(etcd.endpoint, prefix, "history", "--election", "job", "--all", "--json")
    )
    assert wait_for(
        lambda: any(
            r.get("not_run") == "missed"
            for r in json.loads(
                cli(etcd.endpoint, prefix, "history", "--election", "job", "--all", "--json")
            )
        ),
        5,
    ), every

    # Every fire time of the last minute but the newest seconds has a record: exit 0.
    result = _audit(etcd, prefix, "--since", "60s", "--settle", "1s")
    assert result.returncode == 0, result.stdout + result.stderr + a.tail() + b.tail()
    assert "0 missing" in result.stdout and "missed" in result.stdout, result.stdout
