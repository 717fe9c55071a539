"""The etcd adapter's own rules, without a server: stubs replaced by fakes.

* Errors that another member may not share move the next call to the next endpoint: a learner
  member (FAILED_PRECONDITION), TLS words inside UNAVAILABLE. Only what no member can fix is
  final: bad credentials, permission denied, a certificate refused at *every* endpoint in a row.
* Authentication runs inside the call's own timeout: one budget per call.
* Watches carry require-leader metadata; a stream that ends without a delete moves the next
  watch to another endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from leaderjob.config import Connection
from leaderjob.election import etcd as adapter
from leaderjob.election import etcd_channels, etcd_wire
from leaderjob.election.etcd import EtcdStore
from leaderjob.election.store import StoreRejected, StoreUnavailable

ENDPOINTS = ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
LEARNER = (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: rpc not supported for learner")
TLS = (
    grpc.StatusCode.UNAVAILABLE,
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:2379: "
    "Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL routines:"
    "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class Server:
    """What the fake stubs answer, and what they were asked."""

    def __init__(self) -> None:
        self.errors: list[tuple[grpc.StatusCode, str]] = []  # raised by the next Range calls
        self.auth_takes = 0.0
        self.clock = FakeClock()
        self.range_timeouts: list[float] = []
        self.watch_metadata: list[Any] = []
        self.watch_events: list[list[int]] = []  # event types per response, then the stream ends


class KVStub:
    server: Server

    def __init__(self, channel: Any) -> None:
        pass

    def Range(self, req: Any, *, timeout: float, metadata: Any) -> Any:
        self.server.range_timeouts.append(timeout)
        if self.server.errors:
            raise FakeRpcError(*self.server.errors.pop(0))
        return type("Resp", (), {"kvs": []})()


class AuthStub:
    server: Server

    def __init__(self, channel: Any) -> None:
        pass

    def Authenticate(self, req: Any, *, timeout: float) -> Any:
        self.server.clock.now += min(timeout, self.server.auth_takes)
        return type("Resp", (), {"token": "t0k3n"})()


class WatchCall:
    def __init__(self, responses: list[Any]) -> None:
        self._responses = responses

    def __iter__(self) -> Iterator[Any]:
        return iter(self._responses)

    def cancel(self) -> None:
        pass


class WatchStub:
    server: Server

    def __init__(self, channel: Any) -> None:
        pass

    def Watch(self, requests: Any, *, metadata: Any) -> WatchCall:
        self.server.watch_metadata.append(metadata)
        responses = [
            type(
                "Resp",
                (),
                {
                    "canceled": False,
                    "compact_revision": 0,
                    "events": [type("Ev", (), {"type": t})() for t in types],
                },
            )()
            for types in self.server.watch_events
        ]
        return WatchCall(responses)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Server:
    srv = Server()
    for stub in (KVStub, AuthStub, WatchStub):
        monkeypatch.setattr(stub, "server", srv, raising=False)
        monkeypatch.setattr(adapter.etcdrpc, stub.__name__, stub)
    monkeypatch.setattr(etcd_channels, "time", srv.clock)
    return srv


def store(**kwargs: Any) -> EtcdStore:
    return EtcdStore(Connection(endpoints=ENDPOINTS, **kwargs))


def test_learner_member_moves_to_the_next_endpoint(server: Server) -> None:
    s = store()
    server.errors = [LEARNER]
    with pytest.raises(StoreUnavailable) as exc:
        s.get("/k", timeout=1.0)
    assert not isinstance(exc.value, StoreRejected)
    assert s.endpoint == ENDPOINTS[1]
    assert s.get("/k", timeout=1.0) is None  # the next member answers


def test_tls_failure_at_one_endpoint_moves_on_and_is_final_only_at_every_endpoint(
    server: Server,
) -> None:
    s = store()
    server.errors = [TLS, TLS]
    for i in range(2):
        with pytest.raises(StoreUnavailable) as exc:
            s.get("/k", timeout=1.0)
        assert not isinstance(exc.value, StoreRejected)
        assert s.endpoint == ENDPOINTS[i + 1]
    assert s.get("/k", timeout=1.0) is None  # the third member has a certificate we trust
    server.errors = [TLS] * 3
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            s.get("/k", timeout=1.0)
    with pytest.raises(StoreRejected, match="cannot verify etcd's certificate"):
        s.get("/k", timeout=1.0)  # no member has: the operator must fix --cacert


def test_tls_failure_with_one_endpoint_is_final_at_once(server: Server) -> None:
    s = EtcdStore(Connection(endpoints=ENDPOINTS[:1]))
    server.errors = [TLS]
    with pytest.raises(StoreRejected, match="TLS"):
        s.get("/k", timeout=1.0)


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: authentication failed"),
        (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
    ],
)
def test_what_no_member_can_fix_is_final(
    server: Server, code: grpc.StatusCode, detail: str
) -> None:
    s = store(user="u", password="p")
    server.errors = [(code, detail)]
    with pytest.raises(StoreRejected):
        s.get("/k", timeout=1.0)


def test_authentication_runs_inside_the_calls_own_timeout(server: Server) -> None:
    s = store(user="u", password="p")
    server.auth_takes = 0.7
    s.get("/k", timeout=1.0)
    assert server.range_timeouts[-1] == pytest.approx(0.3)  # one budget, not 1.0 + 0.7
    s.get("/k", timeout=1.0)
    assert server.range_timeouts[-1] == pytest.approx(1.0)  # token held: no authentication


def test_authentication_that_uses_the_whole_timeout_fails_the_call(server: Server) -> None:
    s = store(user="u", password="p")
    server.auth_takes = 5.0
    with pytest.raises(StoreUnavailable):
        s.get("/k", timeout=1.0)
    assert server.range_timeouts == []
    assert s.endpoint == ENDPOINTS[1]


def test_watch_requires_a_leader_and_a_broken_stream_moves_to_another_endpoint(
    server: Server,
) -> None:
    s = store()
    fired = threading.Event()
    server.watch_events = []  # the member cancels the stream (no leader): it ends, no delete
    w = s.watch_deletes(["/a"], 5, fired.set, timeout=0.5)
    assert fired.wait(5)
    assert w.fired.is_set()
    assert ("hasleader", "true") in server.watch_metadata[-1]
    assert s.endpoint == ENDPOINTS[1]


def test_watch_that_saw_a_delete_stays_on_its_endpoint(server: Server) -> None:
    s = store()
    fired = threading.Event()
    server.watch_events = [[adapter._DELETE]]
    s.watch_deletes(["/a"], 5, fired.set, timeout=0.5)
    assert fired.wait(5)
    assert s.endpoint == ENDPOINTS[0]


def test_user_against_an_etcd_without_auth_is_rejected_not_retried() -> None:
    """`--user` on an etcd without auth: every member answers FAILED_PRECONDITION "authentication
    is not enabled" — unlike a learner's refusal, no other member fixes it: fail at start-up."""
    exc = FakeRpcError(
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: authentication is not enabled"
    )
    err = adapter._translate("grant", exc)
    assert isinstance(err, StoreRejected)
    learner = adapter._translate("grant", FakeRpcError(*LEARNER))
    assert not isinstance(learner, StoreRejected)


