"""The image's command works as written: the leaderjob arguments and environment of the Kubernetes
sidecar (deploy/kubernetes/base/deployment.yaml) and of the compose replicas (docker-compose.yml)
run against a real etcd, with the jobs file each mounts, lead, and run their jobs.

Only what cannot exist outside the cluster is changed: the etcd endpoints (a throwaway local etcd),
the metrics address (a free port), the TLS/auth settings that point into Secrets (dropped), the
path of the mounted jobs file (a local copy) and each job's command (an echo of its fencing
token); the jobs' schedules and options are the file's. The image puts its venv's bin/ first
on PATH; so does this test, with the venv that runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.deploy._support import (
    COMPOSE_FILE,
    DOCKERFILE,
    K8S,
    REPO,
    compose_jobs_file,
    deployment_sidecar,
    find_tool,
    kubernetes_jobs_file,
    load_yaml,
    load_yaml_docs,
    unescape,
)
from tests.harness.daemons import wait_until

#: Where the compose file mounts examples/fencestore.py in the store and the replicas.
STORE_SCRIPT = "/opt/examples/fencestore.py"

# The tests that start etcd carry the project's `etcd` marker (`-m "not etcd"` skips them).
needs_etcd = pytest.mark.etcd

# Options whose values only make sense in the cluster: replaced or dropped here.
DROPPED_OPTIONS = {
    "--endpoints", "--metrics-addr", "--cacert", "--cert", "--key", "--tls-server-name",
    "--user", "--password-file",
}  # fmt: skip
SECRET_ENV = {
    "LEADERJOB_CACERT", "LEADERJOB_CERT", "LEADERJOB_KEY", "LEADERJOB_TLS_SERVER_NAME",
    "LEADERJOB_USER", "LEADERJOB_PASSWORD_FILE", "LEADERJOB_PASSWORD",
}  # fmt: skip
ECHO_JOB = [
    "sh",
    "-c",
    'echo "ran $LEADERJOB_JOB token=$LEADERJOB_FENCING_TOKEN slot=$LEADERJOB_SLOT"',
]
STARTUP_BOUND = 30.0  # seconds to lead and to run a job once its slot fires


@dataclass
class Invocation:
    """`leaderjob <args>` with `env`, as a manifest writes it."""

    source: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    jobs_file: Path | None = None  # the repository file mounted at --jobs, if any

    @property
    def options(self) -> list[str]:
        return self.args[1 : self.args.index("--") if "--" in self.args else len(self.args)]

    @property
    def job(self) -> list[str]:
        return self.args[self.args.index("--") + 1 :] if "--" in self.args else []

    def jobs(self) -> dict[str, dict[str, Any]]:
        """The jobs this invocation runs: its jobs file's, or the one job after `--`."""
        if self.jobs_file is None:
            return {"": {"schedule": self.option("--schedule"), "command": self.job}}
        jobs: dict[str, dict[str, Any]] = tomllib.loads(self.jobs_file.read_text())["jobs"]
        return jobs

    def option(self, name: str) -> str | None:
        for opt in self.options:
            key, _, value = opt.partition("=")
            if key == name:
                return value
        return None


def kubernetes_sidecar(sidecar: dict[str, Any] | None = None) -> Invocation:
    """The sidecar of base/deployment.yaml (or ``sidecar``, e.g. from a rendered
    kustomization), with the values the cluster would give its environment."""
    sidecar = sidecar or deployment_sidecar()
    env: dict[str, str] = {}
    for entry in sidecar.get("env", []):
        name = entry["name"]
        if "value" in entry:
            # Kubernetes expands $(VAR) in a value from the variables defined before it.
            env[name] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(entry["value"])
            )
            continue
        source = entry["valueFrom"]
        if source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[name] = "my-app-5d8f7c9b4-x2x7q"  # what the downward API gives a pod
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[name] = "staging"
        elif "secretKeyRef" in source and name == "LEADERJOB_ENDPOINTS":
            env[name] = "<etcd>"
        elif "secretKeyRef" in source and name in SECRET_ENV:
            continue  # TLS and auth files live in the cluster's Secrets
        else:
            pytest.fail(
                f"deployment.yaml: env {name} comes from {source}; teach this test about it"
            )
    # Kubernetes expands $(VAR) in args from the container's env (and leaves unknown ones).
    args = [
        re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(a))
        for a in sidecar["args"]
    ]
    jobs_file = kubernetes_jobs_file()[0] if any(a.startswith("--jobs=") for a in args) else None
    return Invocation("kubernetes", args, env, jobs_file)


