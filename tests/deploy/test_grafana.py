"""deploy/grafana/leaderjob-dashboard.json: valid JSON, every query reads documented metrics and is
valid PromQL (promtool parses it as a recording rule), and the panels cover what docs promise."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.deploy._support import (
    DASHBOARD,
    documented_series_names,
    promql_metric_names,
    require_tool,
    yaml_module,
)

# Grafana's variables, replaced by plausible values so promtool can parse the queries.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$namespace": ".*",
    "$election": ".*",
    "$job_name": ".*",
}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def _queries() -> list[tuple[str, str]]:
    return [
        (panel.get("title", "?"), target["expr"])
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dash = _dashboard()
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in _panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dash["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_query_reads_only_documented_metrics() -> None:
    allowed = documented_series_names()
    queries = _queries()
    assert queries
    for title, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= allowed, f"panel {title!r}: undocumented metrics {sorted(names - allowed)}"


def test_panels_cover_the_documented_views() -> None:
    used = set().union(*(promql_metric_names(e) for _, e in _queries()))
    for metric in (
        "leaderjob_is_leader",
        "leaderjob_job_runs_total",
        "leaderjob_job_duration_seconds_bucket",
        "leaderjob_schedule_lag_seconds_bucket",
        "leaderjob_lease_keepalive_latency_seconds_bucket",
        "leaderjob_lease_deadline_remaining_seconds",
        "leaderjob_etcd_errors_total",
    ):
        assert metric in used, f"no panel shows {metric}"
    leader_queries = [e for _, e in _queries() if "leaderjob_is_leader" in e]
    assert any(
        re.search(r"by \(namespace, election, job_name, instance\b", e) for e in leader_queries
    ), (
        "leader over time must be per job and instance"
    )


#: The series of one job (docs/metrics.md: they carry ``job_name``).
PER_JOB = (
    "leaderjob_is_leader",
    "leaderjob_fencing_token",
    "leaderjob_leader_transitions_total",
    "leaderjob_lease_deadline_remaining_seconds",
    "leaderjob_job_runs_total",
    "leaderjob_job_duration_seconds_bucket",
    "leaderjob_job_running",
    "leaderjob_job_last_success_timestamp_seconds",
    "leaderjob_schedule_lag_seconds_bucket",
    "leaderjob_slots_skipped_total",
    "leaderjob_job_kills_total",
)


def test_panels_of_a_job_follow_the_job_variable_and_split_by_job() -> None:
    """With a group of jobs, every panel about a job shows each job apart and follows the
    dashboard's Job variable (the replica panels only select replicas by election)."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert "job_name" in variables["job_name"]["query"]["query"]
    assert any("by (namespace, election, job_name, instance)" in e for _, e in _queries()), (
        "a panel says which replica leads each job"
    )
    for title, expr in _queries():
        if title in ("CPU", "Resident memory"):
            continue  # they only pick the replicas of the election
        for metric in PER_JOB:
            if f"{metric}{{" in expr:
                selector = 'namespace=~"$namespace", election=~"$election", job_name=~"$job_name"'
                assert f"{metric}{{{selector}}}" in expr, title
                assert "by (namespace, election, job_name" in expr, title


def test_every_query_keeps_namespaces_apart() -> None:
    """Two namespaces may run elections of the same name: every query selects by the Namespace
    variable and every aggregation or match keeps namespaces apart."""
    variables = [v["name"] for v in _dashboard()["templating"]["list"]]
    assert variables.index("namespace") < variables.index("election") < variables.index("job_name")
    for title, expr in _queries():
        assert 'namespace=~"$namespace"' in expr, title
        for keyword, labels in re.findall(r"\b(by|on|without|ignoring)\s*\(([^)]*)\)", expr):
            names = {label.strip() for label in labels.split(",")}
            assert "namespace" in names, (title, keyword, labels)


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = []
    for i, (_title, query) in enumerate(_queries()):
        expr = query
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml_module().safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
