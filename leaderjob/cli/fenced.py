"""``leaderjob fenced``: fenced writes for shell jobs, and the SQL fence's DDL.

    leaderjob fenced put /app/cursor 42       # inside a job run by leaderjob
    leaderjob fenced delete /app/lock-file
    leaderjob fenced sql | psql "$DSN"

``put`` and ``delete`` read the leader key, the token and the endpoints from the job's environment
(``LEADERJOB_LEADER_KEY``, ``LEADERJOB_FENCING_TOKEN``, ``LEADERJOB_ENDPOINTS``) and write in one
etcd Txn guarded by the leader's key (:mod:`leaderjob.fencing.etcd`). Credentials are never
handed down by the daemon: give ``--user``/``--password-file`` or the TLS options as for any
other command. Exit status: 0 written; 3 stale (the leader key is gone or has another revision:
this run is deposed, nothing was written); 5 outcome unknown (the Txn may have been applied, but
no answer came: a timeout or a connection lost mid-call — re-read the key, or treat it as failed
and let the guard decide the next write); 2 usage error; 1 etcd unreachable (no connection was
ever made, so nothing was written) or refusing us.

Registered on the command group by ``cli.py``, which passes in its shared connection options, so
this module does not import ``cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from leaderjob.config import Connection
from leaderjob.election.store import StoreError, StoreUnavailable
from leaderjob.fencing import EXIT_STALE, EXIT_UNKNOWN, FencingError, StaleToken, parse_token
from leaderjob.fencing.etcd import outcome_unknown


def job_endpoints(conn: Connection) -> tuple[str, ...]:
    """The job's ``LEADERJOB_ENDPOINTS``: ours, with ``https://`` when we speak TLS, so that
    ``leaderjob fenced`` in the job does too (its CA and credentials are its own: none are
    handed down)."""
    tls = conn.cacert is not None or conn.cert is not None
    return tuple(f"https://{host}" if tls else host for host in conn.endpoints)


def apply_fenced(
    fence: Any, endpoints: int, puts: list[tuple[str, bytes]], deletes: list[str]
) -> None:
    """Apply the fenced write, trying each of ``endpoints`` once; exit 3 when stale, 5 when
    its outcome is unknown, 1 when etcd was unreachable (nothing written)."""
    unknown = False  # an earlier attempt may have been applied
    try:
        # Each endpoint once: the store moves to the next one after an unavailable answer.
        # Repeating the Txn is safe: it applies only while the leader key stands.
        for _ in range(endpoints - 1):
            try:
                fence.apply(puts=puts, deletes=deletes)
                return
            except StoreUnavailable as exc:
                unknown = unknown or outcome_unknown(exc)
                click.echo(f"leaderjob: {exc}; trying the next endpoint", err=True)
        fence.apply(puts=puts, deletes=deletes)  # the last endpoint: its error is final
    except StaleToken as exc:
        if unknown:  # an earlier attempt may have landed while the key still stood
            click.echo(
                f"leaderjob: outcome unknown: an earlier attempt got no answer and may have "
                f"been applied while the key still stood; then: {exc}: this run is no longer "
                "the leader",
                err=True,
            )
            sys.exit(EXIT_UNKNOWN)
        click.echo(f"leaderjob: rejected: {exc}: this run is no longer the leader", err=True)
        sys.exit(EXIT_STALE)
    except StoreError as exc:
        if unknown or outcome_unknown(exc):
            click.echo(
                f"leaderjob: outcome unknown: {exc}: the write may have been applied; "
                "re-read the key, or treat it as failed",
                err=True,
            )
            sys.exit(EXIT_UNKNOWN)
        click.echo(f"leaderjob: cannot write to etcd: {exc}", err=True)
        sys.exit(1)


def register(
    group: click.Group,
    connection_options: Callable[[Any], Any],
    build_connection: Callable[[dict[str, Any]], Any],
    open_store: Callable[[Any], Any],
) -> None:
    """Add ``fenced`` (put, delete, sql) to ``group``."""

    @group.group()
    def fenced() -> None:
        """Writes fenced by this run's token: etcd puts and deletes guarded by the leader's key
        (exit 3 when stale), and the SQL fence's table."""

    def fence_options(f: Any) -> Any:
        f = click.option(
            "--token",
            envvar="LEADERJOB_FENCING_TOKEN",
            help="Fencing token of this run (default: $LEADERJOB_FENCING_TOKEN).",
        )(f)
        f = click.option(
            "--leader-key",
            envvar="LEADERJOB_LEADER_KEY",
            help="The leader's election key (default: $LEADERJOB_LEADER_KEY).",
        )(f)
        return connection_options(f)

    def write(params: dict[str, Any], puts: list[tuple[str, bytes]], deletes: list[str]) -> None:
        from leaderjob.fencing.etcd import EtcdFence

        if not params.get("leader_key"):
            raise click.UsageError(
                "no leader key: set LEADERJOB_LEADER_KEY (leaderjob sets it for its job) "
                "or give --leader-key"
            )
        if not params.get("token"):
            raise click.UsageError(
                "no fencing token: set LEADERJOB_FENCING_TOKEN (leaderjob sets it for its job) "
                "or give --token"
            )
        try:
            token = parse_token(str(params["token"]), source="--token")
        except FencingError as exc:
            raise click.UsageError(str(exc)) from None
        conn = build_connection(params)
        store = open_store(conn)
        fence = EtcdFence(store, params["leader_key"], token, conn.rpc_timeout)
        try:
            apply_fenced(fence, len(conn.endpoints), puts, deletes)
        except FencingError as exc:  # a key the fence refuses: nothing was sent
            raise click.UsageError(str(exc)) from None
        finally:
            store.close()

    @fenced.command()
    # `etcd_key`, not `key`: --key is the client private key of the connection options.
    @click.argument("etcd_key", metavar="KEY")
    @click.argument("value")
    @fence_options
    def put(etcd_key: str, value: str, **params: Any) -> None:
        """Put KEY=VALUE only while this run's leader key stands (exit 3 if stale, 5 if the
        outcome is unknown)."""
        write(params, [(etcd_key, value.encode())], [])

    @fenced.command()
    @click.argument("etcd_key", metavar="KEY")
    @fence_options
    def delete(etcd_key: str, **params: Any) -> None:
        """Delete KEY only while this run's leader key stands (exit 3 if stale, 5 if the outcome
        is unknown)."""
        write(params, [], [etcd_key])

    @fenced.command()
    @click.option(
        "--table",
        default="leaderjob_fence",
        show_default=True,
        help="Name of the fence table (a plain identifier, optionally schema-qualified).",
    )
    def sql(table: str) -> None:
        """Print the DDL of the SQL fence table (PostgreSQL; SQLite accepts it too)."""
        from leaderjob.fencing.sql import ddl

        try:
            click.echo(ddl(table), nl=False)
        except FencingError as exc:
            raise click.UsageError(f"--table: {exc}") from None
