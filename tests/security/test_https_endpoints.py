"""`https://` endpoints mean TLS against a real etcd, with the system CA bundle when no --cacert
is given (here the test CA stands in for the system bundle through $SSL_CERT_FILE, which OpenSSL
and leaderjob read as the system bundle's location)."""

from __future__ import annotations

from tests.security.test_tls_auth import _assert_ran, _lock


def test_https_endpoint_uses_tls_with_the_system_ca_bundle(named_tls_etcd, tmp_path):
    """No --cacert: https:// alone still speaks TLS and verifies etcd against the system bundle
    (before, it spoke plain text to a TLS port and never connected)."""
    env = {"SSL_CERT_FILE": str(named_tls_etcd.certs.ca)}
    endpoint = f"https://{named_tls_etcd.endpoint}"
    ok = _lock(tmp_path, endpoint, "--tls-server-name", "etcd.test", "--rpc-timeout", "2s", env=env)
    _assert_ran(*ok[:2])
