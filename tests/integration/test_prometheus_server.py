"""A real Prometheus scrapes three real daemons: the shipped config, alerts and dashboard.

The deployment artefacts are checked statically elsewhere (tests/deploy: promtool parses the
rules and the dashboard's queries, and unit-tests the alerts on synthetic series). Here Debian's
``prometheus`` server runs the shipped ``deploy/prometheus/prometheus.yml`` against three
``leaderjob run`` replicas on a real etcd, and the test asks Prometheus's own HTTP API what an
operator would see:

* exactly one leader (``sum(leaderjob_is_leader) == 1``), and never two, over the whole test;
* a job that keeps failing fires ``LeaderjobJobRunsFailing`` and ``LeaderjobJobNotSucceeding``,
  and both resolve once runs succeed;
* every replica unhealthy (nobody leads, everybody still reports) fires ``LeaderjobNoLeader``;
* every replica killed (nobody reports at all) fires ``LeaderjobReplicasAbsent`` -- the rule
  the shipped alerts name for that case; ``LeaderjobNoLeader`` needs a replica reporting 0;
* every query of the Grafana dashboard returns data over the test's time range, or is listed
  in ``NO_DATA_EXPECTED`` with the reason.

What the test changes, only in copies written to its temp dir: the scrape targets (the three
daemons on 127.0.0.1-3 so the shipped relabelling to the host part still yields three distinct
``instance`` labels, and Prometheus itself), the scrape and evaluation intervals (1 s), every
alert's ``for:`` (``FOR``) and the rules' look-back ``offset 1h`` (``OFFSET``), so the alerts can
fire within a minute. Time budget: about 35 s (measured on a shared 2-core machine), 180 s allowed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from leaderjob.demo import prometheus as demo_prometheus
from tests.deploy._support import ALERTS, DASHBOARD, PROMETHEUS_CONFIG, yaml_module
from tests.harness.daemons import leaderjob, wait_for
from tests.harness.etcd import free_port
from tests.harness.procs import JsonLogProcess, ProcessGroup

pytestmark = pytest.mark.timeout(180)

PROMETHEUS_BIN = os.environ.get("LEADERJOB_PROMETHEUS_BIN", "/usr/bin/prometheus")
ELECTION = "promtest"
#: The shortened `for:` of every alert, and the look-back that replaces `offset 1h`.
FOR = "2s"
OFFSET = "10s"
#: Grafana's variables in the dashboard's queries; $__rate_interval is Grafana's own rule,
#: max(4 × scrape interval, ...), with the test's 1 s scrape interval and some room.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5s",
    "$__interval": "1s",
    "$__range": "1m",
    "$namespace": ".*",  # no namespace label outside Kubernetes: the variable's "All"
    "$election": ELECTION,
    "$job_name": ".*",
}
#: Dashboard queries that may rightly return nothing in this test, and why.
NO_DATA_EXPECTED = {
    "leaderjob_etcd_errors_total": "no etcd fault is injected here; the fault suites count them",
}


# --- Prometheus --------------------------------------------------------------------------------


class Prometheus:
    """A Prometheus server on 127.0.0.1:``port`` and its HTTP API."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{url}: HTTP {exc.code}: {exc.read().decode()[:500]}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step="1")
        return list(data["result"])

    def firing(self) -> set[str]:
        """Names of the alerts firing now (pending ones are not firing yet)."""
        return {
            a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"
        }

    def wait_firing(self, alert: str, timeout: float) -> None:
        assert wait_for(lambda: alert in self.firing(), timeout, interval=0.5), (
            f"{alert} did not fire within {timeout}s; active alerts: {self.api('alerts')}"
        )

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def shortened_config(
    config: dict[str, Any], targets: list[str], self_target: str
) -> dict[str, Any]:
    """The shipped config with only its targets and intervals rewritten."""
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"leaderjob", "prometheus"}, "the shipped scrape jobs changed: update me"
    jobs["leaderjob"]["static_configs"] = [{"targets": targets}]
    jobs["prometheus"]["static_configs"] = [{"targets": [self_target]}]
    return config


