"""The daemon commands' options made into the daemon's typed settings: the timing budget
(blaming only the flags the user set), the jobs of ``--jobs FILE`` or the one job of
``run -- CMD`` / ``lock -- CMD`` (both by the jobs file's rules), each job's runner settings, and
for a group how to read the file again and the spreading rules. No I/O but reading the jobs file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from typing import Any

import click

from leaderjob.config import Timing, default_identity, join_errors
from leaderjob.units import format_duration


def group_parts(params: dict[str, Any], settings: Any, path: str, health: Any) -> tuple[Any, Any]:
    """For --jobs: how to read the file again (reload), and the spreading rules."""
    from leaderjob.daemon.spread import Spreader
    from leaderjob.jobsfile import load_jobs

    zone = params.get("timezone") or "UTC"

    def reload() -> list[Any]:  # raises JobsFileError (a ValueError with problems)
        # The validator of the start and of `jobs check`: a reload that would fail is refused.
        jobs = load_jobs(path, default_timezone=zone, timing=settings.timing).jobs
        return [job_settings(settings, s, health) for s in jobs]

    pace = params.get("spread_pace") or 5.0
    return reload, Spreader(enabled=params.get("spread") != "off", pace=pace, settle=pace)


def jobs_of(
    params: dict[str, Any], command: tuple[str, ...], timing: Timing | None = None
) -> tuple[Any, list[str]]:
    """The jobs of --jobs FILE (None without it), and every problem with them (judged against
    ``timing``, the daemon's, when it is valid) or the command."""
    path = params.get("jobs")
    if not path:
        if command:
            return None, []
        return None, ["no command given: write it after --, e.g. -- ./cleanup.sh"]
    from leaderjob.jobsfile import JobsFileError, load_jobs  # and tomllib: only with --jobs

    errors = []
    if command:
        errors.append("--jobs and a command after --: give one (the file names each command)")
    if params.get("schedule"):
        errors.append("--jobs and --schedule: each job's schedule is in the jobs file")
    try:
        zone = params.get("timezone") or "UTC"
        specs = load_jobs(path, default_timezone=zone, timing=timing).jobs
    except JobsFileError as exc:
        return None, errors + exc.problems
    return specs, errors


def one_job(params: dict[str, Any], daemon: Any, schedule: Any, health: Any) -> Any:
    """``run [--schedule …] -- CMD`` and ``lock -- CMD``: a jobs file of one job, named like the
    election, made into settings by the same function as each job of a file (its keys stay the
    election's own). The options were judged above, with the flags' own messages; the job's
    rules are the same ones, so they hold."""
    from leaderjob.jobsfile import JobsFileError, single_job

    try:
        (spec,) = single_job(
            daemon.election,
            daemon.command,
            schedule,
            catch_up=params.get("catch_up") or "once",
            starting_deadline=params.get("starting_deadline"),
            jitter=params.get("jitter") or 0.0,
            concurrency=params.get("concurrency") or "forbid",
            timeout=params.get("timeout"),
            retries=params.get("retries") or 0,
            history_limit=params.get("history_limit") or 50,
        ).jobs
    except JobsFileError as exc:  # not expected: the same rules passed as flags
        raise click.UsageError(join_errors(exc.problems)) from None
    return job_settings(daemon, spec, health, group=False)


def job_settings(daemon: Any, spec: Any, health: Any, *, group: bool = True) -> Any:
    """One job as its runner's settings. Of a jobs file (``group``): its queue and records live
    under ``<prefix>/<group>/jobs/<job>/``. The one job of ``run -- CMD`` or ``lock -- CMD``: under
    the election's own ``<prefix>/<election>/``, in the daemon's mode (``lock`` runs it once).
    Identity, timing and connection are the daemon's."""
    if group:
        prefix = f"{daemon.prefix.rstrip('/')}/{daemon.election}/jobs"
        mode = "schedule" if spec.schedule is not None else "service"
    else:
        prefix, mode = daemon.prefix, daemon.mode
    return replace(
        daemon,
        election=spec.name,
        prefix=prefix,
        command=spec.command,
        mode=mode,
        schedule=spec.schedule,
        catch_up=spec.catch_up,
        starting_deadline=spec.starting_deadline,
        jitter=spec.jitter,
        concurrency=spec.concurrency,
        timeout=spec.timeout,
        retries=spec.retries,
        history_limit=spec.history_limit,
        job_env=getattr(spec, "env", ()),
        paused=getattr(spec, "suspend", False),
        workdir=getattr(spec, "workdir", None),
        # The job's own gate checks as often, and fails after as many tries, as the daemon's.
        health=replace(health, command=spec.health_cmd, url=spec.health_url)
        if spec.health_cmd or spec.health_url
        else None,
        # A job's own notifications replace the daemon's flags key by key.
        notify=replace(
            daemon.notify,
            **{
                key: getattr(spec, key)
                for key in ("on_failure", "on_failure_timeout", "ping_url")
                if getattr(spec, key) is not None
            },
        ),
        timing=daemon.timing
        if spec.grace is None
        else dataclasses.replace(daemon.timing, grace=spec.grace),
    )


_TIMING_FLAGS = ("renew_interval", "renew_deadline", "grace", "margin")


def build_timing(params: dict[str, Any]) -> tuple[Timing, list[str]]:
    """The timing settings and what is wrong with them, blaming only flags the user set."""
    ttl = params["ttl"]
    given = {name: params.get(name) for name in _TIMING_FLAGS}
    timing = Timing.from_ttl(ttl, **given)
    if not (math.isfinite(ttl) and ttl > 0):
        # Every default is a fraction of the TTL: one error about the TTL, none about the
        # derived values the user never set.
        errors = [f"--ttl must be a positive duration, e.g. 15s (got {ttl:g})"]
        for name, value in given.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                errors.append(f"--{name.replace('_', '-')} must be a positive duration")
        return timing, errors
    errors = timing.validate()
    grace = given["grace"]
    if errors and grace is not None and given["renew_deadline"] is None:
        best = _largest_grace(ttl, given)
        if best is not None and best < grace:
            errors = [
                f"--grace {format_duration(grace)} does not fit --ttl {format_duration(ttl)}: "
                "the job must be dead before another replica can take the lease, with room "
                "left to retry a failed keepalive; use --grace "
                f"{format_duration(best)} or less, or raise --ttl"
            ]
    return timing, errors


def _largest_grace(ttl: float, given: dict[str, Any]) -> float | None:
    """The largest round ``--grace`` that the budget accepts with the other flags as given."""

    def fits(grace: float) -> bool:
        return not Timing.from_ttl(ttl, **{**given, "grace": grace}).validate()

    low, high = 0.0, ttl  # a smaller grace only leaves more room (the budget is monotone)
    if not fits(ttl / 1000):
        return None
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    step = 0.001 if low < 1 else 0.01 if low < 10 else 0.1
    best = math.floor(low / step) * step
    while best > 0 and not fits(best):
        best -= step
    return round(best, 3) if best > 0 else None


def daemon_settings(
    params: dict[str, Any],
    command: tuple[str, ...],
    mode: str,
    timing: Timing,
    rpc_timeout: float,
) -> Any:
    """The daemon's own settings; a job's options come from its JobSpec (:func:`job_settings`)."""
    from leaderjob.daemon import Settings

    return Settings(
        election=params["election"],
        prefix=params["prefix"],
        identity=params.get("identity") or default_identity(),
        timing=timing,
        command=command,
        mode=mode,  # type: ignore[arg-type]
        rpc_timeout=rpc_timeout,
    )
