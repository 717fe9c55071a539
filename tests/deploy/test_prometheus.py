"""deploy/prometheus: promtool accepts the rules, their unit tests and the compose config; every
alert reads documented metrics and links a runbook section that exists in docs/alerts.md."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from tests.deploy._support import (
    ALERTS,
    ALERTS_DOC,
    CORE_METRICS,
    PROMETHEUS_CONFIG,
    documented_metrics,
    documented_series_names,
    load_yaml,
    promql_metric_names,
    require_tool,
)

ALERT_TESTS = ALERTS.with_name("alerts.test.yml")
#: The freshness alert's cases, which span days: evaluated every 5 minutes, not every 15 s.
FRESHNESS_TESTS = ALERTS.with_name("alerts.freshness.test.yml")
REQUIRED_ALERTS = {
    "LeaderjobNoLeader",
    "LeaderjobMultipleLeaders",
    "LeaderjobJobNotSucceeding",
    "LeaderjobLeadershipFlapping",
    "LeaderjobKeepaliveFailures",
    "LeaderjobJobRunsFailing",
    "LeaderjobConfigConflict",
}


def _promtool(*args: str) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def _rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]


def test_promtool_check_rules() -> None:
    _promtool("check", "rules", str(ALERTS))


def test_promtool_check_config() -> None:
    # Also loads alerts.yml through rule_files, which is relative to the config file.
    _promtool("check", "config", str(PROMETHEUS_CONFIG))


def test_promtool_alert_unit_tests() -> None:
    """deploy/prometheus/alerts.test.yml: each alert fires on its fault and not on the normal
    events that resemble it (a handover, a rolling update, a fresh deployment); and
    alerts.freshness.test.yml: the freshness alert from each job's own schedule (a weekday job
    over a weekend, an hourly job that misses two runs)."""
    _promtool("test", "rules", str(ALERT_TESTS), str(FRESHNESS_TESTS))


def test_every_alert_is_unit_tested() -> None:
    tests = load_yaml(ALERT_TESTS)["tests"] + load_yaml(FRESHNESS_TESTS)["tests"]
    tested = {c["alertname"] for t in tests for c in t.get("alert_rule_test", [])}
    fired = {
        c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c.get("exp_alerts")
    }
    names = {r["alert"] for r in _rules()}
    assert names <= tested, f"alerts without a unit test: {sorted(names - tested)}"
    assert names <= fired, f"alerts never shown to fire: {sorted(names - fired)}"


def test_required_alerts_exist_with_annotations() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key), f"{rule['alert']}: missing annotation {key}"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}


#: PromQL's grouping clauses and the labels they list.
GROUPING = re.compile(r"\b(by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def test_every_rule_aggregates_by_namespace() -> None:
    """Two namespaces may run elections of the same name (each with its own --prefix): every
    aggregation and match keeps them apart (the promtool cases show the alerts that follow)."""
    for rule in _rules():
        clauses = GROUPING.findall(rule["expr"])
        assert clauses, f"{rule['alert']}: no aggregation"
        for keyword, labels in clauses:
            names = {label.strip() for label in labels.split(",")}
            assert "namespace" in names, f"{rule['alert']}: {keyword} ({labels}) without namespace"


def _github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def test_runbook_urls_point_to_sections_of_docs_alerts_md() -> None:
    anchors = {
        _github_anchor(m.group(1))
        for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", ALERTS_DOC.read_text(encoding="utf-8"), re.M)
    }
    for rule in _rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.endswith("/docs/alerts.md"), url
        assert anchor in anchors, f"{rule['alert']}: docs/alerts.md has no section #{anchor}"
        assert anchor == rule["alert"].lower(), "one runbook section per alert, named after it"


def test_alerts_read_only_documented_metrics() -> None:
    allowed = documented_series_names()
    for rule in _rules():
        names = promql_metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert names <= allowed, f"{rule['alert']}: undocumented metrics {sorted(names - allowed)}"


def test_core_metrics_are_documented() -> None:
    documented = documented_metrics()
    for name, kind in CORE_METRICS.items():
        assert documented.get(name) == kind, f"docs/metrics.md: {name} should be a {kind}"


def test_documented_metrics_are_what_leaderjob_exports() -> None:
    """docs/metrics.md (which the alerts and the dashboard are checked against) against the names
    and types leaderjob.ops.metrics really registers."""
    from prometheus_client import CollectorRegistry

    from leaderjob.ops.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry, "probe")
    exported = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        exported[name] = family.type
    for name, kind in documented_metrics().items():
        assert exported.get(name) == kind, (
            f"{name}: documented as {kind}, exported as {exported.get(name)}"
        )
