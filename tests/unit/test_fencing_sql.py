"""The SQL fence on SQLite (same upsert syntax as PostgreSQL): S1 at the resource, in the
caller's own transaction. The real PostgreSQL runs in tests/integration/test_fencing.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from leaderjob.fencing import FencingError, StaleToken
from leaderjob.fencing.sql import SqlMarks, advance, ddl, fenced, high_water


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.executescript(ddl())
    conn.execute("CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, pos INTEGER)")
    conn.commit()
    return conn


def _write(conn: sqlite3.Connection, token: int, pos: int) -> None:
    with fenced(conn, "cursor", token):
        conn.execute("INSERT OR REPLACE INTO cursor VALUES ('c', ?)", (pos,))


def _pos(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT pos FROM cursor WHERE name = 'c'").fetchone()
    return None if row is None else int(row[0])


def test_s1_a_lower_token_is_rejected_and_its_write_does_not_commit(tmp_path: Path) -> None:
    conn = _db(tmp_path / "db")
    _write(conn, 7, 1)
    with pytest.raises(StaleToken) as err:
        _write(conn, 6, 2)
    assert err.value.high_water == 7 and err.value.token == 6
    assert _pos(conn) == 1, "the stale writer's row must not commit"
    assert high_water(conn, "cursor") == 7


def test_s1_equal_and_larger_tokens_pass_and_raise_the_mark(tmp_path: Path) -> None:
    conn = _db(tmp_path / "db")
    _write(conn, 7, 1)
    _write(conn, 7, 2)  # one run fences many times
    assert _pos(conn) == 2
    _write(conn, 9, 3)
    assert high_water(conn, "cursor") == 9
    with pytest.raises(StaleToken):
        _write(conn, 7, 4)  # the old leader, after its successor wrote
    assert _pos(conn) == 3


def test_s1_advance_rolls_back_what_the_stale_writer_did_before_fencing(tmp_path: Path) -> None:
    """A stale writer that wrote first and fenced after: its transaction is rolled back, so even
    a caller that swallows StaleToken and commits commits nothing."""
    conn = _db(tmp_path / "db")
    _write(conn, 9, 1)
    conn.execute("INSERT OR REPLACE INTO cursor VALUES ('c', 99)")
    with pytest.raises(StaleToken):
        advance(conn, "cursor", 8)
    conn.commit()
    other = sqlite3.connect(tmp_path / "db")
    assert _pos(other) == 1


def test_resources_have_separate_marks(tmp_path: Path) -> None:
    conn = _db(tmp_path / "db")
    with fenced(conn, "a", 10):
        pass
    with fenced(conn, "b", 3):
        pass
    assert (high_water(conn, "a"), high_water(conn, "b"), high_water(conn, "c")) == (10, 3, None)


@pytest.mark.parametrize("token", [0, -1, True, "5"])
def test_tokens_must_be_positive_integers(tmp_path: Path, token: object) -> None:
    conn = _db(tmp_path / "db")
    with pytest.raises(FencingError):
        advance(conn, "r", token)  # type: ignore[arg-type]


def test_table_names_are_plain_identifiers() -> None:
    assert "CREATE TABLE IF NOT EXISTS app.fence" in ddl("app.fence")
    with pytest.raises(FencingError):
        ddl("fence; DROP TABLE users")


def test_sql_marks_commit_each_check(tmp_path: Path) -> None:
    _db(tmp_path / "db").close()
    marks = SqlMarks(lambda: sqlite3.connect(tmp_path / "db"))
    marks.advance("/jobs/cleanup", 5)
    marks.advance("/jobs/cleanup", 5)
    with pytest.raises(StaleToken):
        marks.advance("/jobs/cleanup", 4)
    assert high_water(sqlite3.connect(tmp_path / "db"), "/jobs/cleanup") == 5


def test_the_package_does_not_import_psycopg_unless_the_caller_does() -> None:
    import subprocess
    import sys

    code = (
        "import sys, leaderjob.cli, leaderjob.fencing.sql, leaderjob.fencing.http, "
        "leaderjob.fencing.etcd; print('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_postgres_tests_skip_locally_without_a_server_but_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.harness.postgres import postgres_or_skip

    monkeypatch.setenv("LEADERJOB_PG_BIN", str(tmp_path))  # no initdb there
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        postgres_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        postgres_or_skip()
