"""The SQL fence: one row per protected resource, advanced inside the caller's own transaction.

    with psycopg.connect(dsn) as conn, conn.transaction():
        advance(conn, "reports", token)        # raises StaleToken: nothing below commits
        conn.execute("DELETE FROM reports WHERE day < %s", (cutoff,))

The check is one statement (``DDL`` creates its table)::

    INSERT INTO leaderjob_fence AS fence (resource, token) VALUES (:resource, :token)
    ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token
        WHERE fence.token <= EXCLUDED.token
    RETURNING token

A row back means the token is at least the mark, and the mark is now this token; no row back
means a larger token was accepted before: :class:`~leaderjob.fencing.StaleToken`. Equal tokens
pass, so one run may fence many times. The upsert takes the row's lock, so under PostgreSQL's
default READ COMMITTED two fencers of one resource are serialised: the second waits for the first
to commit or roll back, then re-checks its ``WHERE`` against the committed row. The mark, the
caller's writes and the commit are one atomic step; a deposed leader that wakes up mid-transaction
either is rejected here or (if it fenced before the successor) holds the lock until it commits, and
the successor's fence then waits for it — the writes never interleave (S1).

On a stale token the caller's transaction must not commit. :func:`advance` rolls it back before
raising; where the driver forbids that (inside psycopg's ``conn.transaction()`` block), it makes
the transaction fail instead (PostgreSQL then turns any ``COMMIT`` into a rollback), and the
exception leaving the block rolls it back as well.

Works with psycopg 3 and with any DB-API 2 connection whose database has ``INSERT … ON CONFLICT …
RETURNING`` (SQLite ≥ 3.35 for quick tests). This module never imports a driver.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from leaderjob.fencing import FencingError, StaleToken
from leaderjob.fencing.http import MarksFull

__all__ = [
    "DEFAULT_TABLE",
    "Connection",
    "SqlMarks",
    "advance",
    "ddl",
    "fenced",
    "high_water",
]

DEFAULT_TABLE = "leaderjob_fence"
_LOCK = "leaderjob fence marks: "  # the advisory lock's name, with the table's
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


class Cursor(Protocol):
    def execute(self, operation: Any, parameters: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """The part of a DB-API 2 connection the fence uses."""

    def cursor(self) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


#: Words PostgreSQL (and SQL:2016) reserve: unquoted, they are no table name (``user`` is a
#: function there, ``SELECT token FROM user`` fails or reads the wrong thing).
# fmt: off
_RESERVED = frozenset((
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
    "authorization", "binary", "both", "case", "cast", "check", "collate", "collation", "column",
    "concurrently", "constraint", "create", "cross", "current_catalog", "current_date",
    "current_role", "current_schema", "current_time", "current_timestamp", "current_user",
    "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch",
    "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "ilike", "in",
    "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral", "leading",
    "left", "like", "limit", "localtime", "localtimestamp", "natural", "not", "notnull", "null",
    "offset", "on", "only", "or", "order", "outer", "overlaps", "placing", "primary",
    "references", "returning", "right", "select", "session_user", "similar", "some", "symmetric",
    "system_user", "table", "tablesample", "then", "to", "trailing", "true", "union", "unique",
    "user", "using", "variadic", "verbose", "when", "where", "window", "with",
))
# fmt: on


def _table(table: str) -> str:
    # The name is spliced into SQL: only plain (optionally schema-qualified) identifiers.
    if not _IDENT.fullmatch(table) or any(p.lower() in _RESERVED for p in table.split(".")):
        raise FencingError(
            f"fence table {table!r}: use a plain identifier that is not an SQL reserved word, "
            f"such as {DEFAULT_TABLE}"
        )
    return table


def ddl(table: str = DEFAULT_TABLE) -> str:
    """The table the fence needs (PostgreSQL and SQLite alike); safe to run more than once."""
    return (
        f"CREATE TABLE IF NOT EXISTS {_table(table)} (\n"
        "    resource TEXT PRIMARY KEY,\n"
        "    token BIGINT NOT NULL CHECK (token > 0)\n"
        ");\n"
    )


def _placeholders(conn: Connection, n: int) -> list[str]:
    """Placeholders in the driver's ``paramstyle`` (read from the driver's top-level module)."""
    module = sys.modules.get(type(conn).__module__.split(".")[0])
    style = getattr(module, "paramstyle", "qmark")
    if style in ("format", "pyformat"):
        return ["%s"] * n
    if style == "numeric":
        return [f":{i + 1}" for i in range(n)]
    if style == "named":
        return [f":p{i}" for i in range(n)]
    return ["?"] * n


def _params(conn: Connection, values: Sequence[Any]) -> Any:
    module = sys.modules.get(type(conn).__module__.split(".")[0])
    if getattr(module, "paramstyle", "qmark") == "named":
        return {f"p{i}": v for i, v in enumerate(values)}
    return tuple(values)


def _fetch(conn: Connection, sql: str, values: Sequence[Any]) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql, _params(conn, values))
        return cur.fetchone()
    finally:
        cur.close()


def high_water(conn: Connection, resource: str, *, table: str = DEFAULT_TABLE) -> int | None:
    """The resource's mark as this transaction sees it (``None``: never fenced)."""
    (p,) = _placeholders(conn, 1)
    # The table name passed _table(); values go as parameters.
    sql = f"SELECT token FROM {_table(table)} WHERE resource = {p}"  # noqa: S608
    row = _fetch(conn, sql, (resource,))
    return None if row is None else int(row[0])


