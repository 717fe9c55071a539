"""Notifications: ``--on-failure`` and ``--ping-url``, against real processes and a local HTTP
server in a thread.

What is defended:

* S6/L4: a notification never blocks the daemon's loop — a call returns at once whatever the
  command or the server does, and a daemon whose on-failure command sleeps longer than the
  lease's budget keeps renewing and keeps leading;
* an on-failure command is bounded: killed with its whole process group after its timeout; at
  most one in flight per job (a second failure meanwhile is dropped and counted);
* the run's context reaches the command (environment, output tail on stdin), never a credential;
* pings follow the healthchecks.io convention, are retried within their window, and the URL (a
  secret) never appears in a log line;
* every notification is counted in ``leaderjob_notifications_total{kind,result}``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from leaderjob.clock import SystemClock
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore
from leaderjob.ops import notify, ping_lanes, pings
from leaderjob.ops.metrics import Metrics
from leaderjob.ops.notify import Notifier, NotifySettings, output_tail, ping_url, redact_url
from leaderjob.schedule import parse_schedule
from tests.harness.endpoint import QuietServer

SECRET = "6f1c1d7e-0b0a-4b55-9d2b-secretcheck"


# --- pure rules -------------------------------------------------------------------------------


def test_ping_urls_follow_the_healthchecks_convention() -> None:
    base = f"https://hc-ping.com/{SECRET}"
    assert ping_url(base, "start") == f"{base}/start"
    assert ping_url(base, "success") == base
    assert ping_url(base + "/", "fail") == f"{base}/fail"
    assert ping_url(f"{base}?create=1", "fail") == f"{base}/fail?create=1"


def test_a_ping_url_is_shown_as_scheme_and_host_only() -> None:
    assert (
        redact_url(f"https://user:pw@hc-ping.com:8443/{SECRET}?k=v") == "https://hc-ping.com:8443/…"
    )
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9/…"
    assert SECRET not in redact_url(f"http://h/{SECRET}")


def test_a_ping_url_is_not_in_the_settings_repr() -> None:
    assert SECRET not in repr(NotifySettings(ping_url=f"https://hc-ping.com/{SECRET}"))


def test_failures_are_the_outcomes_nobody_asked_for() -> None:
    for outcome in ("failed", "timed_out", "killed_at_deadline", "killed_on_leadership_loss",
                    "failed_to_start", "watchdog_failed"):  # fmt: skip
        assert notify.is_failure(outcome), outcome
    for outcome in ("succeeded", "shutdown", "unhealthy", "replaced"):
        assert not notify.is_failure(outcome), outcome


def test_output_tail_is_the_watchdogs_stdout_and_stderr_tails() -> None:
    """The record a notification gets carries the run's tails as the watchdog reports them
    (``stdout_tail``/``stderr_tail``, ``*_truncated``: leaderjob.guard.tail.absorb); nothing else is
    read as output."""
    assert output_tail({"outcome": "failed"}) == b""
    assert output_tail({"stdout_tail": "", "stdout_truncated": False}) == b""
    assert output_tail({"stdout_tail": "out\n"}) == b"--- stdout ---\nout\n"
    both = output_tail(
        {"stdout_tail": "out\n", "stderr_tail": "err\n", "stderr_truncated": True}
    )
    assert both == b"--- stdout ---\nout\n\n--- stderr (cut: the last 4 KiB) ---\nerr\n"
    assert output_tail({"output_tail": "guessed", "tail": {"stdout": "x"}}) == b""
    assert len(output_tail({"stdout_tail": "x" * 100_000})) == notify.TAIL_LIMIT


# --- on-failure -------------------------------------------------------------------------------


class Counts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.cond = threading.Condition()

    def __call__(self, election: str, kind: str, result: str) -> None:
        with self.cond:
            self.seen.append((election, kind, result))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, str, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.seen) >= n, timeout), self.seen
            return list(self.seen)


RECORD = {
    "run_id": "abc123",
    "slot": "2026-01-01T00:00:00Z",
    "outcome": "failed",
    "exit_code": 3,
    "signal": None,
    "token": 42,
    "identity": "replica-a",
    "duration_seconds": 1.5,
    "attempt": 0,
    "stdout_tail": "last words\n",
    "stdout_truncated": False,
}
#: What a notification gets of RECORD's output (stdin, the ping's body).
TAIL = b"--- stdout ---\nlast words\n"


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def _notifier(counts: Counts, environ: dict[str, str] | None = None) -> Notifier:
    import structlog

    return Notifier(structlog.get_logger(), counts, environ=environ or {"PATH": os.environ["PATH"]})


def test_on_failure_gets_the_runs_context_and_its_output_tail_never_a_credential(
    tmp_path: Path,
) -> None:
    counts = Counts()
    n = _notifier(counts, {"PATH": os.environ["PATH"], "LEADERJOB_PASSWORD": "pw"})
    script = (
        "import json, os, sys; "
        "got = {'env': dict(os.environ), 'stdin': sys.stdin.read()}; "
        f"json.dump(got, open({str(tmp_path / 'o')!r}, 'w'))"
    )
    cmd = f'{sys.executable} -c "{script}"'
    n.finished(NotifySettings(on_failure=cmd), RECORD, job="cleanup", election="grp", window=10)
    assert counts.wait_for(1) == [("cleanup", "on_failure", "ok")]
    got = json.loads((tmp_path / "o").read_text())
    env = got["env"]
    assert env["LEADERJOB_JOB"] == "cleanup" and env["LEADERJOB_ELECTION"] == "grp"
    assert env["LEADERJOB_RUN_ID"] == "abc123" and env["LEADERJOB_OUTCOME"] == "failed"
    assert env["LEADERJOB_EXIT_CODE"] == "3" and "LEADERJOB_SIGNAL" not in env
    assert env["LEADERJOB_FENCING_TOKEN"] == "42" and env["LEADERJOB_IDENTITY"] == "replica-a"
    assert env["LEADERJOB_DURATION_SECONDS"] == "1.5" and env["LEADERJOB_SLOT"] == RECORD["slot"]
    assert "LEADERJOB_PASSWORD" not in env
    assert got["stdin"] == TAIL.decode()


def test_on_failure_runs_for_failures_only(tmp_path: Path) -> None:
    counts = Counts()
    n = _notifier(counts)
    flag = tmp_path / "ran"
    settings = NotifySettings(on_failure=f"touch {flag}")
    for outcome in ("succeeded", "shutdown", "replaced", "unhealthy"):
        n.finished(settings, {**RECORD, "outcome": outcome}, job="j", election="j", window=10)
    n.close()
    assert not flag.exists() and counts.seen == []
    n.finished(
        settings, {**RECORD, "outcome": "killed_at_deadline"}, job="j", election="j", window=10
    )
    assert counts.wait_for(1) == [("j", "on_failure", "ok")]
    assert flag.exists()


def test_on_failure_never_blocks_and_is_killed_with_its_group_after_its_timeout(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    """S6: the caller (the loop) returns at once; past --on-failure-timeout the command and a
    grandchild of it are killed (its process group), and the timeout is logged and counted."""
    counts = Counts()
    n = _notifier(counts)
    pidfile = tmp_path / "grandchild"
    cmd = f"sleep 60 & echo $! > {pidfile}; sleep 60"
    t0 = time.monotonic()
    n.finished(
        NotifySettings(on_failure=cmd, on_failure_timeout=0.5), RECORD, job="j", election="j",
        window=10,
    )  # fmt: skip
    assert time.monotonic() - t0 < 0.2, "the caller waited for the command"
    assert counts.wait_for(1) == [("j", "on_failure", "timed_out")]
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the command's grandchild outlived its timeout"
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert failed and "killed" in failed[0]["error"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_at_most_one_on_failure_in_flight_per_job(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    """A burst of failures does not pile up commands: the one running finishes, the others are
    dropped and counted; another job's command is independent."""
    counts = Counts()
    n = _notifier(counts)
    settings = NotifySettings(on_failure="sleep 0.5")
    for _ in range(3):
        n.finished(settings, RECORD, job="a", election="g", window=10)
    n.finished(settings, RECORD, job="b", election="g", window=10)
    seen = counts.wait_for(4)
    assert sorted(seen) == sorted(
        [("a", "on_failure", "dropped")] * 2
        + [("a", "on_failure", "ok"), ("b", "on_failure", "ok")]
    )
    # Both counted; logged once (per job and interval: a burst does not flood the log).
    assert [e["dropped"] for e in logs if e["event"] == "notify.dropped"] == [1]


