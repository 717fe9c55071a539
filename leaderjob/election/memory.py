"""An in-memory :class:`~leaderjob.election.store.Store` that behaves like etcd, for tests.

Owns: the store port over one fake etcd server (``memory_server.py``: a global revision, keys
with create/mod revisions, leases timed on an injected :class:`~leaderjob.clock.Clock`, delete
watches) and, per client, fault injection as API in the manner of kazoo's test harness:
:meth:`MemoryStore.fail_next` (the request is lost), :meth:`MemoryStore.lose_reply_next`
(applied, but the reply is lost: the case that makes slot claims and revokes interesting),
:meth:`MemoryStore.partition` / :meth:`MemoryStore.heal`, :meth:`MemoryStore.expire`.
``store.client()`` is another connection to the same server with faults of its own, so one
replica can be cut off while the others are not.

etcd behaviour it copies, checked by ``tests/integration/test_store_contract.py``:

* Every write transaction that changes something takes the next revision; reads, failed compares
  and deletes of nothing do not. All changes in one transaction (or one lease revoke) share it.
* A lease expires once ``clock.monotonic() >= last renewal + ttl``; its keys are deleted at the
  next access to the server (etcd sweeps every 500 ms), so leases keep ageing while a client is
  partitioned. Grants below etcd's default minimum TTL of 2 s are raised to it.
* A keepalive on an expired or unknown lease answers TTL 0, not an error; ``lease_remaining``
  answers -1; revoking an unknown lease is not an error.
* A delete watch replays deletions from ``start_revision`` on; a broken stream (here: the client
  is partitioned) fires too, and the caller re-reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from leaderjob.clock import Clock
from leaderjob.config import MIN_TTL
from leaderjob.election.memory_server import DeleteWatch, Server, standing_of
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


@dataclass
class _Failure:
    calls_left: int
    operation: str | None  # None: any operation
    applied: bool = False  # the server applies the call; only its reply is lost


class MemoryStore:
    """One client of an in-memory etcd; :meth:`client` makes more clients of the same server."""

    def __init__(self, clock: Clock) -> None:
        self._server = Server(clock)
        self._failures: list[_Failure] = []
        self._partitioned = False
        self._watches: list[DeleteWatch] = []

    def client(self) -> MemoryStore:
        """Another connection to the same server, with its own faults."""
        other = MemoryStore(self._server.clock)
        other._server = self._server
        return other

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(self, n: int = 1, operation: str | None = None) -> None:
        """The next ``n`` calls (of ``operation`` only, if given) raise StoreUnavailable.

        Operations are named as in EtcdStore's errors: grant, keepalive, revoke, lease_remaining,
        create, standing, standings, candidates, watch, get, get_prefix, put, delete, guarded_put,
        guarded_puts.
        """
        if n > 0:
            self._failures.append(_Failure(n, operation))

    def lose_reply_next(self, n: int = 1, operation: str | None = None) -> None:
        """The next ``n`` calls (of ``operation`` only, if given) are applied by the server, and
        then raise StoreUnavailable as if the reply had been lost (a timeout after the commit)."""
        if n > 0:
            self._failures.append(_Failure(n, operation, applied=True))

    def clear_failures(self) -> None:
        """Forget the failures :meth:`fail_next` armed and that have not happened yet."""
        self._failures.clear()

    def partition(self) -> None:
        """Cut this client off: every call raises, open watches break (fire), leases age on."""
        with self._access(None):
            self._partitioned = True
            for w in self._watches:
                self._server.fire(w)

    def heal(self) -> None:
        self._partitioned = False

    def lease_expiry(self, lease_id: int) -> float | None:
        """When the server will expire ``lease_id`` (monotonic), or None if it is gone. Test API:
        it sweeps first, as any access would, and no fault stops it."""
        with self._access(None) as s:
            lease = s.leases.get(lease_id)
            return None if lease is None else lease.expires_at

    def expire(self, lease_id: int) -> None:
        """Expire a lease on the server now, as if its TTL ran out."""
        with self._access(None):
            self._server.revoke(lease_id)

    # -- leases ------------------------------------------------------------------------------

    def grant(self, ttl: int, *, timeout: float) -> Grant:
        with self._access("grant") as s:
            ttl = max(ttl, MIN_TTL)
            return Grant(s.new_lease(ttl), ttl)

    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        with self._access("keepalive") as s:
            lease = s.leases.get(lease_id)
            if lease is None:
                return 0  # etcd answers an expired or unknown lease with TTL 0, not an error
            lease.expires_at = s.clock.monotonic() + lease.ttl
            return lease.ttl

    def revoke(self, lease_id: int, *, timeout: float) -> None:
        with self._access("revoke") as s:
            s.revoke(lease_id)

    def lease_remaining(self, lease_id: int, *, timeout: float) -> int:
        with self._access("lease_remaining") as s:
            lease = s.leases.get(lease_id)
            # etcd truncates the remaining time to whole seconds.
            return -1 if lease is None else int(lease.expires_at - s.clock.monotonic())

    # -- election keys -----------------------------------------------------------------------

    def create(self, key: str, value: bytes, lease_id: int, *, timeout: float) -> KeyInfo:
        with self._access("create") as s:
            existing = s.keys.get(key)
            if existing is not None:
                return existing
            self._check_lease(lease_id, "create")
            return s.put(key, value, lease_id, s.revision + 1)

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
        with self._access("standing") as s:
            return standing_of(s, Query(prefix, key, create_revision, first, also))

    def standings(
        self, queries: Sequence[Query | tuple[str, str, int]], *, timeout: float
    ) -> list[Standing]:
        qs = [as_query(q) for q in queries]
        with self._access("standings") as s:
            if sum(q.ops for q in qs) > MAX_TXN_OPS:  # etcd: "too many operations in txn"
                raise StoreUnavailable("standings", f"more than {MAX_TXN_OPS} operations")
            return [standing_of(s, q) for q in qs]

    def candidates(self, prefix: str, *, timeout: float) -> list[KeyInfo]:
        with self._access("candidates") as s:
            return sorted(s.under(prefix.rstrip("/") + "/"), key=lambda i: i.create_revision)

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> DeleteWatch:
        with self._access("watch") as s:
            w = DeleteWatch(frozenset(keys), start_revision, on_fire, s)
            s.watches.append(w)
            self._watches = [x for x in self._watches if not x.fired.is_set()] + [w]
            for key, revision in s.deletions:  # replay history, as etcd does
                if key in w.keys and revision >= start_revision:
                    s.fire(w)
            return w

    # -- plain keys ----------------------------------------------------------------------------

    def get(self, key: str, *, timeout: float) -> KeyInfo | None:
        with self._access("get") as s:
            return s.keys.get(key)

    def get_prefix(
        self, prefix: str, *, timeout: float, limit: int = 0, newest_first: bool = False
    ) -> list[KeyInfo]:
        with self._access("get_prefix") as s:
            found = sorted(s.under(prefix), key=lambda i: i.key.encode(), reverse=newest_first)
            return found[:limit] if limit > 0 else found

    def put(self, key: str, value: bytes, *, timeout: float) -> None:
        with self._access("put") as s:
            s.put(key, value, 0, s.revision + 1)  # a put without a lease detaches the key

    def delete(self, key: str, *, timeout: float, prefix: bool = False) -> int:
        with self._access("delete") as s:
            keys = [k for k in s.keys if k.startswith(key)] if prefix else [key]
            return s.delete(keys, s.revision + 1)

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
        with self._access("guarded_put") as s:
            guard = s.keys.get(guard_key)
            guard_rev = 0 if guard is None else guard.create_revision
            if guard_rev != guard_revision or any(k in s.keys for k in absent):
                return False
            revision = s.revision + 1
            for key, value in puts:
                s.put(key, value, lease, revision)
            s.delete(deletes, revision)
            return True

    def guarded_puts(self, writes: Sequence[Guarded], *, timeout: float) -> list[bool]:
        ops = batch_ops(writes)
        if ops > MAX_TXN_OPS:  # etcd: "too many operations in txn request"
            raise StoreUnavailable("guarded_puts", f"{ops} operations; at most {MAX_TXN_OPS}")
        written = [k for w in writes for k in w.written]
        if len(written) != len(set(written)):  # etcd: "duplicate key given in txn request"
            raise StoreUnavailable("guarded_puts", "two writes of one key in one batch")
        with self._access("guarded_puts") as s:
            # etcd decides every nested compare on the keys as they were before the Txn.
            applied = [self._holds(s, w) for w in writes]
            revision = s.revision + 1
            for w, ok in zip(writes, applied, strict=True):
                if ok:
                    for key, value in w.puts:
                        s.put(key, value, 0, revision)
                    s.delete(w.deletes, revision)
            return applied

    @staticmethod
    def _holds(s: Server, w: Guarded) -> bool:
        guard = s.keys.get(w.guard_key)
        guard_rev = 0 if guard is None else guard.create_revision
        return guard_rev == w.guard_revision and not any(k in s.keys for k in w.absent)

    def close(self) -> None:
        pass

    # -- internals -----------------------------------------------------------------------------

    @contextmanager
    def _access(self, operation: str | None) -> Iterator[Server]:
        """One round trip: the server sweeps expired leases, then faults, then the answer.

        ``operation`` None is the test harness itself, which no fault stops. Watch callbacks run
        after the lock is released, as etcd's arrive on another thread.
        """
        s = self._server
        try:
            with s.lock:
                s.sweep()  # server-side time passes whether or not this client gets through
                lose_reply = operation is not None and self._inject(operation)
                yield s
                if lose_reply:
                    raise StoreUnavailable(operation or "", "injected lost reply (applied)")
        finally:
            with s.lock:
                fired, s.to_fire = s.to_fire, []
            for w in fired:
                w.on_fire()

    def _inject(self, operation: str) -> bool:
        """Raise for a lost request; True if the call is to be applied and its reply lost."""
        if self._partitioned:
            raise StoreUnavailable(operation, "injected partition")
        for rule in self._failures:
            if rule.operation in (None, operation):
                rule.calls_left -= 1
                if rule.calls_left == 0:
                    self._failures.remove(rule)
                if rule.applied:
                    return True
                raise StoreUnavailable(operation, "injected failure")
        return False

    def _check_lease(self, lease_id: int, operation: str) -> None:
        if lease_id and lease_id not in self._server.leases:
            # etcd's ErrLeaseNotFound (gRPC NOT_FOUND); EtcdStore translates it to this.
            raise StoreUnavailable(operation, "requested lease not found")