def advance(conn: Connection, resource: str, token: int, *, table: str = DEFAULT_TABLE) -> None:
    """Raise ``resource``'s mark to ``token`` in the connection's current transaction.

    Raises :class:`StaleToken` — after rolling the transaction back, or failing it where the
    driver forbids a rollback here — when a larger token was accepted before. Commit (or leave
    the transaction block) only after the writes the fence protects.
    """
    if isinstance(token, bool) or not isinstance(token, int) or token <= 0:
        raise FencingError(f"fencing token must be a positive integer, got {token!r}")
    name = _table(table)
    _refuse_unsafe(conn)
    p_resource, p_token = _placeholders(conn, 2)
    row = _fetch(
        conn,
        f"INSERT INTO {name} AS fence (resource, token) VALUES ({p_resource}, {p_token}) "  # noqa: S608
        "ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token "
        "WHERE fence.token <= EXCLUDED.token "
        "RETURNING token",
        (resource, token),
    )
    if row is not None:
        return
    mark = high_water(conn, resource, table=table)
    _abort(conn)
    raise StaleToken(resource, token, mark)


def _refuse_unsafe(conn: Connection) -> None:
    """Refuse, before writing anything, a connection where a refusal could not keep the
    caller's writes from committing."""
    if getattr(conn, "autocommit", False) is True or (
        getattr(conn, "isolation_level", "") is None  # sqlite3's legacy autocommit
        and getattr(conn, "in_transaction", True) is False
    ):
        raise FencingError(
            "the connection is in autocommit mode: the fence's mark would commit alone and "
            "the writes it protects would not be fenced; fence inside a transaction "
            "(psycopg: with conn.transaction(): ...)"
        )
    # psycopg 3 counts its transaction() blocks; from the second on, each is a SAVEPOINT, and a
    # refusal could only roll back the savepoint while the outer transaction still commits.
    if getattr(conn, "_num_transactions", 0) > 1:
        raise FencingError(
            "fencing inside a savepoint (a nested conn.transaction() block): a refusal could "
            "not stop the outer transaction from committing; fence in the outermost block"
        )


def _abort(conn: Connection) -> None:
    """Make sure the caller's transaction cannot commit."""
    try:
        conn.rollback()
    except Exception:  # psycopg forbids rollback() inside conn.transaction()
        # The block may be a SAVEPOINT of an implicit transaction (a statement ran before the
        # block): failing it would fail only the savepoint, and the caller's earlier writes
        # would commit. Roll back the whole transaction on the wire, under psycopg's feet; the
        # block's own rollback then finds none in progress, and nothing can commit.
        pgconn = getattr(conn, "pgconn", None)
        if pgconn is not None:
            with contextlib.suppress(Exception):
                pgconn.exec_(b"ROLLBACK")
                return
        # Fail the transaction instead: PostgreSQL answers any later COMMIT with a rollback.
        # The text shows up in the server log and in the error of the caller's next statement.
        with contextlib.suppress(Exception):
            _fetch(conn, "SELECT CAST('leaderjob: stale fencing token' AS INTEGER)", ())


@contextlib.contextmanager
def fenced(
    conn: Connection, resource: str, token: int, *, table: str = DEFAULT_TABLE
) -> Iterator[Connection]:
    """Advance the fence, run the block, commit; roll back on any exception (and on StaleToken).

    For plain DB-API connections (not in autocommit mode). With psycopg, ``with
    conn.transaction(): advance(...)`` does the same.
    """
    try:
        advance(conn, resource, token, table=table)
        yield conn
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    conn.commit()


class SqlMarks:
    """A high-water-mark store for the HTTP middleware on the SQL fence: each check is its own
    committed transaction on a connection from ``connect`` (opened and closed per call).

    Like :class:`~leaderjob.fencing.http.MemoryMarks`, it holds at most ``limit`` resources:
    the fence table's rows, whoever fenced them. A new resource beyond that raises
    :class:`~leaderjob.fencing.http.MarksFull` (the middleware answers 503); no row is ever
    evicted, since an eviction would forget a mark. On PostgreSQL the count and the insert of a
    new resource are serialised by a transaction-level advisory lock, so replicas adding
    resources at once cannot overshoot the bound.
    """

    def __init__(self, connect: Any, *, table: str = DEFAULT_TABLE, limit: int = 1024) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise FencingError(f"SqlMarks limit must be a positive integer, got {limit!r}")
        self._connect = connect
        self._table = _table(table)
        self.limit = limit

    def advance(self, resource: str, token: int) -> None:
        conn = self._connect()
        try:
            if not self._room_for(conn, resource):
                with contextlib.suppress(Exception):
                    conn.rollback()  # ends the transaction and its advisory lock
                raise MarksFull(f"{self.limit} fenced resources already: {resource!r} refused")
            with fenced(conn, resource, token, table=self._table):
                pass
        finally:
            conn.close()

    def _room_for(self, conn: Connection, resource: str) -> bool:
        """Whether ``resource`` has a row already or may have one without passing the bound."""
        if high_water(conn, resource, table=self._table) is not None:
            return True
        if type(conn).__module__.split(".")[0] in ("psycopg", "psycopg2"):
            # One adder at a time, until its commit; READ COMMITTED's next statement then sees
            # every row the adders before it committed.
            (p,) = _placeholders(conn, 1)
            _fetch(conn, f"SELECT pg_advisory_xact_lock(hashtext({p}))", (_LOCK + self._table,))
        # The table name passed _table().
        (count,) = _fetch(conn, f"SELECT count(*) FROM {self._table}", ())  # noqa: S608
        return int(count) < self.limit
