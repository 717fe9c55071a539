"""The daemon commands: `run` (a command on a schedule, or kept running, while leading) and
`lock` (once under leadership). Options are checked here, all problems at once, then turned into
the daemon's typed settings; this is where the daemon's adapters are built."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
from dataclasses import replace
from typing import Any

import click

from leaderjob.cli import options
from leaderjob.cli.daemon_options import daemon_options, schedule_options
from leaderjob.cli.options import (
    LeaderjobCommand,
    build_connection,
    connection_options,
)
from leaderjob.config import (
    Connection,
    Timing,
    default_identity,
    join_errors,
    validate_election_name,
    validate_slot_timing,
)
from leaderjob.units import format_duration


def _start_daemon(params: dict[str, Any], command: tuple[str, ...], mode: str) -> int:
    from leaderjob import log
    from leaderjob.ops.health import HealthSettings
    from leaderjob.ops.notify import NotifySettings
    from leaderjob.schedule import ScheduleError, parse_schedule

    errors = validate_election_name(params["election"])
    jobs_path = params.get("jobs")
    timing, timing_errors = build_timing(params)
    specs, jobs_errors = _load_jobs(params, command, None if timing_errors else timing)
    errors += jobs_errors
    errors += timing_errors
    health = HealthSettings(
        command=params.get("health_cmd"),
        url=params.get("health_url"),
        interval=params["health_interval"],
        failures=params["health_failures"],
    )
    errors += health.validate()
    notify = NotifySettings(
        on_failure=params.get("on_failure") or None,
        on_failure_timeout=params["on_failure_timeout"],
        ping_url=params.get("ping_url") or None,
    )
    errors += notify.validate()
    schedule = None
    expr = params.get("schedule")
    if expr:
        try:
            schedule = parse_schedule(expr, params.get("timezone") or "UTC")
        except ScheduleError as exc:
            errors.append(f"--schedule {expr!r}: {exc}")
        else:
            errors += validate_slot_timing(
                schedule.interval().total_seconds(),
                params.get("jitter") or 0.0,
                params.get("starting_deadline"),
            )
    elif not jobs_path:
        if mode == "schedule":
            mode = "service"
        if params.get("timezone") not in (None, "UTC"):
            try:  # a zone is only used with a schedule, but a wrong one is still a mistake
                parse_schedule("@daily", params["timezone"])
            except ScheduleError as exc:
                errors.append(f"--timezone: {exc}")
    if params.get("timeout") is not None and params["timeout"] <= 0:
        errors.append("--timeout must be positive")
    addr, problems = _listen_addr(params)
    errors += problems
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)
    log.configure(params["log_format"], params["log_level"])
    settings = _settings(params, command, mode, timing, conn.rpc_timeout)
    from leaderjob.cli.fenced import job_endpoints

    settings = replace(settings, endpoints=job_endpoints(conn), notify=notify)
    jobs = None if specs is None else [_job_settings(settings, spec, health) for spec in specs]
    if not jobs_path:
        settings = _one_job(params, settings, schedule, health)
        return _serve(
            settings,
            conn,
            health,
            addr,
            params["metrics_addr"],
            etcd_quota=params["etcd_quota"],
            ui=bool(params.get("ui")),
        )
    reload, spreader = _group_parts(params, settings, str(jobs_path), health)
    return _serve(
        settings,
        conn,
        health,
        addr,
        params["metrics_addr"],
        jobs,
        reload,
        str(jobs_path),
        spreader,
        etcd_quota=params["etcd_quota"],
        ui=bool(params.get("ui")),
    )


def _group_parts(params: dict[str, Any], settings: Any, path: str, health: Any) -> tuple[Any, Any]:
    """For --jobs: how to read the file again (reload), and the spreading rules."""
    from leaderjob.daemon.spread import Spreader
    from leaderjob.jobsfile import load_jobs

    zone = params.get("timezone") or "UTC"

    def reload() -> list[Any]:  # raises JobsFileError (a ValueError with problems)
        # The validator of the start and of `jobs check`: a reload that would fail is refused.
        jobs = load_jobs(path, default_timezone=zone, timing=settings.timing).jobs
        return [_job_settings(settings, s, health) for s in jobs]

    pace = params.get("spread_pace") or 5.0
    return reload, Spreader(enabled=params.get("spread") != "off", pace=pace, settle=pace)


def _load_jobs(
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


def _one_job(params: dict[str, Any], daemon: Any, schedule: Any, health: Any) -> Any:
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
    return _job_settings(daemon, spec, health, group=False)


def _job_settings(daemon: Any, spec: Any, health: Any, *, group: bool = True) -> Any:
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


def _settings(
    params: dict[str, Any],
    command: tuple[str, ...],
    mode: str,
    timing: Timing,
    rpc_timeout: float,
) -> Any:
    """The daemon's own settings; a job's options come from its JobSpec (:func:`_job_settings`)."""
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


def _serve(
    settings: Any,
    conn: Connection,
    health: Any,
    addr: tuple[str, int] | None,
    addr_text: str,
    jobs: list[Any] | None = None,
    reload: Any = None,
    watch: str | None = None,
    spreader: Any = None,
    *,
    etcd_quota: int | None = None,
    ui: bool = False,
) -> int:
    """Build the adapters, serve until stopped, and tear everything down."""
    from leaderjob.daemon import Daemon
    from leaderjob.ops.health import HealthChecker

    # Metrics exist to be scraped: with --metrics-addr off nothing could read them, and
    # prometheus_client is not even imported.
    metrics = registry = None
    if addr is not None:
        from prometheus_client import CollectorRegistry

        from leaderjob.ops.metrics import Metrics

        registry = CollectorRegistry()
        metrics = Metrics(registry, settings.election, process_metrics=True)
    server = None
    store = options.open_store(conn)
    try:
        daemon = Daemon(
            settings,
            store,
            metrics=metrics,
            jobs=jobs,
            reload=reload,
            watch=watch,
            spreader=spreader,
        )
        if health.enabled:
            daemon.health = HealthChecker(health, daemon.wakeup.set)
        if addr is not None:
            from leaderjob.ops.http import Server

            assert registry is not None
            try:
                server = Server(
                    addr, registry, lambda: http_snapshot(daemon), pages=_pages(ui, settings, conn)
                )
            except OSError as exc:
                raise click.UsageError(
                    f"--metrics-addr {addr_text}: cannot listen ({exc.strerror}); "
                    "pick a free port or 'off'"
                ) from None
            server.start()
            # etcd's DB size against its quota: its own thread, every 5 minutes, off the renew
            # path; only when someone can scrape it.
            from leaderjob.ops.dbquota import DEFAULT_QUOTA_BYTES, DbQuotaProbe

            probe = DbQuotaProbe(store, metrics, quota_bytes=etcd_quota or DEFAULT_QUOTA_BYTES)
            probe.start()
        code = daemon.serve()
        if daemon.fatal:
            click.echo(f"leaderjob: {daemon.fatal}", err=True)
    except BaseException:
        _close_quietly(server, store)
        raise
    # The job is reaped and the lease released: nothing left may keep the process alive (a
    # gRPC channel stuck on a dead connection, say). Close with a bound, then exit for sure.
    _close_quietly(server, store)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _listen_addr(params: dict[str, Any]) -> tuple[tuple[str, int] | None, list[str]]:
    """--metrics-addr, and whether --ui has it to serve on: (address, problems)."""
    from leaderjob.ops.http import parse_addr

    try:
        addr = parse_addr(params["metrics_addr"])
    except ValueError as exc:
        return None, [str(exc)]
    if params.get("ui") and addr is None:
        return None, ["--ui serves on --metrics-addr: give it HOST:PORT, not off"]
    return addr, []


def _pages(ui: bool, settings: Any, conn: Connection) -> Any:
    """With ``--ui``: the run explorer's routes, reading etcd on a connection of their own."""
    if not ui:
        return None
    from leaderjob.explorer.data import Source
    from leaderjob.explorer.server import App

    store = options.open_store(conn)
    return App(Source(store, settings.prefix, settings.election, conn.rpc_timeout)).route


