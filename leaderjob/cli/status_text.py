"""What `status` prints: one election in lines, a group as a table with a line per suspended job
and per config conflict, etcd's database against its quota. The reading is in
:mod:`leaderjob.cli.read`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from leaderjob.cli.run_history import to_the_second
from leaderjob.ops.status_doc import STATUS_RECORDS, parse_time

#: Where `status` calls etcd's database near its quota (the shipped alert's threshold).
NEAR_QUOTA = 0.8


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


def _since_text(since: str | None) -> str:
    """How long a leader has led, from the ``since`` it published (``-``: not known)."""
    started = parse_time(since)
    if started is None:
        return "-"
    return _ago((datetime.now(UTC) - started).total_seconds())


def _suspension_text(body: dict[str, Any] | None) -> str:
    """`` by ops@host at 2026-…Z: reason`` (what the switch says; empty when it says nothing)."""
    if not body:
        return ""
    text = f" by {body['by']}" if body.get("by") else ""
    text += f" at {to_the_second(str(body['at']))}" if body.get("at") else ""
    return text + (f": {body['reason']}" if body.get("reason") else "")


def _success_text(success: dict[str, Any] | None) -> str:
    return "-" if success is None else f"{_ago(success['seconds_ago'])} ago"


def _mib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def _print_db(db: dict[str, Any] | None) -> None:
    if db is None:
        return
    near = "NEAR ITS QUOTA: " if db["used"] >= NEAR_QUOTA else ""
    whose = (
        "etcd's own quota"
        if db["quota_from"] == "etcd"
        else "etcd's default quota; this etcd does not report its own"
    )
    click.echo(
        f"  etcd database: {near}{_mib(db['size_bytes'])} of {_mib(db['quota_bytes'])} "
        f"({db['size_bytes'] / db['quota_bytes']:.1%}, {whose})"
    )


def _print_conflicts(differences: list[dict[str, Any]]) -> None:
    from leaderjob.ops.fingerprint import describe_difference

    for diff in differences:
        click.echo(f"  CONFIG CONFLICT: {describe_difference(diff)}")
    if differences:
        click.echo(
            "  (candidates of one election run different jobs: two deployments share this etcd, "
            "--prefix and --election, or a rollout is half-way)"
        )


def print_group(doc: dict[str, Any]) -> None:
    header = (
        "JOB", "LEADER", "TOKEN", "LEADS FOR", "NEXT FIRE", "RUNNING", "LAST SUCCESS",
        "LAST OUTCOME",
    )  # fmt: skip
    rows = [
        (
            r["job"],
            r["leader"] or "-",
            str(r["token"] or "-"),
            _since_text(r["since"]),
            to_the_second(r["next_fire"] or "-"),
            _current_text(r["current_run"]),
            _success_text(r["last_success"]),
            (r["last_outcome"] or "-") + (" (suspended)" if r["suspended"] else ""),
        )
        for r in doc["jobs"]
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for r in doc["jobs"]:
        if r["suspended"]:
            click.echo(f"  SUSPENDED job {r['job']}{_suspension_text(r['suspension'])}")
        if r.get("stray_key"):
            click.echo(
                f"  NO LEADER for job {r['job']}: {r['stray_key']} holds the front of its queue "
                "without a lease (put by hand); the next candidate to read it removes it"
            )
    _print_conflicts(doc["config_differences"])
    _print_db(doc["etcd_db"])


def print_status(election: str, doc: dict[str, Any]) -> None:
    leader = doc["leader"]
    if doc.get("stray_key"):
        click.echo(
            f"election {election}: no leader: {doc['stray_key']} holds the front of the queue "
            "without a lease. It was put by hand and no daemon leads on it; the next candidate "
            "to read it removes it (or: etcdctl del KEY)"
        )
    elif leader is None:
        click.echo(f"election {election}: no leader")
    else:
        since = (
            f" since {to_the_second(leader['since'])} ({_since_text(leader['since'])})"
            if leader.get("since")
            else ""
        )
        click.echo(
            f"election {election}: leader {leader['identity']} token {leader['token']}{since} "
            f"lease {leader['lease_id']} ttl {leader['ttl_remaining']}s"
        )
    for pos, c in enumerate(doc["candidates"][1:], start=1):
        lease = "no lease: put by hand" if c.get("stray") else f"lease {c['lease_id']}"
        click.echo(f"  waiting #{pos}: {c['identity']} ({lease})")
    if doc["suspended"]:
        click.echo(
            f"  SUSPENDED{_suspension_text(doc['suspension'])}: no runs start until "
            "`leaderjob resume`"
        )
    if doc["config_conflict"]:
        _print_conflicts(doc["config_differences"])
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
    _print_db(doc["etcd_db"])
    last = doc["last_run"]
    if last:
        click.echo(
            f"  last run: {last.get('outcome')} slot {last.get('slot')} token {last.get('token')}"
            + (f" by {last['identity']}" if last.get("identity") else "")
            + f" at {last.get('started_at') or last.get('scheduled_time')}"
        )
