"""`history --slot`: why did (or didn't) a slot run — its claim, its records (a range of missed
slots included), and whether the published schedule fires then at all."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click


def slot_of(text: str) -> str:
    """A slot id from what an operator types: the id itself (``20261130T020000Z``) or an ISO
    8601 time with a zone (``2026-11-30T02:00:00Z``, ``2026-11-30T03:00+01:00``)."""
    from leaderjob.history.records import parse_slot_id
    from leaderjob.schedule import slot_id

    text = text.strip()
    if text.startswith("trigger-") or parse_slot_id(text) is not None:
        return text
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise click.UsageError(
            f"--slot {text!r}: give a slot id (20261130T020000Z, the SLOT column of `leaderjob "
            "history`) or a time with a zone (2026-11-30T02:00:00Z)"
        )
    return slot_id(when)


def in_record(slot: str, record: dict[str, Any]) -> bool:
    """Whether ``record`` is about ``slot``: its own, or a range of not-run slots that holds it
    (ids sort as times)."""
    if record.get("slot") == slot:
        return True
    first = record.get("first_slot")
    return bool(first) and str(first) <= slot <= str(record.get("slot") or "")


def fires_then(schedule: dict[str, Any] | None, slot: str) -> bool | None:
    """Whether the published schedule has a fire time at ``slot`` (None: not known)."""
    from leaderjob.history.records import parse_slot_id
    from leaderjob.schedule import ScheduleError, parse_schedule

    when = parse_slot_id(slot)
    if schedule is None or when is None:
        return None
    try:
        sched = parse_schedule(str(schedule["expr"]), str(schedule.get("timezone") or "UTC"))
        return sched.next_after(when - timedelta(seconds=1)) == when
    except (ScheduleError, KeyError, ValueError, OverflowError):
        return None


def explain(job: str | None, data: Any, slot: str, timeout: float) -> dict[str, Any]:
    """What etcd knows about ``slot`` of one election."""
    from leaderjob.history.runs import READ_MAX

    schedule = data.schedule_info(timeout=timeout)
    claim = data.claims(timeout=timeout, triggers=True).get(slot)
    records = [r for r in data.history(READ_MAX, timeout=timeout) if in_record(slot, r)]
    doc = {"slot": slot, "claim": claim, "records": records, "schedule": schedule}
    doc["fires_then"] = fires_then(schedule, slot)
    return doc if job is None else {"job": job, **doc}


def verdict(doc: dict[str, Any]) -> str:
    """One line: what the claim and the records say, or the likely reasons when neither
    exists."""
    records, claim = doc["records"], doc["claim"]
    if records:
        outcomes = ", ".join(
            str(r.get("outcome")) + (f" (by {r['identity']})" if r.get("identity") else "")
            for r in records
        )
        return f"recorded: {outcomes}"
    if claim:
        return (
            f"claimed by {claim.get('identity')} (token {claim.get('token')}, "
            f"{claim.get('status', 'claimed')}) and no record yet: still running, or its "
            "leader died before it could write one"
        )
    if doc["fires_then"] is False:
        return "the schedule does not fire then (check its time zone)"
    return (
        "no claim and no record: nobody led the job then, or the record was pruned "
        "(--history-limit); `leaderjob audit --since …` checks every fire time"
    )


def show(docs: list[dict[str, Any]]) -> None:
    from leaderjob.cli.run_history import format_history

    for doc in docs:
        where = f" of job {doc['job']}" if doc.get("job") else ""
        sched = doc["schedule"]
        fires = {True: "fires then", False: "does NOT fire then", None: "?"}[doc["fires_then"]]
        click.echo(f"slot {doc['slot']}{where}: {verdict(doc)}")
        if sched:
            click.echo(f"  schedule {sched.get('expr')} ({sched.get('timezone')}): {fires}")
        if doc["claim"]:
            c = doc["claim"]
            click.echo(
                f"  claim: {c.get('status', 'claimed')} by {c.get('identity')} token "
                f"{c.get('token')} at {c.get('claimed_at')}"
            )
        if doc["records"]:
            click.echo("  " + format_history(doc["records"]).replace("\n", "\n  "))


def known(doc: dict[str, Any]) -> bool:
    return bool(doc["records"] or doc["claim"])
