"""The jobs file: both forms parse to the same JobSpecs; every problem is reported at once, each at
its line, saying what to change. A file the daemon accepts is one whose every slot can be run
(slot rules of docs/scheduling.md); a refused file keeps the old one (docs/jobs.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaderjob.jobsfile import (
    JobsFileError,
    JobSpec,
    is_toml,
    load_jobs,
    parse_jobs,
    single_job,
)
from leaderjob.schedule import parse_schedule

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str, path: str = "jobs.toml", **kwargs: str) -> list[str]:
    with pytest.raises(JobsFileError) as info:
        parse_jobs(text, path, **kwargs)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def only(text: str, path: str = "jobs.toml") -> str:
    found = problems(text, path)
    assert len(found) == 1, found
    return found[0]


# --- good files -------------------------------------------------------------------------------

ISSUE_EXAMPLE = """\
[defaults]                 # any per-job option
timezone = "Europe/Berlin"
timeout = "10m"

[jobs.cleanup]
schedule = "*/5 * * * *"
command = ["./cleanup.sh", "--older-than", "7d"]

[jobs.report]
schedule = "0 6 * * 1-5"
command = ["python", "-m", "app.report"]
concurrency = "replace"
"""


def test_the_toml_form_reads_defaults_and_jobs() -> None:
    jobs = parse_jobs(ISSUE_EXAMPLE, "jobs.toml").jobs
    assert [j.name for j in jobs] == ["cleanup", "report"]
    cleanup, report = jobs
    assert cleanup.command == ("./cleanup.sh", "--older-than", "7d")
    assert cleanup.schedule == parse_schedule("*/5 * * * *", "Europe/Berlin")
    assert cleanup.timeout == 600.0 and report.timeout == 600.0
    assert cleanup.concurrency == "forbid" and report.concurrency == "replace"
    assert (cleanup.line, report.line) == (5, 9)


def test_every_option_is_read_with_the_flag_syntax() -> None:
    text = """
[jobs.all]
schedule = "@every 1h"
command = "python -m 'app.job' --flag"
timezone = "Asia/Tokyo"
jitter = "1m30s"
catch-up = "skip"
starting-deadline = "10m"
concurrency = "allow"
timeout = 90
retries = 3
history-limit = 7
grace = "500ms"
health-cmd = "./healthy"
health-url = "http://localhost:8080/ready"
"""
    (job,) = parse_jobs(text, "f.toml").jobs
    assert job == JobSpec(
        name="all",
        command=("python", "-m", "app.job", "--flag"),
        schedule=parse_schedule("@every 1h", "Asia/Tokyo"),
        catch_up="skip",
        starting_deadline=600.0,
        jitter=90.0,
        concurrency="allow",
        timeout=90.0,
        retries=3,
        history_limit=7,
        grace=0.5,
        health_cmd="./healthy",
        health_url="http://localhost:8080/ready",
    )


def test_catch_up_may_be_spelled_with_an_underscore_and_the_job_wins_over_defaults() -> None:
    text = '[defaults]\ncatch_up = "skip"\n[jobs.a]\ncommand = ["x"]\n[jobs.b]\ncommand = ["x"]\n'
    text += 'catch-up = "once"\n'
    a, b = parse_jobs(text, "f.toml").jobs
    assert (a.catch_up, b.catch_up) == ("skip", "once")


def test_a_job_without_schedule_is_a_service() -> None:
    (job,) = parse_jobs('[jobs.web]\ncommand = ["./serve"]\n', "f.toml").jobs
    assert job.schedule is None


def test_zones_job_over_defaults_over_the_daemons_and_cron_tz_over_defaults() -> None:
    text = """
[defaults]
timezone = "Europe/Berlin"
[jobs.a]
schedule = "@daily"
command = ["x"]
[jobs.b]
schedule = "@daily"
timezone = "Asia/Tokyo"
command = ["x"]
[jobs.c]
schedule = "CRON_TZ=America/New_York 0 3 * * *"
command = ["x"]
"""
    a, b, c = parse_jobs(text, "f.toml", default_timezone="Asia/Tokyo").jobs
    assert [j.schedule.timezone for j in (a, b, c) if j.schedule] == [
        "Europe/Berlin",
        "Asia/Tokyo",
        "America/New_York",
    ]
    (d,) = parse_jobs(
        '[jobs.d]\nschedule = "@daily"\ncommand = ["x"]\n', "f.toml", default_timezone="Asia/Tokyo"
    ).jobs
    assert d.schedule is not None and d.schedule.timezone == "Asia/Tokyo"


CRONTAB = """\
# nightly jobs
CRON_TZ=Europe/Berlin

