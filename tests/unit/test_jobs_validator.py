"""One validator for a jobs file: `leaderjob jobs check`, a daemon's start and each reload judge
it with the same function (jobsfile.load_jobs), so a file that passes `jobs check` cannot crash
a replica later. A duration too long for a date's range or etcd's TTL range (99999999999h) is
refused on every path with a one-line message: exit 2 for `jobs check` and at start; at a
reload, the file is refused and the old jobs keep running. The same bound holds for the
command line's durations (--ttl, --starting-deadline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from leaderjob import cli
from leaderjob.cli.daemon_settings import group_parts
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.ops.health import HealthSettings
from tests.unit.test_cli_inputs import BASE, COMMAND, assert_usage_error, invoke, started
from tests.unit.test_daemon_jobs import GROUP, PREFIX, TIMING, world

__all__ = ["started", "world"]

GOOD = '[jobs.a]\nschedule = "@every 1s"\ncommand = ["job", "a"]\n'
TOO_LONG = [
    pytest.param('starting-deadline = "99999999999h"', "starting-deadline", id="starting-deadline"),
    pytest.param('timeout = "99999999999h"', "timeout", id="timeout"),
    pytest.param("timeout = 1e30", "timeout", id="timeout-number"),
    pytest.param('on-failure-timeout = "99999999999h"', "on-failure-timeout", id="on-failure"),
    pytest.param('grace = "99999999999h"', "grace", id="grace"),
]


def bad_file(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(GOOD + line + "\n")
    return path


@pytest.mark.parametrize(("line", "key"), TOO_LONG)
def test_jobs_check_refuses_a_duration_too_long_to_use(tmp_path: Path, line: str, key: str) -> None:
    result = CliRunner().invoke(cli.main, ["jobs", "check", str(bad_file(tmp_path, line))])
    assert result.exit_code == 2, result.output
    problems = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(problems) == 1 and f"jobs.toml:4: {key}" in problems[0], result.output
    assert "too long" in problems[0]


@pytest.mark.parametrize(("line", "key"), TOO_LONG)
def test_start_refuses_it_with_exit_2_and_one_line(
    started: list[Any], tmp_path: Path, line: str, key: str
) -> None:
    path = bad_file(tmp_path, line)
    result = invoke(["run", "--election", GROUP, "--metrics-addr", "off", "--jobs", str(path)])
    assert_usage_error(result, key)
    assert not started


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        pytest.param(["--ttl", "99999999999h"], "--ttl", id="ttl"),
        pytest.param(["--ttl", "9000000001"], "--ttl", id="ttl-above-etcd-max"),
        pytest.param(
            ["--schedule", "@hourly", "--starting-deadline", "99999999999h"],
            "--starting-deadline",
            id="starting-deadline",
        ),
    ],
)
def test_start_refuses_a_command_line_duration_too_long(
    started: list[Any], extra: list[str], flag: str
) -> None:
    """Not a daemon that retries a refused grant for ever, or dies at its first slot."""
    assert_usage_error(invoke([*BASE, *extra, *COMMAND]), flag)
    assert not started


def test_a_ttl_above_etcds_maximum_is_a_timing_problem() -> None:
    assert any("maximum lease TTL" in e for e in Timing.from_ttl(10_000_000_000).validate())


@pytest.mark.parametrize(("line", "key"), TOO_LONG)
def test_a_reload_to_such_a_file_is_refused_and_the_old_jobs_keep_running(
    world: Any, tmp_path: Path, line: str, key: str
) -> None:
    """Every replica reloads the same file: a crash there would take every sidecar down at
    once. The reload the daemon runs (the command line's, through the shared validator) refuses
    the file, and the job of the file before it keeps its tenure and its runs."""
    g, started_runs = world
    path = tmp_path / "jobs.toml"
    path.write_text(GOOD)
    settings = Settings(
        election=GROUP, prefix=PREFIX, identity="a", timing=TIMING, command=(), rpc_timeout=1.0
    )
    params = {"timezone": "UTC", "spread": "off", "spread_pace": None}
    reload, _ = group_parts(params, settings, str(path), HealthSettings())
    d = Daemon(settings, g.store.client(), clock=g.clock, environ={}, jobs=reload(), reload=reload)
    g.daemons["a"] = d
    g.run(2.0)
    assert set(g.leaders()) == {"a"}
    path.write_text(GOOD + line + "\n")
    assert d.reloader is not None
    d.reloader.request()
    g.run(2.0)
    assert set(d.runners) == {"a"} and set(g.leaders()) == {"a"}
    assert d.runners["a"].s.starting_deadline is None, "the old job, unchanged"
    ran = len(started_runs)
    g.run(2.0)
    assert len(started_runs) > ran, "the old job keeps running"