def test_a_client_certificate_refused_by_etcd_34_is_a_tls_failure() -> None:
    """etcd 3.4 answers a refused client certificate with a broken record (TSI_DATA_CORRUPTED):
    it must count as a TLS failure, so a single-endpoint daemon stops at start-up."""
    exc = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:2379: "
        "Unwrap failed (TSI_DATA_CORRUPTED)",
    )
    err = adapter._translate("grant", exc)
    assert isinstance(err, etcd_wire._TLSUnavailable)
    assert "client certificate" in err.detail


def test_a_tcp_connect_cut_short_is_unavailable_not_a_tls_failure() -> None:
    """A plain TCP connect whose deadline passed (a loaded machine) reads "tcp handshaker
    shutdown": no TLS was spoken, so it must not count as a TLS failure — with one endpoint that
    made a plaintext daemon exit at start-up with "etcd rejected leaderjob: TLS handshake
    failed" instead of retrying."""
    exc = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:21308: "
        "tcp handshaker shutdown",
    )
    err = adapter._translate("grant", exc)
    assert isinstance(err, StoreUnavailable) and not isinstance(err, etcd_wire._TLSUnavailable)


def test_a_stub_is_made_once_per_channel_not_per_call(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making a stub builds a callable per method of its service (tens of microseconds each
    time, a third of a call's own Python time): one stub per endpoint's channel serves every
    call; another endpoint (after a failure moved the calls there) gets its own."""
    made: list[Any] = []

    class Counted(KVStub):
        def __init__(self, channel: Any) -> None:
            made.append(channel)

    monkeypatch.setattr(adapter.etcdrpc, "KVStub", Counted)
    s = store()
    for _ in range(3):
        s.get("/k", timeout=1.0)
    assert len(made) == 1
    server.errors.append((grpc.StatusCode.UNAVAILABLE, "connection refused"))
    with pytest.raises(StoreUnavailable):
        s.get("/k", timeout=1.0)
    s.get("/k", timeout=1.0)
    s.get("/k", timeout=1.0)
    assert len(made) == 2 and made[0] is not made[1]
