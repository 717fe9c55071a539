"""The fault world's PostgreSQL-backed resource: the SQL fence on a real PostgreSQL server.

With ``World(store="postgres")`` (``bench/soak.py --store postgres``) the jobs write through
:func:`leaderjob.fencing.sql.advance` to a PostgreSQL cluster started for the world
(:class:`tests.harness.postgres.PostgresServer`), each pod through its own fault proxy. The
decision is PostgreSQL's: the fence row's upsert (``WHERE fence.token <= EXCLUDED.token``) and
the write are one transaction, committed or rolled back together.

Every decision is kept in ``soak_decisions``, in the same shape as the toy store's log
(``examples/fencestore.py``), so the recorder and the checker read both alike:

* an accepted write is inserted *inside* the fenced transaction, after ``advance`` took the fence
  row's lock, so ``seq`` (a sequence) orders the accepted writes of one resource as PostgreSQL
  serialised them;
* a rejected write (:class:`~leaderjob.fencing.StaleToken`: the transaction was rolled back) is
  inserted afterwards in a transaction of its own, with the mark PostgreSQL reported.

The jobs' sessions set ``idle_in_transaction_session_timeout`` (docs/fencing.md): a job frozen
between ``advance`` and ``COMMIT`` holds the fence row's lock, and would otherwise hold up the
successor's fenced write for as long as the freeze lasts.
"""

from __future__ import annotations

from typing import Any

from leaderjob.fencing.sql import ddl

#: The table of decisions; created with the fence's own table.
SCHEMA = (
    ddl()
    + """CREATE TABLE IF NOT EXISTS soak_decisions (
    seq BIGSERIAL PRIMARY KEY,
    mono DOUBLE PRECISION NOT NULL,
    wall TEXT NOT NULL,
    op TEXT NOT NULL,
    resource TEXT NOT NULL,
    token BIGINT NOT NULL,
    writer TEXT,
    slot TEXT,
    data TEXT,
    accepted BOOLEAN NOT NULL,
    high_water BIGINT
);
"""
)

_COLUMNS = "seq, mono, wall, op, resource, token, writer, slot, data, accepted, high_water"


class MissingPostgres(RuntimeError):
    """No PostgreSQL server binary or no psycopg: ``--store postgres`` cannot run."""


def require() -> Any:
    """The PostgreSQL bin directory; :class:`MissingPostgres` with a one-line message that says
    how to get one (and psycopg) when either is missing."""
    from tests.harness.postgres import HOW_TO_GET, find_pg_bin

    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingPostgres(f"--store postgres: {HOW_TO_GET}") from None
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise MissingPostgres(f"--store postgres: {HOW_TO_GET}")
    return bin_dir


def start(tmp: Any) -> Any:
    """Start a PostgreSQL cluster for the world and create the schema (:func:`require` first)."""
    import psycopg

    from tests.harness.postgres import PostgresServer

    server = PostgresServer(require()).start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
    except BaseException:
        server.close()
        raise
    return server


def dsn_via(port: int) -> str:
    """The DSN a pod's job uses: through its own proxy on ``port``."""
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"


def decisions(dsn: str) -> list[dict[str, Any]]:
    """Every decision so far, in ``seq`` order, shaped like the toy store's ``GET /log``."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM soak_decisions ORDER BY seq").fetchall()
    return [dict(r) for r in rows]