# name: cleanup
*/5 * * * * ./cleanup.sh --older-than 7d
0 6 * * 1-5 date +\\%F > /var/log/date
TZ="Asia/Tokyo"
@every 30s   echo   hi
@daily echo daily
"""


def test_the_crontab_form_names_zones_and_runs_lines_with_sh() -> None:
    jobs = parse_jobs(CRONTAB, "crontab").jobs
    assert [(j.name, j.line) for j in jobs] == [
        ("cleanup", 5),
        ("line-6", 6),
        ("line-8", 8),
        ("line-9", 9),
    ]
    assert jobs[0].command == ("/bin/sh", "-c", "./cleanup.sh --older-than 7d")
    assert jobs[1].command == ("/bin/sh", "-c", "date +%F > /var/log/date")  # \\% is a literal %
    assert jobs[2].command == ("/bin/sh", "-c", "echo   hi")
    zones = [j.schedule.timezone for j in jobs if j.schedule]
    assert zones == ["Europe/Berlin", "Europe/Berlin", "Asia/Tokyo", "Asia/Tokyo"]
    assert jobs[2].schedule == parse_schedule("@every 30s", "Asia/Tokyo")


@pytest.mark.parametrize("between", ["", "# another comment", "CRON_TZ=UTC"])
def test_a_name_comment_must_be_right_above_its_job(between: str) -> None:
    found = problems(f"# name: a\n{between}\n@daily x\n", "crontab")
    assert found == [
        "crontab:1: '# name: a' names the line right after it, which is not a job: put the "
        "comment directly above the job's line"
    ]


@pytest.mark.parametrize(
    ("path", "text", "toml"),
    [
        ("jobs.toml", "CRON_TZ=UTC\n@daily x\n", True),
        ("JOBS.TOML", "", True),
        ("jobs", "# c\n\n[jobs.a]\n", True),
        ("jobs.conf", "  [defaults]\n", True),
        ("crontab", "# [jobs.a]\n@daily x\n", False),
        ("crontab", "CRON_TZ=UTC\n", False),
        ("crontab", "", False),
    ],
)
def test_the_format_rule(path: str, text: str, toml: bool) -> None:
    assert is_toml(text, path) is toml


def test_the_examples_check_clean() -> None:
    toml = load_jobs(ROOT / "examples" / "jobs.toml")
    cron = load_jobs(ROOT / "examples" / "crontab")
    assert len(toml.jobs) == 3 and len(cron.jobs) == 3
    assert [j.name for j in cron.jobs] == ["cleanup", "report", "archive"]


def test_moving_a_job_in_the_file_does_not_change_it() -> None:
    # Reload compares specs: a job whose definition is unchanged keeps its tenure.
    first = parse_jobs('[jobs.a]\ncommand = ["x"]\n', "f.toml").jobs[0]
    moved = parse_jobs('\n\n[jobs.a]\ncommand = ["x"]\n', "f.toml").jobs[0]
    assert first == moved and first.line != moved.line


# --- problems, each at its line ---------------------------------------------------------------


def test_an_unknown_key_suggests_the_known_one() -> None:
    text = '[jobs.a]\ncommand = ["x"]\nschedul = "@daily"\n'
    assert only(text) == "jobs.toml:3: unknown key 'schedul' in [jobs.a]; did you mean 'schedule'?"
    assert only('[defaults]\ntimout = "1m"\n[jobs.a]\ncommand = ["x"]\n').startswith(
        "jobs.toml:2: unknown key 'timout' in [defaults]; did you mean 'timeout'?"
    )
    assert "did you mean 'jobs'" in only('[job.a]\ncommand = ["x"]\n[jobs.b]\ncommand = ["x"]\n')


def test_schedule_and_command_belong_to_jobs_not_defaults() -> None:
    text = '[defaults]\nschedule = "@daily"\n[jobs.a]\ncommand = ["x"]\n'
    assert only(text).startswith("jobs.toml:2: unknown key 'schedule' in [defaults]")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('timeout = "ten minutes"', "timeout: cannot read duration 'ten minutes'"),
        ("timeout = 0", "timeout: must be a positive duration"),
        ('grace = "0s"', "grace: must be a positive duration"),
        ("jitter = -1", "jitter: expected a duration"),
        ("jitter = true", "jitter: expected a duration"),
        ('starting-deadline = "1x"', "starting-deadline: cannot read duration"),
        ('catch-up = "all"', "catch-up: expected one of 'once', 'skip', got 'all'"),
        ('concurrency = "queue"', "concurrency: expected one of 'forbid', 'replace', 'allow'"),
        ("retries = -1", "retries: expected a whole number at least 0"),
        ('retries = "3"', "retries: expected a whole number"),
        ("history-limit = 0", "history-limit: expected a whole number from 1 to 10000"),
        ("history-limit = 10001", "history-limit: expected a whole number from 1 to 10000"),
        ('health-cmd = ""', "health-cmd: expected a non-empty string"),
        ('health-url = "localhost:8080"', "health-url: 'localhost:8080': give an http://"),
        ('timezone = "Mars/Olympus"', "timezone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_value_is_reported_at_its_line(line: str, expected: str) -> None:
    text = f'[jobs.a]\nschedule = "@daily"\ncommand = ["x"]\n{line}\n'
    assert only(text).startswith(f"jobs.toml:4: {expected}")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("* * 31 2 *", "never fires"),
        ("*/5 * * *", "5 are expected"),
        ("@fortnightly", "@fortnightly"),
        ("", "expected a cron expression"),
    ],
)
def test_a_bad_schedule_is_reported_at_its_line(expr: str, expected: str) -> None:
    found = only(f'[jobs.a]\ncommand = ["x"]\n\nschedule = "{expr}"\n')
    assert found.startswith("jobs.toml:4: ") and expected in found


def test_a_bad_schedule_still_lets_the_rest_of_the_job_be_judged() -> None:
    found = problems('[jobs."a b"]\nschedule = "* * 31 2 *"\ncommand = []\n')
    assert len(found) == 3, found
    assert any("job name 'a b'" in p for p in found)
    assert any("empty command" in p for p in found)


def test_jitter_must_be_shorter_than_the_interval() -> None:
    text = '[defaults]\njitter = "1m"\n\n[jobs.a]\nschedule = "@every 1m"\ncommand = ["x"]\n'
    assert only(text).startswith(
        "jobs.toml:4: job 'a': jitter 1m must be shorter than the schedule's interval (1m)"
    )
    ok = text.replace('"1m"\n', '"59s"\n', 1)
    assert parse_jobs(ok, "f.toml").jobs[0].jitter == 59.0
    # A service has no interval: a default jitter does not apply to it.
    assert parse_jobs('[defaults]\njitter = "1h"\n[jobs.s]\ncommand = ["x"]\n', "f.toml").jobs


def test_a_starting_deadline_below_one_second_is_refused() -> None:
    text = '[jobs.a]\nschedule = "@every 1m"\ncommand = ["x"]\nstarting-deadline = "999ms"\n'
    assert "starting-deadline 999ms is too short" in only(text)
    assert parse_jobs(text.replace("999ms", "1s"), "f.toml").jobs[0].starting_deadline == 1.0


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("[]", "job 'a' has an empty command"),
        ('[""]', "job 'a' has an empty command"),
        ('"   "', "job 'a' has an empty command"),
        ('"echo \'unclosed"', "command: No closing quotation"),
        ("[1, 2]", "command: expected a list of strings or a string"),
    ],
)
def test_a_bad_command_is_refused(command: str, expected: str) -> None:
    found = only(f"[jobs.a]\ncommand = {command}\n")
    assert found.startswith("jobs.toml:") and expected in found


def test_a_job_without_command_is_refused_at_its_header() -> None:
    assert only('\n[jobs.a]\nschedule = "@daily"\n') == (
        'jobs.toml:2: job \'a\' has no command: add command = ["program", "arg"]'
    )


@pytest.mark.parametrize("name", ["a b", "a/b", "ä;"])
def test_a_job_name_must_be_a_valid_election_name(name: str) -> None:
    found = only(f'[jobs."{name}"]\ncommand = ["x"]\n')
    assert found.startswith(f"jobs.toml:1: job name {name!r}: use letters, digits")


def test_catch_up_given_in_both_spellings_is_refused() -> None:
    found = only('[jobs.a]\ncommand = ["x"]\ncatch-up = "once"\ncatch_up = "skip"\n')
    assert found == "jobs.toml:4: 'catch_up' and 'catch-up' are the same key: keep one"


def test_toml_syntax_errors_carry_tomllib_line() -> None:
    assert only('[jobs.a]\ncommand = ["x"]\nschedule = @daily\n').startswith(
        "jobs.toml:3: not valid TOML: Invalid value"
    )
    # Two tables of one name are a duplicate job.
    assert only('[jobs.a]\ncommand = ["x"]\n[jobs.a]\n').startswith(
        "jobs.toml:3: not valid TOML: Cannot declare ('jobs', 'a') twice"
    )


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    for path in ("jobs.toml", "crontab"):
        assert only(text, path) == (
            f"{path}:1: the jobs file is empty: add [jobs.NAME] tables (TOML) or crontab lines"
        )


@pytest.mark.parametrize("path", ["jobs.toml", "crontab"])
def test_a_file_of_comments_defines_no_job(path: str) -> None:
    assert "the jobs file defines no job" in only("# only a comment\n", path)


def test_a_file_without_jobs_is_refused() -> None:
    assert only('[defaults]\ntimeout = "1m"\n') == (
        "jobs.toml:1: the jobs file defines no job: add a [jobs.NAME] table or a cron line"
    )


def test_non_table_jobs_are_refused() -> None:
    assert "jobs must be tables" in only('jobs = ["a"]\n')
    assert "jobs.a must be a table" in only("[jobs]\na = 1\n")
    assert "defaults must be a table" in only('defaults = 1\n[jobs.a]\ncommand = ["x"]\n')


def test_line_numbers_follow_quoted_and_inline_tables() -> None:
    text = """
