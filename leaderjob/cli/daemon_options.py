"""The options of the daemon commands, `run` and `lock`: election, timing, schedule, health,
output. Parsed into typed settings by :mod:`leaderjob.cli.daemon`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from leaderjob.cli.options import (
    DURATION,
    F,
    _env,
    _not_from_parent_job,
)
from leaderjob.config import (
    DEFAULT_TTL,
    MIN_TTL,
)
from leaderjob.units import parse_size


class Size(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.5
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            size = value if isinstance(value, int) else parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size <= 0:
            self.fail(f"{value!r} must be a positive size, e.g. 2GiB", param, ctx)
        return size


SIZE = Size()


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
            default=f"{DEFAULT_TTL}s",
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
            "--ui",
            "ui",
            is_flag=True,
            envvar=_env("ui"),
            help="Also serve the read-only run explorer (`leaderjob ui`: pages and /api) on "
            "--metrics-addr. Off by default: it shows the jobs' output tails to anyone who can "
            "reach that port (docs/security.md).",
        ),
        click.option(
            "--etcd-quota",
            envvar=_env("etcd_quota"),
            type=SIZE,
            default="2GiB",
            show_default=True,
            help="etcd's --quota-backend-bytes, published as leaderjob_etcd_db_quota_bytes next "
            "to the database size read from etcd every 5 minutes (only while --metrics-addr "
            "serves), so that an alert fires before etcd raises NOSPACE.",
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
        click.option(
            "--on-failure",
            envvar=_env("on_failure"),
            help="Shell command run when a run fails, times out or is killed (not when it is "
            "stopped on purpose), on the replica that ran it, with the run's context in "
            "LEADERJOB_* variables and its output tail on stdin. Never delays the lease; one at "
            "a time per job (a failure meanwhile is dropped and counted).",
        ),
        click.option(
            "--on-failure-timeout",
            envvar=_env("on_failure_timeout"),
            type=DURATION,
            default="30s",
            show_default=True,
            help="Kill the --on-failure command's process group after this long.",
        ),
        click.option(
            "--ping-url",
            envvar=_env("ping_url"),
            help="Dead-man's switch (healthchecks.io convention): GET URL/start when a run "
            "starts, URL on success, URL/fail on failure; retried within the slot's interval. "
            "A secret: prefer LEADERJOB_PING_URL; logs show only its host.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def schedule_options(f: F) -> F:
    """Options of `run` only: when to run and what to do around failover and overlap."""
    options = [
        click.option(
            "--jobs",
            envvar=_env("jobs"),
            type=click.Path(dir_okay=False),
            help="A jobs file (TOML or crontab, see `leaderjob jobs check`): run each of its jobs "
            "under --election as a group, one lease for all, each job with its own election, "
            "slots and records. Instead of --schedule and a command.",
        ),
        click.option(
            "--spread",
            envvar=_env("spread"),
            type=click.Choice(["on", "off"]),
            default="on",
            show_default=True,
            help="With --jobs: hand jobs over between runs so that no replica leads more than "
            "its share (jobs / live replicas, rounded up); off: never hand a job over.",
        ),
        click.option(
            "--spread-pace",
            envvar=_env("spread_pace"),
            type=DURATION,
            default="5s",
            show_default=True,
            help="With --jobs: at most one job handed over per this long per replica, and "
            "membership changes waited out this long before any move.",
        ),
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
            type=click.Choice(["forbid", "replace", "allow"], case_sensitive=False),
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