def test_an_on_failure_command_that_hangs_holds_back_no_other_jobs(tmp_path: Path) -> None:
    """Isolation: job a's command hangs until its timeout; job b's commands meanwhile run at
    once, one after another, each told its own run (one thread per command, none shared)."""
    counts = Counts()
    n = _notifier(counts)
    hang = NotifySettings(on_failure="sleep 30", on_failure_timeout=20)
    n.finished(hang, RECORD, job="a", election="g", window=10)
    told = tmp_path / "told"
    quick = NotifySettings(on_failure=f'echo "$LEADERJOB_RUN_ID" >> {told}')
    t0 = time.monotonic()
    for i in range(3):
        n.finished(quick, {**RECORD, "run_id": f"b{i}"}, job="b", election="g", window=10)
        assert _wait_count(counts, ("b", "on_failure", "ok"), i + 1, 5)
    assert time.monotonic() - t0 < 3, "b's commands waited for a's"
    assert told.read_text().split() == ["b0", "b1", "b2"]
    assert ("a", "on_failure", "timed_out") not in counts.seen  # a's still runs
    t1 = time.monotonic()
    n.close(timeout=0.2)  # kills a's process group
    assert time.monotonic() - t1 < 2.5


def _wait_count(counts: Counts, item: tuple[str, str, str], n: int, timeout: float) -> bool:
    with counts.cond:
        return counts.cond.wait_for(lambda: counts.seen.count(item) >= n, timeout)


