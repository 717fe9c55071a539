"""`leaderjob jobs check`: a good file prints each job and its next fire times; a bad one exits 2
with every problem as FILE:LINE: message (docs/jobs.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from leaderjob.cli.jobs import jobs

ROOT = Path(__file__).resolve().parents[2]
AFTER = "2026-03-28T23:00:00Z"  # an hour before Berlin springs forward


def check(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(jobs, ["check", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_prints_each_job_with_schedule_zone_options_and_three_fire_times() -> None:
    code, out, _ = check(str(ROOT / "examples" / "jobs.toml"), "--after", AFTER)
    assert code == 0
    assert "3 jobs, no problems" in out
    report = out.split("\nreport  (line ", 1)[1].split("\n\n", 1)[0]
    assert "0 6 * * 1-5  [Europe/Berlin]" in report
    assert "concurrency       replace" in report
    assert "timeout           10m" in report  # from [defaults]: differs from a job's default
    assert "catch-up" not in report  # "once" is the default: not shown
    fires = [line.split()[-2] for line in report.splitlines() if line.strip().startswith("next")]
    assert fires == [
        "2026-03-30T06:00:00+02:00",
        "2026-03-31T06:00:00+02:00",
        "2026-04-01T06:00:00+02:00",
    ]


def test_check_json_lists_jobs() -> None:
    code, out, _ = check(str(ROOT / "examples" / "crontab"), "--json", "--after", AFTER)
    assert code == 0
    doc = json.loads(out)
    assert [j["name"] for j in doc["jobs"]] == ["cleanup", "report", "archive"]
    cleanup = doc["jobs"][0]
    assert cleanup["command"] == ["/bin/sh", "-c", "./cleanup.sh --older-than 7d"]
    assert cleanup["timezone"] == "Europe/Berlin"
    assert cleanup["next"][0] == "2026-03-29T00:05:00+01:00 CET"
    assert len(cleanup["next"]) == 3


def test_a_service_has_no_fire_times(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.web]\ncommand = ["./serve"]\ntimeout = "1m"\n')
    code, out, _ = check(str(path), "--json")
    assert code == 0
    (web,) = json.loads(out)["jobs"]
    assert web["schedule"] is None and web["next"] == [] and web["options"] == {"timeout": 60.0}


def test_a_bad_file_exits_2_listing_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("SHELL=/bin/bash\n@reboot x\n* * * * *\n")
    code, out, err = check(str(path))
    assert code == 2 and out == ""
    assert [line.split(":", 2)[1] for line in err.splitlines()] == ["1", "2", "3"]
    assert all(line.startswith(f"{path}:") for line in err.splitlines())
    code, out, _ = check(str(path), "--json")
    assert code == 2 and len(json.loads(out)["problems"]) == 3


def test_the_default_zone_is_the_daemons(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("0 3 * * * x\n")
    code, out, _ = check(str(path), "--timezone", "Asia/Tokyo", "--json", "--after", AFTER)
    assert code == 0 and json.loads(out)["jobs"][0]["next"][0] == "2026-03-30T03:00:00+09:00 JST"
    code, _, err = check(str(path), "--timezone", "Mars/Olympus")
    assert code == 2 and "unknown time zone" in err


def test_a_bad_after_is_a_usage_error() -> None:
    result = CliRunner().invoke(jobs, ["check", "x", "--after", "tomorrow"])
    assert result.exit_code == 2 and "--after 'tomorrow'" in result.output


DOC = (ROOT / "docs" / "jobs.md").read_text()


def test_every_key_and_check_option_is_documented() -> None:
    from leaderjob.jobsfile import _JOB_KEYS  # the keys a job table accepts

    for key in _JOB_KEYS:
        assert f"`{key}`" in DOC, f"{key} is not documented in docs/jobs.md"
    (command,) = jobs.commands.values()
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert f"`{opt}" in DOC, f"jobs check {opt} is not documented"


def test_the_documented_problems_are_what_check_prints(tmp_path: Path) -> None:
    section = DOC.split("## Problems", 1)[1]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, re.DOTALL)
    example, expected = blocks[0], blocks[1]
    path = tmp_path / "jobs.toml"
    path.write_text(example)
    code, _, err = check(str(path))
    assert code == 2
    assert err.replace(str(path), "jobs.toml") == expected
