"""Metric hygiene: what a scraper and a rule see from the first scrape on.

* every counter exists at zero for every label value it will carry (in a group: for every job
  too), so that ``increase()`` sees the first failure — a series born at 1 has no increase;
* no ``_created`` series;
* ``leaderjob_build_info`` says what runs;
* ``/metrics`` answers in the format the scraper's ``Accept`` asks for, gzipped if allowed.
"""

from __future__ import annotations

import gzip
import http.client
import platform
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

import leaderjob
from leaderjob.ops import metric_labels
from leaderjob.ops.http import Server
from leaderjob.ops.metrics import Metrics


def _value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_counters_exist_at_zero_for_every_label_value_they_carry() -> None:
    """The daemon's counters from the start; a job's from track() (a daemon of one job tracks
    it at once, named like the election)."""
    m = Metrics(CollectorRegistry(), "e")
    m.track("e", mode="schedule", fingerprint="f")
    job = {"election": "e", "job_name": "e"}
    for outcome in metric_labels.OUTCOMES:
        assert _value(m, "leaderjob_job_runs_total", **job, outcome=outcome) == 0, outcome
    for reason in metric_labels.SKIP_REASONS:
        assert _value(m, "leaderjob_slots_skipped_total", **job, reason=reason) == 0
    for signal in metric_labels.KILL_SIGNALS:
        for reason in metric_labels.KILL_REASONS:
            labels = {**job, "signal": signal, "reason": reason}
            assert _value(m, "leaderjob_job_kills_total", **labels) == 0
    for operation in metric_labels.ETCD_OPERATIONS:
        assert _value(m, "leaderjob_etcd_errors_total", election="e", operation=operation) == 0
    for state in ("healthy", "unhealthy"):
        assert _value(m, "leaderjob_health_transitions_total", election="e", state=state) == 0
    assert _value(m, "leaderjob_config_reload_failures_total", election="e") == 0


def test_every_counter_has_its_series_from_the_start() -> None:
    """No counter of the daemon or of a tracked job is born at its first event."""
    m = Metrics(CollectorRegistry(), "e")
    m.track("e", mode="schedule", fingerprint="f")
    for family in m.registry.collect():
        if family.type == "counter" and family.name.startswith("leaderjob_"):
            assert family.samples, f"{family.name}_total has no series before its first event"


def test_a_jobs_counters_exist_at_zero_and_go_with_it() -> None:
    m = Metrics(CollectorRegistry(), "group")
    m.track("cleanup", mode="schedule", fingerprint="f")
    job = {"election": "group", "job_name": "cleanup"}
    assert _value(m, "leaderjob_job_runs_total", **job, outcome="failed") == 0
    assert _value(m, "leaderjob_slots_skipped_total", **job, reason="overlap") == 0
    assert _value(m, "leaderjob_leader_transitions_total", **job, direction="lost") == 0
    labels = {**job, "kind": "on_failure", "result": "failed"}
    assert _value(m, "leaderjob_notifications_total", **labels) == 0
    m.forget("cleanup")
    assert _value(m, "leaderjob_job_runs_total", **job, outcome="failed") is None
    assert _value(m, "leaderjob_notifications_total", **labels) is None


def test_every_outcome_and_reason_is_documented() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in text.splitlines()
        if "| `leaderjob_" in line
    }
    for name, values in (
        ("leaderjob_job_runs_total", metric_labels.OUTCOMES),
        ("leaderjob_slots_skipped_total", metric_labels.SKIP_REASONS),
        ("leaderjob_job_kills_total", metric_labels.KILL_REASONS),
        ("leaderjob_etcd_errors_total", metric_labels.ETCD_OPERATIONS),
    ):
        missing = [v for v in values if v not in rows[name]]
        assert not missing, f"docs/metrics.md, {name}: {missing} not listed"


def test_no_created_series_on_metrics_and_the_registry_left_alone() -> None:
    """/metrics has no `_created` series, in either format; the registry itself (which an
    application hosting an in-process Leadership may share) still has them."""
    m = Metrics(CollectorRegistry(), "e")
    m.job_runs.labels("e", "e", "failed").inc()
    snapshot: dict[str, Any] = {}
    server = Server(("127.0.0.1", 0), m.registry, lambda: snapshot)
    try:
        for accept in ("", "application/openmetrics-text;version=1.0.0"):
            _, text, _ = server.metrics(accept)
            assert b"leaderjob_job_runs_total" in text
            assert b"_created" not in text, accept
    finally:
        server.httpd.server_close()  # never started: nothing to shut down
    assert "leaderjob_job_runs_created" in generate_latest(m.registry).decode()


def test_build_info_names_the_version_python_and_etcd_client() -> None:
    m = Metrics(CollectorRegistry(), "e")
    samples = [
        s for f in m.registry.collect() if f.name == "leaderjob_build_info" for s in f.samples
    ]
    assert len(samples) == 1 and samples[0].value == 1
    labels = samples[0].labels
    assert labels["version"] == leaderjob.__version__
    assert labels["python"] == platform.python_version()
    assert labels["etcd_client"].startswith(("python3-etcd3/", "etcd3/")), labels


def _get(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _server() -> Server:
    snapshot: dict[str, Any] = {}
    server = Server(("127.0.0.1", 0), Metrics(CollectorRegistry(), "e").registry, lambda: snapshot)
    server.start()
    return server


def test_metrics_endpoint_honours_accept_and_gzip() -> None:
    server = _server()
    try:
        status, headers, body = _get(server.port, {})
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert "content-encoding" not in headers and b"leaderjob_is_leader" in body
        # What Prometheus sends: OpenMetrics preferred.
        accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
        status, headers, body = _get(server.port, {"Accept": accept})
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")
        status, headers, body = _get(server.port, {"Accept-Encoding": "gzip"})
        assert headers["content-encoding"] == "gzip"
        assert b"leaderjob_is_leader" in gzip.decompress(body)
    finally:
        server.close()
