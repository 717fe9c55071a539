"""What a leadership's lifecycle needs beyond the election: events asyncio can await, and the
process's own events — a fork, the interpreter's exit.

Owns: :class:`Signal` (a ``threading.Event`` that a coroutine can await without holding a thread
of asyncio's pool), the registry of live handles, the ``os.register_at_fork`` hook that makes a
child process stop believing it leads, and the ``atexit`` hook that hands over at interpreter
exit. It must not know the election rules.

Rules (SAFETY.md §5b):

* **Fork invalidates.** A child of ``os.fork()`` has no driver thread and sends no keepalive; its
  copy of the handle would say ``valid()`` with the parent's token, and equal tokens pass every
  fence. After a fork, every handle in the child is marked forked: ``valid()`` is False, ``lost``
  is set, and leaving does nothing (the lease is the parent's: revoking it would depose the
  parent).
* **Exit hands over.** At interpreter exit every handle still held is left (resign, revoke), so
  a successor leads at once instead of after a TTL.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Signal", "register", "wait_event"]


class Signal(threading.Event):
    """A ``threading.Event`` whose ``set`` also runs callbacks, so that asyncio can wait for it
    (:meth:`wait_async`) without a thread of its own."""

    def __init__(self) -> None:
        super().__init__()
        self._hooks: list[Callable[[], None]] = []
        self._hooks_lock = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._hooks_lock:
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def subscribe(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook`` once when set (at once if set already); returns an unsubscriber."""
        with self._hooks_lock:
            if not self.is_set():
                self._hooks.append(hook)

                def unsubscribe() -> None:
                    with self._hooks_lock, contextlib.suppress(ValueError):
                        self._hooks.remove(hook)

                return unsubscribe
        hook()
        return lambda: None

    async def wait_async(self) -> None:
        """Wait until set, from a coroutine; holds no thread (cancel-safe)."""
        await wait_event(self)


async def wait_event(signal: Signal) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def resolve() -> None:
        if not done.done():
            done.set_result(None)

    def hook() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(resolve)

    unsubscribe = signal.subscribe(hook)
    try:
        await done
    finally:
        unsubscribe()


class Held(Protocol):
    """What the process hooks call on a live handle (its :class:`~.leadership_hold.Hold`)."""

    def _after_fork_in_child(self) -> None: ...

    def _at_exit(self) -> None: ...


_LIVE: weakref.WeakSet[Held] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
_PID = os.getpid()


def register(handle: Held) -> None:
    """Track ``handle`` for the fork and exit hooks (weakly: it may be collected)."""
    with _LIVE_LOCK:
        _LIVE.add(handle)


def _after_fork_in_child() -> None:
    global _LIVE_LOCK, _PID  # noqa: PLW0603  # the parent's lock may have been held at fork
    _LIVE_LOCK = threading.Lock()
    _PID = os.getpid()
    for handle in list(_LIVE):
        handle._after_fork_in_child()


def _at_exit() -> None:
    if os.getpid() != _PID:
        return
    for handle in list(_LIVE):
        with contextlib.suppress(Exception):
            handle._at_exit()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
