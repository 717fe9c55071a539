"""Skips hide holes: in CI (``CI=true``) a test skipped for want of something .ci/run installs
fails instead (tests/conftest.py). Checked for real on a promtool test with promtool hidden, and
on the clock-step scenario with libfaketime hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CI_INSTALLS

REPO = Path(__file__).resolve().parents[2]
PROMTOOL_TEST = "tests/deploy/test_prometheus.py::test_promtool_check_rules"
FAKETIME_TEST = "tests/faults/test_scenarios.py::test_wall_clock_step_changes_nothing_S3"


def _run_without_promtool(ci: str) -> subprocess.CompletedProcess[str]:
    # find_tool looks next to this interpreter, then on PATH
    return _pytest(PROMTOOL_TEST, CI=ci, PATH="/nonexistent")


def _pytest(test: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LEADERJOB_TEST_REPORT")}
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
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


def test_in_ci_the_clock_step_scenario_without_libfaketime_fails():
    """A skipif at collection (not a skip inside the test) is caught too; no etcd is started."""
    hidden = {"LEADERJOB_LIBFAKETIME": "/nonexistent/libfaketime.so.1"}
    skipped = _pytest(FAKETIME_TEST, CI="", **hidden)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    failed = _pytest(FAKETIME_TEST, CI="true", **hidden)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "needs libfaketime" in failed.stdout, failed.stdout


def test_in_ci_the_browser_tests_without_chromium_fail():
    """The run explorer's browser tests skip without Chromium with a skipif, like the clock-step
    scenario above (whose path through the hook is proven for real): its reason names what CI
    installs."""
    from tests.integration.test_ui_browser import SKIP_REASON

    assert CI_INSTALLS.search(SKIP_REASON)


@pytest.mark.parametrize(
    "reason",
    [
        "promtool is not installed (apt-get install prometheus (Debian ships /usr/bin/promtool))",
        "needs libfaketime (apt-get install faketime)",
        "needs etcd 3.4 (ETCD34_BIN)",
        "needs PostgreSQL (initdb not found)",
        "no chromium binary (Debian's chromium package)",
    ],
)
def test_the_ci_rule_names_everything_ci_installs(reason):
    assert CI_INSTALLS.search(reason)


@pytest.mark.parametrize(
    "reason", ["docker compose is not installed", "kubectl is not installed (pip install ...)"]
)
def test_tools_ci_does_not_install_may_still_be_skipped(reason):
    assert not CI_INSTALLS.search(reason)
