"""`leaderjob selftest` under the RBAC docs/security.md recommends: a user whose role may read and
write its own election's prefix only, on an etcd with auth enabled. With `--election` the test
runs inside that prefix and passes; without, etcd refuses it and selftest says so in one line
(no traceback) and names the flag that fixes it. Time budget: one selftest at TTL 2 s (~12 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.harness.etcd import etcdctl
from tests.security.conftest import ROOT_PASSWORD

#: docs/security.md's example, word for word: role and user `cleanup-job` on /leaderjob/cleanup/.
ROLE = USER = "cleanup-job"
PASSWORD = "cleanup pass"


def _grant(endpoint: str) -> None:
    root = ["--user", f"root:{ROOT_PASSWORD}"]
    etcdctl(endpoint, *root, "role", "add", ROLE)
    etcdctl(
        endpoint, *root, "role", "grant-permission", "--prefix=true", ROLE, "readwrite",
        "/leaderjob/cleanup/",
    )  # fmt: skip
    etcdctl(endpoint, *root, "user", "add", USER, f"--new-user-password={PASSWORD}")
    etcdctl(endpoint, *root, "user", "grant-role", USER, ROLE)


def _selftest(endpoint: str, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERJOB_")}
    env["LEADERJOB_PASSWORD"] = PASSWORD
    argv = [sys.executable, "-m", "leaderjob", "selftest", "--endpoints", endpoint,
            "--user", USER, "--prefix", "/leaderjob", "--ttl", "2s", *flags]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_selftest_passes_with_the_recommended_role_and_says_why_without_election(
    rbac_etcd,
) -> None:
    _grant(rbac_etcd.endpoint)
    refused = _selftest(rbac_etcd.endpoint)
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("leaderjob selftest: ") and "--election" in last, last
    assert "permission denied" in last.lower(), last

    proc = _selftest(rbac_etcd.endpoint, "--election", "cleanup", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["verdict"] in ("PASS", "WARN"), report["advice"]
    assert report["cleanup"]["prefix"].startswith("/leaderjob/cleanup/_selftest-")
    assert report["cleanup"]["keys_left"] == [], report["cleanup"]