def test_a_failing_on_failure_command_is_logged_and_counted(logs: list[dict[str, Any]]) -> None:
    counts = Counts()
    n = _notifier(counts)
    n.finished(NotifySettings(on_failure="exit 7"), RECORD, job="j", election="j", window=10)
    assert counts.wait_for(1) == [("j", "on_failure", "failed")]
    n.close()
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert failed and failed[0]["exit_code"] == 7 and failed[0]["log_level"] == "error"


# --- pings ------------------------------------------------------------------------------------


class PingServer:
    """A dead-man's-switch service in a thread: records each request; answers with the next
    status in ``statuses`` (then 200), after ``delay`` seconds."""

    def __init__(self, statuses: tuple[int, ...] = (), delay: float = 0.0) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.statuses = list(statuses)
        self.delay = delay
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(owner.delay)
                owner.requests.append((self.command, self.path, body))
                code = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{SECRET}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ping_lanes, "PING_RETRY_BASE", 0.05)


def test_pings_start_success_and_fail_with_the_output_tail(logs: list[dict[str, Any]]) -> None:
    """The healthchecks.io convention, each ping with its run's ``rid`` (a UUID ending in the
    run id), so that the monitor pairs a run's start with its end."""
    server = PingServer()
    counts = Counts()
    n = _notifier(counts)
    s = NotifySettings(ping_url=server.url)
    ok, bad = "0123456789ab", RECORD["run_id"]
    try:
        n.started(s, job="j", window=10, run_id=ok)
        assert counts.wait_for(1) == [("j", "ping", "ok")]  # sent before its run ends
        n.finished(
            s,
            {**RECORD, "run_id": ok, "outcome": "succeeded", "stdout_tail": ""},
            job="j",
            election="j",
            window=10,
        )
        n.finished(s, RECORD, job="j", election="j", window=10)
        n.finished(s, {**RECORD, "outcome": "shutdown"}, job="j", election="j", window=10)
        assert counts.wait_for(3) == [("j", "ping", "ok")] * 3
        n.close()
    finally:
        server.close()
    rid_ok = "rid=00000000-0000-4000-8000-0123456789ab"
    rid_bad = f"rid={pings.run_uuid(bad)}"
    assert [(m, p) for m, p, _ in server.requests] == [
        ("GET", f"/{SECRET}/start?{rid_ok}"),
        ("GET", f"/{SECRET}?{rid_ok}"),
        ("POST", f"/{SECRET}/fail?{rid_bad}"),
    ]  # a planned stop (shutdown) sends nothing
    assert server.requests[2][2] == TAIL
    assert not any(SECRET in json.dumps(e, default=str) for e in logs)


