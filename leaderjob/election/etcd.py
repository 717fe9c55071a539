"""The etcd adapter: the only module that imports etcd3 or grpc.

It speaks etcd's v3 gRPC API through the protobuf stubs that the ``etcd3`` package ships
(python3-etcd3), on channels it manages itself, because the client class of that package does not
fit a lease holder: a timed-out call marks its endpoint failed for 300 s of wall-clock time, and
its range builder mixes up create- and mod-revision filters. Here every call has its own deadline,
a failed call moves the next one to another endpoint, and gRPC reconnects within a second.

Errors are translated at this edge, in one place (:func:`_translate`), into the port's two kinds.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

# gRPC's C core logs at INFO by default ("Handshake failed ..." for every TLS refusal): keep its
# errors, drop the chatter, so that a start-up failure reads as our one line. Must be set before
# grpc is imported; an operator's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from etcd3 import etcdrpc

from leaderjob.config import Connection
from leaderjob.election.store import (
    Grant,
    KeyInfo,
    Standing,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)

_DELETE = 1  # mvccpb.Event.EventType.DELETE
#: etcd's rpctypes.MetadataRequireLeaderKey: a member without a leader cancels the stream.
_REQUIRE_LEADER = ("hasleader", "true")
#: Candidacies one `standings` read covers: two range operations each, under etcd's default
#: --max-txn-ops of 128.
_MAX_STANDINGS = 64
_T = TypeVar("_T")

#: Codes that say "this endpoint or this moment", worth another try elsewhere or later.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}

#: TLS failures surface as UNAVAILABLE ("failed to connect to all addresses; last error: ...");
#: these phrases in the detail tell them apart from a server that is merely down, so that a wrong
#: CA fails at start-up instead of retrying forever. Each maps to what to check, first match wins
#: (details as grpcio 1.85 / BoringSSL word them, verified against etcd 3.5 in tests/security).
_TLS_HINTS: tuple[tuple[str, str], ...] = (
    ("certificate_verify_failed", "cannot verify etcd's certificate (wrong --cacert?)"),
    (
        "hostname verification",
        "etcd's certificate does not name this endpoint "
        "(connect by a name it carries, or set --tls-server-name)",
    ),
    (
        "bad_certificate",
        "etcd refused our client certificate (expired, not signed by the CA "
        "etcd trusts, or missing --cert/--key?)",
    ),
    ("certificate_expired", "etcd refused our client certificate: expired"),
    (
        # etcd 3.4 (Go 1.x TLS) closes the handshake on a client certificate it refuses; grpc
        # then reports the broken record, not an alert.
        "tsi_data_corrupted",
        "etcd refused our client certificate (expired, not signed by the CA etcd trusts, "
        "or missing --cert/--key?)",
    ),
    ("certificate_required", "etcd requires a client certificate (--cert/--key)"),
    ("security handshaker", "cannot set up TLS (does --key belong to --cert?)"),
    ("wrong_version_number", "TLS to a server that does not speak TLS (drop --cacert?)"),
    ("handshake", "TLS handshake failed"),
    ("ssl", "TLS failed"),
    ("certificate", "TLS certificate problem"),
    ("tls", "TLS failed"),
)

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


class _TLSUnavailable(StoreUnavailable):
    """A TLS failure at one endpoint: another member may have the right certificate (a member
    mid-rotation, one misconfigured). Fatal only once every endpoint has failed so in a row."""


def _translate(operation: str, exc: grpc.RpcError) -> StoreError:
    """Rejected: what no member can fix (credentials, permissions, a malformed request).
    Everything else is this endpoint or this moment, and moves on to the next endpoint: a learner
    member answers FAILED_PRECONDITION ("rpc not supported for learner"), and a TLS failure is
    told apart only by its words inside UNAVAILABLE."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    detail = (exc.details() if hasattr(exc, "details") else None) or str(code)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return StoreRejected(operation, f"{detail} ({code.name.lower()})")
    lowered = detail.lower()
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return StoreRejected(operation, detail)
    if code is grpc.StatusCode.FAILED_PRECONDITION and "authentication is not enabled" in lowered:
        # --user against an etcd without auth: every member says so (etcd's ErrAuthNotEnabled
        # shares FAILED_PRECONDITION with the learner's refusal, which another member fixes).
        return StoreRejected(operation, f"{detail} (drop --user, or enable auth in etcd)")
    if code is grpc.StatusCode.UNAVAILABLE:
        for phrase, hint in _TLS_HINTS:
            if phrase in lowered:
                return _TLSUnavailable(operation, f"TLS: {hint}: {detail}")
    return StoreUnavailable(operation, detail)


