"""The in-memory etcd server behind :class:`~leaderjob.election.memory.MemoryStore`.

Owns: the state one etcd cluster would hold — a global revision, keys with their create and mod
revisions, leases timed on an injected :class:`~leaderjob.clock.Clock`, the deletions a watch
replays and the open delete watches — and how one election query's standing is read from the keys
(:func:`standing_of`). Every client of one server sees the same state; callers hold
:attr:`Server.lock`. It must not know about clients, faults or the port's timeouts: those are
``memory.py``'s.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from leaderjob.clock import Clock
from leaderjob.election.store import KeyInfo, Query, Standing


@dataclass
class Lease:
    """A granted lease: its TTL, and when it expires unless renewed (monotonic)."""

    ttl: int
    expires_at: float


@dataclass(eq=False)
class DeleteWatch:
    """A delete watch on some keys from a revision on; fired once, then done."""

    keys: frozenset[str]
    start_revision: int
    on_fire: Callable[[], None]
    server: Server
    fired: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False

    def cancel(self) -> None:
        with self.server.lock:
            self.cancelled = True
            if self in self.server.watches:
                self.server.watches.remove(self)


class Server:
    """The state one etcd cluster would hold. Callers hold ``lock``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.revision = 1  # a fresh etcd is at revision 1
        self.keys: dict[str, KeyInfo] = {}
        self.leases: dict[int, Lease] = {}
        self.deletions: list[tuple[str, int]] = []  # (key, revision): what watches replay
        self.watches: list[DeleteWatch] = []
        self.to_fire: list[DeleteWatch] = []  # fired under the lock, called back after it
        self._lease_ids = itertools.count(0x694D_1E55_0000_0001)

    def new_lease(self, ttl: int) -> int:
        lease_id = next(self._lease_ids)
        self.leases[lease_id] = Lease(ttl, self.clock.monotonic() + ttl)
        return lease_id

    def sweep(self) -> None:
        """Revoke every lease whose time is up, oldest expiry first, one revision each."""
        now = self.clock.monotonic()
        for lease_id, lease in sorted(self.leases.items(), key=lambda kv: kv[1].expires_at):
            if lease.expires_at <= now:
                self.revoke(lease_id)

    def revoke(self, lease_id: int) -> None:
        if self.leases.pop(lease_id, None) is not None:
            attached = [k for k, info in self.keys.items() if info.lease_id == lease_id]
            self.delete(attached, self.revision + 1)

    # Writes take the transaction's ``revision`` (current + 1) and make it current only when
    # they change something, so several writes in one transaction share one revision.

    def put(self, key: str, value: bytes, lease_id: int, revision: int) -> KeyInfo:
        old = self.keys.get(key)
        create = old.create_revision if old is not None else revision
        info = KeyInfo(key, value, create, revision, lease_id)
        self.keys[key] = info
        self.revision = revision
        return info

    def delete(self, keys: Sequence[str], revision: int) -> int:
        gone = [k for k in keys if self.keys.pop(k, None) is not None]
        if gone:
            self.revision = revision
            for key in gone:
                self.deletions.append((key, revision))
                self.notify(key, revision)
        return len(gone)

    def notify(self, key: str, revision: int) -> None:
        for w in list(self.watches):
            if key in w.keys and revision >= w.start_revision:
                self.fire(w)

    def fire(self, w: DeleteWatch) -> None:
        if not w.cancelled and not w.fired.is_set():
            w.fired.set()
            self.to_fire.append(w)
        if w in self.watches:
            self.watches.remove(w)

    def under(self, prefix: str) -> list[KeyInfo]:
        return [info for key, info in self.keys.items() if key.startswith(prefix)]


def standing_of(s: Server, q: Query) -> Standing:
    under = s.under(q.prefix.rstrip("/") + "/")
    also = tuple(sorted(s.under(q.also), key=lambda i: i.key.encode())) if q.also else ()
    if not q.key:
        return Standing(None, None, s.revision, also)
    if q.first:
        lowest = min(under, key=lambda i: i.create_revision, default=None)
        if lowest is not None and lowest.key == q.key:
            return Standing(lowest, None, s.revision, also)
        return Standing(None, lowest, s.revision, also)
    before = [info for info in under if info.create_revision < q.create_revision]
    predecessor = max(before, key=lambda i: i.create_revision, default=None)
    return Standing(s.keys.get(q.key), predecessor, s.revision, also)