def test_the_rid_is_a_uuid_that_names_the_run() -> None:
    import uuid

    assert pings.run_uuid("0123456789ab") == "00000000-0000-4000-8000-0123456789ab"
    other = pings.run_uuid("abc123")  # another form of id: a UUID derived from it, stable
    assert other == pings.run_uuid("abc123") != pings.run_uuid("abc124")
    for rid in (pings.run_uuid("0123456789ab"), other):
        assert str(uuid.UUID(rid)) == rid
    base = f"https://hc-ping.com/{SECRET}?create=1"
    assert ping_url(base, "fail", "0123456789ab") == (
        f"https://hc-ping.com/{SECRET}/fail?create=1&rid=00000000-0000-4000-8000-0123456789ab"
    )


def test_a_ping_is_retried_with_backoff_until_answered(fast_retries: None) -> None:
    server = PingServer(statuses=(500, 503))
    counts = Counts()
    n = _notifier(counts)
    try:
        n.started(NotifySettings(ping_url=server.url), job="j", window=10)
        assert counts.wait_for(1) == [("j", "ping", "ok")]
    finally:
        server.close()
    assert [p for _, p, _ in server.requests] == [f"/{SECRET}/start"] * 3


def test_a_ping_gives_up_when_its_window_closes_and_never_logs_the_url(
    fast_retries: None, logs: list[dict[str, Any]]
) -> None:
    server = PingServer(statuses=(500,) * 100)
    counts = Counts()
    n = _notifier(counts)
    try:
        n.finished(NotifySettings(ping_url=server.url), RECORD, job="j", election="j", window=0.5)
        assert counts.wait_for(1) == [("j", "ping", "failed")]
    finally:
        server.close()
    assert 2 <= len(server.requests) <= 6, server.requests  # retried, within the window
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert (
        failed
        and failed[0]["url"] == redact_url(server.url)
        and failed[0]["error"] == "answered 500"
    )
    assert not any(SECRET in json.dumps(e, default=str) for e in logs)


def test_pings_are_off_the_loop_and_their_queue_is_bounded(
    monkeypatch: pytest.MonkeyPatch, logs: list[dict[str, Any]]
) -> None:
    """S6: a hanging ping service delays nothing; pings beyond the job's lane are dropped,
    counted."""
    monkeypatch.setattr(ping_lanes, "LANE_CAP", 2)
    server = PingServer(delay=1.0)
    counts = Counts()
    n = _notifier(counts)
    s = NotifySettings(ping_url=server.url)
    try:
        t0 = time.monotonic()
        for _ in range(6):
            n.started(s, job="j", window=10)
        assert time.monotonic() - t0 < 0.2, "the caller waited for the ping service"
        # One in the worker's hands, two waiting: at least three dropped.
        dropped = [c for c in counts.wait_for(3) if c[2] == "dropped"]
        assert len(dropped) >= 3
        n.close(timeout=0.1)
    finally:
        server.close()
    assert not any(SECRET in json.dumps(e, default=str) for e in logs)


