"""The status of an election as read from etcd: what `leaderjob status --json` prints and the run
explorer shows (the queue, the leader's lease, the schedule, the run in progress, the last
success and the last run), and which jobs a group has. Neutral ground for the command line and
the explorer: no click, no printing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leaderjob.config import election_prefix

#: How many of the newest history records `status` reads (the last run, the last success, and
#: whether the leader's newest claim has ended).
STATUS_RECORDS = 100


def jobs_prefix(prefix: str, group: str) -> str:
    """Where the jobs of a group (`run --jobs`) keep their elections and records."""
    return f"{prefix.rstrip('/')}/{group}/jobs"


def group_jobs(store: Any, prefix: str, group: str, timeout: float) -> list[str]:
    """The jobs that have keys under the group ``group`` (empty: not a group)."""
    under = jobs_prefix(prefix, group) + "/"
    names = {k.key[len(under) :].split("/", 1)[0] for k in store.get_prefix(under, timeout=timeout)}
    return sorted(n for n in names if n)


def parse_time(text: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def read_status(
    store: Any, data: Any, election: str, prefix: str, timeout: float
) -> dict[str, Any]:
    """What `status` shows: the queue, the leader's lease, the schedule, the run in progress,
    the last success and the last run."""
    from leaderjob.history.records import in_progress, iso
    from leaderjob.schedule import ScheduleError, parse_schedule, slot_jitter

    keys = store.candidates(election_prefix(prefix, election), timeout=timeout)
    candidates = [
        {
            "identity": k.value.decode(errors="replace"),
            "key": k.key,
            "token": k.create_revision,
            "lease_id": f"{k.lease_id:x}",
            # No candidacy is made without a lease: this key was put by hand, no daemon leads
            # on it, and the next candidate to read it removes it (docs/safety.md).
            "stray": k.lease_id == 0,
        }
        for k in keys
    ]
    # A stray key at the front of the queue is not a leader: nobody leads on it, and no run
    # is in progress under its token. It is shown on its own (``stray_key``).
    stray_key = candidates[0]["key"] if candidates and candidates[0]["stray"] else None
    leader = candidates[0] if candidates and stray_key is None else None
    schedule = data.schedule_info(timeout=timeout)
    if leader is not None:
        leader["ttl_remaining"] = store.lease_remaining(keys[0].lease_id, timeout=timeout)
        # The leader publishes its schedule, with when its tenure began, at the tenure's start.
        same = schedule is not None and schedule.get("token") == leader["token"]
        leader["since"] = schedule.get("since") if same and schedule else None
        if leader["since"] is None and schedule is None:
            # A job without a schedule (a service) publishes its tenure's start on its own.
            tenure = data.tenure_info(timeout=timeout)
            if tenure is not None and tenure.get("token") == leader["token"]:
                leader["since"] = tenure.get("since")
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
    from leaderjob.ops import fingerprint

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
            started = parse_time(claim.get("claimed_at"))
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
    suspension = data.suspension(timeout=timeout)
    if suspension is None and schedule is not None and schedule.get("paused"):
        suspension = {"by": "its jobs file", "reason": "suspend = true"}
    success = next((r for r in history if r.get("outcome") == "succeeded"), None)
    last_success = None
    if success is not None:
        finished = parse_time(success.get("finished_at"))
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
        "config_differences": fingerprint.differences(published),
        "election": election,
        "leader": leader,
        "stray_key": stray_key,
        "candidates": candidates,
        "suspended": suspension is not None,
        "suspension": suspension,
        "schedule": schedule,
        "next_fire": next_fire,
        "next_start": next_start,
        "last_claimed": iso(last),
        "claims_ahead_seconds": round(ahead, 3),
        "last_run": history[0] if history else None,
        "current_run": current,
        "last_success": last_success,
    }
