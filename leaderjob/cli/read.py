"""The read commands: `status`, `history`, and `repair-schedule` (which moves the newest
slot claim back after a clock ran ahead)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from leaderjob.cli.options import (
    LeaderjobCommand,
    _env,
    _etcd_failed,
    _open_data,
    connection_options,
    election_option,
    group_jobs,
    job_option,
    jobs_prefix,
    json_option,
    scoped,
)
from leaderjob.config import (
    election_prefix,
)


def read_status(
    store: Any, data: Any, election: str, prefix: str, timeout: float
) -> dict[str, Any]:
    """What `status` shows: the queue, the leader's lease, the schedule, the run in progress,
    the last success and the last run."""
    from leaderjob.records import in_progress, iso
    from leaderjob.schedule import ScheduleError, parse_schedule, slot_jitter

    keys = store.candidates(election_prefix(prefix, election), timeout=timeout)
    candidates = [
        {
            "identity": k.value.decode(errors="replace"),
            "key": k.key,
            "token": k.create_revision,
            "lease_id": f"{k.lease_id:x}",
        }
        for k in keys
    ]
    leader = candidates[0] if candidates else None
    if leader is not None:
        leader["ttl_remaining"] = store.lease_remaining(keys[0].lease_id, timeout=timeout)
    schedule = data.schedule_info(timeout=timeout)
    # What the leader will actually run next: slots only move forward past the newest claim, so
    # a claim made by a clock that ran ahead holds every slot back until then.
    now = datetime.now(UTC)
    last = data.last_slot(timeout=timeout)
    ahead = max(0.0, (last - now).total_seconds()) if last is not None else 0.0
    next_fire = next_start = None
    if schedule:
        try:
            sched = parse_schedule(schedule["expr"], schedule.get("timezone", "UTC"))
            fire = sched.next_after(max(now, last) if last is not None else now)
            start = fire + timedelta(
                seconds=slot_jitter(election, fire, float(schedule.get("jitter") or 0.0))
            )
            next_fire, next_start = iso(fire), iso(start)
        except (ScheduleError, KeyError, ValueError, OverflowError):
            next_fire = next_start = None
    from leaderjob import fingerprint

    published = fingerprint.parse_published(
        store.get_prefix(fingerprint.fingerprints_prefix(prefix, election), timeout=timeout)
    )
    history = data.history(STATUS_RECORDS, timeout=timeout)
    current = None
    if leader is not None:
        claims = data.claims(timeout=timeout, triggers=True)
        found = in_progress(claims, history, leader["token"], full=len(history) >= STATUS_RECORDS)
        if found is not None:
            slot, claim = found
            started = _parse_time(claim.get("claimed_at"))
            current = {
                "slot": slot,
                "status": claim.get("status", "running"),
                "identity": claim.get("identity"),
                "token": claim.get("token"),
                "claimed_at": claim.get("claimed_at"),
                "running_for_seconds": (
                    None if started is None else round((now - started).total_seconds(), 3)
                ),
                # Not in etcd (a run costs no write at its start): the leader's /status has it.
                "pid": None,
            }
    success = next((r for r in history if r.get("outcome") == "succeeded"), None)
    last_success = None
    if success is not None:
        finished = _parse_time(success.get("finished_at"))
        last_success = {
            "run_id": success.get("run_id"),
            "slot": success.get("slot"),
            "finished_at": success.get("finished_at"),
            "seconds_ago": (
                None if finished is None else round((now - finished).total_seconds(), 3)
            ),
        }
    return {
        "fingerprints": fingerprint.distinct(published),
        "config_conflict": len(fingerprint.distinct(published)) > 1,
        "election": election,
        "leader": leader,
        "candidates": candidates,
        "suspended": data.is_suspended(timeout=timeout),
        "schedule": schedule,
        "next_fire": next_fire,
        "next_start": next_start,
        "last_claimed": iso(last),
        "claims_ahead_seconds": round(ahead, 3),
        "last_run": history[0] if history else None,
        "current_run": current,
        "last_success": last_success,
    }


#: How many of the newest history records `status` reads (the last run, the last success, and
#: whether the leader's newest claim has ended).
STATUS_RECORDS = 100


def _parse_time(text: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def _ago(seconds: float | None) -> str:
    """A duration for tables: ``42s``, ``3m20s``, ``5h07m``, ``2d03h``."""
    if seconds is None:
        return "?"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _current_text(current: dict[str, Any] | None) -> str:
    if current is None:
        return "-"
    return f"{current['slot']} ({_ago(current['running_for_seconds'])})"


def _success_text(success: dict[str, Any] | None) -> str:
    return "-" if success is None else f"{_ago(success['seconds_ago'])} ago"


def _group_status(store: Any, group: str, params: dict[str, Any], timeout: float) -> Any:
    """One row per job of a group: job, leader, token, next fire, last outcome (None: not a
    group)."""
    from leaderjob.records import ElectionData

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
                "leader": leader["identity"] if leader else None,
                "token": leader["token"] if leader else None,
                "next_fire": doc["next_fire"],
                "last_outcome": last.get("outcome") if last else None,
                "suspended": doc["suspended"],
                "current_run": doc["current_run"],
                "last_success": doc["last_success"],
            }
        )
    return {"election": group, "jobs": rows}


def _print_group(doc: dict[str, Any]) -> None:
    header = ("JOB", "LEADER", "TOKEN", "NEXT FIRE", "RUNNING", "LAST SUCCESS", "LAST OUTCOME")
    rows = [
        (
            r["job"],
            r["leader"] or "-",
            str(r["token"] or "-"),
            _to_the_second(r["next_fire"] or "-"),
            _current_text(r["current_run"]),
            _success_text(r["last_success"]),
            (r["last_outcome"] or "-") + (" (suspended)" if r["suspended"] else ""),
        )
        for r in doc["jobs"]
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


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
    election, params = scoped(election, params)
    store, data, timeout = _open_data(election, params)
    try:
        group = _group_status(store, election, params, timeout) if grouped else None
        doc = group or read_status(store, data, election, params["prefix"], timeout)
    except StoreError as exc:
        _etcd_failed(f"read election {election!r} from etcd", exc)
    finally:
        store.close()
    if group is not None and not as_json:
        _print_group(group)
        return
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    leader = doc["leader"]
    if leader is None:
        click.echo(f"election {election}: no leader")
    else:
        click.echo(
            f"election {election}: leader {leader['identity']} token {leader['token']} "
            f"lease {leader['lease_id']} ttl {leader['ttl_remaining']}s"
        )
    for pos, c in enumerate(doc["candidates"][1:], start=1):
        click.echo(f"  waiting #{pos}: {c['identity']} (lease {c['lease_id']})")
    if doc["suspended"]:
        click.echo("  SUSPENDED: no runs start until `leaderjob resume`")
    if doc["config_conflict"]:
        groups = "; ".join(
            f"{fp} ({', '.join(sorted(ids))})" for fp, ids in sorted(doc["fingerprints"].items())
        )
        click.echo(
            f"  CONFIG CONFLICT: candidates run different jobs (command, schedule or zone): "
            f"{groups}. Two deployments share this etcd, --prefix and --election?"
        )
    if doc["schedule"]:
        sched = doc["schedule"]
        click.echo(
            f"  schedule {sched.get('expr')} ({sched.get('timezone')}), next slot "
            f"{doc['next_fire']}"
            + (f" (starts {doc['next_start']})" if doc["next_start"] != doc["next_fire"] else "")
        )
    if doc["claims_ahead_seconds"] > 1:
        click.echo(
            f"  CLOCK SKEW: the newest claim ({doc['last_claimed']}) lies "
            f"{doc['claims_ahead_seconds']:g}s ahead of this machine's clock; no slot runs "
            "before then. Fix the fast clock, then `leaderjob repair-schedule`"
        )
    current = doc["current_run"]
    if current:
        click.echo(
            f"  running: slot {current['slot']} by {current['identity']} for "
            f"{_ago(current['running_for_seconds'])} (pid: the leader's /status)"
        )
    success = doc["last_success"]
    if success:
        click.echo(
            f"  last success: {_ago(success['seconds_ago'])} ago (slot {success['slot']}, run "
            f"{success['run_id']})"
        )
    elif doc["schedule"]:
        click.echo(f"  last success: none in the newest {STATUS_RECORDS} records")
    last = doc["last_run"]
    if last:
        click.echo(
            f"  last run: {last.get('outcome')} slot {last.get('slot')} token {last.get('token')} "
            f"by {last.get('identity')} at {last.get('started_at') or last.get('scheduled_time')}"
        )


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
    election, params = scoped(election, params)
    from leaderjob.election.store import StoreError
    from leaderjob.records import iso

    when = datetime.now(UTC) if to is None else _aware_time("--to", to)
    store, data, timeout = _open_data(election, params)
    try:
        last, later = data.repair_last_slot(when, timeout=timeout)
    except StoreError as exc:
        _etcd_failed(f"repair the schedule of {election!r}", exc)
    finally:
        store.close()
    if last is None or last <= when:
        click.echo(f"{election}: newest claim {iso(last)} is not after {iso(when)}; nothing to do")
    else:
        click.echo(
            f"repaired {election}: newest claim moved back from {iso(last)} to {iso(when)}; the "
            f"leader re-plans within one renew interval. {later} claim(s) of later slots stay: "
            "those slots ran (or were skipped) early and do not run again"
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


def _to_the_second(text: str) -> str:
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
                _to_the_second(str(started)),
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


#: How often `trigger --wait` looks for the run's record.
