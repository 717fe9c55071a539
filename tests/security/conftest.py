"""Real etcd servers for the security tests: one with TLS and client-certificate auth, one with
a certificate valid only for another name, and one with RBAC (auth) enabled."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.binaries import find_etcd
from tests.harness.etcd import EtcdServer, etcdctl, free_port
from tests.harness.procs import wait_until
from tests.security.certs import Bundle, make_bundle

ROOT_PASSWORD = "root-secret"
USER, PASSWORD = "leaderjob", "s3cret pass"  # a space, on purpose
ROLE = "leaderjob-role"
ALLOWED = "/ljsec"


@dataclass
class TlsEtcd:
    endpoint: str
    certs: Bundle


@contextlib.contextmanager
def _tls_etcd(
    base: Path, certs: Bundle, cert: Path, key: Path, *, client_auth: bool
) -> Iterator[TlsEtcd]:
    client, peer, metrics = free_port(), free_port(), free_port()
    data = Path(tempfile.mkdtemp(prefix="ljtls-", dir=base))
    argv = [
        find_etcd(),
        "--name", "tls",
        "--data-dir", str(data / "data"),
        "--listen-client-urls", f"https://127.0.0.1:{client}",
        "--advertise-client-urls", f"https://127.0.0.1:{client}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"tls=http://127.0.0.1:{peer}",
        "--listen-metrics-urls", f"http://127.0.0.1:{metrics}",
        "--cert-file", str(cert),
        "--key-file", str(key),
        "--log-level", "error",
    ]  # fmt: skip
    if client_auth:
        argv += ["--trusted-ca-file", str(certs.ca), "--client-cert-auth"]
    with (data / "etcd.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/health", timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False

    try:
        assert wait_until(healthy, 30, 0.1), (data / "etcd.log").read_text()[-2000:]
        yield TlsEtcd(f"127.0.0.1:{client}", certs)
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return make_bundle(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_etcd(certs: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEtcd]:
    """etcd on https with --client-cert-auth; its certificate names 127.0.0.1 and localhost."""
    with _tls_etcd(
        tmp_path_factory.mktemp("tls"),
        certs,
        certs.server_cert,
        certs.server_key,
        client_auth=True,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def named_tls_etcd(certs: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEtcd]:
    """etcd on https whose certificate names only ``etcd.test`` (no client certificates)."""
    with _tls_etcd(
        tmp_path_factory.mktemp("named"),
        certs,
        certs.named_server_cert,
        certs.named_server_key,
        client_auth=False,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def rbac_etcd() -> Iterator[EtcdServer]:
    """etcd with auth enabled: ``root``, and ``leaderjob`` whose role may read and write
    ``/ljsec/`` only."""
    server = EtcdServer()
    try:
        ep = server.endpoint
        etcdctl(ep, "user", "add", "root", f"--new-user-password={ROOT_PASSWORD}")
        etcdctl(ep, "user", "grant-role", "root", "root")
        etcdctl(ep, "role", "add", ROLE)
        etcdctl(ep, "role", "grant-permission", "--prefix=true", ROLE, "readwrite", f"{ALLOWED}/")
        etcdctl(ep, "user", "add", USER, f"--new-user-password={PASSWORD}")
        etcdctl(ep, "user", "grant-role", USER, ROLE)
        etcdctl(ep, "auth", "enable")
        yield server
    finally:
        server.close()
