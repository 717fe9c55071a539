"""The daemon commands: `run` (a command on a schedule, or kept running, while leading) and
`lock` (once under leadership). Options are checked here, all problems at once, then turned into
the daemon's typed settings; this is where the daemon's adapters are built."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import replace
from typing import Any

import click

from leaderjob.cli import options
from leaderjob.cli.daemon_options import daemon_options, schedule_options
from leaderjob.cli.daemon_settings import (
    build_timing,
    daemon_settings,
    group_parts,
    job_settings,
    jobs_of,
    one_job,
)
from leaderjob.cli.options import (
    LeaderjobCommand,
    build_connection,
    connection_options,
)
from leaderjob.config import (
    Connection,
    join_errors,
    validate_election_name,
    validate_slot_timing,
)


def _start_daemon(params: dict[str, Any], command: tuple[str, ...], mode: str) -> int:
    from leaderjob import log
    from leaderjob.ops.health import HealthSettings
    from leaderjob.ops.notify import NotifySettings
    from leaderjob.schedule import ScheduleError, parse_schedule

    errors = validate_election_name(params["election"])
    jobs_path = params.get("jobs")
    timing, timing_errors = build_timing(params)
    specs, jobs_errors = jobs_of(params, command, None if timing_errors else timing)
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
    settings = daemon_settings(params, command, mode, timing, conn.rpc_timeout)
    from leaderjob.cli.fenced import job_endpoints

    settings = replace(settings, endpoints=job_endpoints(conn), notify=notify)
    jobs = None if specs is None else [job_settings(settings, spec, health) for spec in specs]
    if not jobs_path:
        settings = one_job(params, settings, schedule, health)
        return _serve(
            settings,
            conn,
            health,
            addr,
            params["metrics_addr"],
            etcd_quota=params["etcd_quota"],
            ui=bool(params.get("ui")),
        )
    reload, spreader = group_parts(params, settings, str(jobs_path), health)
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
            observed=addr is not None,  # the HTTP endpoints are the snapshot's only readers
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