def http_snapshot(daemon: Any) -> dict[str, Any]:
    """What the HTTP endpoints read: the daemon's published snapshot plus this replica's job
    fingerprint and the candidates whose fingerprint differs (``/status`` shows a conflict)."""
    config = daemon.config
    return {
        **daemon.snapshot,
        "fingerprint": config.fingerprint,
        "config_conflict": [p.describe() for p in config.checker.conflict],
    }


def _close_quietly(server: Any, store: Any, timeout: float = 3.0) -> None:
    def close() -> None:
        if server is not None:
            server.close()
        store.close()

    closer = threading.Thread(target=close, name="leaderjob-close", daemon=True)
    closer.start()
    closer.join(timeout)


@click.command(cls=LeaderjobCommand, context_settings={"allow_interspersed_args": False})
@daemon_options(metrics_default="0.0.0.0:9102")
@schedule_options
@connection_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="-- COMMAND [ARGS]...")
def run(command: tuple[str, ...], **params: Any) -> None:
    """Campaign for leadership and run COMMAND on the schedule while leading.

    COMMAND is required, after `--`; it runs without a shell (write `sh -c '…'` for one).

    The command runs in its own process group, gets LEADERJOB_FENCING_TOKEN and friends in its
    environment, and is stopped (SIGTERM, then SIGKILL after --grace) before the lease can
    expire. SIGTERM to leaderjob stops the job, releases leadership and exits 0.

    Every option can also be set as LEADERJOB_<OPTION> (e.g. LEADERJOB_TTL=3s). The timing
    budget is checked at start-up: 2 × renew-interval ≤ renew-deadline, and renew-deadline +
    grace + margin < TTL.
    """
    sys.exit(_start_daemon(params, command, "schedule"))


@click.command(cls=LeaderjobCommand, context_settings={"allow_interspersed_args": False})
@daemon_options(metrics_default="off")
@connection_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="-- COMMAND [ARGS]...")
def lock(command: tuple[str, ...], **params: Any) -> None:
    """Wait for leadership, run COMMAND once under it, release, and exit with its exit code.

    COMMAND is required, after `--`. No metrics listener unless --metrics-addr is given.

    Like `etcdctl lock`, but the command is killed before the lease can expire, dies with
    leaderjob, and gets a fencing token. Exits 4 if leadership was lost before it finished.
    """
    sys.exit(_start_daemon(params, command, "once"))
