"""The HTTP listener: IPv4, IPv6, and an IPv6 wildcard that serves both."""

from __future__ import annotations

import http.client
import socket
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from leaderjob.ops.http import Server, parse_addr


def _get(host: str, port: int) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().status
    finally:
        conn.close()


def _server(addr: str) -> Server:
    parsed = parse_addr(addr)
    assert parsed is not None
    snapshot: dict[str, Any] = {}
    server = Server(parsed, CollectorRegistry(), lambda: snapshot)
    server.start()
    return server


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this host")


@needs_ipv6
def test_ipv6_wildcard_is_dual_stack() -> None:
    server = _server("[::]:0")
    try:
        assert _get("::1", server.port) == 200
        assert _get("127.0.0.1", server.port) == 200
    finally:
        server.close()


@needs_ipv6
def test_ipv6_loopback() -> None:
    server = _server("[::1]:0")
    try:
        assert _get("::1", server.port) == 200
    finally:
        server.close()


def test_ipv4_still_works() -> None:
    server = _server("127.0.0.1:0")
    try:
        assert _get("127.0.0.1", server.port) == 200
    finally:
        server.close()