def _kv(kv: Any) -> KeyInfo:
    return KeyInfo(
        key=kv.key.decode(),
        value=bytes(kv.value),
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        lease_id=kv.lease,
    )


def _prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


def _rpc(operation: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Run an RPC against the current endpoint; on failure, rotate and translate the error."""

    def wrap(fn: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(fn)
        def call(self: EtcdStore, *args: Any, **kwargs: Any) -> _T:
            try:
                result = fn(self, *args, **kwargs)
            except grpc.RpcError as exc:
                raise self._failed(_translate(operation, exc)) from None
            except StoreUnavailable as exc:
                self._rotate()
                raise exc from None
            self._tls_failed.clear()
            return result

        return call

    return wrap


class _DeleteWatch:
    """One watch stream on a few keys; fires once on the first DELETE or on any error.

    A stream that ends without a DELETE (an error, a cancel by the server, a compaction) calls
    ``on_broken`` first, so that the watch the caller makes next goes to another endpoint.
    """

    def __init__(
        self,
        stub: Any,
        keys: Sequence[str],
        start_revision: int,
        metadata: list[tuple[str, str]],
        on_fire: Callable[[], None],
        on_broken: Callable[[], None],
    ) -> None:
        self.fired = threading.Event()
        self._on_fire = on_fire
        self._on_broken = on_broken
        self._requests: queue.Queue[Any] = queue.Queue()
        for key in keys:
            create = etcdrpc.WatchCreateRequest(
                key=key.encode(),
                start_revision=start_revision,
                filters=[etcdrpc.WatchCreateRequest.NOPUT],
            )
            self._requests.put(etcdrpc.WatchRequest(create_request=create))
        self._cancelled = False
        self._call = stub.Watch(self._request_iter(), metadata=metadata)
        self._thread = threading.Thread(target=self._run, name="leaderjob-watch", daemon=True)
        self._thread.start()

    def _request_iter(self) -> Iterator[Any]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _run(self) -> None:
        deleted = False
        try:
            for resp in self._call:
                if resp.canceled or resp.compact_revision:
                    break
                if any(ev.type == _DELETE for ev in resp.events):
                    deleted = True
                    break
        except grpc.RpcError:
            pass
        if not deleted and not self._cancelled:
            self._on_broken()
        self._fire()

    def _fire(self) -> None:
        if not self.fired.is_set() and not self._cancelled:
            self.fired.set()
            self._on_fire()

    def cancel(self) -> None:
        self._cancelled = True
        self._requests.put(None)
        self._call.cancel()


class EtcdStore:
    """:class:`leaderjob.election.store.Store` on a real etcd cluster."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._creds = self._credentials(conn)
        self._channels: dict[str, grpc.Channel] = {}
        self._index = 0
        self._lock = threading.Lock()
        self._auth_token: str | None = None
        #: Endpoints whose last call failed on TLS, since the last call that succeeded.
        self._tls_failed: set[str] = set()

    # -- connection management ---------------------------------------------------------------

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

    def _rotate(self) -> None:
        with self._lock:
            self._index += 1

    @property
    def endpoint(self) -> str:
        return self._conn.endpoints[self._index % len(self._conn.endpoints)]

    def _failed(self, err: StoreError) -> StoreError:
        """Bookkeeping for a failed call: rotate on what another member may not share; only a
        TLS failure at every endpoint in a row is final (no member has a certificate we trust)."""
        if isinstance(err, _TLSUnavailable):
            self._tls_failed.add(self.endpoint)
            if self._tls_failed >= set(self._conn.endpoints):
                return StoreRejected(err.operation, err.detail)
        if isinstance(err, StoreUnavailable):
            self._rotate()
        elif "token" in err.detail and self._conn.user is not None:
            self._auth_token = None  # expired auth token: authenticate again next call
        return err

    def _prepare(self, timeout: float) -> tuple[list[tuple[str, str]], float]:
        """Metadata for a call with ``timeout``, and what is left of it for the call itself.

        Authentication (when a user is set and no token is held) runs inside the call's own
        budget: one call, one timeout, not an Authenticate with the full timeout first.
        """
        if self._conn.user is None:
            return [], timeout
        if self._auth_token is None:
            started = time.monotonic()
            stub = etcdrpc.AuthStub(self._channel())
            resp = stub.Authenticate(
                etcdrpc.AuthenticateRequest(name=self._conn.user, password=self._conn.password),
                timeout=timeout,
            )
            self._auth_token = resp.token
            timeout -= time.monotonic() - started
            if timeout <= 0:
                raise StoreUnavailable("authenticate", "the call's timeout ran out")
        return [("token", self._auth_token or "")], timeout

    def _kvs(self, timeout: float) -> tuple[Any, list[tuple[str, str]], float]:
        md, left = self._prepare(timeout)
        return etcdrpc.KVStub(self._channel()), md, left

    def _leases(self, timeout: float) -> tuple[Any, list[tuple[str, str]], float]:
        md, left = self._prepare(timeout)
        return etcdrpc.LeaseStub(self._channel()), md, left

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    # -- leases ------------------------------------------------------------------------------

    @_rpc("grant")
    def grant(self, ttl: int, *, timeout: float) -> Grant:
        stub, md, timeout = self._leases(timeout)
        resp = stub.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=ttl), timeout=timeout, metadata=md)
        if resp.error:
            raise StoreUnavailable("grant", resp.error)
        return Grant(lease_id=resp.ID, ttl=resp.TTL)

    @_rpc("keepalive")
    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        # One request on a fresh stream: exactly one keepalive in flight, with its own deadline.
        stub, md, timeout = self._leases(timeout)
        responses = stub.LeaseKeepAlive(
            iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=timeout, metadata=md
        )
        for resp in responses:
            return int(resp.TTL)
        return 0

    @_rpc("revoke")
    def revoke(self, lease_id: int, *, timeout: float) -> None:
        stub, md, timeout = self._leases(timeout)
        try:
            stub.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=lease_id), timeout=timeout, metadata=md)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:  # already expired: nothing to do
                raise

    @_rpc("lease_remaining")
    def lease_remaining(self, lease_id: int, *, timeout: float) -> int:
        stub, md, timeout = self._leases(timeout)
        resp = stub.LeaseTimeToLive(
            etcdrpc.LeaseTimeToLiveRequest(ID=lease_id), timeout=timeout, metadata=md
        )
        return int(resp.TTL)

    # -- election keys -----------------------------------------------------------------------

    @_rpc("create")
    def create(self, key: str, value: bytes, lease_id: int, *, timeout: float) -> KeyInfo:
        k = key.encode()
        txn = etcdrpc.TxnRequest(
            compare=[
                etcdrpc.Compare(
                    key=k,
                    target=etcdrpc.Compare.CREATE,
                    result=etcdrpc.Compare.EQUAL,
                    create_revision=0,
                )
            ],
            success=[
                etcdrpc.RequestOp(
                    request_put=etcdrpc.PutRequest(key=k, value=value, lease=lease_id)
                )
            ],
            failure=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=k))],
        )
        stub, md, timeout = self._kvs(timeout)
        resp = stub.Txn(txn, timeout=timeout, metadata=md)
        if resp.succeeded:
            rev = resp.header.revision
            return KeyInfo(key, value, rev, rev, lease_id)
        kvs = resp.responses[0].response_range.kvs
        if not kvs:  # deleted between compare and read: cannot happen inside one Txn
            raise StoreUnavailable("create", "key vanished inside a transaction")
        return _kv(kvs[0])

    @_rpc("standing")
    def standing(self, prefix: str, key: str, create_revision: int, *, timeout: float) -> Standing:
        return self._standings([(prefix, key, create_revision)], timeout)[0]

    @_rpc("standings")
    def standings(
        self, queries: Sequence[tuple[str, str, int]], *, timeout: float
    ) -> list[Standing]:
        # etcd caps the operations of one Txn (--max-txn-ops, 128 by default): two per query.
        if len(queries) > _MAX_STANDINGS:
            raise StoreUnavailable(
                "standings", f"{len(queries)} keys in one read; at most {_MAX_STANDINGS}"
            )
        return self._standings(queries, timeout)

    def _standings(self, queries: Sequence[tuple[str, str, int]], timeout: float) -> list[Standing]:
        ops = []
        for prefix, key, create_revision in queries:
            p = (prefix.rstrip("/") + "/").encode()
            own = etcdrpc.RangeRequest(key=key.encode())
            pred = etcdrpc.RangeRequest(
                key=p,
                range_end=_prefix_end(p),
                max_create_revision=create_revision - 1,
                sort_order=etcdrpc.RangeRequest.DESCEND,
                sort_target=etcdrpc.RangeRequest.CREATE,
                limit=1,
            )
            ops += [etcdrpc.RequestOp(request_range=own), etcdrpc.RequestOp(request_range=pred)]
        stub, md, timeout = self._kvs(timeout)
        resp = stub.Txn(etcdrpc.TxnRequest(success=ops), timeout=timeout, metadata=md)
        out = []
        for i in range(len(queries)):
            own_kvs = resp.responses[2 * i].response_range.kvs
            pred_kvs = resp.responses[2 * i + 1].response_range.kvs
            out.append(
                Standing(
                    own=_kv(own_kvs[0]) if own_kvs else None,
                    predecessor=_kv(pred_kvs[0]) if pred_kvs else None,
                    revision=resp.header.revision,
                )
            )
        return out

    @_rpc("candidates")
    def candidates(self, prefix: str, *, timeout: float) -> list[KeyInfo]:
        p = (prefix.rstrip("/") + "/").encode()
        req = etcdrpc.RangeRequest(
            key=p,
            range_end=_prefix_end(p),
            sort_order=etcdrpc.RangeRequest.ASCEND,
            sort_target=etcdrpc.RangeRequest.CREATE,
        )
        stub, md, timeout = self._kvs(timeout)
        return [_kv(kv) for kv in stub.Range(req, timeout=timeout, metadata=md).kvs]

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> _DeleteWatch:
        """``timeout`` bounds authentication, the only blocking part of opening the stream.

        Made with require-leader metadata (``hasleader=true``, what etcd's clients send with
        ``WithRequireLeader``): a member that has lost its peers cancels the stream instead of
        holding it open and silent, and the next watch goes to another endpoint.
        """
        try:
            md, _ = self._prepare(self._conn.rpc_timeout if timeout is None else timeout)
            return _DeleteWatch(
                etcdrpc.WatchStub(self._channel()),
                keys,
                start_revision,
                [*md, _REQUIRE_LEADER],
                on_fire,
                self._rotate,
            )
        except grpc.RpcError as exc:
            raise self._failed(_translate("watch", exc)) from None
        except StoreUnavailable:
            self._rotate()
            raise

    # -- plain keys ----------------------------------------------------------------------------

    @_rpc("get")
    def get(self, key: str, *, timeout: float) -> KeyInfo | None:
        stub, md, timeout = self._kvs(timeout)
        kvs = stub.Range(etcdrpc.RangeRequest(key=key.encode()), timeout=timeout, metadata=md).kvs
        return _kv(kvs[0]) if kvs else None

    @_rpc("get_prefix")
    def get_prefix(
        self, prefix: str, *, timeout: float, limit: int = 0, newest_first: bool = False
    ) -> list[KeyInfo]:
        p = prefix.encode()
        req = etcdrpc.RangeRequest(
            key=p,
            range_end=_prefix_end(p),
            limit=limit,
            sort_order=etcdrpc.RangeRequest.DESCEND
            if newest_first
            else etcdrpc.RangeRequest.ASCEND,
            sort_target=etcdrpc.RangeRequest.KEY,
        )
        stub, md, timeout = self._kvs(timeout)
        return [_kv(kv) for kv in stub.Range(req, timeout=timeout, metadata=md).kvs]

    @_rpc("put")
    def put(self, key: str, value: bytes, *, timeout: float) -> None:
        stub, md, timeout = self._kvs(timeout)
        stub.Put(etcdrpc.PutRequest(key=key.encode(), value=value), timeout=timeout, metadata=md)

    @_rpc("delete")
    def delete(self, key: str, *, timeout: float, prefix: bool = False) -> int:
        k = key.encode()
        req = etcdrpc.DeleteRangeRequest(key=k, range_end=_prefix_end(k) if prefix else b"")
        stub, md, timeout = self._kvs(timeout)
        return int(stub.DeleteRange(req, timeout=timeout, metadata=md).deleted)

    @_rpc("guarded_put")
    def guarded_put(
        self,
        guard_key: str,
        guard_revision: int,
        puts: Sequence[tuple[str, bytes]],
        *,
        absent: Sequence[str] = (),
        deletes: Sequence[str] = (),
        timeout: float,
    ) -> bool:
        compare = [
            etcdrpc.Compare(
                key=guard_key.encode(),
                target=etcdrpc.Compare.CREATE,
                result=etcdrpc.Compare.EQUAL,
                create_revision=guard_revision,
            )
        ]
        compare += [
            etcdrpc.Compare(
                key=k.encode(),
                target=etcdrpc.Compare.CREATE,
                result=etcdrpc.Compare.EQUAL,
                create_revision=0,
            )
            for k in absent
        ]
        ops = [
            etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=k.encode(), value=v))
            for k, v in puts
        ]
        ops += [
            etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=k.encode()))
            for k in deletes
        ]
        stub, md, timeout = self._kvs(timeout)
        resp = stub.Txn(
            etcdrpc.TxnRequest(compare=compare, success=ops), timeout=timeout, metadata=md
        )
        return bool(resp.succeeded)

    # -- cluster -------------------------------------------------------------------------------

    @_rpc("status")
    def server_version(self, *, timeout: float) -> str:
        md, timeout = self._prepare(timeout)
        stub = etcdrpc.MaintenanceStub(self._channel())
        return str(stub.Status(etcdrpc.StatusRequest(), timeout=timeout, metadata=md).version)

    @_rpc("status")
    def db_size(self, *, timeout: float) -> int:
        """The backend database size, in bytes, of the member this client talks to (Maintenance
        Status). It grows with every revision until compaction and defragmentation; at etcd's
        ``--quota-backend-bytes`` the cluster raises NOSPACE and refuses every write."""
        md, timeout = self._prepare(timeout)
        stub = etcdrpc.MaintenanceStub(self._channel())
        return int(stub.Status(etcdrpc.StatusRequest(), timeout=timeout, metadata=md).dbSize)

    @_rpc("member_list")
    def member_count(self, *, timeout: float) -> int:
        """How many members the cluster has (Cluster MemberList). With more than one, an etcd
        leader's failure costs an election: up to twice the election timeout without a leader."""
        md, timeout = self._prepare(timeout)
        stub = etcdrpc.ClusterStub(self._channel())
        resp = stub.MemberList(etcdrpc.MemberListRequest(), timeout=timeout, metadata=md)
        return len(resp.members)
