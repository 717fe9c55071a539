"""`history`: an election's newest runs, the slots that did not run (`--all`), one run in full
(`--run`), and the tables they print (times to the second). Not named ``history.py``: importing
that submodule would bind ``leaderjob.cli.history`` to the module, over the command the package
exports under that name."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from leaderjob.cli import slot_history
from leaderjob.cli.options import LeaderjobCommand, _env, connection_options
from leaderjob.cli.scope import (
    _etcd_failed,
    _open_data,
    election_option,
    group_jobs,
    job_option,
    json_option,
    nobody_there,
    scoped,
    unknown_job,
)
from leaderjob.ops.status_doc import jobs_prefix


@click.command(cls=LeaderjobCommand)
@election_option("Election whose runs to show.")
@job_option("With a group (`run --jobs`): the job whose runs to show [default: every job's].")
@click.option(
    "--limit",
    envvar=_env("limit"),
    default=20,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="How many records to show, newest first.",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    envvar=_env("all"),
    help="Also show the slots that did not run (skipped, missed, suspended, late), with why.",
)
@click.option(
    "--run",
    "run_id",
    envvar=_env("run"),
    metavar="RUN_ID",
    help="Show one run in full (who, token, slot, times, outcome, signals, attempts, output "
    "tail); any unique prefix of its id, as the RUN column shows it, or `last` for the newest "
    "run. In a group, the run is looked for in every job.",
)
@click.option(
    "--slot",
    envvar=_env("slot"),
    metavar="SLOT",
    help="Why a slot did or did not run: its claim, its records and whether the schedule fires "
    "then; a slot id (20261130T020000Z) or a time with a zone (2026-11-30T02:00:00Z). Exit 1 "
    "when etcd knows nothing of it.",
)
@json_option
@connection_options
def history(
    election: str,
    limit: int,
    show_all: bool,
    run_id: str | None,
    slot: str | None,
    as_json: bool,
    **params: Any,
) -> None:
    """Show the newest runs of an election, from any machine; with --all also the slots that did
    not run and why; with --run one run in full. For a group of jobs (`run --jobs`) without
    --job, every job's, with a JOB column."""
    from leaderjob.election.store import StoreError

    if run_id is not None and not run_id.strip():
        raise click.UsageError("--run: give a run id (the RUN column of `leaderjob history`)")
    if run_id is not None and slot is not None:
        raise click.UsageError("--run and --slot: give one of them")
    if slot is not None:
        _why_slot(election, slot_history.slot_of(slot), as_json, params)
        return
    store, _, timeout = _open_data(election, params)
    try:
        sources = _sources(store, election, params, timeout)
        campaigning = any(store.candidates(f"{d.base}/leader", timeout=timeout) for _, d in sources)
        if run_id is not None:
            found, data = _find_run(sources, run_id.strip(), timeout)
            same_slot = (
                [r for r in data.history(100, timeout=timeout) if r.get("slot") == found[0]["slot"]]
                if len(found) == 1 and data is not None
                else []
            )
        else:
            records = _newest(sources, limit, show_all, timeout)
    except StoreError as exc:
        _etcd_failed(f"read the history of {election!r}", exc, params)
    finally:
        store.close()
    if run_id is not None:
        _show_run(election, run_id, found, same_slot, as_json)
        return
    if not records and not campaigning:
        nobody_there(f"{election} --job {params['job']}" if params.get("job") else election, params)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"election {election}: no runs recorded yet")
        return
    click.echo(format_history(records, jobs=len(sources) > 1 or sources[0][0] is not None))


def _why_slot(election: str, slot: str, as_json: bool, params: dict[str, Any]) -> None:
    from leaderjob.election.store import StoreError

    store, _, timeout = _open_data(election, params)
    try:
        sources = _sources(store, election, params, timeout)
        docs = [slot_history.explain(job, data, slot, timeout) for job, data in sources]
    except StoreError as exc:
        _etcd_failed(f"read the history of {election!r}", exc, params)
    finally:
        store.close()
    shown = [d for d in docs if slot_history.known(d)] or docs
    if as_json:
        click.echo(json.dumps(shown if len(sources) > 1 else shown[0], indent=2))
    else:
        slot_history.show(shown)
    if not any(slot_history.known(d) for d in docs):
        sys.exit(1)


Source = tuple[str | None, Any]  # (the job's name in a group listing, its ElectionData)


def _sources(store: Any, election: str, params: dict[str, Any], timeout: float) -> list[Source]:
    """Where to read: the --job's election, else every job of a group (each named), else the
    election itself."""
    from leaderjob.history.records import ElectionData

    wrong = unknown_job(election, params, timeout, store)
    if wrong is not None:
        raise click.UsageError(wrong)
    if params.get("job"):
        name, scope = scoped(election, params)
        return [(None, ElectionData(store, scope["prefix"], name))]
    names = group_jobs(store, election, params, timeout)
    under = jobs_prefix(params["prefix"], election)
    if names:
        return [(n, ElectionData(store, under, n)) for n in names]
    return [(None, ElectionData(store, params["prefix"], election))]


def _when(record: dict[str, Any]) -> datetime:
    text = str(record.get("started_at") or record.get("scheduled_time") or "")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _tagged(job: str | None, record: dict[str, Any]) -> dict[str, Any]:
    return record if job is None else {"job": job, **record}


