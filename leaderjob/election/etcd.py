"""The etcd adapter: with ``etcd_channels.py`` (its channels, endpoint rotation and
authentication) and ``etcd_wire.py`` (its error translation, protobuf helpers and watch stream),
the only modules that import etcd3 or grpc.

It speaks etcd's v3 gRPC API through the protobuf stubs that the ``etcd3`` package ships
(python3-etcd3), on channels it manages itself, because the client class of that package does not
fit a lease holder: a timed-out call marks its endpoint failed for 300 s of wall-clock time, and
its range builder mixes up create- and mod-revision filters. Here every call has its own deadline,
a failed call moves the next one to another endpoint, and gRPC reconnects within a second.

Errors are translated at this edge, in one place (:func:`~.etcd_wire._translate`), into the
port's two kinds. This module holds the calls: leases, election keys, plain keys, the cluster.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

# gRPC's C core logs at INFO by default ("Handshake failed ..." for every TLS refusal): keep its
# errors, drop the chatter, so that a start-up failure reads as our one line. Must be set before
# grpc is imported; an operator's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from etcd3 import etcdrpc

from leaderjob.config import Connection
from leaderjob.election.etcd_channels import Channels
from leaderjob.election.etcd_wire import (
    _DELETE,  # noqa: F401  (the adapter's names, as tests and callers know them)
    _REQUIRE_LEADER,
    DB_SIZE_QUOTA_FIELD,
    _DeleteWatch,
    _guarded,
    _kv,
    _nested,
    _prefix_end,
    _range,
    _translate,
    varint_field,
)
from leaderjob.election.store import (
    MAX_TXN_OPS,
    Grant,
    Guarded,
    KeyInfo,
    Query,
    Standing,
    StoreUnavailable,
    as_query,
    batch_ops,
)

_T = TypeVar("_T")


def _rpc(operation: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Run an RPC against the current endpoint; on failure, rotate and translate the error."""

    def wrap(fn: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(fn)
        def call(self: EtcdStore, *args: Any, **kwargs: Any) -> _T:
            try:
                result = fn(self, *args, **kwargs)
            except grpc.RpcError as exc:
                raise self._link.failed(_translate(operation, exc)) from None
            except StoreUnavailable as exc:
                self._link.rotate()
                raise exc from None
            self._link.succeeded()
            return result

        return call

    return wrap


class EtcdStore:
    """:class:`leaderjob.election.store.Store` on a real etcd cluster."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._link = Channels(conn)

    @property
    def endpoint(self) -> str:
        return self._link.endpoint

    def close(self) -> None:
        self._link.close()

    # -- leases ------------------------------------------------------------------------------

    @_rpc("grant")
    def grant(self, ttl: int, *, timeout: float) -> Grant:
        stub, md, timeout = self._link.leases(timeout)
        resp = stub.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=ttl), timeout=timeout, metadata=md)
        if resp.error:
            raise StoreUnavailable("grant", resp.error)
        return Grant(lease_id=resp.ID, ttl=resp.TTL)

    @_rpc("keepalive")
    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        # One request on a fresh stream: exactly one keepalive in flight, with its own deadline.
        stub, md, timeout = self._link.leases(timeout)
        responses = stub.LeaseKeepAlive(
            iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=timeout, metadata=md
        )
        for resp in responses:
            return int(resp.TTL)
        return 0

    @_rpc("revoke")
    def revoke(self, lease_id: int, *, timeout: float) -> None:
        stub, md, timeout = self._link.leases(timeout)
        try:
            stub.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=lease_id), timeout=timeout, metadata=md)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:  # already expired: nothing to do
                raise

    @_rpc("lease_remaining")
    def lease_remaining(self, lease_id: int, *, timeout: float) -> int:
        stub, md, timeout = self._link.leases(timeout)
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
        stub, md, timeout = self._link.kvs(timeout)
        resp = stub.Txn(txn, timeout=timeout, metadata=md)
        if resp.succeeded:
            rev = resp.header.revision
            return KeyInfo(key, value, rev, rev, lease_id)
        kvs = resp.responses[0].response_range.kvs
        if not kvs:  # deleted between compare and read: cannot happen inside one Txn
            raise StoreUnavailable("create", "key vanished inside a transaction")
        return _kv(kvs[0])

    @_rpc("standing")
    def standing(
        self,
        prefix: str,
        key: str,
        create_revision: int,
        *,
        timeout: float,
        first: bool = False,
        also: str | None = None,
    ) -> Standing:
        return self._standings([Query(prefix, key, create_revision, first, also)], timeout)[0]

    @_rpc("standings")
    def standings(
        self, queries: Sequence[Query | tuple[str, str, int]], *, timeout: float
    ) -> list[Standing]:
        qs = [as_query(q) for q in queries]
        # etcd caps the operations of one Txn (--max-txn-ops, 128 by default).
        ops = sum(q.ops for q in qs)
        if ops > MAX_TXN_OPS:
            raise StoreUnavailable(
                "standings", f"{ops} operations in one read; at most {MAX_TXN_OPS}"
            )
        return self._standings(qs, timeout)

    def _standings(self, queries: Sequence[Query], timeout: float) -> list[Standing]:
        ops = []
        for q in queries:
            p = (q.prefix.rstrip("/") + "/").encode()
            if not q.key:
                pass  # only ``also``
            elif q.first:
                # The lowest live key under the prefix: ours, or we do not lead.
                ops.append(_range(etcdrpc.RangeRequest(
                    key=p,
                    range_end=_prefix_end(p),
                    sort_order=etcdrpc.RangeRequest.ASCEND,
                    sort_target=etcdrpc.RangeRequest.CREATE,
                    limit=1,
                )))  # fmt: skip
            else:
                ops.append(_range(etcdrpc.RangeRequest(key=q.key.encode())))
                ops.append(_range(etcdrpc.RangeRequest(
                    key=p,
                    range_end=_prefix_end(p),
                    max_create_revision=q.create_revision - 1,
                    sort_order=etcdrpc.RangeRequest.DESCEND,
                    sort_target=etcdrpc.RangeRequest.CREATE,
                    limit=1,
                )))  # fmt: skip
            if q.also is not None:
                a = q.also.encode()
                ops.append(_range(etcdrpc.RangeRequest(
                    key=a,
                    range_end=_prefix_end(a),
                    sort_order=etcdrpc.RangeRequest.ASCEND,
                    sort_target=etcdrpc.RangeRequest.KEY,
                )))  # fmt: skip
        stub, md, timeout = self._link.kvs(timeout)
        resp = stub.Txn(etcdrpc.TxnRequest(success=ops), timeout=timeout, metadata=md)
        results = iter(resp.responses)

        def kvs() -> list[KeyInfo]:
            return [_kv(kv) for kv in next(results).response_range.kvs]

        out = []
        for q in queries:
            if not q.key:
                own = pred = None
            elif q.first:
                head = kvs()
                lowest = head[0] if head else None
                mine = lowest is not None and lowest.key == q.key
                own, pred = (lowest, None) if mine else (None, lowest)
            else:
                own_kvs, pred_kvs = kvs(), kvs()
                own = own_kvs[0] if own_kvs else None
                pred = pred_kvs[0] if pred_kvs else None
            also = tuple(kvs()) if q.also is not None else ()
            out.append(Standing(own, pred, resp.header.revision, also))
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
        stub, md, timeout = self._link.kvs(timeout)
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
            md, _ = self._link.prepare(self._conn.rpc_timeout if timeout is None else timeout)
            return _DeleteWatch(
                self._link.stub(etcdrpc.WatchStub),
                keys,
                start_revision,
                [*md, _REQUIRE_LEADER],
                on_fire,
                self._link.rotate,
            )
        except grpc.RpcError as exc:
            raise self._link.failed(_translate("watch", exc)) from None
        except StoreUnavailable:
            self._link.rotate()
            raise

    # -- plain keys ----------------------------------------------------------------------------

    @_rpc("get")
    def get(self, key: str, *, timeout: float) -> KeyInfo | None:
        stub, md, timeout = self._link.kvs(timeout)
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
        stub, md, timeout = self._link.kvs(timeout)
        return [_kv(kv) for kv in stub.Range(req, timeout=timeout, metadata=md).kvs]

    @_rpc("put")
    def put(self, key: str, value: bytes, *, timeout: float) -> None:
        stub, md, timeout = self._link.kvs(timeout)
        stub.Put(etcdrpc.PutRequest(key=key.encode(), value=value), timeout=timeout, metadata=md)

    @_rpc("delete")
    def delete(self, key: str, *, timeout: float, prefix: bool = False) -> int:
        k = key.encode()
        req = etcdrpc.DeleteRangeRequest(key=k, range_end=_prefix_end(k) if prefix else b"")
        stub, md, timeout = self._link.kvs(timeout)
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
        lease: int = 0,
    ) -> bool:
        w = Guarded(guard_key, guard_revision, tuple(puts), tuple(absent), tuple(deletes))
        stub, md, timeout = self._link.kvs(timeout)
        return bool(stub.Txn(_guarded(w, lease), timeout=timeout, metadata=md).succeeded)

    @_rpc("guarded_puts")
    def guarded_puts(self, writes: Sequence[Guarded], *, timeout: float) -> list[bool]:
        ops = batch_ops(writes)
        if ops > MAX_TXN_OPS:  # etcd would refuse it (--max-txn-ops): not sent
            raise StoreUnavailable("guarded_puts", f"{ops} operations; at most {MAX_TXN_OPS}")
        if not writes:
            return []
        stub, md, timeout = self._link.kvs(timeout)
        if len(writes) == 1:  # a Txn of its own, as guarded_put sends it
            return [bool(stub.Txn(_guarded(writes[0]), timeout=timeout, metadata=md).succeeded)]
        resp = stub.Txn(_nested(writes), timeout=timeout, metadata=md)
        return [bool(r.response_txn.succeeded) for r in resp.responses]

    # -- cluster -------------------------------------------------------------------------------

    @_rpc("status")
    def server_version(self, *, timeout: float) -> str:
        md, timeout = self._link.prepare(timeout)
        stub = self._link.stub(etcdrpc.MaintenanceStub)
        return str(stub.Status(etcdrpc.StatusRequest(), timeout=timeout, metadata=md).version)

    @_rpc("status")
    def db_size(self, *, timeout: float) -> int:
        """The backend database size, in bytes, of the member this client talks to (Maintenance
        Status). It grows with every revision until compaction and defragmentation; at etcd's
        ``--quota-backend-bytes`` the cluster raises NOSPACE and refuses every write."""
        md, timeout = self._link.prepare(timeout)
        stub = self._link.stub(etcdrpc.MaintenanceStub)
        return int(stub.Status(etcdrpc.StatusRequest(), timeout=timeout, metadata=md).dbSize)

    @_rpc("status")
    def db_status(self, *, timeout: float) -> tuple[int, int | None]:
        """The backend database size and etcd's own quota (``--quota-backend-bytes``), in
        bytes; the quota is None where etcd does not report it (before 3.6)."""
        md, timeout = self._link.prepare(timeout)
        stub = self._link.stub(etcdrpc.MaintenanceStub)
        resp = stub.Status(etcdrpc.StatusRequest(), timeout=timeout, metadata=md)
        quota = varint_field(resp.SerializeToString(), DB_SIZE_QUOTA_FIELD)
        return int(resp.dbSize), (quota or None)

    @_rpc("member_list")
    def member_count(self, *, timeout: float) -> int:
        """How many members the cluster has (Cluster MemberList). With more than one, an etcd
        leader's failure costs an election: up to twice the election timeout without a leader."""
        md, timeout = self._link.prepare(timeout)
        stub = self._link.stub(etcdrpc.ClusterStub)
        resp = stub.MemberList(etcdrpc.MemberListRequest(), timeout=timeout, metadata=md)
        return len(resp.members)
