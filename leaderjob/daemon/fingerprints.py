"""This replica's job fingerprint, published under its lease and compared with the other
replicas' (:mod:`leaderjob.ops.fingerprint`): the one job's command, mode and schedule, or a group's
every job by name, so that replicas running different jobs files under one group are flagged.
Built when the daemon starts, and again when a reload changes the jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from leaderjob.daemon.model import Settings
from leaderjob.election.store import Store
from leaderjob.ops.fingerprint import ConfigWatch, job_fields

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


def config_watch(
    store: Store,
    s: Settings,
    jobs: Sequence[Settings] | None,
    *,
    log: Any,
    metrics: Metrics | None,
) -> ConfigWatch:
    """The daemon's fingerprint (``s``: its settings; ``jobs``: a group's jobs, None for the
    single-job form)."""
    if jobs is not None:
        command = tuple(
            f"{j.election}={' '.join(j.command)}@{j.schedule.expr if j.schedule else ''}"
            for j in sorted(jobs, key=lambda j: j.election)
        )
    return ConfigWatch(
        store,
        s.prefix,
        s.election,
        s.identity,
        command=s.command if jobs is None else command,
        mode=s.mode,
        schedule=s.schedule.expr if s.schedule else None,
        timezone=s.schedule.timezone if s.schedule else None,
        log=log,
        metrics=metrics,
        # The leader's comparison reads nothing of its own (the fingerprints come with each
        # confirmation), so it compares at each one: a conflict shows within a renewal.
        interval=s.timing.renew_interval,
        jobs=None if jobs is None else {j.election: _fields(j) for j in jobs},
    )


def _fields(job: Settings) -> dict[str, Any]:
    """A job's fields in its group's fingerprint (a conflict names the one that differs)."""
    sched = job.schedule
    if sched is None:
        return job_fields(job.command, job.mode, None, None)
    return job_fields(job.command, job.mode, sched.expr, sched.timezone)
