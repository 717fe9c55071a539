"""Skips hide holes: in CI (``CI=true``) a test skipped for want of something .ci/run installs
fails instead (tests/conftest.py). Checked for real on a promtool test, with promtool hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CI_INSTALLS

REPO = Path(__file__).resolve().parents[2]
PROMTOOL_TEST = "tests/deploy/test_prometheus.py::test_promtool_check_rules"


def _run_without_promtool(ci: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LEADERJOB_TEST_REPORT")}
    env.update(CI=ci, PATH="/nonexistent")  # find_tool looks next to this interpreter, then PATH
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PROMTOOL_TEST],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_outside_ci_a_missing_tool_is_a_skip():
    out = _run_without_promtool("")
    assert out.returncode == 0 and "1 skipped" in out.stdout, out.stdout + out.stderr


def test_in_ci_a_skip_of_what_ci_installs_fails():
    out = _run_without_promtool("true")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "skipped in CI, which installs what it needs" in out.stdout, out.stdout


@pytest.mark.parametrize(
    "reason",
    [
        "promtool is not installed (apt-get install prometheus (Debian ships /usr/bin/promtool))",
        "needs libfaketime (apt-get install faketime)",
        "needs etcd 3.4 (ETCD34_BIN)",
        "needs PostgreSQL (initdb not found)",
    ],
)
def test_the_ci_rule_names_everything_ci_installs(reason):
    assert CI_INSTALLS.search(reason)


@pytest.mark.parametrize(
    "reason", ["docker compose is not installed", "kubectl is not installed (pip install ...)"]
)
def test_tools_ci_does_not_install_may_still_be_skipped(reason):
    assert not CI_INSTALLS.search(reason)
