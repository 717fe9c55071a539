"""What the explorer reads from etcd, through the code the CLI reads it with.

The jobs of an election (a group's, or the election itself), each one's `status`
(:func:`leaderjob.ops.status_doc.read_status`, as `status --json`), its history over a window
(:meth:`~leaderjob.history.runs.RunHistory.window`), the slot ledger's verdicts for the
window's fire times (:mod:`leaderjob.history.audit`, as `audit` gives them), one run in full
(:meth:`~leaderjob.history.runs.RunHistory.named`, as `history --run`) and the next fire times
(:mod:`leaderjob.explorer.upcoming`, as `next`). Nothing here knows the etcd layout: the keys are
:mod:`leaderjob.history.records`'.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from leaderjob.explorer import model
from leaderjob.explorer.upcoming import Fire, upcoming
from leaderjob.history.records import ElectionData
from leaderjob.ops.status_doc import group_jobs, jobs_prefix, read_status

#: Fire times at most this recent are not judged missing yet: their claim and record may be a
#: cycle away (`audit --settle`).
SETTLE = 10.0
#: The slot ledger check (`audit`) looks at no more than this many of a window's newest fire
#: times: finding fire times costs far more than drawing runs (a week of a per-minute job is
#: 10 080 of them), and a hole is looked for where it matters most, recently.
MISSING_MAX = 1000
#: A window's runs are read up to this far past its end: a run is recorded when it ends.
RUN_SLACK = 3600.0


@dataclass(frozen=True)
class Job:
    name: str
    data: ElectionData
    election: str  # its own election's name (the job's, in a group)
    prefix: str  # where that election lives


class Source:
    """One election (or group of jobs) in etcd, read on demand; nothing is cached."""

    def __init__(
        self,
        store: Any,
        prefix: str,
        election: str,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.election = election
        self.timeout = timeout
        self.clock = clock

    def jobs(self) -> list[Job]:
        """The jobs of a group (`run --jobs`), or the election itself as its one job."""
        names = group_jobs(self.store, self.prefix, self.election, self.timeout)
        if not names:
            return [
                Job(
                    self.election,
                    ElectionData(self.store, self.prefix, self.election),
                    self.election,
                    self.prefix,
                )
            ]
        under = jobs_prefix(self.prefix, self.election)
        return [Job(n, ElectionData(self.store, under, n), n, under) for n in names]

    def job(self, name: str) -> Job | None:
        return next((j for j in self.jobs() if j.name == name), None)

    def status(self, job: Job) -> dict[str, Any]:
        """`leaderjob status --json` of one job, with who suspended it and the next fire
        times."""
        doc = read_status(self.store, job.data, job.election, job.prefix, self.timeout)
        doc["job"] = job.name
        doc["suspension"] = self._suspension(job) if doc["suspended"] else None
        _schedule, fires = self._upcoming(doc.get("schedule"), 3)
        doc["upcoming"] = [fire_json(f) for f in fires]
        doc["leader_since"] = _leader_since(job, doc, self.timeout)
        return doc

    def _suspension(self, job: Job) -> dict[str, Any]:
        info = self.store.get(job.data.suspended_key, timeout=self.timeout)
        try:
            body = json.loads(info.value) if info is not None else {}
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def upcoming(self, job: Job, count: int) -> tuple[dict[str, Any] | None, list[Fire]]:
        return self._upcoming(job.data.schedule_info(timeout=self.timeout), count)

    def _upcoming(
        self, info: dict[str, Any] | None, count: int
    ) -> tuple[dict[str, Any] | None, list[Fire]]:
        from leaderjob.schedule import ScheduleError, parse_schedule

        if not info or not info.get("expr"):
            return info, []
        try:
            schedule = parse_schedule(str(info["expr"]), str(info.get("timezone") or "UTC"))
        except ScheduleError:
            return info, []
        return info, upcoming(schedule, datetime.fromtimestamp(self.clock(), UTC), count)

    def timeline(
        self, job: Job, since: float, until: float, status: dict[str, Any] | None = None
    ) -> model.Timeline:
        """The job's timeline from ``since`` to ``until`` (seconds since the epoch)."""
        now = self.clock()
        status = status if status is not None else self.status(job)
        read_until = min(until + RUN_SLACK, now + RUN_SLACK)
        records = job.data.window(
            datetime.fromtimestamp(since, UTC),
            datetime.fromtimestamp(read_until, UTC),
            timeout=self.timeout,
        )
        checked, missing = self._missing(job, status, records, since, min(until, now - SETTLE))
        return model.build(
            job.name,
            since,
            until,
            records,
            missing=missing,
            current=status.get("current_run"),
            now=now,
            checked_since=checked,
        )

    def _missing(
        self,
        job: Job,
        status: dict[str, Any],
        records: list[tuple[str, dict[str, Any]]],
        since: float,
        until: float,
    ) -> tuple[float | None, list[tuple[float, str, str]]]:
        """Fire times of the window with no record and no claim, or a claim to run whose run
        left no record (`audit`'s "missing"), from when they were looked for (None: not at
        all, no schedule)."""
        from leaderjob.history.audit import WindowTooLarge, audit, fire_times
        from leaderjob.schedule import ScheduleError, parse_schedule, slot_id

        info = status.get("schedule") or {}
        if not info.get("expr") or until <= since:
            return None, []
        try:
            schedule = parse_schedule(str(info["expr"]), str(info.get("timezone") or "UTC"))
            since = max(since, until - MISSING_MAX * schedule.interval().total_seconds())
            jitter = timedelta(seconds=float(info.get("jitter") or 0.0))
            fires = fire_times(
                schedule,
                datetime.fromtimestamp(since, UTC),
                datetime.fromtimestamp(until, UTC) - jitter,
            )
        except (ScheduleError, WindowTooLarge, ValueError):
            return None, []
        leader = status.get("leader") or {}
        # Only the records that can name these fire times (slot ids sort as time; a range
        # record's slot is its last).
        first = slot_id(datetime.fromtimestamp(since, UTC))
        verdicts = audit(
            fires,
            [r for _, r in records if str(r.get("slot") or "") >= first],
            job.data.claims(timeout=self.timeout),
            leader_token=leader.get("token"),
        )
        return since, [
            (v.fire_time.timestamp(), v.slot, v.detail) for v in verdicts if v.status == "missing"
        ]

    def run(self, job: Job, name: str) -> dict[str, Any] | None:
        """One record in full (output tails too), with the other attempts of its slot still in
        the history, as `history --run --json` gives it."""
        record = job.data.named(name, timeout=self.timeout)
        if record is None:
            return None
        same_slot = [
            r
            for r in job.data.history(100, timeout=self.timeout)
            if r.get("slot") == record.get("slot")
        ]
        attempts = [
            {k: r.get(k) for k in ("run_id", "attempt", "outcome", "started_at")}
            for r in same_slot
            if r.get("run_id") and r.get("run_id") != record.get("run_id")
        ]
        return {**record, "name": name, "other_attempts": attempts}


def _leader_since(job: Job, doc: dict[str, Any], timeout: float) -> str | None:
    """When the current leader's tenure was first seen: its oldest slot claim still kept (etcd
    keeps no time of the election itself)."""
    leader = doc.get("leader")
    if not leader:
        return None
    times = [
        str(c.get("claimed_at"))
        for c in job.data.claims(timeout=timeout, triggers=True).values()
        if c.get("token") == leader.get("token") and c.get("claimed_at")
    ]
    return min(times, default=None)


def fire_json(f: Fire) -> dict[str, Any]:
    return {
        "at": f.at.isoformat().replace("+00:00", "Z"),
        "local": f.local.isoformat(),
        "zone": f.zone,
        "note": f.note or None,
        "line": f.line,
    }