[jobs."quoted.name"]
command = ["x"]
timeout = "x"

[jobs]
inline = { command = ["x"], retries = -1 }
"""
    found = problems(text)
    assert found[0].startswith("jobs.toml:4: timeout:")
    assert found[1].startswith("jobs.toml:7: retries:")


def test_a_multiline_string_does_not_shift_lines() -> None:
    text = '[jobs.a]\ncommand = """\ntimeout = 1\n"""\ntimeout = "bad"\n'
    assert only(text).startswith("jobs.toml:5: timeout:")


# --- crontab problems -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("*/5 * * * *", "job 'line-2' has an empty command"),
        ("1 2 3 echo", "expected five cron fields or a macro"),
        ("61 * * * * echo", "schedule '61 * * * *'"),
        ("@reboot ./start", "@reboot is not supported"),
        ("@every 1x echo", "schedule '@every 1x'"),
        ("@daily date +%F", "unescaped '%' in the command"),
        ("MAILTO=ops@example.com", "MAILTO=: only CRON_TZ= and TZ= are read"),
        ("CRON_TZ=Mars/Olympus", "CRON_TZ=Mars/Olympus: unknown time zone"),
    ],
)
def test_a_bad_crontab_line_is_reported_at_its_line(line: str, expected: str) -> None:
    found = only(f"# header\n{line}\n@daily ok\n", "crontab")
    assert found.startswith("crontab:2: ") and expected in found, found


def test_crontab_names_are_checked_and_unique() -> None:
    text = (
        "# name: a\n@daily x\n# name: a\n@hourly y\n# name: b/c\n@daily z\n"
        "# name: two words\n@daily w\n"
    )
    found = problems(text, "crontab")
    assert found == [
        "crontab:4: job 'a' is defined twice (also on line 2): give each job its own name",
        "crontab:6: job name 'b/c': use letters, digits, '-', '_' and '.' only (found '/')",
        "crontab:7: write a job's name as '# name: NAME', one word",
    ]


def test_a_name_comment_can_clash_with_a_line_name() -> None:
    found = only("@daily x\n# name: line-1\n@daily y\n", "crontab")
    assert found.startswith("crontab:3: job 'line-1' is defined twice")


# --- every problem at once --------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = """\
[defaults]
timout = "1m"
jitter = "zz"