def shortened_rules(text: str) -> str:
    """The shipped rules with every `for:` set to FOR and every `offset 1h` to OFFSET."""
    shortened, n_for = re.subn(r"^(\s+for:\s*)\S+\s*$", rf"\g<1>{FOR}", text, flags=re.M)
    shortened, n_offset = re.subn(r"\boffset 1h\b", f"offset {OFFSET}", shortened)
    assert n_for and n_offset, "alerts.yml: no `for:` or no `offset 1h` left to shorten"
    return shortened


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], Prometheus]]:
    """Start Prometheus with the shipped config pointed at ``targets``; stopped by pid at the end,
    whatever the outcome (SIGTERM, then SIGKILL), with its log tail on failure."""
    if not os.access(PROMETHEUS_BIN, os.X_OK):
        pytest.skip(
            f"no Prometheus server at {PROMETHEUS_BIN} (apt-get install prometheus: Debian's "
            "package, which also ships promtool; or set LEADERJOB_PROMETHEUS_BIN)"
        )
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        yaml = yaml_module()
        home = tmp_path / "prometheus"
        home.mkdir()
        port = free_port()
        config = shortened_config(
            yaml.safe_load(PROMETHEUS_CONFIG.read_text()), targets, f"127.0.0.1:{port}"
        )
        # rule_files stays as shipped ("alerts.yml", relative to the config file).
        (home / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        (home / "alerts.yml").write_text(shortened_rules(ALERTS.read_text()))
        log = home / "prometheus.log"
        server = Prometheus(demo_prometheus.spawn(PROMETHEUS_BIN, home, port, log), port, log)
        started.append(server)
        ready = wait_for(lambda: _ready(port), 30, interval=0.2)
        assert ready, f"Prometheus did not become ready:\n{server.tail()}"
        return server

    try:
        yield start
    finally:
        for server in started:
            demo_prometheus.stop(server.proc, grace=15)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


# --- the dashboard ------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr with Grafana's variables substituted) for every query of every panel."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr:
                continue
            # Longest names first: $__rate_interval before $__range and $__interval.
            for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
                expr = expr.replace(name, GRAFANA_VARIABLES[name])
            assert "$" not in expr, f"{panel['title']}: unsubstituted variable in {expr!r}"
            out.append((panel.get("title", "?"), expr))
    return out


# --- the test -----------------------------------------------------------------------------------


def _scrape_up(prom: Prometheus, count: int) -> bool:
    up = prom.query('up{job="leaderjob"} == 1')
    return len(up) == count


def test_a_real_prometheus_sees_one_leader_fires_the_shipped_alerts_and_fills_the_dashboard(
    etcd, prefix, procs: ProcessGroup, tmp_path: Path, prometheus
):
    """L1/S1 as an operator sees them through the shipped monitoring: one leader at a time, and
    the alerts that must page do fire on their faults (failing runs, nobody leading, nobody
    reporting) with the shipped expressions."""
    fail, hang, healthy = tmp_path / "fail", tmp_path / "hang", tmp_path / "healthy"
    fail.touch()
    healthy.touch()
    # Fails at once while `fail` exists; afterwards succeeds after 1.3 s, which on a 1 s schedule
    # also makes slots skip (--concurrency forbid); while `hang` exists it runs until stopped.
    command = [
        "sh",
        "-c",
        f"if [ -e {fail} ]; then exit 1; fi; if [ -e {hang} ]; then exec sleep 60; fi; sleep 1.3",
    ]
    daemons: list[JsonLogProcess] = []
    targets = []
    for i in (1, 2, 3):
        host = f"127.0.0.{i}"
        port = free_port(host)
        targets.append(f"{host}:{port}")
        daemons.append(
            leaderjob(
                procs,
                tmp_path,
                f"replica-{i}",
                etcd.endpoint,
                prefix,
                command,
                election=ELECTION,
                schedule="@every 1s",
                extra=[
                    *("--metrics-addr", f"{host}:{port}"),
                    *("--health-cmd", f"test -e {healthy}"),
                    *("--health-interval", "0.3s", "--health-failures", "1"),
                ],
            )
        )
    prom = prometheus(targets)
    began = time.time()
    try:
        assert wait_for(lambda: _scrape_up(prom, 3), 20, interval=0.5), prom.api("targets")
        # Three distinct instances, named by host as the shipped relabelling makes them.
        instances = {s["metric"]["instance"] for s in prom.query("leaderjob_is_leader")}
        assert instances == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}

        # L1: one leader, as Prometheus sums it.
        assert wait_for(
            lambda: prom.query(f'sum(leaderjob_is_leader{{election="{ELECTION}"}}) == 1'),
            20,
            interval=0.5,
        ), prom.query("leaderjob_is_leader")

        # A job that keeps failing: 3+ failed runs, no success -> LeaderjobJobRunsFailing.
        prom.wait_firing("LeaderjobJobRunsFailing", 30)
        # ...and, once the election is older than the (shortened) maximum age with no success
        # at all, LeaderjobJobNotSucceeding.
        prom.wait_firing("LeaderjobJobNotSucceeding", 30)
        # Runs succeed again: both resolve (the `unless` clause and the last success see it).
        fail.unlink()
        quiet = {"LeaderjobJobRunsFailing", "LeaderjobJobNotSucceeding"}
        assert wait_for(lambda: not quiet & prom.firing(), 20, interval=0.5), prom.api("alerts")
        # Some successful runs, skipped slots and a few keepalives for the dashboard's rates.
        assert wait_for(
            lambda: prom.query(
                f'leaderjob_job_runs_total{{election="{ELECTION}",outcome="succeeded"}} >= 2'
            ),
            20,
            interval=0.5,
        )

        # Every replica unhealthy: the leader resigns, stopping the run that is going on (for the
        # dashboard's kills panel), nobody may lead, and all still report 0 -> LeaderjobNoLeader.
        hang.touch()

        def hanging() -> bool:
            """A run has been going for over 2 s: longer than any run that does not hang."""
            finished = {e.get("run_id") for d in daemons for e in d.events("job.finished")}
            return any(
                e.get("run_id") not in finished
                and time.time() - datetime.fromisoformat(e["timestamp"]).timestamp() > 2
                for d in daemons
                for e in d.events("job.started")
            )

        assert wait_for(hanging, 20, interval=0.1)
        healthy.unlink()
        prom.wait_firing("LeaderjobNoLeader", 30)
        assert "LeaderjobReplicasAbsent" not in prom.firing()

        # Never two leaders at once over the whole test (no graceful handover happened here,
        # so not even one scrape may show two).
        window = max(1, int(time.time() - began) + 1)
        peak = prom.query(
            f'max_over_time(sum(leaderjob_is_leader{{election="{ELECTION}"}})[{window}s:1s])'
        )
        assert peak and float(peak[0]["value"][1]) == 1, peak

        # The dashboard, over the test's time range as Grafana would draw it.
        end = time.time()
        empty = []
        for title, expr in dashboard_queries():
            result = prom.query_range(expr, began, end)
            if not result and not any(name in expr for name in NO_DATA_EXPECTED):
                empty.append(f"{title}: {expr}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

        # Every replica gone: nothing reports any more -> LeaderjobReplicasAbsent (NoLeader's
        # sum has no series left to be 0).
        for daemon in daemons:
            daemon.signal_group(signal.SIGKILL)
        prom.wait_firing("LeaderjobReplicasAbsent", 30)
    except AssertionError:
        sys.stderr.write(f"--- Prometheus log ---\n{prom.tail()}\n")
        for daemon in daemons:
            sys.stderr.write(f"--- {daemon.log_path.name} ---\n{daemon.tail(15)}\n")
        raise
