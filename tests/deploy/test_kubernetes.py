"""deploy/kubernetes: schema-valid objects, a native sidecar wired as docs/deploy.md says, and
Prometheus Operator objects that carry exactly the shipped alerts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from leaderjob.config import DEFAULT_TTL
from tests.deploy._support import (
    ALERTS,
    K8S,
    deployment_sidecar,
    kubernetes_jobs_file,
    kubernetes_manifests,
    load_yaml,
    load_yaml_docs,
    require_tool,
    yaml_module,
)

# The oldest Kubernetes these manifests target with a current schema (native sidecars need 1.29;
# unhealthyPodEvictionPolicy is GA in 1.31).
KUBERNETES_VERSION = "1.31.0"
CRD_GROUPS = ("monitoring.coreos.com/",)
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def _is_crd_object(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(CRD_GROUPS)


def _validate_strict(docs: list[tuple[str, dict[str, Any]]], tmp_path: Path) -> None:
    validator = require_tool("kubernetes-validate")
    yaml = yaml_module()
    files = []
    for i, (origin, doc) in enumerate(docs):
        path = tmp_path / f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(f"# from {origin}\n" + yaml.safe_dump(doc, sort_keys=False))
        files.append(str(path))
    assert files
    result = subprocess.run(
        [validator, "--strict", "--kubernetes-version", KUBERNETES_VERSION, *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if line.startswith(("ERROR", "WARN"))]
    assert result.returncode == 0 and not problems, output


def test_every_non_crd_manifest_validates_strictly(tmp_path: Path) -> None:
    docs = [
        (str(path.relative_to(K8S)), doc)
        for path, doc in kubernetes_manifests()
        if not _is_crd_object(doc)
    ]
    kinds = {d["kind"] for _, d in docs}
    assert {"Deployment", "PodDisruptionBudget", "NetworkPolicy", "StatefulSet", "Service"} <= kinds
    _validate_strict(docs, tmp_path)


def test_kustomization_references_exist() -> None:
    for root in KUSTOMIZATIONS:
        kustomization = load_yaml(root / "kustomization.yaml")
        refs = list(kustomization.get("resources", []))
        refs += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
        refs += [
            f.rpartition("=")[2]
            for g in kustomization.get("configMapGenerator", [])
            for f in g.get("files", [])
        ]
        assert refs, f"{root}: empty kustomization"
        for ref in refs:
            assert (root / ref).exists(), f"{root / 'kustomization.yaml'}: {ref} does not exist"


@pytest.mark.parametrize("root", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)) or "top")
def test_kustomize_build_renders_valid_objects(root: Path, tmp_path: Path) -> None:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(root)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {root}: {result.stderr}"
    docs = [d for d in yaml_module().safe_load_all(result.stdout) if d]
    assert docs, f"{root} renders nothing"
    plain = [(f"kustomize {root.name}", d) for d in docs if not _is_crd_object(d)]
    if plain:  # alerts/ renders only a PrometheusRule (a CRD object)
        _validate_strict(plain, tmp_path)
    for doc in docs:
        for container in _pod_containers(doc):
            assert "/" in container["image"] and ":" in container["image"], (
                f"{root}: image {container['image']!r} not mapped to a registry and tag"
            )


def _pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec")
    if not spec:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _options(args: list[str]) -> dict[str, str]:
    opts = {}
    for arg in args[1 : args.index("--") if "--" in args else len(args)]:
        assert re.fullmatch(r"--[a-z-]+=.+", arg), f"write options as --name=value, got {arg!r}"
        name, _, value = arg.partition("=")
        opts[name] = value
    return opts


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total


def test_leaderjob_is_a_native_sidecar_of_a_three_replica_deployment() -> None:
    deployment = load_yaml(K8S / "base" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    sidecar = deployment_sidecar()

    assert deployment["spec"]["replicas"] == 3
    assert sidecar["restartPolicy"] == "Always", "a native sidecar is an init container, Always"
    assert "command" not in sidecar, "command: would replace the image's tini entrypoint"
    args = sidecar["args"]
    assert args[0] == "run" and "--" not in args, "the jobs come from the jobs file"
    opts = _options(args)
    assert "--jobs" in opts and "--election" in opts and "--schedule" not in opts
    assert opts.get("--metrics-addr", "0.0.0.0:9102").endswith(":9102")

    # Graceful stop fits in the pod's grace period (default --grace is TTL/5).
    ttl = _seconds(opts.get("--ttl", f"{DEFAULT_TTL}s"))
    grace = _seconds(opts["--grace"]) if "--grace" in opts else ttl / 5
    assert pod["terminationGracePeriodSeconds"] > grace + 5

    env = {e["name"]: e for e in sidecar["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports["metrics"] == 9102
    get = sidecar["livenessProbe"]["httpGet"]
    assert get["path"] == "/healthz" and get["port"] in ("metrics", 9102), get

    resources = sidecar["resources"]
    assert resources["requests"] == {"cpu": "10m", "memory": "64Mi"}
    assert resources["limits"] == {"memory": "128Mi"}, "memory limit only: no CPU throttling"


def test_etcd_connection_comes_from_secrets_only() -> None:
    sidecar = deployment_sidecar()
    env = {e["name"]: e for e in sidecar["env"]}
    endpoints = env["LEADERJOB_ENDPOINTS"]["valueFrom"]["secretKeyRef"]
    assert endpoints.get("optional") is not True, "the endpoints are required"
    connection = {
        "LEADERJOB_ENDPOINTS", "LEADERJOB_CACERT", "LEADERJOB_CERT", "LEADERJOB_KEY",
        "LEADERJOB_TLS_SERVER_NAME", "LEADERJOB_USER", "LEADERJOB_PASSWORD_FILE",
    }  # fmt: skip
    assert connection <= set(env), sorted(connection - set(env))
    for name in connection:
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name
    assert "LEADERJOB_PASSWORD" not in env, "the job inherits the environment: use the file"
    assert not any(
        a.startswith(("--endpoints", "--password", "--user", "--cacert", "--cert", "--key"))
        for a in sidecar["args"]
    ), "connection settings belong in the Secret"

    pod = load_yaml(K8S / "base" / "deployment.yaml")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    secret_volumes = [n for n, v in volumes.items() if "secret" in v]
    assert secret_volumes, "the CA/certificate/password files come from a Secret volume"
    for name in secret_volumes:
        assert mounts[name]["readOnly"] is True
        assert mounts[name]["mountPath"] == "/etc/leaderjob/etcd"


def test_http_endpoint_example_calls_the_app_on_localhost_with_the_token() -> None:
    example = K8S / "examples" / "http-endpoint"
    patch = next(
        d for d in load_yaml_docs(example / "sidecar-calls-app.yaml") if d["kind"] == "Deployment"
    )
    sidecar = next(
        c for c in patch["spec"]["template"]["spec"]["initContainers"] if c["name"] == "leaderjob"
    )
    args = sidecar["args"]
    job = args[args.index("--") + 1 :]
    assert job[:2] == ["python", "-c"], "the image has python, not curl"
    script = job[2]
    compile(script, "http-endpoint-job", "exec")
    assert "http://127.0.0.1:" in script
    assert re.search(
        r"['\"]Leaderjob-Fencing-Token['\"]\s*:\s*os\.environ\[['\"]LEADERJOB_FENCING_TOKEN", script
    )
    assert "curl" not in " ".join(job)
    opts = _options(args)  # same --name=value style as the base
    assert "--prefix" not in opts, "the prefix is the base's LEADERJOB_PREFIX, merged by name"


# --- Prometheus Operator objects ------------------------------------------------------------


def _crd(kind: str) -> dict[str, Any]:
    found = [d for _, d in kubernetes_manifests() if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def test_podmonitor_scrapes_the_sidecar_port() -> None:
    monitor = _crd("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"]
    pod_labels = load_yaml(K8S / "base" / "deployment.yaml")["spec"]["template"]["metadata"][
        "labels"
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items(), "the selector must match the pods"
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert endpoints and all(
        set(e)
        <= {
            "port",
            "path",
            "interval",
            "scrapeTimeout",
            "relabelings",
            "metricRelabelings",
            "honorLabels",
            "scheme",
        }
        for e in endpoints
    )
    ports = {p["name"] for p in deployment_sidecar()["ports"]}
    assert endpoints[0]["port"] in ports and endpoints[0].get("path", "/metrics") == "/metrics"


def test_prometheusrule_carries_exactly_the_shipped_alerts() -> None:
    rule = _crd("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"]
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    for group in groups:
        for r in group["rules"]:
            assert set(r) <= {
                "alert",
                "record",
                "expr",
                "for",
                "labels",
                "annotations",
                "keep_firing_for",
            }
            assert r.get("alert") and r.get("expr"), r
    assert groups == load_yaml(ALERTS)["groups"], (
        "deploy/kubernetes/alerts/prometheusrule.yaml differs from deploy/prometheus/alerts.yml"
    )


# --- around the pods --------------------------------------------------------------------------


def test_pdb_and_networkpolicy_cover_the_pods() -> None:
    pod_labels = load_yaml(K8S / "base" / "deployment.yaml")["spec"]["template"]["metadata"][
        "labels"
    ]
    pdb = load_yaml(K8S / "base" / "poddisruptionbudget.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1

    policy = load_yaml(K8S / "base" / "networkpolicy.yaml")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()

    def ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
        return {(p.get("protocol", "TCP"), p["port"]) for r in rules for p in r.get("ports", [])}

    assert ("TCP", 2379) in ports(policy["spec"]["egress"]), "pods must reach etcd"
    assert ("UDP", 53) in ports(policy["spec"]["egress"]), "pods must resolve etcd's names"
    assert ("TCP", 9102) in ports(policy["spec"]["ingress"]), "Prometheus must reach 9102"


def test_etcd_statefulset_is_a_marked_starting_point() -> None:
    root = K8S / "etcd"
    text = "\n".join(p.read_text() for p in sorted(root.glob("*.yaml")))
    assert "STARTING POINT, NOT PRODUCTION" in text
    sts = load_yaml(root / "statefulset.yaml")
    svc = load_yaml(root / "service.yaml")
    assert sts["spec"]["replicas"] == 3
    assert (
        svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    )
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"(gcr\.io/etcd-development/etcd|quay\.io/coreos/etcd):v3\.5\.\d+", image)


def test_sidecar_readiness_never_gates_the_app_on_etcd() -> None:
    """A native sidecar's readiness counts toward the pod's Ready: probing /readyz ("etcd
    answers") there would take the application out of its Services during a brief etcd outage."""
    sidecar = deployment_sidecar()
    for probe in ("readinessProbe", "startupProbe"):
        if probe in sidecar:
            assert sidecar[probe]["httpGet"]["path"] == "/healthz", (probe, sidecar[probe])
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_user_and_group_are_the_sidecars_not_the_pods() -> None:
    """runAsUser/runAsGroup set pod-wide would change the application's user too."""
    pod = load_yaml(K8S / "base" / "deployment.yaml")["spec"]["template"]["spec"]
    pod_context = pod.get("securityContext", {})
    for key in ("runAsUser", "runAsGroup", "runAsNonRoot"):
        assert key not in pod_context, f"pod-wide {key} changes the app's user"
    context = deployment_sidecar()["securityContext"]
    assert context["runAsUser"] == context["runAsGroup"] == 10001
    assert context["runAsNonRoot"] is True
    app = next(c for c in pod["containers"] if c["name"] == "app")
    assert "runAsUser" not in app.get("securityContext", {})


def test_prefix_carries_the_namespace_from_the_downward_api() -> None:
    """S3 across deployments: the election is etcd + prefix + name, so staging and production on
    one etcd with the same election name must not share a leader."""
    sidecar = deployment_sidecar()
    opts = _options(sidecar["args"])
    # In the environment, not in args: `kubectl exec … leaderjob status` reads it too.
    assert "--prefix" not in opts
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["LEADERJOB_PREFIX"]["value"] == "/leaderjob/$(POD_NAMESPACE)"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    names = [e["name"] for e in sidecar["env"]]
    # Kubernetes expands $(VAR) in a value only from variables defined before it.
    assert names.index("POD_NAMESPACE") < names.index("LEADERJOB_PREFIX")


def test_sidecar_reads_its_jobs_file_from_a_configmap_it_can_reload() -> None:
    """The base's --jobs file is base/jobs.toml, through a ConfigMap volume: mounted whole (a
    subPath mount never sees an update), read-only, the ConfigMap's name without kustomize's
    hash (an edit updates it in place, so the daemon reloads instead of the pods rolling), and
    `leaderjob jobs check` accepts the file."""
    path, mount, generator = kubernetes_jobs_file()
    assert path == K8S / "base" / "jobs.toml"
    assert "subPath" not in mount and mount["readOnly"] is True, mount
    assert generator.get("options", {}).get("disableNameSuffixHash") is True, generator
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


def test_kustomize_build_carries_the_jobs_file_in_the_configmap() -> None:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml_module().safe_load_all(result.stdout) if d]
    path, _, generator = kubernetes_jobs_file()
    maps = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == generator["name"]
    ]
    assert len(maps) == 1, [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    assert maps[0]["data"][path.name] == path.read_text()


def test_etcd_statefulset_compacts_so_revisions_never_fill_the_quota() -> None:
    """Every claim and run record is a revision; without periodic compaction the database grows
    until etcd refuses every write (NOSPACE), keepalives included (L1 needs writes)."""
    sts = load_yaml(K8S / "etcd" / "statefulset.yaml")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env.get("ETCD_AUTO_COMPACTION_MODE") == "periodic"
    assert env.get("ETCD_AUTO_COMPACTION_RETENTION"), "a retention is needed"
    assert int(env.get("ETCD_QUOTA_BACKEND_BYTES") or 0) == 2 * 1024**3, (
        "the daemons' --etcd-quota default (2GiB) must match etcd's quota"
    )
