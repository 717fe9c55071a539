"""The storage port: the few etcd operations leaderjob needs, as a small protocol.

``election/etcd.py`` is the one real adapter (with ``etcd_channels.py`` and ``etcd_wire.py``, the
only modules that import etcd3 or grpc); ``election/memory.py`` is an in-memory fake for unit
tests. Every method that talks to the server takes a ``timeout``: no call may outlive the local
deadline.

Errors are translated at the adapter's edge into two kinds: :class:`StoreUnavailable` (try again,
maybe through another endpoint) and :class:`StoreRejected` (the server said no for a reason that
retrying will not fix: bad credentials, permission denied, a certificate it does not trust).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from leaderjob.errors import Error


class StoreError(Error):
    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.detail = detail


class StoreUnavailable(StoreError):
    """Timed out, unreachable, no quorum: transient."""


class StoreRejected(StoreError):
    """Authentication, authorisation or TLS failure: retrying will not help."""


@dataclass(frozen=True)
class Grant:
    lease_id: int
    ttl: int


@dataclass(frozen=True)
class KeyInfo:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease_id: int


#: etcd's default --max-txn-ops: the operations one Txn may carry.
MAX_TXN_OPS = 128


@dataclass(frozen=True)
class Query:
    """One candidacy to look at in a confirming read (:meth:`Store.standings`).

    ``first``: a leader's check — only whether our key is the lowest live key under ``prefix``
    (one range, not two: a leader has no predecessor to watch). ``also``: a prefix read in the
    same Txn (a led job's control switches), so that the confirmation of a group's keys stays the
    only periodic request, whatever else the period needs to know. A query without a ``key``
    reads only ``also`` (one operation).
    """

    prefix: str
    key: str
    create_revision: int
    first: bool = False
    also: str | None = None

    @property
    def ops(self) -> int:
        """The Txn operations this query takes."""
        if not self.key:
            return 1
        return (1 if self.first else 2) + (self.also is not None)


@dataclass(frozen=True)
class Standing:
    """One linearizable look at a candidate's place in the queue.

    For a ``first`` query, ``own`` is our key only if it is the lowest under the prefix, and
    ``predecessor`` is the lowest key when that is not ours: either way, not the leader.
    """

    own: KeyInfo | None  # our key, or None if it is gone
    predecessor: KeyInfo | None  # the live key created just before ours, if any
    revision: int  # store revision of the read: watch from revision + 1
    also: tuple[KeyInfo, ...] = ()  # the keys under the query's ``also`` prefix, in key order


@dataclass(frozen=True)
class Guarded:
    """One fenced write: :meth:`Store.guarded_put`'s arguments, for a batch of them
    (:meth:`Store.guarded_puts`). Applied only if ``guard_key`` still has create revision
    ``guard_revision`` and no key in ``absent`` exists."""

    guard_key: str
    guard_revision: int
    puts: tuple[tuple[str, bytes], ...]
    absent: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()

    @property
    def ops(self) -> int:
        """Operations of its own Txn: etcd counts the larger of the compares and the writes."""
        return max(1 + len(self.absent), len(self.puts) + len(self.deletes), 1)

    @property
    def written(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.puts) | frozenset(self.deletes)


def batches(writes: Sequence[Guarded], limit: int = MAX_TXN_OPS) -> list[list[int]]:
    """Split ``writes`` (their indices, in order) into the batches of :meth:`Store.guarded_puts`:
    one Txn of one nested Txn per write, which etcd takes only if the writes plus the largest
    write's own operations stay within ``limit`` (--max-txn-ops) and no two writes write the
    same key (a write alone is a Txn of its own: its operations within ``limit``). Pure."""
    out: list[list[int]] = []
    chunk: list[int] = []
    widest = 0
    keys: set[str] = set()
    for i, w in enumerate(writes):
        if chunk and (len(chunk) + 1 + max(widest, w.ops) > limit or keys & w.written):
            out.append(chunk)
            chunk, widest, keys = [], 0, set()
        chunk.append(i)
        widest = max(widest, w.ops)
        keys |= w.written
    if chunk:
        out.append(chunk)
    return out


def batch_ops(writes: Sequence[Guarded]) -> int:
    """The operations etcd counts for a batch (see :func:`batches`)."""
    if len(writes) == 1:
        return writes[0].ops
    return len(writes) + max((w.ops for w in writes), default=0)


def as_query(q: Query | tuple[str, str, int]) -> Query:
    return q if isinstance(q, Query) else Query(*q)


class Watch(Protocol):
    fired: threading.Event

    def cancel(self) -> None: ...


class Store(Protocol):
    def grant(self, ttl: int, *, timeout: float) -> Grant: ...

    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        """Renew once; return the TTL etcd answered (0 means the lease is gone)."""
        ...

    def revoke(self, lease_id: int, *, timeout: float) -> None: ...

    def lease_remaining(self, lease_id: int, *, timeout: float) -> int:
        """Seconds left on a lease (-1 if it does not exist)."""
        ...

    def create(self, key: str, value: bytes, lease_id: int, *, timeout: float) -> KeyInfo:
        """``If(CreateRevision(key) == 0) Then Put(key, value, lease) Else Get(key)``."""
        ...

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
        """Our key and the live key under ``prefix`` with the next lower create revision (see
        :class:`Query` for ``first`` and ``also``)."""
        ...

    def standings(
        self, queries: Sequence[Query | tuple[str, str, int]], *, timeout: float
    ) -> list[Standing]:
        """:meth:`standing` for each query (a :class:`Query` or ``(prefix, key,
        create_revision)``), all in one linearizable read (one Txn of at most
        :data:`MAX_TXN_OPS` operations): a group confirms every key it holds, and reads what
        rides along, with one request."""
        ...

    def candidates(self, prefix: str, *, timeout: float) -> list[KeyInfo]:
        """Every live key under ``prefix``, lowest create revision (the leader) first."""
        ...

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> Watch:
        """Fire (once) when any of ``keys`` is deleted at or after ``start_revision``.

        A broken or cancelled-by-server watch fires too: the caller re-reads and decides (and the
        next watch goes to another endpoint). ``timeout`` bounds the blocking part of opening it.
        """
        ...

    def get(self, key: str, *, timeout: float) -> KeyInfo | None: ...

    def get_prefix(
        self, prefix: str, *, timeout: float, limit: int = 0, newest_first: bool = False
    ) -> list[KeyInfo]:
        """Keys under ``prefix`` in key order (or reversed key order with ``newest_first``)."""
        ...

    def put(self, key: str, value: bytes, *, timeout: float) -> None: ...

    def delete(self, key: str, *, timeout: float, prefix: bool = False) -> int: ...

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
        """Fenced write: apply only if ``guard_key`` still has create revision ``guard_revision``
        and every key in ``absent`` does not exist. Returns whether it was applied. ``lease``:
        the puts are attached to that lease (etcd's Proclaim re-puts the leader key so)."""
        ...

    def guarded_puts(self, writes: Sequence[Guarded], *, timeout: float) -> list[bool]:
        """Many fenced writes in one request: each applied if and only if its own guard holds,
        as if each were its own :meth:`guarded_put` — one write refused leaves the others as
        they are. One Txn, each write a nested Txn of its own (one revision for every write
        that applied; each compare sees the keys as they were before the Txn). Returns whether
        each write applied, in order. At most one batch of :func:`batches` (more operations:
        StoreUnavailable, nothing sent); a StoreError leaves the outcome of every write
        unknown."""
        ...

    def close(self) -> None: ...
