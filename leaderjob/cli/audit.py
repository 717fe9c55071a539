"""`leaderjob audit`: every fire time of the schedule in a window, checked against the history.

The I/O around :mod:`leaderjob.history.audit`: read the published schedule (or take ``--schedule``),
the newest history records, the slot claims and the leader; print the fire times with no record.
Exit 0: every fire time accounted for; 1: some missing; 2: usage.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from leaderjob.cli.options import LeaderjobCommand, _env, connection_options
from leaderjob.cli.scope import (
    _etcd_failed,
    _open_data,
    election_option,
    job_option,
    json_option,
    targets,
)

#: The newest history records read: far more than the default --history-limit (50), and a reply
#: far below gRPC's 4 MiB message limit. Older fire times are "unknown".
AUDIT_RECORDS = 2000


@click.command(cls=LeaderjobCommand)
@election_option("Election (or group of jobs) to check.")
@job_option("With a group (`run --jobs`): check this job only [default: every job].")
@click.option(
    "--since",
    envvar=_env("since"),
    metavar="DURATION",
    default="24h",
    show_default=True,
    help="How far back to check: a duration (90m, 24h, 7d).",
)
@click.option(
    "--settle",
    envvar=_env("settle"),
    metavar="DURATION",
    default="10s",
    show_default=True,
    help="Leave out fire times this recent (plus the schedule's jitter): their claim and "
    "record may be a cycle away.",
)
@click.option(
    "--schedule",
    envvar=_env("schedule"),
    help="The schedule to check against [default: the one the leader publishes].",
)
@click.option(
    "--timezone",
    envvar=_env("timezone"),
    help="The --schedule's time zone [default: UTC]; without --schedule, the published "
    "schedule's own zone applies.",
)
@json_option
@connection_options
def audit(
    election: str,
    since: str,
    settle: str,
    schedule: str | None,
    timezone: str | None,
    as_json: bool,
    **params: Any,
) -> None:
    """Check that every fire time of the schedule since --since has a record in the history
    (a run, or a slot that did not run and why) and print those that have none. Fire times older
    than the oldest record kept are reported as unknown (history keeps --history-limit records),
    not as missing. Exit 1 if any fire time is missing, 0 if none."""
    from leaderjob.units import DurationError, parse_duration

    try:
        window = timedelta(seconds=parse_duration(since))
    except DurationError as exc:
        raise click.UsageError(f"--since: {exc}") from None
    try:
        recent = timedelta(seconds=parse_duration(settle))
    except DurationError as exc:
        raise click.UsageError(f"--settle: {exc}") from None
    if window <= timedelta(0):
        raise click.UsageError("--since must be longer than 0, e.g. 24h")
    now = datetime.now(UTC)
    reports = [
        _check(name, scope, now - window, now - recent, schedule, timezone)
        for name, scope in targets(election, params)
    ]
    missing = sum(r["counts"].get("missing", 0) for r in reports)
    if as_json:
        click.echo(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    else:
        for r in reports:
            _print(r)
    sys.exit(1 if missing else 0)


def _check(
    election: str,
    params: dict[str, Any],
    since: datetime,
    settled: datetime,
    expr: str | None,
    timezone: str | None,
) -> dict[str, Any]:
    from leaderjob.config import election_prefix
    from leaderjob.election.store import StoreError
    from leaderjob.history.audit import WindowTooLarge, audit, fire_times, summary
    from leaderjob.history.records import iso
    from leaderjob.schedule import ScheduleError, parse_schedule

    store, data, timeout = _open_data(election, params)
    try:
        published = data.schedule_info(timeout=timeout)
        records = data.history(AUDIT_RECORDS, timeout=timeout)
        claims = data.claims(timeout=timeout)
        leaders = store.candidates(election_prefix(params["prefix"], election), timeout=timeout)
    except StoreError as exc:
        _etcd_failed(f"read the history of {election!r}", exc, params)
    finally:
        store.close()
    info = {"expr": expr, "timezone": timezone or "UTC"} if expr else (published or {})
    if not info.get("expr"):
        raise click.UsageError(
            f"{election}: no schedule published (no leader has led it yet, or it runs no "
            "schedule): give --schedule (and --timezone)"
        )
    try:
        schedule = parse_schedule(str(info["expr"]), str(info.get("timezone") or "UTC"))
    except ScheduleError as exc:
        raise click.UsageError(f"--schedule: {exc}") from None
    jitter = timedelta(seconds=float(info.get("jitter") or 0.0))
    # A fire time is due at its start (fire time + jitter); its claim follows by the schedule lag
    # (well under a second, a few under heavy load), a skip's record within the next cycles.
    until = settled - jitter
    try:
        fires = fire_times(schedule, since, until)
    except WindowTooLarge as exc:
        raise click.UsageError(
            f"--since: {exc} for {info['expr']!r}; check a shorter window"
        ) from None
    verdicts = audit(
        fires,
        records,
        claims,
        leader_token=leaders[0].create_revision if leaders else None,
        complete=False,
    )
    problems = [v for v in verdicts if v.status in ("missing", "unknown")]
    return {
        "election": election,
        "schedule": info["expr"],
        "timezone": info.get("timezone") or "UTC",
        "since": iso(since),
        "until": iso(until),
        "fire_times": len(fires),
        "counts": dict(summary(verdicts)),
        "not_run": dict(Counter(v.detail.split(" ")[0] for v in verdicts if v.status == "not_run")),
        "missing": [
            {"fire_time": iso(v.fire_time), "slot": v.slot, "detail": v.detail}
            for v in problems
            if v.status == "missing"
        ],
        "unknown": [iso(v.fire_time) for v in problems if v.status == "unknown"],
    }


def _print(r: dict[str, Any]) -> None:
    counts = r["counts"]
    click.echo(
        f"{r['election']}: {r['fire_times']} fire times of {r['schedule']!r} ({r['timezone']}) "
        f"from {r['since']} to {r['until']}"
    )
    for m in r["missing"]:
        click.echo(f"  MISSING  {m['fire_time']}  slot {m['slot']}: {m['detail']}")
    not_run = ", ".join(f"{n} {why}" for why, n in sorted(r["not_run"].items()))
    click.echo(
        f"  {counts.get('ran', 0)} ran, {counts.get('not_run', 0)} did not run"
        + (f" ({not_run})" if not_run else "")
        + f", {counts.get('running', 0)} running, {counts.get('missing', 0)} missing"
    )
    if r["unknown"]:
        click.echo(
            f"  {len(r['unknown'])} unknown: {r['unknown'][0]} to {r['unknown'][-1]} are older "
            "than the oldest record kept (history keeps the newest --history-limit records; "
            "before the first leader there are none) — not counted as missing"
        )
