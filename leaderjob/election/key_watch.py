"""The group's one delete watch: what wakes a candidate between two confirmations.

After a read that saw every key, the group watches each waiting candidacy's predecessor and each
of our own keys for deletion, on one stream for the whole group (made with require-leader by the
etcd adapter), so a leadership change wakes the next candidate only. A watch is trusted for no
longer than a renew interval: it can sit silent on a member that lost its peers, which is why
the group reads again on its own schedule whether or not the watch fired.

Owns: the live watch and the keys it covers; a watch that still covers the same keys is kept
(it has seen every deletion since an earlier revision); a watch asked for later (``later``),
opened by :meth:`KeyWatch.open_later` from the revision it was asked from. It must not know what
the keys mean: which keys to watch, and when, is the group's (``group.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from leaderjob.election.deadline import Deadline
from leaderjob.election.store import Store, StoreError, Watch


class KeyWatch:
    def __init__(self, store: Store, on_fire: Callable[[], None], rpc_timeout: float) -> None:
        self.store = store
        self.on_fire = on_fire
        self.rpc_timeout = rpc_timeout
        self._watch: Watch | None = None
        #: The keys the live watch (or the last one tried) covers.
        self.keys: list[str] = []
        #: A watch asked for and not opened yet: its keys, after a revision.
        self.pending: tuple[list[str], int] | None = None

    def cover(self, keys: list[str], revision: int, dl: Deadline, *, later: bool = False) -> bool:
        """Watch ``keys`` for deletion after ``revision`` (a new watch only if the live one
        covers other keys, or fired); False if it could not be made (read again soon).
        ``later``: nothing now, not even the old watch's cancel (each wakes etcd client threads
        that compete with the caller's thread); :meth:`open_later` does it all, from the same
        revision, so no deletion in between is missed."""
        if later:
            self.pending = (keys, revision)
            return True
        self.pending = None
        if self._watch is not None and not self._watch.fired.is_set() and keys == self.keys:
            return True  # the live watch already covers these keys since an earlier revision
        self.cancel()
        self.keys = keys
        try:
            self._watch = self.store.watch_deletes(
                keys, revision + 1, self.on_fire, timeout=dl.timeout("watch", self.rpc_timeout)
            )
        except StoreError:
            self._watch = None
            return False
        return True

    def open_later(self, dl: Deadline) -> bool:
        """Open the watch asked for later, if any (see :meth:`cover`)."""
        if self.pending is None:
            return True
        return self.cover(*self.pending, dl)

    @property
    def fired(self) -> bool:
        return self._watch is not None and self._watch.fired.is_set()

    def cancel(self) -> None:
        self.pending = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
