"""A candidate's connection to the shared in-memory etcd whose calls can be slow, on a fake clock.

:meth:`SlowStore.slow_next` makes the next call of one operation take ``seconds``: the fake clock
jumps by them before the server sees the request (``where="request"``) or after it applied it
(``where="reply"``). A call slower than its timeout waits out the timeout and fails, as a gRPC
call does. In a single-threaded world a slow call is time passing for everyone.

With ``silent_watches`` set, watches are made but never fire: a watch on a member that lost its
peers (without require-leader) or froze, whose stream stays open and says nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from leaderjob.clock import FakeClock
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import Grant, KeyInfo, Standing, StoreUnavailable, Watch

R = TypeVar("R")


class SlowStore:
    def __init__(self, store: MemoryStore, clock: FakeClock) -> None:
        self.inner = store.client()
        self.clock = clock
        self.slow: dict[str, tuple[float, str]] = {}
        self.silent_watches = False

    def slow_next(self, operation: str, seconds: float, where: str = "request") -> None:
        self.slow[operation] = (seconds, where)

    def calm(self) -> None:
        """No more slow or failing calls."""
        self.slow.clear()
        self.inner.heal()
        self.inner.clear_failures()

    def _call(self, operation: str, timeout: float, call: Callable[[], R]) -> R:
        seconds, where = self.slow.pop(operation, (0.0, "request"))
        if seconds >= timeout:
            if where == "request":  # never reached the server
                self.clock.advance(timeout)
                raise StoreUnavailable(operation, "deadline exceeded")
            call()  # applied, but the reply came too late
            self.clock.advance(timeout)
            raise StoreUnavailable(operation, "deadline exceeded")
        if where == "request":
            self.clock.advance(seconds)
        try:
            return call()
        finally:
            if where == "reply":
                self.clock.advance(seconds)

    def grant(self, ttl: int, *, timeout: float) -> Grant:
        return self._call("grant", timeout, lambda: self.inner.grant(ttl, timeout=timeout))

    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        return self._call(
            "keepalive", timeout, lambda: self.inner.keepalive(lease_id, timeout=timeout)
        )

    def revoke(self, lease_id: int, *, timeout: float) -> None:
        self._call("revoke", timeout, lambda: self.inner.revoke(lease_id, timeout=timeout))

    def create(self, key: str, value: bytes, lease_id: int, *, timeout: float) -> KeyInfo:
        return self._call(
            "create", timeout, lambda: self.inner.create(key, value, lease_id, timeout=timeout)
        )

    def standing(
        self, prefix: str, key: str, create_revision: int, *, timeout: float, **kw: Any
    ) -> Standing:
        return self._call(
            "standing",
            timeout,
            lambda: self.inner.standing(prefix, key, create_revision, timeout=timeout, **kw),
        )

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> Watch:
        if self.silent_watches:
            return SilentWatch()
        return self.inner.watch_deletes(keys, start_revision, on_fire)


class SilentWatch:
    """A watch stream that stays open and never delivers anything."""

    def __init__(self) -> None:
        self.fired = threading.Event()

    def cancel(self) -> None:
        pass