def compose_replica(service: str = "leaderjob-1") -> Invocation:
    svc = load_yaml(COMPOSE_FILE)["services"][service]
    env = {k: unescape(str(v)) for k, v in svc.get("environment", {}).items()}
    env["LEADERJOB_ENDPOINTS"] = "<etcd>"
    args = [unescape(a) for a in svc["command"]]
    jobs_file = compose_jobs_file(service) if any(a.startswith("--jobs=") for a in args) else None
    return Invocation("compose", args, env, jobs_file)


def leaderjob_executable() -> str:
    path = find_tool("leaderjob")
    if path is None:
        pytest.skip("the leaderjob console script is not installed (pip install -e .)")
    return path


@pytest.fixture(scope="module")
def leaderjob() -> str:
    exe = leaderjob_executable()
    help_text = subprocess.run(
        [exe, "run", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    if "--metrics-addr" not in help_text:
        pytest.skip("this leaderjob does not accept --metrics-addr yet (the manifests use it)")
    return exe


@pytest.fixture(scope="module")
def etcd_endpoint() -> Iterator[str]:
    try:
        from leaderjob.demo.localetcd import EtcdNotFound, LocalEtcd
    except ImportError as exc:  # pragma: no cover - the package ships it
        pytest.skip(f"leaderjob.demo.localetcd is unavailable: {exc}")
    try:
        etcd = LocalEtcd()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    with etcd:
        yield etcd.endpoint


def free_port() -> int:
    from leaderjob.demo.localetcd import free_port as _free_port

    return _free_port()


def base_env() -> dict[str, str]:
    """The test's environment without any LEADERJOB_* leaking in, venv bin/ first on PATH."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("LEADERJOB_") and k != "POD_NAME"
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def localise(
    inv: Invocation,
    endpoint: str,
    metrics_port: int,
    job: Callable[[list[str]], list[str]],
    workdir: Path,
) -> tuple[list[str], dict[str, str]]:
    """The invocation's arguments and environment for this machine; `job` maps each job's
    command to the one run here. A jobs file is copied to `workdir` with the commands mapped."""
    options = [o for o in inv.options if o.partition("=")[0] not in DROPPED_OPTIONS]
    if inv.option("--log-format") != "json":
        options = [o for o in options if not o.startswith("--log-format")] + ["--log-format=json"]
    options += [f"--endpoints={endpoint}", f"--metrics-addr=127.0.0.1:{metrics_port}"]
    env = base_env()
    env.update({k: (endpoint if v == "<etcd>" else v) for k, v in inv.env.items()})
    if inv.jobs_file is None:
        return [inv.args[0], *options, "--", *job(inv.job)], env
    local = workdir / inv.jobs_file.name
    local.write_text(mapped_jobs_file(inv.jobs_file, job))
    options = [f"--jobs={local}" if o.startswith("--jobs=") else o for o in options]
    return [inv.args[0], *options], env


def mapped_jobs_file(path: Path, job: Callable[[list[str]], list[str]]) -> str:
    """`path`'s jobs file with every command mapped by `job`, everything else as written."""
    doc = tomllib.loads(path.read_text())

    def table(values: dict[str, Any]) -> list[str]:
        # JSON strings, lists of strings, numbers and booleans are valid TOML values.
        return [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in values.items()]

    lines = ["[defaults]", *table(doc.get("defaults", {}))]
    for name, spec in doc["jobs"].items():
        command = spec["command"]
        assert isinstance(command, list), f"{path}: write {name}'s command as a list"
        lines += ["", f"[jobs.{json.dumps(name)}]", *table({**spec, "command": job(command)})]
    return "\n".join(lines) + "\n"


class Daemon:
    """A leaderjob process whose stderr (JSON lines) and stdout go to files we poll."""

    def __init__(self, exe: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.stderr_path = workdir / "stderr.log"
        self.stdout_path = workdir / "stdout.log"
        with self.stderr_path.open("wb") as err, self.stdout_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [exe, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                start_new_session=True,
            )

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                doc = json.loads(line)
                if isinstance(doc, dict) and "event" in doc:
                    out.append(doc)
        return out

    def wait_for(
        self, event: str, deadline: float, after: int = 0, **match: Any
    ) -> tuple[int, dict[str, Any]]:
        """Index and body of the first `event` (with `match`ing keys) after index `after`."""
        while True:
            for i, doc in enumerate(self.events()):
                if (
                    i >= after
                    and doc["event"] == event
                    and all(doc.get(k) == v for k, v in match.items())
                ):
                    return i, doc
            if self.proc.poll() is not None:
                pytest.fail(
                    f"leaderjob exited {self.proc.returncode} before {event}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {event} {match or ''} in time:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, lines: int = 40) -> str:
        text = self.stderr_path.read_text(errors="replace").splitlines()[-lines:]
        out = self.stdout_path.read_text(errors="replace").splitlines()[-10:]
        return "\n".join(["--- stderr", *text, "--- stdout", *out])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def seconds_to_first_fire(exe: str, schedule: str, timezone: str | None) -> float:
    """When the schedule next fires, asked the way a user would: `leaderjob next`."""
    cmd = [exe, "next", schedule, "--count", "1"] + (["--timezone", timezone] if timezone else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    first = datetime.fromisoformat(out.split()[0].replace("Z", "+00:00"))
    return max(0.0, (first - datetime.now(UTC)).total_seconds())


def probe_paths() -> dict[str, str]:
    sidecar = deployment_sidecar()
    probes = [p for p in ("livenessProbe", "readinessProbe", "startupProbe") if p in sidecar]
    paths = {p: sidecar[p]["httpGet"]["path"] for p in probes}
    match = re.search(r"http://127\.0\.0\.1:9102(/\w+)", DOCKERFILE.read_text())
    assert match, "Dockerfile HEALTHCHECK URL not found"
    paths["HEALTHCHECK"] = match.group(1)
    return paths


@needs_etcd
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "manifest", [kubernetes_sidecar, compose_replica], ids=["kubernetes", "compose"]
)
def test_manifest_command_leads_and_runs_its_job(
    manifest: Any, leaderjob: str, etcd_endpoint: str, tmp_path: Path
) -> None:
    inv: Invocation = manifest()
    assert inv.args[0] == "run" and (inv.job or inv.jobs_file), inv.args
    jobs = inv.jobs()
    assert jobs and all(j.get("schedule") for j in jobs.values()), (
        "the manifest runs scheduled jobs"
    )
    election = inv.option("--election") or inv.env.get("LEADERJOB_ELECTION")
    assert election
    port = free_port()
    args, env = localise(inv, etcd_endpoint, port, lambda _: ECHO_JOB, tmp_path)

    start = time.monotonic()
    daemon = Daemon(leaderjob, args, env, tmp_path)
    try:
        # One replica alone leads every job of its file.
        tokens = acquisitions(daemon, len(jobs), start + STARTUP_BOUND)
        assert sorted(tokens) == sorted(jobs), tokens
        for acquired_token in tokens.values():
            assert isinstance(acquired_token, int) and acquired_token > 0, tokens
        if "POD_NAME" in inv.env:
            _, acquired = daemon.wait_for("election.acquired", start + STARTUP_BOUND)
            assert acquired.get("identity") == inv.env["POD_NAME"], "identity from $POD_NAME"

        # The probes and the image's HEALTHCHECK hit endpoints that exist and say "fine".
        for what, path in probe_paths().items():
            status, body = http_get(port, path)
            assert status == 200, f"{what} {path} answered {status}: {body[:200]!r}"
        status, body = http_get(port, "/leader")
        assert status == 200, body
        status, metrics = http_get(port, "/metrics")
        assert status == 200
        # Per-job series carry the job's name in `job_name` (a daemon of one job: the
        # election's name), next to `election` (docs/metrics.md).
        for label in [name or election for name in jobs]:
            assert re.search(
                rb'^leaderjob_is_leader\{[^}]*job_name="' + label.encode() + rb'"[^}]*\} 1\.0$',
                metrics,
                re.M,
            ), (label, metrics[:2000])

        wait = min(
            seconds_to_first_fire(leaderjob, j["schedule"], inv.option("--timezone"))
            for j in jobs.values()
        )
        deadline = time.monotonic() + wait + STARTUP_BOUND
        i, started = daemon.wait_for("job.started", deadline)
        _, finished = daemon.wait_for("job.finished", deadline, after=i, run_id=started["run_id"])
        assert finished.get("outcome") == "succeeded", finished
        assert finished.get("exit_code") == 0, finished
        token = tokens[started.get("job", "")]
        # The guardian reports a run's end before it passes on the run's last output.
        saw = wait_until(lambda: f" token={token} " in daemon.stdout_path.read_text(), 5)
        out = daemon.stdout_path.read_text()
        assert saw, f"the job did not see its fencing token:\n{out}"

        # Graceful stop, as tini forwards the pod's SIGTERM: jobs stopped, lease revoked, exit 0.
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0, daemon.tail()
    finally:
        daemon.kill()


def acquisitions(daemon: Daemon, count: int, deadline: float) -> dict[str, int]:
    """job → token of the first `count` election.acquired events (job "" without a jobs file)."""
    tokens: dict[str, int] = {}
    after = 0
    while len(tokens) < count:
        i, acquired = daemon.wait_for("election.acquired", deadline, after=after)
        tokens[str(acquired.get("job", ""))] = acquired["token"]
        after = i + 1
    return tokens


@needs_etcd
@pytest.mark.timeout(240)
def test_compose_demo_job_writes_to_the_fenced_store(
    leaderjob: str, etcd_endpoint: str, tmp_path: Path
) -> None:
    """The compose demo end to end, minus containers: the store service's command and a replica's
    command with its jobs exactly as written; only host names, ports and paths are local."""
    services = load_yaml(COMPOSE_FILE)["services"]
    store_cmd = [unescape(a) for a in services["store"]["command"]]
    store_port = free_port()
    store_cmd = [
        {
            "0.0.0.0:8080": f"127.0.0.1:{store_port}",
            "/data/store.db": str(tmp_path / "store.db"),
            STORE_SCRIPT: str(REPO / "examples" / "fencestore.py"),
        }.get(a, a)
        for a in store_cmd
    ]
    assert store_cmd[:2] == ["python", str(REPO / "examples" / "fencestore.py")], store_cmd
    inv = compose_replica()
    jobs = inv.jobs()

    def local_store(command: list[str]) -> list[str]:
        local = [
            a.replace("http://store:8080", f"http://127.0.0.1:{store_port}").replace(
                STORE_SCRIPT, str(REPO / "examples" / "fencestore.py")
            )
            for a in command
        ]
        assert local != command, f"the job no longer targets http://store:8080: {command}"
        return local

    port = free_port()
    args, env = localise(inv, etcd_endpoint, port, local_store, tmp_path)
    # Its own election: the parametrized test above already ran the compose replica's election.
    args = [a if not a.startswith("--election=") else "--election=compose-store-e2e" for a in args]

    store_log = (tmp_path / "store.log").open("wb")
    store = subprocess.Popen(
        store_cmd,
        env=base_env(),
        stdout=store_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (tmp_path / "daemon").mkdir()
    daemon = Daemon(leaderjob, args, env, tmp_path / "daemon")
    try:
        deadline = time.monotonic() + STARTUP_BOUND
        while http_get_or_none(store_port, "/state") is None:
            assert store.poll() is None, (tmp_path / "store.log").read_text()
            assert time.monotonic() < deadline, "the fenced store did not start"
            time.sleep(0.1)
        tokens = acquisitions(daemon, len(jobs), deadline)
        wait = min(seconds_to_first_fire(leaderjob, j["schedule"], None) for j in jobs.values())
        deadline = time.monotonic() + wait + STARTUP_BOUND
        i, started = daemon.wait_for("job.started", deadline)
        _, finished = daemon.wait_for("job.finished", deadline, after=i, run_id=started["run_id"])
        assert finished.get("outcome") == "succeeded", f"{finished}\n{daemon.tail()}"
        state = http_get_or_none(store_port, "/state")
        job = started.get("job", "")
        assert state is not None and job.encode() in state, state
        assert str(tokens[job]).encode() in state, state
    finally:
        daemon.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(store.pid, signal.SIGKILL)
        store.wait(10)
        store_log.close()


def http_get_or_none(port: int, path: str) -> bytes | None:
    try:
        status, body = http_get(port, path)
    except OSError:
        return None
    return body if status == 200 else None


@pytest.mark.parametrize(
    "where",
    ["kubernetes/base", "kubernetes/examples/http-endpoint", "compose"],
)
def test_manifest_flags_are_accepted_by_leaderjob_run(where: str) -> None:
    """Every variant's options parse and convert (types, choices, durations) with leaderjob's own
    CLI, without starting it: the overlay is not run above, so this is its check."""
    leaderjob_executable()
    from leaderjob.cli import main

    if where == "compose":
        args = compose_replica().args
    elif where == "kubernetes/base":
        args = kubernetes_sidecar().args
    else:
        patch = next(
            d
            for d in load_yaml_docs(K8S / "examples" / "http-endpoint" / "sidecar-calls-app.yaml")
            if d["kind"] == "Deployment"
        )
        args = next(
            c
            for c in patch["spec"]["template"]["spec"]["initContainers"]
            if c["name"] == "leaderjob"
        )["args"]
    run = main.loaded()[args[0]]
    ctx = run.make_context(args[0], list(args[1:]))
    assert ctx.params["command"] or ctx.params["jobs"], "a job command after --, or a jobs file"