def _newest(
    sources: list[Source], limit: int, show_all: bool, timeout: float
) -> list[dict[str, Any]]:
    """The newest ``limit`` records over every source, newest first."""
    records = [
        _tagged(job, r)
        for job, data in sources
        for r in data.history(limit, timeout=timeout, runs_only=not show_all)
    ]
    return sorted(records, key=_when, reverse=True)[:limit]


def _find_run(
    sources: list[Source], run_id: str, timeout: float
) -> tuple[list[dict[str, Any]], Any]:
    """The records ``run_id`` names (``last``: the newest run) in any source, and the source's
    data when exactly one matched."""
    if run_id == "last":
        newest = _newest(sources, 1, False, timeout)
        if not newest:
            return [], None
        run_id = str(newest[0].get("run_id"))
    found = [
        (data, _tagged(job, r))
        for job, data in sources
        for r in data.find_run(run_id, timeout=timeout)
    ]
    return [r for _, r in found], (found[0][0] if len(found) == 1 else None)


def _show_run(
    election: str,
    run_id: str,
    found: list[dict[str, Any]],
    same_slot: list[dict[str, Any]],
    as_json: bool,
) -> None:
    if not found:
        click.echo(
            f"leaderjob: election {election}: no run {run_id!r} in the history (only the newest "
            "--history-limit records are kept; `leaderjob history` lists their ids)",
            err=True,
        )
        sys.exit(1)
    if len(found) > 1:
        ids = ", ".join(str(r.get("run_id")) for r in found)
        raise click.UsageError(f"--run {run_id!r} matches several runs ({ids}): give more of it")
    record = found[0]
    attempts = [
        {k: r.get(k) for k in ("run_id", "attempt", "outcome", "started_at")}
        for r in same_slot
        if r.get("run_id") and r.get("run_id") != record.get("run_id")
    ]
    if as_json:
        click.echo(json.dumps({**record, "other_attempts": attempts}, indent=2))
        return
    click.echo(format_run(record, attempts))


def format_run(record: dict[str, Any], attempts: list[dict[str, Any]]) -> str:
    """`history --run`: one run, a field per line, then its output tails."""
    r = record
    rc = r.get("signal") or ("" if r.get("exit_code") is None else f"exit {r['exit_code']}")
    lines = [f"run {r.get('run_id')}"]

    def field(name: str, value: Any) -> None:
        if value not in (None, "", []):
            lines.append(f"  {name:<10} {value}")

    field("job", r.get("job"))
    field("outcome", f"{r.get('outcome')}" + (f" ({rc})" if rc else ""))
    field("error", r.get("error"))
    field("slot", r.get("slot"))
    field("scheduled", r.get("scheduled_time"))
    field("started", r.get("started_at"))
    field("finished", r.get("finished_at"))
    if r.get("duration_seconds") is not None:
        field("duration", f"{r['duration_seconds']:.3f}s")
    field("by", r.get("identity"))
    field("token", r.get("token"))
    field("attempt", r.get("attempt"))
    field(
        "signals",
        ", ".join(f"{s.get('signal')} ({s.get('reason')})" for s in r.get("signals") or []),
    )
    field(
        "attempts",
        ", ".join(f"{a['run_id']} #{a.get('attempt')} {a.get('outcome')}" for a in attempts),
    )
    for stream in ("stdout", "stderr"):
        tail = r.get(f"{stream}_tail")
        if tail:
            cut = " (cut: the last 4 KiB)" if r.get(f"{stream}_truncated") else ""
            lines.append(f"  {stream}{cut}:")
            lines.extend("    " + line for line in str(tail).splitlines())
    return "\n".join(lines)


def to_the_second(text: str) -> str:
    """An ISO 8601 UTC time from a record, shown to the second: ``2026-11-30T02:48:54Z``."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


#: The run id's short form in `history`'s table (`--run` takes any unique prefix).
SHORT_RUN_ID = 8


def format_history(records: list[dict[str, Any]], *, jobs: bool = False) -> str:
    """`history`'s table: times to the second, every column as wide as its widest cell; a slot
    that did not run has no run id, and a record standing for a range says how many slots.
    ``jobs``: a JOB column (a group's records, each with its job)."""
    header: tuple[str, ...] = ("STARTED", "RUN", "SLOT", "OUTCOME", "EXIT", "SECS", "TOKEN", "BY")
    right = {"EXIT", "SECS", "TOKEN"}
    if jobs:
        header = ("STARTED", "JOB", *header[1:])
    rows: list[tuple[str, ...]] = [header]
    for r in records:
        exit_text = r.get("signal") or ("" if r.get("exit_code") is None else str(r["exit_code"]))
        secs = "" if r.get("duration_seconds") is None else f"{r['duration_seconds']:.2f}"
        started = r.get("started_at") or r.get("scheduled_time") or ""
        outcome = str(r.get("outcome") or "")
        if r.get("count") and r.get("first_slot"):
            outcome += f" ({r['count']} slots from {r['first_slot']})"
        row: tuple[str, ...] = (
            to_the_second(str(started)),
            str(r.get("run_id") or "-")[:SHORT_RUN_ID],
            str(r.get("slot") or ""),
            outcome,
            exit_text,
            secs,
            str(r.get("token") or ""),
            str(r.get("identity") or ""),
        )
        rows.append((row[0], str(r.get("job") or ""), *row[1:]) if jobs else row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if name in right else cell.ljust(w)
            for name, cell, w in zip(header, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
