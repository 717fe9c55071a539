"""The storage port: the few etcd operations leaderjob needs, as a small protocol.

``election/etcd.py`` is the one real adapter (and the only module that imports etcd3 or grpc);
``election/memory.py`` is an in-memory fake for unit tests. Every method that talks to the server
takes a ``timeout``: no call may outlive the local deadline.

Errors are translated at the adapter's edge into two kinds: :class:`StoreUnavailable` (try again,
maybe through another endpoint) and :class:`StoreRejected` (the server said no for a reason that
retrying will not fix: bad credentials, permission denied, a certificate it does not trust).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
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


@dataclass(frozen=True)
class Standing:
    """One linearizable look at a candidate's place in the queue."""

    own: KeyInfo | None  # our key, or None if it is gone
    predecessor: KeyInfo | None  # the live key created just before ours, if any
    revision: int  # store revision of the read: watch from revision + 1


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

    def standing(self, prefix: str, key: str, create_revision: int, *, timeout: float) -> Standing:
        """Our key and the live key under ``prefix`` with the next lower create revision."""
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
    ) -> bool:
        """Fenced write: apply only if ``guard_key`` still has create revision ``guard_revision``
        and every key in ``absent`` does not exist. Returns whether it was applied."""
        ...

    def close(self) -> None: ...
