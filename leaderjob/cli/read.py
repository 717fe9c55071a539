"""The read commands: `status`, and `repair-schedule` (which moves the newest slot claim back
after a clock ran ahead). `history` is in :mod:`leaderjob.cli.run_history`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from leaderjob.cli.options import LeaderjobCommand, connection_options

# format_run is re-exported: callers that render `history --run` import it from here too.
# format_run and read_status are re-exported: callers import them from here too.
from leaderjob.cli.run_history import format_run
from leaderjob.cli.scope import (
    _etcd_failed,
    _open_data,
    election_option,
    group_jobs,
    job_option,
    json_option,
    nobody_there,
    one_job_of,
    scoped,
    unknown_job,
    where,
)
from leaderjob.cli.status_text import print_group, print_status
from leaderjob.ops.status_doc import jobs_prefix, read_status

__all__ = ["format_run", "read_status", "repair_schedule", "status"]


def _group_status(store: Any, group: str, params: dict[str, Any], timeout: float) -> Any:
    """One row per job of a group: job, leader, token, next fire, last outcome (None: not a
    group)."""
    from leaderjob.history.records import ElectionData

    names = group_jobs(store, group, params, timeout)
    if not names:
        return None
    prefix = jobs_prefix(params["prefix"], group)
    rows = []
    for name in names:
        doc = read_status(store, ElectionData(store, prefix, name), name, prefix, timeout)
        leader, last = doc["leader"], doc["last_run"]
        rows.append(
            {
                "job": name,
                "stray_key": doc["stray_key"],
                "leader": leader["identity"] if leader else None,
                "token": leader["token"] if leader else None,
                "since": leader["since"] if leader else None,
                "candidates": len(doc["candidates"]),
                "next_fire": doc["next_fire"],
                "last_outcome": last.get("outcome") if last else None,
                "suspended": doc["suspended"],
                "suspension": doc["suspension"],
                "current_run": doc["current_run"],
                "last_success": doc["last_success"],
            }
        )
    differences = group_differences(store, group, params, timeout)
    for row in rows:
        row["config_conflict"] = sorted({d["field"] for d in differences if d["job"] == row["job"]})
    return {
        "election": group,
        "jobs": rows,
        "config_conflict": bool(differences),
        "config_differences": differences,
    }


def group_differences(
    store: Any, group: str, params: dict[str, Any], timeout: float
) -> list[dict[str, Any]]:
    """What the candidates of a group publish differently, job by job and field by field (a
    group publishes one fingerprint per candidate, under the group's own election)."""
    from leaderjob.ops import fingerprint

    keys = store.get_prefix(
        fingerprint.fingerprints_prefix(params["prefix"], group), timeout=timeout
    )
    return fingerprint.differences(fingerprint.parse_published(keys))


def db_usage(store: Any, timeout: float) -> dict[str, Any] | None:
    """etcd's database size against its quota: etcd's own where it reports it (3.6 on), else
    etcd's default. None when it cannot be read (the rest of `status` does not need it)."""
    from leaderjob.election.store import StoreError
    from leaderjob.ops.dbquota import DEFAULT_QUOTA_BYTES, read_db

    try:
        size, quota = read_db(store, timeout)
    except (StoreError, AttributeError):
        return None
    return {
        "size_bytes": size,
        "quota_bytes": quota or DEFAULT_QUOTA_BYTES,
        "quota_from": "etcd" if quota else "default",
        "used": round(size / (quota or DEFAULT_QUOTA_BYTES), 4),
    }


@click.command(cls=LeaderjobCommand)
@election_option("Election (or group of jobs) to show.")
@job_option("With a group (`run --jobs`): show this job's election in full.")
@json_option
@connection_options
def status(election: str, as_json: bool, **params: Any) -> None:
    """Show who leads an election (identity, token, lease, TTL left), who waits, whether it is
    suspended, the next fire time, the run in progress, the time since the last success and the
    last run. For a group of jobs (`run --jobs`), a table: job, leader, token, next fire, running,
    last success, last outcome."""
    from leaderjob.election.store import StoreError

    grouped = not params.get("job")
    asked = f"{election} --job {params['job']}" if params.get("job") else election
    unscoped_election, unscoped = election, params
    store, _, timeout = _open_data(election, params)
    try:
        wrong = unknown_job(election, params, timeout, store)
        group = None if wrong or not grouped else _group_status(store, election, params, timeout)
        if group is not None:
            group["etcd_db"] = db_usage(store, timeout)
    except StoreError as exc:
        _etcd_failed(f"read election {election!r} from etcd", exc, params)
    finally:
        store.close()
    if wrong is not None:
        raise click.UsageError(wrong)
    election, params = scoped(election, params)
    if group is not None:
        if as_json:
            click.echo(json.dumps(group, indent=2))
        else:
            print_group(group)
        if not any(row["candidates"] for row in group["jobs"]):
            _nobody_campaigns(asked, unscoped)
        return
    store, data, timeout = _open_data(election, params)
    try:
        doc = read_status(store, data, election, params["prefix"], timeout)
        if unscoped.get("job"):  # a group's fingerprints are the group's: this job's part
            mine = [
                d
                for d in group_differences(store, unscoped_election, unscoped, timeout)
                if d["job"] == election
            ]
            doc.update(config_conflict=bool(mine), config_differences=mine)
        doc["etcd_db"] = db_usage(store, timeout)
    except StoreError as exc:
        _etcd_failed(f"read election {election!r} from etcd", exc, params)
    finally:
        store.close()
    if not doc["candidates"] and not (doc["last_run"] or doc["schedule"] or doc["last_claimed"]):
        nobody_there(asked, unscoped)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        print_status(election, doc)
    if not doc["candidates"]:
        _nobody_campaigns(asked, unscoped)


def _nobody_campaigns(election: str, params: dict[str, Any]) -> None:
    """Records but no candidate: every replica is down, unhealthy, or looking elsewhere."""
    click.echo(
        f"leaderjob: nobody campaigns in election {election} {where(params)}: its replicas are "
        "down or unhealthy, or they use another --prefix or --endpoints",
        err=True,
    )
    sys.exit(1)


def _aware_time(flag: str, text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise click.UsageError(
            f"{flag} {text!r}: give an ISO 8601 time with a zone, e.g. 2026-11-30T06:00:00Z"
        )
    return when.astimezone(UTC)


@click.command(cls=LeaderjobCommand, name="repair-schedule")
@election_option("Election whose schedule to repair.")
@job_option("With a group (`run --jobs`): the job whose schedule to repair.")
@click.option(
    "--to",
    "to",
    help="Move the newest claim back to this ISO 8601 time with a zone "
    "(e.g. 2026-11-30T06:00:00Z) [default: now].",
)
@connection_options
def repair_schedule(election: str, to: str | None, **params: Any) -> None:
    """Undo a clock that ran ahead: move the newest slot claim back to now (or --to), so the
    leader runs the next slot on time. Fix the fast clock first. Slots the fast clock already
    claimed keep their claims and do not run a second time."""
    one_job_of(election, params, "repair the schedule of")
    election, params = scoped(election, params)
    from leaderjob.election.store import StoreError
    from leaderjob.history.records import iso

    when = datetime.now(UTC) if to is None else _aware_time("--to", to)
    store, data, timeout = _open_data(election, params)
    try:
        last, later = data.repair_last_slot(when, timeout=timeout)
    except StoreError as exc:
        _etcd_failed(f"repair the schedule of {election!r}", exc, params)
    finally:
        store.close()
    if last is None:
        click.echo(f"{election}: no slot claimed yet; nothing to do")
    elif last <= when:
        click.echo(f"{election}: newest claim {iso(last)} is not after {iso(when)}; nothing to do")
    else:
        click.echo(
            f"repaired {election}: newest claim moved back from {iso(last)} to {iso(when)}; the "
            f"leader re-plans within one renew interval. {later} claim(s) of later slots stay: "
            "those slots ran (or were skipped) early and do not run again"
        )
