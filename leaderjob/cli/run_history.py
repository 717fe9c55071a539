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

from leaderjob.cli.options import (
    LeaderjobCommand,
    _env,
    _etcd_failed,
    _open_data,
    connection_options,
    election_option,
    job_option,
    json_option,
    scoped,
)


@click.command(cls=LeaderjobCommand)
@election_option("Election whose runs to show.")
@job_option("With a group (`run --jobs`): the job whose runs to show.")
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
    "tail); any unique prefix of its id, as the RUN column shows it.",
)
@json_option
@connection_options
def history(
    election: str, limit: int, show_all: bool, run_id: str | None, as_json: bool, **params: Any
) -> None:
    """Show the newest runs of an election, from any machine; with --all also the slots that did
    not run and why; with --run one run in full."""
    election, params = scoped(election, params)
    from leaderjob.election.store import StoreError

    if run_id is not None and not run_id.strip():
        raise click.UsageError("--run: give a run id (the RUN column of `leaderjob history`)")
    store, data, timeout = _open_data(election, params)
    try:
        if run_id is not None:
            found = data.find_run(run_id.strip(), timeout=timeout)
            same_slot = (
                [r for r in data.history(100, timeout=timeout) if r.get("slot") == found[0]["slot"]]
                if len(found) == 1
                else []
            )
        else:
            records = data.history(limit, timeout=timeout, runs_only=not show_all)
    except StoreError as exc:
        _etcd_failed(f"read the history of {election!r}", exc)
    finally:
        store.close()
    if run_id is not None:
        _show_run(election, run_id, found, same_slot, as_json)
        return
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"election {election}: no runs recorded yet")
        return
    click.echo(format_history(records))


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


def format_history(records: list[dict[str, Any]]) -> str:
    """`history`'s table: times to the second, every column as wide as its widest cell; a slot
    that did not run has no run id, and a record standing for a range says how many slots."""
    header = ("STARTED", "RUN", "SLOT", "OUTCOME", "EXIT", "SECS", "TOKEN", "BY")
    right = {"EXIT", "SECS", "TOKEN"}
    rows = [header]
    for r in records:
        exit_text = r.get("signal") or ("" if r.get("exit_code") is None else str(r["exit_code"]))
        secs = "" if r.get("duration_seconds") is None else f"{r['duration_seconds']:.2f}"
        started = r.get("started_at") or r.get("scheduled_time") or ""
        outcome = str(r.get("outcome") or "")
        if r.get("count") and r.get("first_slot"):
            outcome += f" ({r['count']} slots from {r['first_slot']})"
        rows.append(
            (
                to_the_second(str(started)),
                str(r.get("run_id") or "-")[:SHORT_RUN_ID],
                str(r.get("slot") or ""),
                outcome,
                exit_text,
                secs,
                str(r.get("token") or ""),
                str(r.get("identity") or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if name in right else cell.ljust(w)
            for name, cell, w in zip(header, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
