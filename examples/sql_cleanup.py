"""A cleanup job fenced in its own SQL transaction: delete expired sessions, once per slot.

    leaderjob run --election cleanup --schedule '*/5 * * * *' -- \\
        python examples/sql_cleanup.py postgresql://app@db/app     # or CLEANUP_DSN=...
    python examples/sql_cleanup.py                                  # SQLite: ./cleanup.db

The fence row (``leaderjob fenced sql`` prints its table) is advanced as the last statement before
COMMIT, so the delete commits only if no run with a larger token has fenced "sessions" before: a
deposed leader that wakes up after a pause (GC, SIGSTOP, a frozen VM) gets StaleToken, its
transaction is rolled back, and it exits 3. ``--seed N`` inserts N expired sessions for a demo.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Any

from leaderjob.fencing import EXIT_STALE, StaleToken, token_from_env
from leaderjob.fencing.sql import advance, ddl

SCHEMA = "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, expired BOOLEAN NOT NULL)"


def connect(dsn: str | None) -> tuple[Any, str]:
    """A DB-API connection and its placeholder: psycopg for a DSN, else SQLite."""
    if dsn:
        import psycopg  # the "postgres" extra: pip install '.[postgres]' (README: Install)

        return psycopg.connect(dsn), "%s"
    return sqlite3.connect(os.environ.get("CLEANUP_SQLITE", "cleanup.db")), "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn", nargs="?", default=os.environ.get("CLEANUP_DSN"))
    parser.add_argument("--seed", type=int, default=0, help="insert N expired sessions first")
    args = parser.parse_args()
    token = token_from_env()
    conn, p = connect(args.dsn)
    try:
        cur = conn.cursor()
        cur.execute(ddl())
        cur.execute(SCHEMA)
        insert = f"INSERT INTO sessions (id, expired) VALUES ({p}, {p})"  # noqa: S608  # placeholders
        for i in range(args.seed):
            cur.execute(insert, (f"s{i}", True))
        conn.commit()
        try:
            cur = conn.cursor()
            cur.execute("DELETE FROM sessions WHERE expired")
            deleted = cur.rowcount
            advance(conn, "sessions", token)  # last statement before COMMIT
            conn.commit()
        except StaleToken as exc:
            print(f"refused, nothing deleted: {exc}", file=sys.stderr)
            return EXIT_STALE
        print(f"deleted {deleted} expired sessions with token {token}")
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
