"""`leaderjob next`, the schedule checker: zones, --after in the schedule's zone, the clock
changes, expressions that used to parse and then crash, and the end of the calendar."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from leaderjob import cli


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli.main, ["next", *args], catch_exceptions=True)


def firsts(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [line.split()[0] for line in result.output.splitlines()]


def assert_one_line_error(result: Result, *hints: str) -> str:
    """Exit 2, no traceback, and the last line is the one "Error: ..." line naming the hints."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert errors == [lines[-1]], result.output
    assert all(h in errors[0] for h in hints), errors[0]
    return errors[0]


@pytest.mark.parametrize("zone", ["utc", "Utc", "UTC"])
def test_utc_in_any_case(zone: str) -> None:
    result = invoke(["@hourly", "--timezone", zone, "--after", "2026-01-01T00:10:00Z"])
    assert firsts(result)[0] == "2026-01-01T01:00:00Z"
    assert result.output.splitlines()[0].endswith("+00:00 UTC")


def test_a_zone_name_in_the_wrong_case() -> None:
    args = ["30 2 * * *", "--timezone", "europe/berlin", "--after", "2026-01-01T00:00:00Z"]
    assert invoke(args).output.splitlines()[0].endswith("T02:30:00+01:00 CET")


def test_after_without_an_offset_is_read_in_the_schedule_zone() -> None:
    # 2026-01-01T02:00 in Berlin is 01:00Z, just before the 02:30 CET firing (01:30Z). Read as
    # UTC it would be 02:00Z, after that firing, and the answer would be the next day.
    args = ["30 2 * * *", "--timezone", "Europe/Berlin", "--count", "1"]
    assert firsts(invoke([*args, "--after", "2026-01-01T02:00:00"])) == ["2026-01-01T01:30:00Z"]
    assert firsts(invoke([*args, "--after", "2026-01-01T02:00:00Z"])) == ["2026-01-02T01:30:00Z"]
    # The zone of a CRON_TZ= prefix counts the same.
    prefixed = ["CRON_TZ=Europe/Berlin 30 2 * * *", "--count", "1"]
    assert firsts(invoke([*prefixed, "--after", "2026-01-01T02:00:00"])) == [
        "2026-01-01T01:30:00Z"
    ]


def test_the_help_says_how_after_is_read() -> None:
    result = CliRunner().invoke(cli.main, ["next", "--help"], terminal_width=200)
    assert "without an offset it is read in the schedule's time zone" in " ".join(
        result.output.split()
    )


def test_the_autumn_night_keeps_the_quarter_hours() -> None:
    """The clock change that used to leave 75 minutes without a run (L3: every slot runs)."""
    args = ["*/15 * * * *", "--timezone", "Europe/Berlin", "--after", "2027-10-30T23:30:00Z"]
    result = invoke([*args, "--count", "7"])
    lines = result.output.splitlines()
    assert firsts(result)[-3:] == [
        "2027-10-31T00:45:00Z",
        "2027-10-31T01:00:00Z",
        "2027-10-31T01:15:00Z",
    ]
    assert lines[-3].endswith("02:45:00+02:00 CEST") and lines[-2].endswith("02:00:00+01:00 CET")


@pytest.mark.parametrize(
    ("expr", "hints"),
    [
        ("0 0 * * 7/2", ("day-of-week", "7/2", "0/2")),
        ("0 0 1 * 7/2", ("day-of-week", "7/2")),
        ("@every 3000000d", ("@every", "longer than")),
    ],
)
def test_expressions_that_used_to_crash_are_one_line_errors(
    expr: str, hints: tuple[str, ...]
) -> None:
    assert_one_line_error(invoke([expr]), *hints)


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["@daily", "--after", "9999-12-29T00:00:00Z"], 2),
        (["@every 1h", "--after", "9999-12-31T23:30:00Z"], 0),
        (["@daily", "--timezone", "Asia/Tokyo", "--after", "9999-12-31T20:00:00Z"], 0),
        (["0 0 * * *", "--timezone", "America/New_York", "--after", "9999-12-30T12:00:00"], 1),
    ],
)
def test_the_end_of_the_calendar_is_a_clear_message(args: list[str], printed: int) -> None:
    result = invoke([*args, "--count", "5"])
    error = assert_one_line_error(result, "no fire time after", "year 9999")
    assert error.startswith("Error: --after 9999-")
    assert len([line for line in result.output.splitlines() if line.startswith("9999-")]) == printed