[jobs.a]
schedule = "* * 31 2 *"
command = ["x"]

[jobs."b c"]
schedule = "@every 10s"
command = "x"
catch_up = "often"
starting-deadline = "500ms"
"""
    found = problems(text)
    lines = [int(re.match(r"jobs\.toml:(\d+): ", p).group(1)) for p in found]  # type: ignore[union-attr]
    assert lines == [2, 3, 6, 9, 9, 12], found


def test_every_crontab_problem_is_reported_at_once() -> None:
    text = "SHELL=/bin/bash\n@reboot x\n* * * * *\n61 * * * * y\n"
    assert [p.split(":")[1] for p in problems(text, "crontab")] == ["1", "2", "3", "4"]


def test_an_unreadable_file_is_a_problem_too(tmp_path: Path) -> None:
    missing = tmp_path / "jobs.toml"
    with pytest.raises(JobsFileError) as info:
        load_jobs(missing)
    assert info.value.problems == [
        f"{missing}:1: cannot read the jobs file: No such file or directory"
    ]


# --- one job from the command line ------------------------------------------------------------


def test_single_job_is_a_jobs_file_of_one_job() -> None:
    schedule = parse_schedule("@every 1m")
    jobs_file = single_job("cleanup", ("./cleanup.sh",), schedule, timeout=30.0, catch_up="skip")
    assert jobs_file.jobs == (
        JobSpec("cleanup", ("./cleanup.sh",), schedule, timeout=30.0, catch_up="skip"),
    )


def test_single_job_applies_the_same_rules() -> None:
    with pytest.raises(JobsFileError) as info:
        single_job("a b", (), parse_schedule("@every 1m"), jitter=60.0)
    assert len(info.value.problems) == 3
    with pytest.raises(TypeError):
        single_job("a", ("x",), None, no_such_option=1)


# --- round trip -------------------------------------------------------------------------------

DURATIONS = st.sampled_from(["500ms", "1s", "90s", "10m", "1h30m", "2h"])
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "catch-up": st.sampled_from(["once", "skip"]),
        "starting-deadline": st.sampled_from(["1s", "10m", "1h"]),
        "jitter": st.sampled_from(["0s", "1s", "30s"]),
        "concurrency": st.sampled_from(["forbid", "replace", "allow"]),
        "timeout": DURATIONS,
        "retries": st.integers(0, 100),
        "history-limit": st.integers(1, 10_000),
        "grace": DURATIONS,
        "health-cmd": st.sampled_from(["./ok", "curl -fs http://x/"]),
        "health-url": st.sampled_from(["http://localhost/ready", "https://a.example/h"]),
    },
)


def _toml_value(value: object) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


@settings(max_examples=60, deadline=None)
@given(
    defaults=OPTIONS, options=OPTIONS, name=st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)
)
def test_a_file_that_parses_round_trips_its_options(
    defaults: dict[str, object], options: dict[str, object], name: str
) -> None:
    body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in options.items())
    head = "".join(f"{k} = {_toml_value(v)}\n" for k, v in defaults.items())
    text = f'[defaults]\n{head}\n[jobs."{name}"]\nschedule = "@every 1h"\ncommand = ["x"]\n{body}'
    (job,) = parse_jobs(text, "f.toml").jobs
    merged = {**defaults, **options}
    for key, value in merged.items():
        got = getattr(job, key.replace("-", "_"))
        if isinstance(value, str) and value[0].isdigit():
            expected: object = {
                "500ms": 0.5,
                "1s": 1,
                "90s": 90,
                "10m": 600,
                "1h30m": 5400,
                "2h": 7200,
                "0s": 0,
                "30s": 30,
                "1h": 3600,
            }[value]
        else:
            expected = value
        assert got == expected, key
    assert job.name == name
