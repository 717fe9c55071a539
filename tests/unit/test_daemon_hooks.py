"""The daemon's edges a new operator meets: what a job's environment holds, and how loud a planned
handover is. One real `lock`-mode daemon on the in-memory store and the system clock, with a real
job process (these take about a second each)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from leaderjob.clock import SystemClock
from leaderjob.config import SECRET_ENV_VARS, Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.election.memory import MemoryStore


def _lock(tmp_path: Path, environ: dict[str, str]) -> tuple[int, dict[str, str], list[Any]]:
    out = tmp_path / "env.json"
    script = f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"
    settings = Settings(
        election="hooks",
        prefix="/leaderjob",
        identity="me",
        timing=Timing.from_ttl(3),
        command=(sys.executable, "-c", script),
        mode="once",
    )
    clock = SystemClock()
    daemon = Daemon(settings, MemoryStore(clock), clock=clock, environ=environ)
    with structlog.testing.capture_logs() as logs:
        code = daemon.serve()
    return code, json.loads(out.read_text()), logs


def test_job_environment_holds_no_etcd_credentials(tmp_path: Path) -> None:
    """A job never sees the daemon's etcd password, password file, user or client key/cert."""
    secrets = {name: f"secret-{name}" for name in SECRET_ENV_VARS}
    assert {"LEADERJOB_PASSWORD", "LEADERJOB_PASSWORD_FILE"} <= SECRET_ENV_VARS
    environ = {"PATH": "/usr/bin:/bin", "KEEP_ME": "1", "LEADERJOB_ENDPOINTS": "e:1", **secrets}
    code, env, _ = _lock(tmp_path, environ)
    assert code == 0
    assert not SECRET_ENV_VARS & set(env), sorted(SECRET_ENV_VARS & set(env))
    assert not any(v.startswith("secret-") for v in env.values())
    assert env["KEEP_ME"] == "1" and env["LEADERJOB_ENDPOINTS"] == "e:1"
    assert env["LEADERJOB_FENCING_TOKEN"].isdigit()


def test_planned_resign_logs_election_lost_at_info(tmp_path: Path) -> None:
    """L2: a lock released after its command (a planned handover) is routine, not a warning."""
    code, _, logs = _lock(tmp_path, {"PATH": "/usr/bin:/bin"})
    assert code == 0
    lost = [e for e in logs if e["event"] == "election.lost"]
    assert lost and all(e["reason"] == "resigned" for e in lost), lost
    assert all(e["log_level"] == "info" for e in lost), lost


@pytest.mark.parametrize(
    ("reason", "level"),
    [("resigned", "info"), ("key_lost", "warning"), ("renew_deadline", "warning"),
     ("lease_expired", "warning"), ("deadline_passed", "warning"), ("unconfirmed", "warning")],
)  # fmt: skip
def test_only_a_planned_loss_is_quiet(reason: str, level: str) -> None:
    """An unplanned loss of leadership stays a warning; only resigning is routine."""
    from leaderjob.election.machine import Phase, Reason, Transition

    clock = SystemClock()
    settings = Settings(
        election="hooks", prefix="/leaderjob", identity="me", timing=Timing.from_ttl(3),
        command=("true",), mode="once",
    )  # fmt: skip
    daemon = Daemon(settings, MemoryStore(clock), clock=clock, environ={})
    daemon.log = daemon.log.bind(token=5)  # as while leading
    lost = Transition("election.lost", Phase.IDLE, lease_id=1, token=5, reason=Reason(reason))
    with structlog.testing.capture_logs() as logs:
        daemon._transition(lost)
    assert [(e["event"], e["log_level"]) for e in logs] == [("election.lost", level)]


def test_http_status_shows_the_fingerprint_and_a_conflict() -> None:
    from leaderjob import cli
    from leaderjob.ops.fingerprint import Published
    from leaderjob.ops.http import public_view

    clock = SystemClock()
    settings = Settings(
        election="hooks", prefix="/leaderjob", identity="me", timing=Timing.from_ttl(3),
        command=("true",), mode="service",
    )  # fmt: skip
    daemon = Daemon(settings, MemoryStore(clock), clock=clock, environ={})
    view = public_view(cli.http_snapshot(daemon), clock.monotonic())
    assert view["fingerprint"] == daemon.config.fingerprint and view["config_conflict"] == []
    daemon.config.checker.conflict = [Published("staging-0", "abc", "schedule", "@daily", "UTC")]
    view = public_view(cli.http_snapshot(daemon), clock.monotonic())
    assert view["config_conflict"] == ["staging-0: abc mode=schedule schedule=@daily (UTC)"]
