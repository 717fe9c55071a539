"""Writes guarded by the leader's key, on the in-memory store (the real etcd runs in
tests/integration/test_fencing.py): S1 without a high-water mark."""

from __future__ import annotations

import click
import pytest

from leaderjob.clock import FakeClock
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import StoreUnavailable
from leaderjob.fencing import EXIT_UNKNOWN, FencingError, StaleToken
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
    from leaderjob.cli.fenced import job_endpoints
    from leaderjob.config import Connection

    plain = Connection(endpoints=("a:2379", "b:2379"))
    assert job_endpoints(plain) == ("a:2379", "b:2379")
    tls = Connection(endpoints=("a:2379",), cacert="/etc/ssl/certs/ca-certificates.crt")
    assert job_endpoints(tls) == ("https://a:2379",)


def _fenced_cli(store: MemoryStore) -> click.Group:
    """`leaderjob fenced` wired to ``store`` instead of etcd."""
    from leaderjob.cli import fenced as fenced_cli
    from leaderjob.cli.options import build_connection, connection_options

    group = click.Group()
    fenced_cli.register(group, connection_options, build_connection, lambda conn: store)
    return group


def test_a_fenced_put_without_an_answer_exits_5_outcome_unknown_and_may_have_landed() -> None:
    """A Txn applied by etcd whose answer was lost (a timeout): `leaderjob fenced put` must not
    say "nothing written" (1) — it exits 5, outcome unknown; a re-read shows it landed."""
    from click.testing import CliRunner

    store = MemoryStore(FakeClock())
    key, token = KEY, _leader(store)
    env = {"LEADERJOB_LEADER_KEY": key, "LEADERJOB_FENCING_TOKEN": str(token)}
    store.lose_reply_next(1, "guarded_put")
    out = CliRunner().invoke(_fenced_cli(store), ["fenced", "put", "/app/k", "v"], env=env)
    assert out.exit_code == EXIT_UNKNOWN, out.output
    assert "outcome unknown" in out.output and "re-read" in out.output
    got = store.get("/app/k", timeout=1)
    assert got is not None and got.value == b"v"


def test_a_fenced_put_that_never_connected_exits_1_nothing_written() -> None:
    """gRPC's "failed to connect to all addresses": no request was sent — exit 1, not 5."""
    from click.testing import CliRunner

    store = MemoryStore(FakeClock())
    key, token = KEY, _leader(store)

    def refuse(*args: object, **kwargs: object) -> bool:
        raise StoreUnavailable(
            "guarded_put", "failed to connect to all addresses; last error: Connection refused"
        )

    store.guarded_put = refuse  # type: ignore[method-assign]
    env = {"LEADERJOB_LEADER_KEY": key, "LEADERJOB_FENCING_TOKEN": str(token)}
    out = CliRunner().invoke(_fenced_cli(store), ["fenced", "put", "/app/k", "v"], env=env)
    assert out.exit_code == 1, out.output
    assert "cannot write to etcd" in out.output


def test_unknown_then_stale_on_the_next_endpoint_exits_5_not_3() -> None:
    """The first endpoint applied the write but lost the answer; the second then saw the key
    gone (stale). "Nothing written" (3) would be a lie: the outcome is unknown (5)."""
    from leaderjob.cli.fenced import apply_fenced

    class Fence:
        calls = 0

        def apply(self, puts: object = (), deletes: object = ()) -> None:
            self.calls += 1
            if self.calls == 1:
                raise StoreUnavailable("txn", "Deadline Exceeded")
            raise StaleToken("/k", 5)

    with pytest.raises(SystemExit) as exit_:
        apply_fenced(Fence(), 2, [("/app/x", b"1")], [])
    assert exit_.value.code == EXIT_UNKNOWN


def test_a_fenced_write_among_the_candidate_keys_is_refused_before_sending() -> None:
    """A put on the leader key passed the guard and dropped the key's lease: the election was
    broken for good. The fence refuses the candidates' directory; Leadership refuses its whole
    election (tests/integration/test_leadership_lifecycle.py)."""
    store = MemoryStore(FakeClock())
    lease = store.grant(10, timeout=1).lease_id
    key = "/lj/app/leader/1f"
    token = store.create(key, b"me", lease, timeout=1).create_revision
    fence = EtcdFence(store, key, token)
    for target in (key, "/lj/app/leader/2a"):
        with pytest.raises(FencingError, match="inside the election's own keys"):
            fence.put(target, "x")
    info = store.get(key, timeout=1)
    assert info is not None and info.lease_id == lease and info.value == b"me"
    fence.put("/lj/app/data", "ok")
