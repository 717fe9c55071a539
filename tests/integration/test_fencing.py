"""Fencing at the resource, against the real things: etcd, PostgreSQL and an HTTP app (S1).

Each fault test runs two real ``leaderjob lock`` replicas (TTL 2 s) whose job writes to a
fenced resource. The leader's daemon, its watchdog and its job are frozen together (SIGSTOP) for
2·TTL — a whole-pod freeze — while the job is in the middle of its write; the other replica takes
over, and its job writes with a larger token. Then the old job is thawed first (a cgroup thaw
resumes processes in no set order, so the old job may well run before its watchdog kills it) and
finishes its write: the resource itself must refuse it. Time budget: ~15 s per scenario.

PostgreSQL is a real server in a temp dir (tests/harness/postgres.py); without the binaries these
tests skip saying how to get them (and fail under ``CI=true``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from leaderjob.fencing.http import HEADER, MemoryMarks, WsgiFencing, trusted
from tests.harness.daemons import leaderjob, read_journal, wait_for
from tests.harness.etcd import EtcdServer, etcdctl
from tests.harness.postgres import PostgresServer, postgres_or_skip
from tests.harness.procs import ProcessGroup, kill_group

ROOT = Path(__file__).resolve().parents[2]
TTL = 2.0

# The job: open its write, journal "opened", wait for go-<token>, finish the write, journal the
# outcome, exit 0 (written) or 3 (refused as stale).
JOB = r"""
import json, os, subprocess, sys, time, urllib.error, urllib.request
mode, workdir, target = sys.argv[1:4]
token = int(os.environ["LEADERJOB_FENCING_TOKEN"])
def journal(**rec):
    rec.update(token=token, pid=os.getpid(), ppid=os.getppid())
    with open(os.path.join(workdir, "journal"), "a") as f:
        f.write(json.dumps(rec) + "\n")
conn = None
if mode == "pg":
    import psycopg
    from leaderjob.fencing.sql import advance
    conn = psycopg.connect(target)
    conn.execute("INSERT INTO work (token, note) VALUES (%s, 'cleanup')", (token,))
elif mode == "pg-first":
    import psycopg
    from leaderjob.fencing.sql import advance
    conn = psycopg.connect(target)
    # Fenced first, so the fence row stays locked until COMMIT: bound how long a frozen
    # holder can keep it (docs/fencing.md, "Where to fence in the transaction").
    conn.execute("SET LOCAL idle_in_transaction_session_timeout = '1500ms'")
    advance(conn, "work", token)
    conn.execute("INSERT INTO work (token, note) VALUES (%s, 'cleanup')", (token,))
journal(step="opened", env={k: v for k, v in os.environ.items() if k.startswith("LEADERJOB_")})
while not os.path.exists(os.path.join(workdir, f"go-{token}")):
    time.sleep(0.02)
rc = 0
if mode == "pg":
    from leaderjob.fencing import StaleToken
    try:
        advance(conn, "work", token)  # last statement before COMMIT
        conn.commit()
    except StaleToken as exc:
        journal(step="refused", error=str(exc))
        rc = 3
elif mode == "pg-first":
    try:
        conn.commit()
    except psycopg.Error as exc:  # the server ended the session: nothing commits
        journal(step="refused", error=str(exc))
        rc = 4
elif mode == "etcd":
    argv = [sys.executable, "-m", "leaderjob", "fenced", "put", target, str(token)]
    rc = subprocess.run(argv).returncode
elif mode == "http":
    req = urllib.request.Request(target, method="POST", data=b"",
                                 headers={"Leaderjob-Fencing-Token": str(token)})
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError as exc:
        rc = 3 if exc.code == 409 else 1
journal(step="done", rc=rc)
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = postgres_or_skip()
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()  # by pid, even when a test failed


