"""What Go's ``concurrency.Election``, kazoo and client-go offer beyond acquire and release:
who leads now, a stream of changes, and a run-forever mode with callbacks.

Owns: :class:`Conveniences`, a part of :class:`~leaderjob.inprocess.leadership.Leadership` handed
its :class:`~leaderjob.inprocess.leadership_hold.Hold`: :meth:`~Conveniences.leader` (etcd's
``Leader``), :meth:`~Conveniences.observe` (``Observe``), :meth:`~Conveniences.run_forever`
(client-go's ``RunOrDie`` with ``OnStartedLeading`` / ``OnStoppedLeading`` / ``OnNewLeader``),
built on the hold's acquire and release and the storage port. It must not know the election
rules.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from leaderjob.election.store import Store, StoreError
from leaderjob.inprocess.leadership_hold import Hold
from leaderjob.inprocess.leadership_options import LeadershipRejected, LeadershipUnavailable

__all__ = ["Conveniences", "Leader"]


@dataclass(frozen=True)
class Leader:
    """The election's leader as etcd holds it now: its key, token (the key's create revision)
    and value (its identity, or what it proclaimed)."""

    key: str
    token: int
    value: str


class Conveniences:
    def __init__(self, hold: Hold) -> None:
        self.hold = hold

    def leader(self) -> Leader | None:
        """Who leads now (one linearizable read; None: nobody)."""
        with self._reader() as store:
            keys = store.candidates(self.hold.prefix, timeout=self.hold.connection.rpc_timeout)
        if not keys:
            return None
        first = min(keys, key=lambda k: k.create_revision)
        return Leader(first.key, first.create_revision, first.value.decode(errors="replace"))

    def observe(
        self, interval: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[Leader | None]:
        """The leader now, then each time it changes, until ``stop`` is set."""
        every = self.hold.timing.renew_interval if interval is None else interval
        halt = stop or threading.Event()
        last: Leader | bool | None = False  # nothing yielded yet
        while not halt.is_set():
            try:
                now = self.leader()
            except StoreError:
                now = last if not isinstance(last, bool) else None
            if now != last:
                last = now
                yield now
            halt.wait(every)

    def run_forever(
        self,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None] | None = None,
        *,
        on_new_leader: Callable[[Leader | None], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Campaign, lead (``on_started()``), leave, campaign again — until ``stop`` is set."""
        hold = self.hold
        halt = stop or threading.Event()
        watcher = None
        if on_new_leader is not None:

            def watch() -> None:
                for seen in self.observe(stop=halt):
                    with contextlib.suppress(Exception):
                        on_new_leader(seen)

            watcher = threading.Thread(target=watch, name="leaderjob-observe", daemon=True)
            watcher.start()
        try:
            while not halt.is_set():
                try:
                    if not hold.acquire(None, stop=halt):
                        continue
                except LeadershipRejected:
                    raise
                except LeadershipUnavailable:
                    halt.wait(1.0)
                    continue
                try:
                    on_started()
                finally:
                    hold.release()
                    if on_stopped is not None:
                        on_stopped()
        finally:
            halt.set() if stop is None else None
            if watcher is not None and stop is None:
                watcher.join(1.0)

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Store]:
        """The store in use, or one for this read only."""
        hold = self.hold
        if hold.store is not None:
            yield hold.store
            return
        if hold.given_store is not None:
            yield hold.given_store
            return
        from leaderjob.election.etcd import EtcdStore

        store: Any = EtcdStore(hold.connection)
        try:
            yield store
        finally:
            store.close()