def test_notification_counters_exist_at_zero_for_every_kind_and_result() -> None:
    m = Metrics(CollectorRegistry(), "e")
    m.track("job1", mode="schedule", fingerprint="f")
    for kind in notify.KINDS:
        for result in notify.RESULTS:
            labels = {"election": "e", "job_name": "job1", "kind": kind, "result": result}
            assert m.registry.get_sample_value("leaderjob_notifications_total", labels) == 0


# --- in the daemon ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _keep_signal_handlers() -> Iterator[None]:
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_a_daemon_keeps_renewing_and_leading_while_its_on_failure_command_runs_s6_l4(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    """S6/L4: a failing run's --on-failure command sleeps longer than the whole lease (TTL 2 s);
    the daemon meanwhile renews, keeps its leadership, and is told the run's outcome. One real
    schedule-mode daemon on the in-memory store and the system clock, about 4 s."""
    done = tmp_path / "notified"
    settings = Settings(
        election="notify",
        prefix="/leaderjob",
        identity="me",
        timing=Timing.from_ttl(2),
        command=("false",),
        schedule=parse_schedule("@every 1s", "UTC"),
        notify=NotifySettings(on_failure=f'sleep 2.5; echo "$LEADERJOB_OUTCOME" > {done}'),
    )
    clock = SystemClock()
    metrics = Metrics(CollectorRegistry(), "notify")
    daemon = Daemon(
        settings, MemoryStore(clock), clock=clock, metrics=metrics, environ=dict(os.environ)
    )
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.request_stop("test")
    thread.join(10)
    assert done.read_text().strip() == "failed"
    lost = [e for e in logs if e["event"] == "election.lost"]
    assert all(e["reason"] == "resigned" for e in lost), lost  # only the planned stop
    started = [e for e in logs if e["event"] == "job.started"]
    assert len(started) >= 3, "the loop stopped starting runs while the command ran"
    dropped = metrics.registry.get_sample_value(
        "leaderjob_notifications_total",
        {"election": "notify", "job_name": "notify", "kind": "on_failure", "result": "dropped"},
    )
    assert dropped and dropped >= 1  # later failures, while the first command still ran


# --- the jobs file ----------------------------------------------------------------------------


def test_jobs_file_sets_notifications_per_job_and_keeps_the_ping_url_secret() -> None:
    from dataclasses import replace

    from leaderjob.cli.daemon_settings import job_settings
    from leaderjob.jobsfile import JobsFileError, iter_options, parse_jobs
    from leaderjob.ops.health import HealthSettings

    text = f"""
[defaults]
on-failure = "notify-team"
[jobs.a]
schedule = "@hourly"
command = "true"
ping-url = "https://hc-ping.com/{SECRET}"
on-failure-timeout = "5s"
[jobs.b]
schedule = "@hourly"
command = "true"
"""
    a, b = parse_jobs(text, "jobs.toml").jobs
    assert (a.on_failure, a.on_failure_timeout, a.ping_url) == (
        "notify-team",
        5.0,
        f"https://hc-ping.com/{SECRET}",
    )
    assert dict(iter_options(a))["ping-url"] == "https://hc-ping.com/…"
    daemon = Settings(
        election="grp", prefix="/lj", identity="me", timing=Timing.from_ttl(3), command=(),
        notify=NotifySettings(on_failure="daemon-cmd", ping_url="https://daemon/x"),
    )  # fmt: skip
    health = HealthSettings()
    sa, sb = (job_settings(daemon, spec, health) for spec in (a, b))
    assert sa.notify == NotifySettings("notify-team", 5.0, f"https://hc-ping.com/{SECRET}")
    assert sb.notify == replace(daemon.notify, on_failure="notify-team")
    with pytest.raises(JobsFileError) as bad:
        parse_jobs(text.replace("https://", "ftp://"), "jobs.toml")
    assert SECRET not in str(bad.value) and "ping-url" in str(bad.value)