def _steps(workdir: Path, step: str) -> list[dict[str, Any]]:
    return [r for r in read_journal(workdir / "journal") if r.get("step") == step]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _frozen_leader_finishes_after_successor(
    procs: ProcessGroup, tmp_path: Path, etcd: EtcdServer, prefix: str, mode: str, target: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the scenario; return the (old, new) runs' "done" records."""
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(script), mode, str(tmp_path), target]
    a = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, command,
                  subcommand="lock", ttl="2s", env=env)  # fmt: skip
    assert wait_for(lambda: _steps(tmp_path, "opened"), 20), a.tail(20)
    old = _steps(tmp_path, "opened")[0]
    # Freeze the whole pod: the job, its watchdog (the job's parent), the daemon's group.
    frozen = [old["pid"], old["ppid"]]
    for pid in frozen:
        _signal(pid, signal.SIGSTOP)
    kill_group(a.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        b = leaderjob(procs, tmp_path, "b", etcd.endpoint, prefix, command,
                      subcommand="lock", ttl="2s", env=env)  # fmt: skip
        assert wait_for(lambda: len(_steps(tmp_path, "opened")) == 2, 4 * TTL + 10), b.tail(20)
        new = _steps(tmp_path, "opened")[1]
        assert new["token"] > old["token"], "S2: the successor's token is larger"
        (tmp_path / f"go-{new['token']}").touch()
        assert wait_for(lambda: _steps(tmp_path, "done"), 20), b.tail(20)
        (tmp_path / f"go-{old['token']}").touch()
        time.sleep(max(0.0, frozen_at + 2 * TTL - time.monotonic()))  # frozen for >= 2·TTL
        # Thaw the old job first: it finishes its write before anything can kill it.
        _signal(old["pid"], signal.SIGCONT)
        assert wait_for(lambda: len(_steps(tmp_path, "done")) == 2, 20)
    finally:
        _signal(old["ppid"], signal.SIGCONT)
        kill_group(a.pid, signal.SIGCONT)
    done = {r["token"]: r for r in _steps(tmp_path, "done")}
    assert old["env"]["LEADERJOB_LEADER_KEY"].startswith(prefix + "/job/")
    assert old["env"]["LEADERJOB_ENDPOINTS"] == etcd.endpoint
    return done[old["token"]], done[new["token"]]


def test_s1_frozen_leader_mid_transaction_is_refused_by_postgres_after_successor_fenced(
    procs: ProcessGroup, tmp_path: Path, etcd: EtcdServer, prefix: str, postgres: PostgresServer
) -> None:
    import psycopg

    from leaderjob.fencing.sql import ddl, high_water

    db = f"t{os.getpid()}_{abs(hash(prefix)) % 10**8}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    dsn = postgres.dsn.replace("dbname=postgres", f"dbname={db}")
    with psycopg.connect(dsn) as conn:
        conn.execute(ddl())
        conn.execute("CREATE TABLE work (token BIGINT NOT NULL, note TEXT)")
    old, new = _frozen_leader_finishes_after_successor(procs, tmp_path, etcd, prefix, "pg", dsn)
    assert new["rc"] == 0 and old["rc"] == 3, (old, new)
    with psycopg.connect(dsn) as conn:
        tokens = [r[0] for r in conn.execute("SELECT token FROM work").fetchall()]
        assert tokens == [new["token"]], "the frozen leader's insert must not commit"
        assert high_water(conn, "work") == new["token"]


def test_s1_frozen_leader_that_fenced_first_cannot_commit_after_the_successor_fenced(
    procs: ProcessGroup, tmp_path: Path, etcd: EtcdServer, prefix: str, pg_dsn: str
) -> None:
    """Fenced first, the old transaction holds the fence row's lock while frozen; PostgreSQL ends
    the idle session (idle_in_transaction_session_timeout), which frees the lock for the
    successor's fence and makes the old leader's COMMIT after the thaw fail."""
    import psycopg

    from leaderjob.fencing.sql import high_water

    old, new = _frozen_leader_finishes_after_successor(
        procs, tmp_path, etcd, prefix, "pg-first", pg_dsn
    )
    assert new["rc"] == 0 and old["rc"] == 4, (old, new)
    with psycopg.connect(pg_dsn) as conn:
        tokens = [r[0] for r in conn.execute("SELECT token FROM work").fetchall()]
        assert tokens == [new["token"]], "the frozen leader's insert must not commit"
        assert high_water(conn, "work") == new["token"]


def test_s1_frozen_leaders_fenced_put_is_refused_by_etcd_exit_3(
    procs: ProcessGroup, tmp_path: Path, etcd: EtcdServer, prefix: str
) -> None:
    key = f"{prefix}/app/cursor"
    old, new = _frozen_leader_finishes_after_successor(procs, tmp_path, etcd, prefix, "etcd", key)
    assert new["rc"] == 0 and old["rc"] == 3, (old, new)
    assert etcdctl(etcd.endpoint, "get", "--print-value-only", key).strip() == str(new["token"])


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_s1_http_middleware_refuses_a_deposed_leaders_call_with_409(
    procs: ProcessGroup, tmp_path: Path, etcd: EtcdServer, prefix: str
) -> None:
    accepted: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        accepted.append(environ["HTTP_LEADERJOB_FENCING_TOKEN"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    server: WSGIServer = make_server(
        "127.0.0.1", 0, WsgiFencing(app, MemoryMarks(), resource="cleanup", verify=trusted),
        handler_class=_Quiet,
    )  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/internal/jobs/cleanup"
        old, new = _frozen_leader_finishes_after_successor(
            procs, tmp_path, etcd, prefix, "http", url
        )
    finally:
        server.shutdown()
        server.server_close()
    assert new["rc"] == 0 and old["rc"] == 3, (old, new)
    assert accepted == [str(new["token"])]


def _etcd_leader_key(etcd: EtcdServer, key: str) -> int:
    lease = etcdctl(etcd.endpoint, "lease", "grant", "30").split()[1]
    etcdctl(etcd.endpoint, "put", "--lease", lease, key, "me")
    out = json.loads(etcdctl(etcd.endpoint, "get", key, "-w", "json"))
    return int(out["kvs"][0]["create_revision"])


def test_s1_fenced_put_and_delete_cli_exit_codes(etcd: EtcdServer, prefix: str) -> None:
    """0 written (through the next endpoint if one is down), 3 when the leader key is gone or was
    re-created, 1 when etcd is unreachable."""
    leader = f"{prefix}/job/1"
    token = _etcd_leader_key(etcd, leader)

    def fenced(*args: str, endpoints: str = etcd.endpoint) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(
            LEADERJOB_LEADER_KEY=leader,
            LEADERJOB_FENCING_TOKEN=str(token),
            LEADERJOB_ENDPOINTS=endpoints,
        )
        argv = [sys.executable, "-m", "leaderjob", "fenced", *args, "--rpc-timeout", "1s"]
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=30, check=False
        )

    first_down = f"127.0.0.1:1,{etcd.endpoint}"  # a dead endpoint first: the next one is tried
    assert fenced("put", f"{prefix}/k", "v0", endpoints=first_down).returncode == 0
    assert etcdctl(etcd.endpoint, "get", "--print-value-only", f"{prefix}/k").strip() == "v0"
    assert fenced("put", f"{prefix}/k", "v1").returncode == 0
    assert etcdctl(etcd.endpoint, "get", "--print-value-only", f"{prefix}/k").strip() == "v1"
    assert fenced("delete", f"{prefix}/k").returncode == 0
    assert etcdctl(etcd.endpoint, "get", "--print-value-only", f"{prefix}/k").strip() == ""
    etcdctl(etcd.endpoint, "del", leader)  # deposed: the key is gone
    gone = fenced("put", f"{prefix}/k", "v2")
    assert gone.returncode == 3 and "rejected" in gone.stderr
    _etcd_leader_key(etcd, leader)  # the same key again, with a larger revision
    assert fenced("put", f"{prefix}/k", "v3").returncode == 3
    assert fenced("delete", f"{prefix}/k").returncode == 3
    assert etcdctl(etcd.endpoint, "get", "--print-value-only", f"{prefix}/k").strip() == ""
    assert fenced("put", f"{prefix}/k", "v4", endpoints="127.0.0.1:1").returncode == 1


def test_s1_a_fenced_put_whose_answer_is_lost_is_reported_unknown_and_did_land(
    etcd: EtcdServer, prefix: str
) -> None:
    """The case docs/fencing.md warns about, on a real etcd: the Txn reaches etcd, the answer is
    blackholed (a proxy drops etcd→client bytes), the call times out — and the write is there.
    `leaderjob fenced` classifies that error as "outcome unknown" (exit 5), not "nothing written"
    (exit 1). Budget: ~2 s."""
    from leaderjob.config import Connection
    from leaderjob.election.etcd import EtcdStore
    from leaderjob.election.store import StoreUnavailable
    from leaderjob.fencing.etcd import EtcdFence, outcome_unknown
    from tests.harness.proxy import FaultProxy

    leader = f"{prefix}/job/1"
    token = _etcd_leader_key(etcd, leader)
    with FaultProxy(etcd.endpoint) as proxy:
        store = EtcdStore(Connection(endpoints=(proxy.endpoint,), rpc_timeout=1.0))
        try:
            fence = EtcdFence(store, leader, token, timeout=1.0)
            fence.put(f"{prefix}/k", "before")  # the connection is up
            proxy.blackhole_responses()
            with pytest.raises(StoreUnavailable) as lost:
                fence.put(f"{prefix}/k", "during")
        finally:
            store.close()
    assert outcome_unknown(lost.value), lost.value
    assert etcdctl(etcd.endpoint, "get", "--print-value-only", f"{prefix}/k").strip() == "during"


# --------------------------------------------------------------------------------------------
# the examples, run as a user would


def _example_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_example_shell_cleanup_job_writes_while_leading_and_exits_3_when_stale(
    procs: ProcessGroup, tmp_path: Path, etcd: EtcdServer, prefix: str
) -> None:
    script = str(ROOT / "examples" / "cleanup.sh")
    env = _example_env(CLEANUP_PREFIX=f"{prefix}/app")
    daemon = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, ["sh", script],
                       subcommand="lock", env=env)  # fmt: skip
    assert daemon.wait(30) == 0, daemon.tail(30)
    done = etcdctl(etcd.endpoint, "get", "--print-value-only", f"{prefix}/app/last-done")
    assert "token=" in done
    assert etcdctl(etcd.endpoint, "get", "--print-value-only", f"{prefix}/app/in-progress") == ""
    leader = f"{prefix}/job/stale"
    token = _etcd_leader_key(etcd, leader)
    env.update(
        LEADERJOB_LEADER_KEY=leader,
        LEADERJOB_FENCING_TOKEN=str(token - 1),  # not this key's revision: a deposed run
        LEADERJOB_ENDPOINTS=etcd.endpoint,
        LEADERJOB_SLOT="2026-01-01T00:00:00Z",
    )
    stale = subprocess.run(
        ["sh", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert stale.returncode == 3, stale.stderr
    assert "cleanup done" not in stale.stdout


def _sql_example(tmp_path: Path, token: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = _example_env(
        LEADERJOB_FENCING_TOKEN=str(token), CLEANUP_SQLITE=str(tmp_path / "cleanup.db")
    )
    argv = [sys.executable, str(ROOT / "examples" / "sql_cleanup.py"), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_example_sql_cleanup_on_sqlite(tmp_path: Path) -> None:
    first = _sql_example(tmp_path, 7, "--seed", "3")
    assert first.returncode == 0 and "deleted 3" in first.stdout, first.stderr
    stale = _sql_example(tmp_path, 6, "--seed", "2")
    assert stale.returncode == 3 and "refused" in stale.stderr
    again = _sql_example(tmp_path, 7)
    assert again.returncode == 0 and "deleted 2" in again.stdout, again.stderr


def test_example_sql_cleanup_on_postgres(tmp_path: Path, postgres: PostgresServer) -> None:
    import psycopg

    db = f"ex{os.getpid()}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {db}")
        admin.execute(f"CREATE DATABASE {db}")
    dsn = postgres.dsn.replace("dbname=postgres", f"dbname={db}")
    first = _sql_example(tmp_path, 7, dsn, "--seed", "3")
    assert first.returncode == 0 and "deleted 3" in first.stdout, first.stderr
    stale = _sql_example(tmp_path, 6, dsn, "--seed", "2")
    assert stale.returncode == 3 and "refused" in stale.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (2,)


def test_example_http_app_refuses_stale_tokens_with_409(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    import urllib.error
    import urllib.request

    from tests.harness.etcd import free_port

    port = free_port()
    app = procs.spawn(
        [sys.executable, str(ROOT / "examples" / "http_app.py"), "--listen", f"127.0.0.1:{port}",
         "--sqlite", str(tmp_path / "fence.db")],
        env=_example_env(),
    )  # fmt: skip

    def post(token: int) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/internal/jobs/cleanup",
            method="POST",
            data=b"",
            headers={"Leaderjob-Fencing-Token": str(token)},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def up() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
        except OSError:
            return False
        return True

    assert wait_for(up, 20), f"example app did not start (exit {app.poll()})"
    assert [post(9), post(9), post(8), post(10), post(9)] == [200, 200, 409, 200, 409]


# --------------------------------------------------------------------------------------------
# the SQL fence's promises on PostgreSQL itself (docs/fencing.md, "Isolation levels")


@pytest.fixture
def pg_dsn(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    import psycopg

    from leaderjob.fencing.sql import ddl

    db = "f" + "".join(ch for ch in request.node.name.lower() if ch.isalnum())[-40:]
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {db}")
        admin.execute(f"CREATE DATABASE {db}")
    dsn = postgres.dsn.replace("dbname=postgres", f"dbname={db}")
    with psycopg.connect(dsn) as conn:
        conn.execute(ddl())
        conn.execute("CREATE TABLE work (token BIGINT NOT NULL, note TEXT)")
    return dsn


def test_s1_stale_token_inside_a_psycopg_transaction_block_commits_nothing_even_if_caught(
    pg_dsn: str,
) -> None:
    import psycopg

    from leaderjob.fencing import StaleToken
    from leaderjob.fencing.sql import advance

    with psycopg.connect(pg_dsn) as conn, conn.transaction():
        advance(conn, "work", 10)
    with psycopg.connect(pg_dsn) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO work (token) VALUES (9)")
            with contextlib.suppress(StaleToken):
                advance(conn, "work", 9)  # a careless caller swallows it
        assert conn.execute("SELECT count(*) FROM work").fetchone() == (0,)


def test_s1_stale_token_in_a_savepoint_of_an_implicit_transaction_commits_nothing(
    pg_dsn: str,
) -> None:
    """psycopg 3: ``conn.transaction()`` inside an implicit transaction is a SAVEPOINT. The
    refusal used to fail only the savepoint, and the caller's earlier INSERT committed on the
    next ``commit()``. Now the whole transaction is rolled back."""
    import psycopg

    from leaderjob.fencing import StaleToken
    from leaderjob.fencing.sql import advance

    with psycopg.connect(pg_dsn) as conn, conn.transaction():
        advance(conn, "work", 10)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO work (token, note) VALUES (9, 'before the block')")

        def block() -> None:
            with conn.transaction():
                conn.execute("INSERT INTO work (token, note) VALUES (9, 'in the block')")
                advance(conn, "work", 9)

        with pytest.raises(StaleToken):
            block()
        conn.commit()
        assert conn.execute("SELECT count(*) FROM work").fetchone() == (0,)


def test_sql_fence_refuses_autocommit_and_nested_savepoints_with_a_clear_error(
    pg_dsn: str,
) -> None:
    """S4: on an autocommit connection the mark used to commit alone, and the old leader's
    later write landed; a fence two blocks deep cannot roll back the outer transaction. Both
    are refused before anything is written."""
    import psycopg

    from leaderjob.fencing import FencingError
    from leaderjob.fencing.sql import advance, high_water

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(FencingError, match="autocommit"):
            advance(conn, "work", 7)
        assert high_water(conn, "work") is None
    with psycopg.connect(pg_dsn) as conn:

        def nested() -> None:
            with conn.transaction():
                conn.execute("INSERT INTO work (token) VALUES (7)")
                with conn.transaction():
                    advance(conn, "work", 7)

        with pytest.raises(FencingError, match="savepoint"):
            nested()
        assert conn.execute("SELECT count(*) FROM work").fetchone() == (0,)
        assert high_water(conn, "work") is None


def test_s1_read_committed_fencers_wait_on_the_row_lock_and_recheck_the_committed_mark(
    pg_dsn: str,
) -> None:
    import psycopg

    from leaderjob.fencing import StaleToken
    from leaderjob.fencing.sql import advance

    with psycopg.connect(pg_dsn) as first, psycopg.connect(pg_dsn) as second:
        advance(first, "work", 12)  # holds the fence row's lock until it commits
        outcome: list[object] = []

        def fence_second() -> None:
            try:
                advance(second, "work", 11)
                outcome.append("accepted")
            except StaleToken as exc:
                outcome.append(exc)

        thread = threading.Thread(target=fence_second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second fencer must wait for the first one's commit"
        first.commit()
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], StaleToken), outcome
        assert outcome[0].high_water == 12


def test_repeatable_read_fencer_behind_a_concurrent_update_gets_a_serialization_failure(
    pg_dsn: str,
) -> None:
    import psycopg

    from leaderjob.fencing.sql import advance, high_water

    with psycopg.connect(pg_dsn) as first, psycopg.connect(pg_dsn) as second:
        advance(first, "work", 5)
        first.commit()
        second.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        second.execute("SELECT count(*) FROM work")  # takes the snapshot
        advance(first, "work", 6)
        first.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            advance(second, "work", 7)  # larger, but the snapshot predates token 6
        second.rollback()
        assert high_water(second, "work") == 6


def test_http_marks_rise_only_for_the_live_leaders_token_on_postgres(
    etcd: EtcdServer, prefix: str, pg_dsn: str
) -> None:
    """The mark is durable (SqlMarks on PostgreSQL) and rises only for a token etcd vouches
    for (LeaderTokens: the create revision of the live leader key): a made-up 10**15 gets 403
    and leaves the mark alone; 2**63 is 400, not the 500 of a BIGINT overflow; a deposed
    leader's token is refused once its key is gone."""
    import json
    import urllib.error
    import urllib.request

    import psycopg

    from leaderjob import Leadership
    from leaderjob.fencing.etcd import LeaderTokens
    from leaderjob.fencing.sql import SqlMarks, high_water

    first = Leadership("web", endpoints=[etcd.endpoint], prefix=prefix, ttl=3, identity="a")
    first.acquire(timeout=5)
    from leaderjob.election.etcd import EtcdStore
    from leaderjob.inprocess.leadership_options import build_connection

    store = EtcdStore(build_connection([etcd.endpoint]))
    verify = LeaderTokens(store, prefix, "web")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    marks = SqlMarks(lambda: psycopg.connect(pg_dsn))
    server: WSGIServer = make_server(
        "127.0.0.1", 0, WsgiFencing(app, marks, resource="jobs", verify=verify),
        handler_class=_Quiet,
    )  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/jobs/run"

    def call(token: int) -> int:
        req = urllib.request.Request(url, method="POST", headers={HEADER: str(token)})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            json.loads(exc.read())  # every refusal says why, in JSON
            return exc.code

    second = Leadership("web", endpoints=[etcd.endpoint], prefix=prefix, ttl=3, identity="b")
    try:
        old = first.token
        assert old is not None
        assert call(old) == 200
        assert call(10**15) == 403
        assert call(2**63) == 400
        with psycopg.connect(pg_dsn) as conn:
            assert high_water(conn, "jobs") == old
        first.release()
        second.acquire(timeout=5)
        assert second.token is not None and second.token > old
        assert call(old) == 403  # its key is gone: no longer vouched for
        assert call(second.token) == 200
        assert call(old) in (403, 409)
    finally:
        server.shutdown()
        server.server_close()
        first.release()
        second.release()
        store.close()


def test_sql_marks_are_bounded_like_memory_marks_503_never_an_eviction(pg_dsn: str) -> None:
    """``SqlMarks(limit=…)`` holds at most ``limit`` resources in the fence table: a new one
    beyond it is refused (503 from the middleware), no mark is dropped, and the resources it
    holds still advance and still refuse stale tokens (S1). Without a bound any path a client
    invents would add a row for ever."""
    import psycopg

    from leaderjob.fencing import StaleToken
    from leaderjob.fencing.http import MarksFull
    from leaderjob.fencing.sql import SqlMarks, high_water

    marks = SqlMarks(lambda: psycopg.connect(pg_dsn), limit=3)
    for i, name in enumerate(("/a", "/b", "/c")):
        marks.advance(name, 10 + i)
    with pytest.raises(MarksFull):
        marks.advance("/d", 20)
    marks.advance("/a", 30)  # a resource it holds still advances
    with pytest.raises(StaleToken):
        marks.advance("/b", 5)
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT resource, token FROM leaderjob_fence ORDER BY 1").fetchall()
        assert rows == [("/a", 30), ("/b", 11), ("/c", 12)], "no eviction, nothing added"
        assert high_water(conn, "/d") is None

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"done"]

    statuses: list[str] = []
    wsgi = WsgiFencing(app, marks, verify=trusted)
    for path in ("/e", "/c"):
        environ = {"PATH_INFO": path, "HTTP_" + HEADER.upper().replace("-", "_"): "40"}
        body = b"".join(wsgi(environ, lambda status, _headers: statuses.append(status)))
        assert body
    assert [s.split()[0] for s in statuses] == ["503", "200"]


def test_sql_marks_bound_holds_for_new_resources_added_at_once_by_many_replicas(
    pg_dsn: str,
) -> None:
    """Replicas adding new resources at the same moment do not overshoot the bound: the count
    and the insert of a new resource are serialised (READ COMMITTED alone would let each see
    ``limit - 1`` rows and all insert)."""
    import psycopg

    from leaderjob.fencing.http import MarksFull
    from leaderjob.fencing.sql import SqlMarks

    limit, writers = 2, 8
    marks = SqlMarks(lambda: psycopg.connect(pg_dsn), limit=limit)
    start = threading.Barrier(writers)
    outcomes: list[str] = []

    def add(i: int) -> None:
        start.wait()
        try:
            marks.advance(f"/r{i}", 1)
            outcomes.append("ok")
        except MarksFull:
            outcomes.append("full")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["full"] * (writers - limit) + ["ok"] * limit
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM leaderjob_fence").fetchone() == (limit,)
