"""The operator's commands, as the docs write them, answer inside the shipped sidecar.

The kustomization is rendered with `kubectl kustomize`; its sidecar's arguments and environment
(the downward API's values, the endpoints Secret pointing at a local etcd) start a daemon; then
every `leaderjob …` command that docs/deploy.md runs through `kubectl exec` and that the runbooks
of docs/alerts.md tell the operator to run is run with that same environment and nothing else —
as `kubectl exec deploy/my-app -c leaderjob -- …` would — and its answer checked. A setting the
daemon takes from its args but the commands cannot see (the prefix, once) shows up here as "no
leader" or "no runs".
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.deploy._support import K8S, REPO, require_tool, yaml_module
from tests.deploy.test_entrypoint import (  # noqa: F401  (fixtures used by name)
    ECHO_JOB,
    STARTUP_BOUND,
    Daemon,
    acquisitions,
    etcd_endpoint,
    free_port,
    http_get,
    kubernetes_sidecar,
    leaderjob,
    localise,
)

DEPLOY_DOC = REPO / "docs" / "deploy.md"
ALERTS_DOC = REPO / "docs" / "alerts.md"
#: The group the base runs and the job the runbooks' JOB stands for here.
GROUP = "my-app"
JOB = "my-app-cleanup"


def rendered_sidecar() -> dict[str, Any]:
    """The leaderjob sidecar of `kubectl kustomize deploy/kubernetes`, as the cluster gets it."""
    kubectl = require_tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    docs = [d for d in yaml_module().safe_load_all(out) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return next(
        c
        for c in deployment["spec"]["template"]["spec"]["initContainers"]
        if c["name"] == "leaderjob"
    )


def documented_commands() -> list[str]:
    """Every `leaderjob` command run in the sidecar by docs/deploy.md (`kubectl … exec … --
    leaderjob …`) and every one the runbooks of docs/alerts.md name with its election."""
    found = []
    for line in DEPLOY_DOC.read_text().splitlines():
        match = re.match(
            r"kubectl .*exec deploy/my-app -c leaderjob -- (leaderjob .*?)\s*(#.*)?$", line
        )
        if match:
            found.append(match.group(1))
    runbooks = ALERTS_DOC.read_text().split("\n## LeaderjobNoLeader", 1)[1]
    for span in re.findall(r"`([^`]+)`", runbooks):
        text = " ".join(span.split())
        if text.startswith("leaderjob ") and "--election" in text:
            found.append(text)
    return list(dict.fromkeys(found))


def substituted(command: str, run_id: str) -> list[str]:
    words = command.split()
    names = {"NAME": GROUP, "JOB": JOB, "RUN_ID": run_id}
    return [names.get(w, w) for w in words]


def in_container(
    exe: str, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.etcd
@pytest.mark.timeout(240)
def test_documented_commands_answer_in_the_sidecars_environment(
    leaderjob: str,  # noqa: F811
    etcd_endpoint: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    commands = documented_commands()
    kinds = {c.split()[1] for c in commands}
    assert {"status", "history", "audit", "trigger", "repair-schedule"} <= kinds, commands

    inv = kubernetes_sidecar(rendered_sidecar())
    assert "LEADERJOB_PREFIX" in inv.env and not inv.option("--prefix"), (
        "the prefix must be in the container's environment, where `kubectl exec` sees it"
    )
    port = free_port()
    args, env = localise(inv, etcd_endpoint, port, lambda _: ECHO_JOB, tmp_path)
    # What `kubectl exec` gets: the container's environment, none of the daemon's arguments.
    exec_env = dict(env)
    daemon = Daemon(leaderjob, args, env, tmp_path)
    try:
        acquisitions(daemon, len(inv.jobs()), time.monotonic() + STARTUP_BOUND)
        pod = inv.env["POD_NAME"]

        ran = in_container(
            leaderjob,
            ["trigger", "--election", GROUP, "--job", JOB, "--wait", "--wait-timeout", "30s"],
            exec_env,
        )
        assert ran.returncode == 0, (ran.stdout, ran.stderr, daemon.tail())
        listed = in_container(leaderjob, ["history", "--election", GROUP, "--json"], exec_env)
        assert listed.returncode == 0, listed.stderr
        runs = [r for r in json.loads(listed.stdout) if r.get("run_id")]
        assert runs and all(r.get("job") for r in runs), runs
        run_id = str(runs[0]["run_id"])

        # Independent commands, run side by side (each is a fresh interpreter).
        argvs = [substituted(command, run_id)[1:] for command in commands]
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda a: in_container(leaderjob, a, exec_env), argvs))
        for command, argv, result in zip(commands, argvs, results, strict=True):
            shown = f"{command}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
            assert result.returncode == 0, shown
            assert result.stdout.strip(), shown
            assert "None" not in result.stdout, shown
            assert "no leader" not in result.stdout and "no runs" not in result.stdout, shown
            verb = argv[0]
            if verb == "status":
                assert all(name in result.stdout for name in inv.jobs()), shown
                assert pod in result.stdout and "etcd database:" in result.stdout, shown
            elif verb == "history" and "--run" in argv:
                assert f"run {run_id}" in result.stdout and pod in result.stdout, shown
            elif verb == "history":
                assert "succeeded" in result.stdout, shown
                assert "--job" in argv or JOB in result.stdout, "a group's runs name their job"
            elif verb == "trigger":
                assert result.stdout.startswith(f"triggered {JOB}"), shown

        # The metrics port the docs curl.
        for path in ("/status", "/readyz"):
            status, body = http_get(port, path)
            assert status == 200, (path, body[:300])
    finally:
        daemon.kill()
