"""In-process leadership for Python applications: the daemon's election, in a background thread.

    with Leadership("cleanup", endpoints=["etcd-0:2379"], ttl=15) as lead:   # blocks until leading
        while lead.valid():        # False from D − grace on, or once leadership was lost
            lead.fenced_put("/app/cursor", next_cursor())   # StaleToken once deposed

Owns: the application's handle — its options, the metrics registry, the queries an application
asks, and its whole public surface, composed of parts handed one
:class:`~leaderjob.inprocess.leadership_hold.Hold` (no part inherits another): the hold acquires
(one background thread running a :class:`~leaderjob.inprocess.leadership_driver.Driver`, which
drives the same :class:`~leaderjob.election.elector.Elector`, pure
:class:`~leaderjob.election.machine.Machine` and etcd adapter as the daemon: no second election,
the same key layout, token, local deadline and timing budget) and leaves; the fenced writes are
:mod:`leaderjob.inprocess.leadership_fenced`'s, asyncio's side
:mod:`leaderjob.inprocess.leadership_async`'s, ``leader()``, ``observe()`` and ``run_forever()``
:mod:`leaderjob.inprocess.leadership_api`'s; the options and errors,
:mod:`leaderjob.inprocess.leadership_options`'s. It must not know about jobs, processes or
schedules.

Rules (docs/safety.md, docs/inprocess.md):

* The driver thread checks the deadline first after every wait (:meth:`Elector.check`), then
  steps the elector, then waits on a :class:`~leaderjob.clock.Waker` until the elector's next
  wake-up. When leadership ends it sets :attr:`Leadership.lost` and calls ``on_lost`` — from that
  thread.
* :meth:`Leadership.valid` does not trust the thread: it compares the monotonic clock with the
  machine's deadline itself, so it turns False at ``D − grace`` even if the thread is starved or
  the whole process was frozen (a freeze stops the thread and the caller alike; the first
  ``valid()`` after the thaw reads the clock).
* In-process code cannot be killed at ``D`` the way a job is. ``valid()`` is the cooperative
  check; the fenced writes (:meth:`Leadership.fenced_put`, the SQL fence with
  :attr:`Leadership.token`) are what keep a deposed leader's writes out (S1).
* Leaving (the ``with`` block ended, :meth:`Leadership.release`): the caller's code has returned,
  so resign, then revoke: the successor starts in well under a second (L2). A tenure lost while
  the caller's code still runs is revoked only when it leaves, like a job's lease once the job is
  dead.
* Nothing waits for ever: etcd unreachable for ``etcd_timeout`` (default: the TTL) while waiting
  to lead raises :class:`LeadershipUnavailable`; a rejection (credentials, TLS) raises
  :class:`LeadershipRejected` at once.
* No lease outlives its owner's interest (SAFETY.md §5b): an acquire that is cancelled or
  interrupted withdraws (resign, revoke) whatever etcd decided meanwhile; a forked child never
  leads (:mod:`leaderjob.inprocess.leadership_lifecycle`); the interpreter's exit releases; the
  driver thread cleans up after itself, so :meth:`Leadership.release` works from any thread, its own
  callbacks included.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType

from prometheus_client import CollectorRegistry

from leaderjob.clock import Clock, SystemClock
from leaderjob.config import (
    DEFAULT_PREFIX,
    DEFAULT_TTL,
    Connection,
    default_identity,
    election_prefix,
    join_errors,
    validate_election_name,
)
from leaderjob.election.store import Store
from leaderjob.fencing.etcd import EtcdFence
from leaderjob.inprocess.leadership_api import Conveniences, Leader
from leaderjob.inprocess.leadership_async import AsyncLeadership
from leaderjob.inprocess.leadership_driver import Driver, Tenure, metrics_for
from leaderjob.inprocess.leadership_fenced import FencedWrites
from leaderjob.inprocess.leadership_hold import Hold
from leaderjob.inprocess.leadership_lifecycle import Signal
from leaderjob.inprocess.leadership_options import (
    DEFAULT,
    Default,
    LeadershipError,
    LeadershipRejected,
    LeadershipTimeout,
    LeadershipUnavailable,
    build_connection,
    build_timing,
)
from leaderjob.log import get_logger
from leaderjob.ops.metrics import Metrics

__all__ = [
    "Driver",
    "Leader",
    "Leadership",
    "LeadershipError",
    "LeadershipRejected",
    "LeadershipTimeout",
    "LeadershipUnavailable",
    "Tenure",
    "build_connection",
    "build_timing",
    "metrics_for",
]

# -- the application's handle --------------------------------------------------------------------


class Leadership:
    """Leadership of one election, held in-process by a background thread.

    ``with`` (or :meth:`acquire`) blocks until leading; leaving the block resigns and revokes.
    The options are ``leaderjob run``'s, with the same defaults, budget and error messages (as
    :class:`ValueError`). ``timeout`` bounds the wait to lead (None: as long as it takes while
    etcd answers); ``etcd_timeout`` (default: the TTL) bounds how long an unreachable etcd is
    waited for before :class:`LeadershipUnavailable`. ``on_lost(reason)`` is called from the
    driver thread when leadership ends other than by leaving; keep it short and thread-safe (set
    a flag, cancel a task). ``registry`` (a ``prometheus_client.CollectorRegistry``) gets the
    daemon's leadership metrics under ``election="<election>"``; without it there are none.
    ``store`` and ``clock`` replace the etcd adapter and the system clock (tests).
    """

    def __init__(
        self,
        election: str,
        *,
        endpoints: Sequence[str] | str = ("127.0.0.1:2379",),
        ttl: float = DEFAULT_TTL,
        renew_interval: float | None = None,
        renew_deadline: float | None = None,
        grace: float | None = None,
        margin: float | None = None,
        prefix: str = DEFAULT_PREFIX,
        identity: str | None = None,
        timeout: float | None = None,
        etcd_timeout: float | None = None,
        on_lost: Callable[[str], None] | None = None,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        user: str | None = None,
        password: str | None = None,
        tls_server_name: str | None = None,
        rpc_timeout: float = 5.0,
        store: Store | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        errors = validate_election_name(election)
        if errors:
            raise ValueError(join_errors(errors))
        self.election = election
        self.timing = build_timing(
            ttl,
            renew_interval=renew_interval,
            renew_deadline=renew_deadline,
            grace=grace,
            margin=margin,
        )
        self.connection = (
            build_connection(
                endpoints,
                cacert=cacert,
                cert=cert,
                key=key,
                user=user,
                password=password,
                tls_server_name=tls_server_name,
                rpc_timeout=rpc_timeout,
            )
            if store is None
            else Connection(rpc_timeout=rpc_timeout)
        )
        for name, value in (("timeout", timeout), ("etcd_timeout", etcd_timeout)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a duration of 0 s or more, got {value!r}")
        self.prefix = election_prefix(prefix, election)
        self.identity = identity or default_identity()
        self.timeout = timeout
        self.etcd_timeout = self.timing.ttl if etcd_timeout is None else etcd_timeout
        self.on_lost = on_lost
        #: The daemon's metrics on the application's ``registry`` (None: no metrics; never the
        #: global registry unasked).
        self.metrics: Metrics | None = None if registry is None else metrics_for(registry, election)
        self._hold = Hold(
            election,
            timing=self.timing,
            prefix=self.prefix,
            identity=self.identity,
            connection=self.connection,
            etcd_timeout=self.etcd_timeout,
            store=store,
            clock=clock or SystemClock(),
            log=get_logger(election=election, identity=self.identity),
            metrics=self.metrics,
            on_lost=self._lost,
        )
        #: Set when the tenure ends (lost, or left); one event for the handle's whole life,
        #: cleared when an acquire begins. ``await lead.lost.wait_async()`` from asyncio.
        self.lost: Signal = self._hold.lost
        self._fenced = FencedWrites(self._hold)
        self._async = AsyncLeadership(self._hold)
        self._conveniences = Conveniences(self._hold)

    # -- what the application asks ------------------------------------------------------------

    @property
    def token(self) -> int | None:
        """The fencing token of the current (or last) tenure: our key's create revision."""
        d = self._hold.driver
        return None if d is None or d.tenure is None else d.tenure.token

    @property
    def key(self) -> str | None:
        """Our election key while (or after) leading: the guard of :meth:`fenced_put`."""
        d = self._hold.driver
        return None if d is None or d.tenure is None else d.tenure.key

    def valid(self) -> bool:
        """True while leading and the monotonic clock is before ``D − grace``; False after a
        loss, a refused fenced write, or a deadline passed (even if the driver thread was
        starved or the process frozen). Cooperative: check it before each step of work."""
        d = self._hold.driver
        return d is not None and not self._hold.left and d.valid()

    def remaining(self) -> float:
        """Seconds until :meth:`valid` turns False unless a renewal extends the deadline."""
        d = self._hold.driver
        return 0.0 if d is None else d.remaining()

    @property
    def store(self) -> Store:
        """The storage port this leadership talks to, while acquired: for writes of your own
        guarded by :attr:`key` and :attr:`token` (``Store.guarded_put``)."""
        if self._hold.store is None:
            raise LeadershipError(f"election {self.election!r}: not acquired")
        return self._hold.store

    def leader(self) -> Leader | None:
        """Who leads now (one linearizable read; None: nobody). Any process may ask, leading
        or not. :class:`~leaderjob.election.store.StoreError` when etcd does not answer."""
        return self._conveniences.leader()

    def observe(
        self, interval: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[Leader | None]:
        """Yield the leader now, then each time it changes (None: nobody leads), reading every
        ``interval`` seconds (default: the renew interval) until ``stop`` is set. A read etcd
        does not answer is skipped."""
        return self._conveniences.observe(interval, stop)

    # -- acquiring and leaving ------------------------------------------------------------------

    def acquire(self, timeout: float | Default | None = DEFAULT) -> None:
        """Block until leading; :class:`LeadershipTimeout` after ``timeout`` seconds (``None``:
        wait for ever, as ``threading.Lock``; left out: the constructor's),
        :class:`LeadershipUnavailable` / :class:`LeadershipRejected` when etcd cannot be used.
        Interrupted (Ctrl-C, any exception while waiting): the candidacy is withdrawn first."""
        wait = self._timeout(timeout)
        if not self._hold.acquire(wait):
            raise self._timed_out(wait)

    def try_acquire(self, timeout: float) -> bool:
        """Lead within ``timeout`` seconds (0: one look, never less than etcd's first answer),
        or return False (and leave the queue) when another candidate leads;
        :class:`LeadershipUnavailable` when etcd did not answer meanwhile."""
        return self._hold.acquire(timeout)

    def release(self) -> None:
        """Resign, then revoke the lease; stop the driver thread. Idempotent, and callable from
        anywhere — an ``on_lost`` callback, another thread — without deadlock (from the driver
        thread itself it does not wait: the thread leaves once the callback returns)."""
        self._hold.release()

    def cancel(self) -> None:
        """Stop a pending :meth:`acquire` from another thread: it leaves the queue and returns
        False (``try_acquire``) or raises :class:`LeadershipTimeout` — even if etcd made it
        leader meanwhile. Once ``acquire`` returned, use :meth:`release`."""
        self._hold.cancel()

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
        self._conveniences.run_forever(
            lambda: on_started(self), on_stopped, on_new_leader=on_new_leader, stop=stop
        )

    def __enter__(self) -> Leadership:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- from asyncio (leaderjob.inprocess.leadership_async) ------------------------------------

    async def acquire_async(self, timeout: float | Default | None = DEFAULT) -> None:
        """:meth:`acquire` for asyncio. Holds no thread of the event loop's pool while waiting,
        and is cancellation-safe like ``asyncio.Lock``: a cancelled wait withdraws the candidacy
        (resign, revoke) even if etcd had already made it leader."""
        wait = self._timeout(timeout)
        if not await self._async.acquire(wait):
            raise self._timed_out(wait)

    async def try_acquire_async(self, timeout: float) -> bool:
        """:meth:`try_acquire` for asyncio (cancellation-safe, no pool thread)."""
        return await self._async.acquire(timeout)

    async def release_async(self) -> None:
        """:meth:`release` for asyncio: waits for the revoke without a pool thread."""
        await self._async.release()

    async def wait_lost(self) -> str | None:
        """Wait (from a coroutine, holding no thread) until this tenure ends; the reason
        (``None`` when it was left on purpose)."""
        return await self._async.wait_lost()

    async def __aenter__(self) -> Leadership:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release_async()

    # -- fenced writes (leaderjob.inprocess.leadership_fenced) ----------------------------------

    @property
    def fence(self) -> EtcdFence:
        """Writes to etcd guarded by our key (etcd's ``IsOwner`` compare, one Txn each)."""
        return self._fenced.fence

    def fenced_put(self, key: str, value: bytes | str) -> None:
        """Put ``key`` only while etcd still holds our leader key with our token; raises
        :class:`~leaderjob.fencing.StaleToken` (and ends the tenure) when it does not."""
        self._fenced.put(key, value)

    def proclaim(self, value: bytes | str) -> None:
        """Set the leader key's value, keeping its lease (etcd's ``Election.Proclaim``): what
        ``leaderjob status`` and ``etcdctl elect -l`` show. Guarded like :meth:`fenced_put`:
        :class:`~leaderjob.fencing.StaleToken` (and the tenure ends) once deposed."""
        self._fenced.proclaim(value)

    def fenced_delete(self, key: str) -> None:
        """Delete ``key`` under the same guard as :meth:`fenced_put`."""
        self._fenced.delete(key)

    async def fenced_put_async(self, key: str, value: bytes | str) -> None:
        """:meth:`fenced_put` from a coroutine (the etcd call runs in a worker thread)."""
        await self._fenced.put_async(key, value)

    async def fenced_delete_async(self, key: str) -> None:
        """:meth:`fenced_delete` from a coroutine."""
        await self._fenced.delete_async(key)

    # -- internals ------------------------------------------------------------------------------

    def _timeout(self, timeout: float | Default | None) -> float | None:
        return self.timeout if isinstance(timeout, Default) else timeout

    def _timed_out(self, wait: float | None) -> LeadershipTimeout:
        return LeadershipTimeout(
            f"election {self.election!r}: another candidate led for the whole {wait:g}s timeout"
            if wait is not None
            else f"election {self.election!r}: the wait to lead was cancelled"
        )

    def _lost(self, reason: str) -> None:
        if self.on_lost is not None:
            self.on_lost(reason)
