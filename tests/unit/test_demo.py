"""The demo's verdict (`leaderjob.demo.verdict.judge`): it must call out every broken promise it
claims to check — a slot run twice (S3), two runs of a job at once, a token going down (S2), a slot
lost outside a leaderless window, a move slower than its bound (L1, L2) — and stay quiet
otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leaderjob.demo.verdict import Move, Run, Skip, judge

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
TTL = 3.0


def slot(i: int) -> datetime:
    return T0 + timedelta(seconds=2 * i)


def run(job: str, i: int, replica: str = "replica-1", token: int = 5) -> Run:
    return Run(job, replica, slot(i), token, start=2.0 * i, end=2.0 * i + 0.5)


def move(kind: str, job: str, at: int, took: float | None = 0.1) -> Move:
    led = slot(at) + timedelta(seconds=took) if took is not None else None
    return Move(kind, job, "replica-1", "replica-2", took, slot(at), led)


def clean_story() -> tuple[list[Run], list[Move]]:
    """cleanup runs slots 0..9; a crash at slot 3 leaves slots 3 and 4 leaderless (the successor
    runs slot 5 as its catch-up); a graceful stop at slot 7 loses nothing."""
    runs = [run("cleanup", i, token=5) for i in range(3)]
    runs += [run("cleanup", i, "replica-2", token=9) for i in range(5, 7)]
    runs += [run("cleanup", i, "replica-3", token=12) for i in range(7, 10)]
    moves = [move("crash", "cleanup", 3, took=TTL + 1.0), move("graceful", "cleanup", 7)]
    return runs, moves


def test_a_clean_story_is_ok() -> None:
    runs, moves = clean_story()
    assert judge(runs, moves, TTL) == []


def test_s3_a_slot_run_twice_is_a_problem() -> None:
    runs, moves = clean_story()
    runs.append(Run("cleanup", "replica-3", slot(8), 12, start=16.6, end=16.9))
    assert any("slot 12:00:16 ran twice" in p for p in judge(runs, moves, TTL))


def test_two_runs_of_one_job_at_once_are_a_problem() -> None:
    runs, moves = clean_story()
    runs[1] = Run("cleanup", "replica-1", slot(1), 5, start=2.0, end=4.2)  # past the next start
    assert any("overlapped" in p for p in judge(runs, moves, TTL))


def test_s2_a_token_going_down_is_a_problem() -> None:
    runs, moves = clean_story()
    runs[-1] = run("cleanup", 9, "replica-3", token=4)
    assert any("token went down from 12 to 4" in p for p in judge(runs, moves, TTL))


def test_l3_a_slot_lost_outside_a_leaderless_window_is_a_problem() -> None:
    runs, moves = clean_story()
    del runs[1]  # slot 1: a stable tenure, nobody crashed
    assert judge(runs, moves, TTL) == ["cleanup: slot 12:00:02 never ran"]


def test_l1_a_crash_move_slower_than_ttl_plus_margin_is_a_problem() -> None:
    runs, moves = clean_story()
    moves[0] = move("crash", "cleanup", 3, took=TTL + 1.6)
    assert any("after the crash" in p for p in judge(runs, moves, TTL))


def test_l2_a_graceful_move_slower_than_a_second_is_a_problem() -> None:
    runs, moves = clean_story()
    moves[1] = move("graceful", "cleanup", 7, took=1.2)
    assert any("after the graceful" in p for p in judge(runs, moves, TTL))


def test_a_job_nobody_took_over_is_a_problem() -> None:
    runs, moves = clean_story()
    moves[1] = move("graceful", "cleanup", 7, took=None)
    assert any("nobody led it" in p for p in judge(runs, moves, TTL))


def test_a_demo_without_both_faults_or_runs_is_not_ok() -> None:
    runs, moves = clean_story()
    assert "not every fault moved a job" in judge(runs, moves[:1], TTL)
    assert "no job ran" in judge([], moves, TTL)


def test_l3_a_slot_the_daemon_declared_skipped_is_accounted_for() -> None:
    """A slot skipped with a reason (here: it fired while the catch-up run still ran, `forbid`)
    is recorded by the daemon, not lost; the verdict lists it but does not fail on it."""
    runs, moves = clean_story()
    del runs[1]
    assert judge(runs, moves, TTL, [Skip("cleanup", slot(1), "overlap")]) == []
    assert judge(runs, moves, TTL, [Skip("report", slot(1), "overlap")]) != [], "other job"


# --- demo --prometheus: the config it writes ---------------------------------------------------


def _shipped() -> dict[str, object]:
    import yaml

    from leaderjob.demo.prometheus import SHIPPED

    loaded = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


TARGETS = ["127.0.0.1:40001", "127.0.0.1:40002", "127.0.0.1:40003"]


def test_demo_prometheus_runs_the_shipped_config_pointed_at_the_replicas() -> None:
    from leaderjob.demo.prometheus import demo_config

    shipped = _shipped()
    config = demo_config(shipped, TARGETS, "127.0.0.1:49090")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["leaderjob"]["static_configs"] == [{"targets": TARGETS}]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:49090"]}]
    # One host, three ports: the shipped host-only instance label would merge the replicas.
    assert "relabel_configs" not in jobs["leaderjob"]
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "1s"
    assert config["rule_files"] == shipped["rule_files"] == ["alerts.yml"]
    assert _shipped() == shipped, "the shipped config was changed in place"


def test_demo_prometheus_builtin_jobs_match_the_shipped_ones() -> None:
    """An installed package has no deploy/: the built-in scrape jobs must be the shipped ones."""
    from leaderjob.demo.prometheus import BUILTIN, demo_config

    def essentials(config: dict[str, object]) -> object:
        jobs = config["scrape_configs"]
        assert isinstance(jobs, list)
        return [
            (j["job_name"], j.get("metrics_path", "/metrics"), j["static_configs"]) for j in jobs
        ]

    built = demo_config(None, TARGETS, "127.0.0.1:49090")
    assert essentials(built) == essentials(demo_config(_shipped(), TARGETS, "127.0.0.1:49090"))
    assert "rule_files" not in built and BUILTIN["scrape_configs"][0]["static_configs"] == []


def test_demo_prometheus_config_is_accepted_by_promtool(tmp_path: Path) -> None:
    """The config is written as JSON, which Prometheus must read as YAML."""
    import json
    import shutil
    import subprocess

    from leaderjob.demo.prometheus import SHIPPED, demo_config

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    (tmp_path / "prometheus.yml").write_text(
        json.dumps(demo_config(_shipped(), TARGETS, "127.0.0.1:49090"))
    )
    (tmp_path / "alerts.yml").write_text((SHIPPED / "alerts.yml").read_text())
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("ttl", "phrase"), [("1s", "below etcd's minimum"), ("2.5s", "whole")])
def test_a_ttl_the_replicas_would_refuse_is_refused_before_anything_starts(
    ttl: str, phrase: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not three replicas failing to start and a traceback 25 s later: one line, exit 2."""
    from click.testing import CliRunner

    from leaderjob import cli

    def no_demo(**kwargs: object) -> int:
        raise AssertionError("the demo started")

    monkeypatch.setattr("leaderjob.demo.scenario.run_demo", no_demo)
    result = CliRunner().invoke(cli.main, ["demo", "--ttl", ttl])
    assert result.exit_code == 2, result.output
    assert phrase in result.output and "Traceback" not in result.output, result.output
