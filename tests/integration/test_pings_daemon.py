"""Pings isolated per job, end to end: one real daemon, a real etcd, a jobs file of four
``@every 1s`` jobs whose ping URLs are an endpoint that never answers, one that answers after
10 s, one that refuses connections, and a healthy one (about 8 s).

The healthy job's every succeeded run pings its start and its end, in order, each within 1 s of
the event the daemon logged, with the run's ``rid``; the dead jobs' pings are counted (failed or
dropped), never ``ok``; and the last run before a SIGTERM still gets its ping, the daemon exiting
0 within the notification grace."""

from __future__ import annotations

import signal
import socket
import time
from datetime import datetime
from typing import Any

import pytest

from leaderjob.ops.pings import run_uuid
from tests.harness.daemons import leaderjob, wait_for
from tests.harness.etcd import free_port
from tests.integration.test_observability import scrape, value
from tests.unit.test_pings import Endpoint

BOUND = 1.0  # as tests/unit/test_pings.py: a healthy job's ping leaves within this of its event


def test_a_dead_ping_endpoint_silences_no_other_job_end_to_end(etcd, prefix, procs, tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = closed.getsockname()[1]
    closed.close()
    slow, healthy = Endpoint(delay=10.0), Endpoint()
    urls = {
        "hangs": f"http://127.0.0.1:{silent.getsockname()[1]}/check",
        "slow": slow.url,
        "refuses": f"http://127.0.0.1:{refused}/check",
        "ok": healthy.url,
    }
    lines = []
    for name, url in urls.items():
        lines += [f"[jobs.{name}]", 'schedule = "@every 1s"', 'command = ["sleep", "0.3"]',
                  f'ping-url = "{url}"', ""]  # fmt: skip
    jobs = tmp_path / "jobs.toml"
    jobs.write_text("\n".join(lines))
    port = free_port()
    try:
        d = leaderjob(
            procs,
            tmp_path,
            "a",
            etcd.endpoint,
            prefix,
            [],
            election="grp",
            extra=["--jobs", str(jobs), "--metrics-addr", f"127.0.0.1:{port}"],
        )
        assert wait_for(lambda: len(healthy.arrived) >= 8, 20), d.tail()

        # An endpoint records a ping before it answers; the daemon counts it once the answer is
        # in, a moment later. So the counts are awaited, not read at once.
        families: dict[str, Any] = {}

        def pings(job: str, *results: str) -> float:
            return sum(
                value(families, "leaderjob_notifications", job_name=job, kind="ping", result=r)
                for r in results
            )

        def counted() -> bool:
            nonlocal families
            families = scrape(port)
            return pings("ok", "ok") >= 8 and all(
                pings(job, "failed", "dropped") >= 1 for job in ("hangs", "slow", "refuses")
            )

        assert wait_for(counted, 10), families
        stopped_at = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
        exit_took = time.monotonic() - stopped_at
    finally:
        silent.close()
        slow.close()
        healthy.close()

    finished = [e for e in d.events("job.finished") if e.get("job") == "ok"]
    started = [e for e in d.events("job.started") if e.get("job") == "ok"]
    assert finished and all(e["outcome"] == "succeeded" for e in finished), finished
    arrived = dict(healthy.arrived)
    expected: list[tuple[str, float]] = []
    for event in sorted(started + finished, key=lambda e: e["timestamp"]):
        kind = "/start" if event["event"] == "job.started" else ""
        path = f"/check{kind}?rid={run_uuid(event['run_id'])}"
        expected.append((path, _monotonic_of(event["timestamp"])))
    missing = [path for path, _ in expected if path not in arrived]
    # A /start may be dropped when its run (0.3 s) ended before a worker took it; an end never.
    assert all("/start" in path for path in missing), missing
    assert len(missing) <= len(expected) // 10, missing
    assert [p for p, _ in healthy.arrived] == [p for p, _ in expected if p in arrived]
    late = [(p, round(arrived[p] - t, 3)) for p, t in expected if p in arrived
            and arrived[p] - t > BOUND]  # fmt: skip
    assert not late, late
    assert exit_took < 2.0 + 3.0, exit_took  # the notification grace, and a handover's slack
    for job in ("hangs", "slow", "refuses"):
        assert pings(job, "ok") == 0 and pings(job, "failed", "dropped") >= 1, job
    ok = pings("ok", "ok")
    assert ok >= 8


def _monotonic_of(timestamp: str) -> float:
    """A log line's wall-clock timestamp, on this process's monotonic clock."""
    wall = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    return time.monotonic() - (time.time() - wall)


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
