"""Writes guarded by the leader's key, on the in-memory store (the real etcd runs in
tests/integration/test_fencing.py): S1 without a high-water mark."""

from __future__ import annotations

import pytest

from leaderjob.clock import FakeClock
from leaderjob.election.memory import MemoryStore
from leaderjob.fencing import FencingError, StaleToken
from leaderjob.fencing.etcd import EtcdFence

KEY = "/leaderjob/e/abc"


def _leader(store: MemoryStore) -> int:
    lease = store.grant(5, timeout=1)
    return store.create(KEY, b"me", lease.lease_id, timeout=1).create_revision


def test_s1_the_leader_writes_while_its_key_stands() -> None:
    store = MemoryStore(FakeClock())
    token = _leader(store)
    fence = EtcdFence(store, KEY, token)
    fence.put("/app/cursor", "42")
    info = store.get("/app/cursor", timeout=1)
    assert info is not None and info.value == b"42"
    fence.delete("/app/cursor")
    assert store.get("/app/cursor", timeout=1) is None


def test_s1_a_deposed_leaders_write_is_rejected() -> None:
    store = MemoryStore(FakeClock())
    token = _leader(store)
    store.delete(KEY, timeout=1)  # the lease expired
    with pytest.raises(StaleToken):
        EtcdFence(store, KEY, token).put("/app/cursor", "1")
    lease = store.grant(5, timeout=1)
    store.create(KEY, b"again", lease.lease_id, timeout=1)  # the same key, a larger revision
    with pytest.raises(StaleToken):
        EtcdFence(store, KEY, token).delete("/app/cursor")
    assert store.get("/app/cursor", timeout=1) is None


def test_from_env_needs_the_key_and_a_token() -> None:
    store = MemoryStore(FakeClock())
    env = {"LEADERJOB_LEADER_KEY": KEY, "LEADERJOB_FENCING_TOKEN": "12"}
    assert EtcdFence.from_env(store, env).token == 12
    with pytest.raises(FencingError):
        EtcdFence.from_env(store, {"LEADERJOB_FENCING_TOKEN": "12"})
    with pytest.raises(FencingError):
        EtcdFence.from_env(store, {"LEADERJOB_LEADER_KEY": KEY, "LEADERJOB_FENCING_TOKEN": "x"})


def test_fenced_cli_usage_errors_exit_2_and_sql_prints_the_ddl() -> None:
    from click.testing import CliRunner

    from leaderjob.cli import main
    from leaderjob.fencing.sql import ddl

    runner = CliRunner()
    no_key = runner.invoke(main, ["fenced", "put", "k", "v"], env={"LEADERJOB_FENCING_TOKEN": "5"})
    assert no_key.exit_code == 2 and "LEADERJOB_LEADER_KEY" in no_key.output
    env = {"LEADERJOB_LEADER_KEY": KEY, "LEADERJOB_FENCING_TOKEN": "0"}
    bad = runner.invoke(main, ["fenced", "delete", "k"], env=env)
    assert bad.exit_code == 2 and "positive" in bad.output
    sql = runner.invoke(main, ["fenced", "sql"])
    assert sql.exit_code == 0 and sql.output == ddl()
    assert runner.invoke(main, ["fenced", "sql", "--table", "a b"]).exit_code == 2


def test_the_job_gets_https_endpoints_when_the_daemon_speaks_tls() -> None:
    from leaderjob.config import Connection
    from leaderjob.fenced_cli import job_endpoints

    plain = Connection(endpoints=("a:2379", "b:2379"))
    assert job_endpoints(plain) == ("a:2379", "b:2379")
    tls = Connection(endpoints=("a:2379",), cacert="/etc/ssl/certs/ca-certificates.crt")
    assert job_endpoints(tls) == ("https://a:2379",)
