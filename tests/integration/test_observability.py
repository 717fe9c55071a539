"""Observability and health, end to end: /metrics, the probe endpoints, health-gated leadership
and structured logs, on real daemons against a real etcd."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy._support import require_tool
from tests.harness.daemons import Above, job, leader_of, leaderjob, wait_for
from tests.harness.etcd import free_port
from tests.harness.procs import JsonLogProcess, ProcessGroup
from tests.harness.proxy import FaultProxy

#: The documented metric set (docs/metrics.md): name → type.
METRICS = {
    "leaderjob_is_leader": "gauge",
    "leaderjob_fencing_token": "gauge",
    "leaderjob_leader_transitions": "counter",
    "leaderjob_lease_keepalives": "counter",
    "leaderjob_lease_keepalive_latency_seconds": "histogram",
    "leaderjob_lease_deadline_remaining_seconds": "gauge",
    "leaderjob_job_runs": "counter",
    "leaderjob_job_duration_seconds": "histogram",
    "leaderjob_job_running": "gauge",
    "leaderjob_job_last_success_timestamp_seconds": "gauge",
    "leaderjob_schedule_lag_seconds": "histogram",
    "leaderjob_slots_skipped": "counter",
    "leaderjob_job_kills": "counter",
    "leaderjob_etcd_errors": "counter",
    "leaderjob_healthy": "gauge",
    "leaderjob_health_transitions": "counter",
}


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[str, Any]:
    status, text = get(port, "/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    fam = families[name]
    total = 0.0
    for sample in fam.samples:
        if sample.name in (name, f"{name}_total") and all(
            sample.labels.get(k) == v for k, v in labels.items()
        ):
            total += sample.value
    return total


def start(
    procs: ProcessGroup,
    tmp_path: Path,
    name: str,
    endpoint: str,
    prefix: str,
    cmd: list[str],
    extra: list[str] = (),
) -> tuple[JsonLogProcess, int]:
    port = free_port()
    d = leaderjob(
        procs,
        tmp_path,
        name,
        endpoint,
        prefix,
        cmd,
        schedule="@every 1s",
        extra=["--metrics-addr", f"127.0.0.1:{port}", *extra],
    )
    assert wait_for(lambda: _up(port), 10), d.tail()
    return d, port


def _up(port: int) -> bool:
    try:
        return get(port, "/healthz")[0] in (200, 500)
    except OSError:
        return False


def test_metrics_endpoints_and_failover_counters(etcd, prefix, procs, tmp_path):
    """/metrics parses with prometheus-client's parser and carries every documented metric with
    its type; exactly one replica has is_leader 1 and answers /leader 200; after a failover the
    counters and gauges move as documented."""
    cmd = job(tmp_path / "journal", "--duration", "0.1")
    replicas = [start(procs, tmp_path, f"r{i}", etcd.endpoint, prefix, cmd) for i in range(3)]
    leader = leader_of([d for d, _ in replicas])
    leader.wait_event("job.finished", 10)
    time.sleep(1.5)  # one more keepalive everywhere

    scraped = {d.pid: scrape(port) for d, port in replicas}
    for fams in scraped.values():
        for name, kind in METRICS.items():
            assert name in fams, f"{name} missing"
            assert fams[name].type == kind, (name, fams[name].type)
        assert "process_resident_memory_bytes" in fams
    assert sum(value(f, "leaderjob_is_leader", election="job") for f in scraped.values()) == 1
    leader_port = next(port for d, port in replicas if d is leader)
    lf = scraped[leader.pid]
    token = leader.events("election.acquired")[0]["token"]
    assert value(lf, "leaderjob_fencing_token") == token
    assert value(lf, "leaderjob_job_runs", outcome="succeeded") >= 1
    assert value(lf, "leaderjob_lease_keepalives", result="ok") >= 1
    assert value(lf, "leaderjob_lease_deadline_remaining_seconds") > 0
    assert value(lf, "leaderjob_job_last_success_timestamp_seconds") > time.time() - 60
    codes = {port: get(port, "/leader")[0] for _, port in replicas}
    assert sorted(codes.values()) == [200, 503, 503]
    body = json.loads(get(leader_port, "/leader")[1])
    assert body["identity"] == leader.events("election.acquired")[0]["identity"]
    assert body["token"] == token
    for _, port in replicas:
        assert get(port, "/readyz")[0] == 200
        assert get(port, "/healthz")[0] == 200
    status = json.loads(get(leader_port, "/status")[1])
    assert status["leader"] is True and status["token"] == token
    assert status["deadline_remaining_seconds"] > 0

    leader.signal(signal.SIGTERM)
    rest = [(d, p) for d, p in replicas if d is not leader]
    successor = leader_of([d for d, _ in rest])
    successor.wait_event("job.finished", 10)
    sport = next(p for d, p in rest if d is successor)
    after = scrape(sport)
    assert value(after, "leaderjob_is_leader") == 1
    assert value(after, "leaderjob_leader_transitions", direction="acquired") == 1
    assert value(after, "leaderjob_fencing_token") > token


def test_metrics_of_a_leader_pass_promtool(etcd, prefix, procs, tmp_path):
    """promtool's linter accepts a leader's /metrics after a run (help text, counter suffixes,
    units). promtool is required: a missing one is a skip, and a failure in CI (.ci/run
    installs it)."""
    promtool = require_tool("promtool")
    d, port = start(
        procs, tmp_path, "a", etcd.endpoint, prefix, job(tmp_path / "journal", "--duration", "0.1")
    )
    d.wait_event("job.finished", 10)
    status, text = get(port, "/metrics")
    assert status == 200 and "leaderjob_is_leader" in text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, text=True, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_health_gated_leader_hands_over_and_unhealthy_follower_never_leads(
    etcd, prefix, procs, tmp_path
):
    """A leader whose health check fails `failures` times resigns within interval × failures
    plus a second, and an unhealthy replica never leads; it campaigns again once healthy."""
    ok_a, ok_b = tmp_path / "a.ok", tmp_path / "b.ok"
    ok_a.touch()
    gate = ["--health-interval", "0.3s", "--health-failures", "2"]
    cmd = job(tmp_path / "journal", "--duration", "0.1")
    a, port_a = start(
        procs, tmp_path, "a", etcd.endpoint, prefix, cmd, [*gate, "--health-cmd", f"test -e {ok_a}"]
    )
    a.wait_event("election.acquired", 10)
    b, port_b = start(
        procs, tmp_path, "b", etcd.endpoint, prefix, cmd, [*gate, "--health-cmd", f"test -e {ok_b}"]
    )
    b.wait_event("health.failed", 5)
    # The probe is published when the cycle that logged the failure ends: wait for it, briefly.
    assert wait_for(lambda: get(port_b, "/readyz")[0] == 503, 1.0, interval=0.02)

    # a becomes unhealthy too: nobody may lead.
    ok_a.unlink()
    failed_at = time.monotonic()
    a.wait_event("health.failed", 5)
    a.wait_event("election.lost", 5, reason="resigned")
    assert time.monotonic() - failed_at <= 0.3 * 2 + 1 + 0.5
    time.sleep(1)
    assert b.events("election.acquired") == []

    # b recovers and takes over at once; a recovers and waits in line.
    ok_b.touch()
    b.wait_event("health.recovered", 5)
    b.wait_event("election.acquired", 5)
    ok_a.touch()
    a.wait_event("health.recovered", 5)
    assert wait_for(lambda: get(port_a, "/readyz")[0] == 200, 5)
    fams = scrape(port_a)
    assert value(fams, "leaderjob_health_transitions", state="unhealthy") == 1
    assert value(fams, "leaderjob_health_transitions", state="healthy") == 1


def test_healthz_fails_when_the_leaders_renewal_is_overdue(etcd, prefix, procs, tmp_path):
    """/healthz turns 500 while a leader's renewal is overdue (etcd unreachable), and the replica
    then steps down and reports healthy-but-not-ready."""
    with FaultProxy(etcd.endpoint) as proxy:
        a, port = start(
            procs,
            tmp_path,
            "a",
            proxy.endpoint,
            prefix,
            job(tmp_path / "journal", "--duration", "0.1"),
        )
        a.wait_event("election.acquired", 10)
        assert get(port, "/healthz")[0] == 200
        proxy.blackhole()
        assert wait_for(lambda: get(port, "/healthz")[0] == 500, 5, interval=0.05)
        a.wait_event("election.lost", 5)
        assert wait_for(lambda: get(port, "/readyz")[0] == 503, 5)
        proxy.heal()
        a.wait_event(
            "election.acquired", 15, token=Above(a.events("election.acquired")[0]["token"])
        )


def test_logs_are_json_lines_with_the_documented_fields(etcd, prefix, procs, tmp_path):
    d, _ = start(procs, tmp_path, "a", etcd.endpoint, prefix, job(tmp_path / "j"))
    d.wait_event("job.finished", 10)
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    records = d.events()
    assert len(records) == len([ln for ln in d.lines() if ln.strip()]), "a non-JSON log line"
    for r in records:
        assert {"timestamp", "level", "event", "election", "identity"} <= r.keys(), r
        assert r["timestamp"].endswith("Z")
    acquired = records.index(d.events("election.acquired")[0])
    lost = records.index(d.events("election.lost")[0])
    for r in records[acquired:lost]:
        assert "token" in r, r
    finished = d.events("job.finished")[0]
    assert {
        "run_id",
        "slot",
        "token",
        "exit_code",
        "outcome",
        "duration_seconds",
    } <= finished.keys()


def test_a_password_never_reaches_logs_or_errors(etcd, prefix, procs, tmp_path):
    """A configured etcd password appears in no log line and no error output (this etcd has no
    auth enabled, so the daemon stops with etcd's refusal — which must not echo the secret)."""
    secret = "s3cr3t-Pa55word"
    d = leaderjob(
        procs,
        tmp_path,
        "a",
        etcd.endpoint,
        prefix,
        job(tmp_path / "j"),
        extra=["--user", "leaderjob"],
        env={"LEADERJOB_PASSWORD": secret},
    )
    d.wait(15)
    out = Path(f"{d.log_path}.stdout").read_text() + "\n".join(d.lines())
    assert d.returncode not in (0, None)
    assert secret not in out
    assert "rejected" in out


def test_ping_url_and_on_failure_end_to_end(etcd, prefix, procs, tmp_path):
    """--ping-url and --on-failure on a real daemon against a real etcd (a few seconds): a run
    that succeeds pings URL/start then URL; the next, which fails, pings URL/start then URL/fail
    (each run's two pings with the same rid) and runs the on-failure command with its context;
    the URL (a secret) is in no log line and the notifications are counted."""
    import threading
    from http.server import BaseHTTPRequestHandler

    from tests.harness.endpoint import QuietServer

    secret = "0d9a3c0e-ping-secret"
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{secret}"
    flag, told = tmp_path / "ran-once", tmp_path / "told"
    try:
        d, port = _start_with_env(procs, tmp_path, etcd.endpoint, prefix, flag, told, url)
        assert wait_for(lambda: told.exists() and told.read_text().strip(), 15), d.tail()
        assert wait_for(lambda: f"/{secret}/fail" in _paths(paths), 10), paths

        # The on-failure command writes its file before it exits, and the endpoint records a
        # path before it answers: each is counted once the daemon has seen it end, a moment later.
        def counted() -> bool:
            families = scrape(port)
            return (
                value(families, "leaderjob_notifications", kind="ping", result="ok") >= 3
                and value(families, "leaderjob_notifications", kind="on_failure", result="ok") >= 1
            )

        assert wait_for(counted, 10), scrape(port)
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert told.read_text().split() == ["failed", "3"]
    assert _paths(paths)[:4] == [
        f"/{secret}/start", f"/{secret}", f"/{secret}/start", f"/{secret}/fail"
    ]  # fmt: skip
    rids = [path.partition("?rid=")[2] for path in paths[:4]]
    assert rids[0] == rids[1] != rids[2] == rids[3], paths  # each run's start and end pair up
    assert secret not in "\n".join(d.lines()) + Path(f"{d.log_path}.stdout").read_text()


def _paths(paths: list[str]) -> list[str]:
    """The ping paths without their query (``?rid=`` the run's UUID)."""
    return [path.partition("?")[0] for path in paths]


def _start_with_env(procs, tmp_path, endpoint, prefix, flag, told, url):
    port = free_port()
    d = leaderjob(
        procs,
        tmp_path,
        "a",
        endpoint,
        prefix,
        # Each run lasts a moment: a /start still waiting to be sent when its run has ended is
        # stale and dropped by design, which an instant run on a loaded machine can hit.
        ["sh", "-c", f"sleep 0.3; test -e {flag} && exit 3; touch {flag}"],
        schedule="@every 1s",
        extra=[
            "--metrics-addr",
            f"127.0.0.1:{port}",
            "--on-failure",
            f'echo "$LEADERJOB_OUTCOME $LEADERJOB_EXIT_CODE" > {told}',
        ],
        env={"LEADERJOB_PING_URL": url},  # a secret: from the environment, not argv
    )
    assert wait_for(lambda: _up(port), 10), d.tail()
    return d, port


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
