"""A candidate's connection to the shared in-memory etcd whose calls can be slow, on a fake clock.

:meth:`SlowStore.slow_next` makes the next call of one operation take ``seconds``: the fake clock
jumps by them before the server sees the request (``where="request"``) or after it applied it
(``where="reply"``). A call slower than its timeout waits out the timeout and fails, as a gRPC
call does. In a single-threaded world a slow call is time passing for everyone. With
``answer_at`` set (a fraction), every call is answered at that fraction of its own timeout (an
etcd that is slow in proportion to what it is given), and :attr:`spent` adds up the time taken.

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
        self.answer_at: float | None = None
        self.spent = 0.0
        self.calls: list[tuple[str, float]] = []  # (operation, timeout) of every call

    def slow_next(self, operation: str, seconds: float, where: str = "request") -> None:
        self.slow[operation] = (seconds, where)

    def calm(self) -> None:
        """No more slow or failing calls."""
        self.slow.clear()
        self.inner.heal()
        self.inner.clear_failures()

    def _call(self, operation: str, timeout: float, call: Callable[[], R]) -> R:
        self.calls.append((operation, timeout))
        started = self.clock.monotonic()
        try:
            return self._slow_call(operation, timeout, call)
        finally:
            self.spent += self.clock.monotonic() - started

    def _slow_call(self, operation: str, timeout: float, call: Callable[[], R]) -> R:
        default = (0.0 if self.answer_at is None else self.answer_at * timeout, "reply")
        seconds, where = self.slow.pop(operation, default)
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

    def __getattr__(self, name: str) -> Any:
        """Every other operation of the store, slow in the same way (``timeout`` given)."""
        attr = getattr(self.inner, name)
        if not callable(attr) or name in ("heal", "partition", "clear_failures"):
            return attr

        def slow(*args: Any, **kwargs: Any) -> Any:
            if "timeout" not in kwargs:
                return attr(*args, **kwargs)
            return self._call(name, kwargs["timeout"], lambda: attr(*args, **kwargs))

        return slow

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
