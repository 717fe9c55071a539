"""The etcd adapter's way to etcd: a gRPC channel per endpoint, which endpoint the next call goes
to, the authentication token, and what a failed call changes.

Part of the adapter (with ``election/etcd.py`` and ``etcd_wire.py``, the only modules that import
etcd3 or grpc). :class:`~.etcd.EtcdStore` makes the calls; :class:`Channels` gives each call its
stub, its metadata and what is left of its timeout, and after a failure moves the next call to
another endpoint. gRPC reconnects within a second (``_CHANNEL_OPTIONS``), not after its default
backoff of up to 120 s.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc  # after election/etcd.py has quietened gRPC's own logging (GRPC_VERBOSITY)
from etcd3 import etcdrpc

from leaderjob.config import Connection
from leaderjob.election.etcd_wire import _TLSUnavailable
from leaderjob.election.store import StoreError, StoreRejected, StoreUnavailable

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Reconnect quickly after etcd comes back; gRPC's default backoff grows to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a dead connection under a long-lived call (the predecessor watch): ping every 10 s,
    # give up after 3 s. etcd's server policy (--grpc-keepalive-min-time 5s, no pings without a
    # stream) answers pings at 5 s or while no call is open with GOAWAY "too_many_pings", which
    # drops the connection and every call on it (seen in tests/faults): stay well inside it.
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 3000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
]


class Channels:
    """The channels of one :class:`~.etcd.EtcdStore`, one per endpoint it has called."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._creds = self._credentials(conn)
        self._channels: dict[str, grpc.Channel] = {}
        #: Each kind of stub, made once per channel (see stub).
        self._stubs: dict[tuple[grpc.Channel, Any], Any] = {}
        self._index = 0
        self._lock = threading.Lock()
        self._auth_token: str | None = None
        #: Endpoints whose last call failed on TLS, since the last call that succeeded.
        self._tls_failed: set[str] = set()

    @staticmethod
    def _credentials(conn: Connection) -> grpc.ChannelCredentials | None:
        if conn.cacert is None and conn.cert is None:
            return None

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        return grpc.ssl_channel_credentials(
            root_certificates=read(conn.cacert),
            private_key=read(conn.key),
            certificate_chain=read(conn.cert),
        )

    def _channel(self) -> grpc.Channel:
        with self._lock:
            endpoint = self._conn.endpoints[self._index % len(self._conn.endpoints)]
            channel = self._channels.get(endpoint)
            if channel is None:
                options = list(_CHANNEL_OPTIONS)
                if self._conn.server_name:
                    options.append(("grpc.ssl_target_name_override", self._conn.server_name))
                if self._creds is not None:
                    channel = grpc.secure_channel(endpoint, self._creds, options=options)
                else:
                    channel = grpc.insecure_channel(endpoint, options=options)
                self._channels[endpoint] = channel
            return channel

    def stub(self, kind: Any) -> Any:
        """A stub of ``kind`` (``etcdrpc.KVStub``...) on the current endpoint's channel, made
        once per channel: making one builds a callable for each of its methods (about 40 µs
        for the KV service, more than a third of a Put's own Python time), and a run makes a
        few calls. Two threads may both make the first one: either serves."""
        channel = self._channel()
        stub = self._stubs.get((channel, kind))
        if stub is None:
            stub = self._stubs[(channel, kind)] = kind(channel)
        return stub

    def rotate(self) -> None:
        with self._lock:
            self._index += 1

    @property
    def endpoint(self) -> str:
        return self._conn.endpoints[self._index % len(self._conn.endpoints)]

    def succeeded(self) -> None:
        self._tls_failed.clear()

    def failed(self, err: StoreError) -> StoreError:
        """Bookkeeping for a failed call: rotate on what another member may not share; only a
        TLS failure at every endpoint in a row is final (no member has a certificate we trust)."""
        if isinstance(err, _TLSUnavailable):
            self._tls_failed.add(self.endpoint)
            if self._tls_failed >= set(self._conn.endpoints):
                return StoreRejected(err.operation, err.detail)
        if isinstance(err, StoreUnavailable):
            self.rotate()
        elif "token" in err.detail and self._conn.user is not None:
            self._auth_token = None  # expired auth token: authenticate again next call
        return err

    def prepare(self, timeout: float) -> tuple[list[tuple[str, str]], float]:
        """Metadata for a call with ``timeout``, and what is left of it for the call itself.

        Authentication (when a user is set and no token is held) runs inside the call's own
        budget: one call, one timeout, not an Authenticate with the full timeout first.
        """
        if self._conn.user is None:
            return [], timeout
        if self._auth_token is None:
            started = time.monotonic()
            stub = self.stub(etcdrpc.AuthStub)
            resp = stub.Authenticate(
                etcdrpc.AuthenticateRequest(name=self._conn.user, password=self._conn.password),
                timeout=timeout,
            )
            self._auth_token = resp.token
            timeout -= time.monotonic() - started
            if timeout <= 0:
                raise StoreUnavailable("authenticate", "the call's timeout ran out")
        return [("token", self._auth_token or "")], timeout

    def kvs(self, timeout: float) -> tuple[Any, list[tuple[str, str]], float]:
        md, left = self.prepare(timeout)
        return self.stub(etcdrpc.KVStub), md, left

    def leases(self, timeout: float) -> tuple[Any, list[tuple[str, str]], float]:
        md, left = self.prepare(timeout)
        return self.stub(etcdrpc.LeaseStub), md, left

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()
