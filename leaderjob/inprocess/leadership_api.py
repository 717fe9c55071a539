"""What Go's ``concurrency.Election``, kazoo and client-go offer beyond acquire and release:
who leads now, a stream of changes, and a run-forever mode with callbacks.

Owns: :class:`Conveniences`, a mixin of :class:`~leaderjob.inprocess.leadership.Leadership` built
only on its public surface and its storage port: :meth:`~Conveniences.leader` (etcd's ``Leader``),
:meth:`~Conveniences.observe` (``Observe``), :meth:`~Conveniences.run_forever` (client-go's
``RunOrDie`` with ``OnStartedLeading`` / ``OnStoppedLeading`` / ``OnNewLeader``). It must not
know the election rules.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from leaderjob.election.store import Store, StoreError
from leaderjob.inprocess.leadership_options import LeadershipRejected, LeadershipUnavailable

if TYPE_CHECKING:
    from leaderjob.inprocess.leadership import Leadership

__all__ = ["Conveniences", "Leader"]


@dataclass(frozen=True)
class Leader:
    """The election's leader as etcd holds it now: its key, token (the key's create revision)
    and value (its identity, or what it proclaimed)."""

    key: str
    token: int
    value: str


class Conveniences:
    """Mixed into :class:`~leaderjob.inprocess.leadership.Leadership`."""

    def leader(self) -> Leader | None:
        """Who leads now (one linearizable read; None: nobody). Any process may ask, leading
        or not. :class:`~leaderjob.election.store.StoreError` when etcd does not answer."""
        me = cast("Leadership", self)
        with me._reader() as store:
            keys = store.candidates(me.prefix, timeout=me.connection.rpc_timeout)
        if not keys:
            return None
        first = min(keys, key=lambda k: k.create_revision)
        return Leader(first.key, first.create_revision, first.value.decode(errors="replace"))

    def observe(
        self, interval: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[Leader | None]:
        """Yield the leader now, then each time it changes (None: nobody leads), reading every
        ``interval`` seconds (default: the renew interval) until ``stop`` is set. A read etcd
        does not answer is skipped."""
        me = cast("Leadership", self)
        every = me.timing.renew_interval if interval is None else interval
        halt = stop or threading.Event()
        last: Leader | bool | None = False  # nothing yielded yet
        while not halt.is_set():
            try:
                now = me.leader()
            except StoreError:
                now = last if not isinstance(last, bool) else None
            if now != last:
                last = now
                yield now
            halt.wait(every)

    def run_forever(
        self,
        on_started: Callable[[Leadership], None],
        on_stopped: Callable[[], None] | None = None,
        *,
        on_new_leader: Callable[[Leader | None], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Campaign, lead, campaign again after a loss — until ``stop`` is set (client-go's
        run-forever mode). ``on_started(lead)`` is your work: it runs in this thread while
        leading and should return once ``lead.valid()`` turns False (or ``lead.lost`` is set);
        then the tenure is left (resign, revoke) and ``on_stopped()`` called. ``on_new_leader``
        is called from a watcher thread with each leader seen (anyone's). etcd unreachable:
        a new campaign 1 s later; :class:`LeadershipRejected` is raised."""
        me = cast("Leadership", self)
        halt = stop or threading.Event()
        watcher = None
        if on_new_leader is not None:

            def watch() -> None:
                for seen in me.observe(stop=halt):
                    with contextlib.suppress(Exception):
                        on_new_leader(seen)

            watcher = threading.Thread(target=watch, name="leaderjob-observe", daemon=True)
            watcher.start()
        try:
            while not halt.is_set():
                try:
                    if not me._acquire(None, stop=halt):
                        continue
                except LeadershipRejected:
                    raise
                except LeadershipUnavailable:
                    halt.wait(1.0)
                    continue
                try:
                    on_started(me)
                finally:
                    me.release()
                    if on_stopped is not None:
                        on_stopped()
        finally:
            halt.set() if stop is None else None
            if watcher is not None and stop is None:
                watcher.join(1.0)

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Store]:
        """The store in use, or one for this read only."""
        me = cast("Leadership", self)
        if me._store is not None:
            yield me._store
            return
        if me._given_store is not None:
            yield me._given_store
            return
        from leaderjob.election.etcd import EtcdStore

        store: Any = EtcdStore(me.connection)
        try:
            yield store
        finally:
            store.close()
