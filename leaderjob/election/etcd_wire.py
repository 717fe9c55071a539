"""The etcd adapter's wire: what etcd's answers mean, key ranges, and the delete-watch stream.

Part of the adapter (``election/etcd.py``, which imports it, and ``etcd_channels.py``: the only
modules that import etcd3 or grpc): the error translation in one place (:func:`_translate`, into
the port's two kinds), the protobuf helpers, and :class:`_DeleteWatch`.
:class:`~.etcd_channels.Channels` keeps the connections, :class:`~.etcd.EtcdStore` the calls.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from etcd3 import etcdrpc

from leaderjob.election.store import (
    Guarded,
    KeyInfo,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)

_DELETE = 1  # mvccpb.Event.EventType.DELETE
#: etcd's rpctypes.MetadataRequireLeaderKey: a member without a leader cancels the stream.
_REQUIRE_LEADER = ("hasleader", "true")

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
    if code is grpc.StatusCode.UNAVAILABLE and "tcp handshaker" not in lowered:
        # "tcp handshaker shutdown": the TCP connect itself was cut short (its deadline passed,
        # a loaded machine): no TLS was spoken, and the member may well answer next time.
        for phrase, hint in _TLS_HINTS:
            if phrase in lowered:
                return _TLSUnavailable(operation, f"TLS: {hint}: {detail}")
    return StoreUnavailable(operation, detail)


#: StatusResponse.dbSizeQuota: etcd's own --quota-backend-bytes, reported since etcd 3.6 (the
#: bundled protobuf predates it, so it is read from the message's wire form).
DB_SIZE_QUOTA_FIELD = 12


def varint_field(raw: bytes, number: int) -> int | None:
    """The value of varint field ``number`` in a serialised protobuf message (None: absent).
    Pure; only what the wire format needs to skip the other fields."""

    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = raw[i]
            value |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                return value, i
            shift += 7

    i, found = 0, None
    try:
        while i < len(raw):
            tag, i = varint(i)
            kind = tag & 7
            if kind == 0:
                value, i = varint(i)
                if tag >> 3 == number:
                    found = value
            elif kind == 1:
                i += 8
            elif kind == 2:
                size, i = varint(i)
                i += size
            elif kind == 5:
                i += 4
            else:
                return found
    except IndexError:
        return found
    return found


def _kv(kv: Any) -> KeyInfo:
    return KeyInfo(
        key=kv.key.decode(),
        value=bytes(kv.value),
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        lease_id=kv.lease,
    )


def _range(req: Any) -> Any:
    return etcdrpc.RequestOp(request_range=req)


def _guarded(w: Guarded, lease: int = 0) -> Any:
    """The Txn of one fenced write: ``If(CreateRevision(guard) == revision AND
    CreateRevision(k) == 0 for k in absent) Then puts, deletes``."""
    compare = [
        etcdrpc.Compare(
            key=k.encode(),
            target=etcdrpc.Compare.CREATE,
            result=etcdrpc.Compare.EQUAL,
            create_revision=rev,
        )
        for k, rev in [(w.guard_key, w.guard_revision), *((k, 0) for k in w.absent)]
    ]
    ops = [
        etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=k.encode(), value=v, lease=lease))
        for k, v in w.puts
    ]
    ops += [
        etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=k.encode()))
        for k in w.deletes
    ]
    return etcdrpc.TxnRequest(compare=compare, success=ops)


def _nested(writes: Sequence[Guarded]) -> Any:
    """One Txn without a compare whose writes are nested Txns, one per fenced write: each is
    decided by its own compare (etcd decides them all on the keys as they were before)."""
    return etcdrpc.TxnRequest(success=[etcdrpc.RequestOp(request_txn=_guarded(w)) for w in writes])


def _prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


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
