"""``leaderjob jobs``: commands about a jobs file (its format: the leaderjob.jobsfile package)."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from typing import Any

import click

from leaderjob.jobsfile import JobsFileError, JobSpec, iter_options, load_jobs
from leaderjob.schedule import ScheduleError, parse_instant
from leaderjob.units import format_duration

#: How many fire times `jobs check` shows per job.
NEXT_COUNT = 3
_WIDTH = len("starting-deadline")


@click.group()
def jobs() -> None:
    """Work with a jobs file (TOML or crontab) before a daemon runs it."""


@jobs.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="Zone of jobs that set none, as the daemon's --timezone.",
)
@click.option(
    "--after",
    help="Show fire times after this ISO 8601 time instead of now (with an offset, or UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
def check(file: str, timezone: str, after: str | None, as_json: bool) -> None:
    """Validate FILE and print each job with its next fire times.

    A file with problems exits 2 and lists every one as FILE:LINE: message.
    """
    try:
        now = parse_instant(after, UTC)
    except ValueError as exc:
        raise click.UsageError(f"--after {exc}") from None
    try:
        jobs_file = load_jobs(file, default_timezone=timezone)
    except JobsFileError as exc:
        if as_json:
            click.echo(json.dumps({"path": file, "problems": exc.problems}, indent=2))
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(2)
    described = [_describe(spec, now) for spec in jobs_file.jobs]
    if as_json:
        click.echo(json.dumps({"path": file, "jobs": described}, indent=2))
        return
    click.echo(f"{file}: {len(described)} job{'s' if len(described) != 1 else ''}, no problems")
    for job in described:
        click.echo("")
        click.echo(f"{job['name']}  (line {job['line']})")
        schedule = job["schedule"] or "none: a service, kept running while leading"
        zone = f"  [{job['timezone']}]" if job["timezone"] else ""
        click.echo(f"  {'schedule':<{_WIDTH}} {schedule}{zone}")
        click.echo(f"  {'command':<{_WIDTH}} {job['command_line']}")
        for key, value in job["options"].items():
            click.echo(f"  {key:<{_WIDTH}} {_show(value)}")
        for fire in job["next"]:
            click.echo(f"  {'next':<{_WIDTH}} {fire}")


def _describe(spec: JobSpec, now: datetime) -> dict[str, Any]:
    fires: list[str] = []
    if spec.schedule is not None:
        t = now
        for _ in range(NEXT_COUNT):
            try:
                t = spec.schedule.next_after(t)
            except ScheduleError:
                break  # past the end of the calendar: fewer than three fire times exist
            local = t.astimezone(spec.schedule.zone)
            fires.append(f"{local.isoformat()} {local.tzname()}")
    return {
        "name": spec.name,
        "line": spec.line,
        "schedule": spec.schedule.expr if spec.schedule else None,
        "timezone": spec.schedule.timezone if spec.schedule else None,
        "command": list(spec.command),
        "command_line": _shell_line(spec.command),
        "options": dict(iter_options(spec)),  # durations in seconds
        "next": fires,
    }


def _show(value: object) -> object:
    # Durations as written in the file; everything else as is.
    if isinstance(value, float):
        return format_duration(value)
    return value


def _shell_line(command: tuple[str, ...]) -> str:
    return shlex.join(command)
