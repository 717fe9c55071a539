"""In-process leadership for Python applications: the daemon's election, in a background thread.

    with Leadership("cleanup", endpoints=["etcd-0:2379"], ttl=15) as lead:   # blocks until leading
        while lead.valid():        # False from D − grace on, or once leadership was lost
            lead.fenced_put("/app/cursor", next_cursor())   # StaleToken once deposed

Owns: the application's handle — acquiring (one background thread running a
:class:`~leaderjob.inprocess.leadership_driver.Driver`, which drives the same
:class:`~leaderjob.election.elector.Elector`, pure :class:`~leaderjob.election.machine.Machine`
and etcd adapter as the daemon: no second election, the same key layout, token, local deadline
and timing budget), leaving, the metrics registry, and the queries an application asks. The
fenced writes are :mod:`leaderjob.inprocess.leadership_fenced`'s; the options and errors,
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

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
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
from leaderjob.inprocess.leadership_api import Conveniences, Leader
from leaderjob.inprocess.leadership_async import AsyncLeadership
from leaderjob.inprocess.leadership_driver import Driver, Tenure, metrics_for
from leaderjob.inprocess.leadership_fenced import FencedWrites
from leaderjob.inprocess.leadership_lifecycle import Signal, register
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


class Leadership(AsyncLeadership, Conveniences, FencedWrites):
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
        #: Set when the tenure ends (lost, or left); one event for the handle's whole life,
        #: cleared when an acquire begins. ``await lead.lost.wait_async()`` from asyncio.
        self.lost = Signal()
        self._ended = Signal()
        self._ended.set()
        self._left = False
        self._forked_from: threading.Thread | None = None
        self._given_store = store
        self._store: Store | None = None
        self._clock = clock or SystemClock()
        self._driver: Driver | None = None
        self._thread: threading.Thread | None = None
        self._aborted = False
        self._lock = threading.Lock()
        self._log = get_logger(election=election, identity=self.identity)
        #: The daemon's metrics on the application's ``registry`` (None: no metrics; never the
        #: global registry unasked).
        self.metrics: Metrics | None = None if registry is None else metrics_for(registry, election)
        register(self)

    # -- what the application asks ------------------------------------------------------------

    @property
    def token(self) -> int | None:
        """The fencing token of the current (or last) tenure: our key's create revision."""
        d = self._driver
        return None if d is None or d.tenure is None else d.tenure.token

    @property
    def key(self) -> str | None:
        """Our election key while (or after) leading: the guard of :meth:`fenced_put`."""
        d = self._driver
        return None if d is None or d.tenure is None else d.tenure.key

    def valid(self) -> bool:
        """True while leading and the monotonic clock is before ``D − grace``; False after a
        loss, a refused fenced write, or a deadline passed (even if the driver thread was
        starved or the process frozen). Cooperative: check it before each step of work."""
        d = self._driver
        return d is not None and not self._left and d.valid()

    def remaining(self) -> float:
        """Seconds until :meth:`valid` turns False unless a renewal extends the deadline."""
        d = self._driver
        return 0.0 if d is None else d.remaining()

    @property
    def store(self) -> Store:
        """The storage port this leadership talks to, while acquired: for writes of your own
        guarded by :attr:`key` and :attr:`token` (``Store.guarded_put``)."""
        if self._store is None:
            raise LeadershipError(f"election {self.election!r}: not acquired")
        return self._store

    # -- acquiring and leaving ------------------------------------------------------------------

    def acquire(self, timeout: float | Default | None = DEFAULT) -> None:
        """Block until leading; :class:`LeadershipTimeout` after ``timeout`` seconds (``None``:
        wait for ever, as ``threading.Lock``; left out: the constructor's),
        :class:`LeadershipUnavailable` / :class:`LeadershipRejected` when etcd cannot be used.
        Interrupted (Ctrl-C, any exception while waiting): the candidacy is withdrawn first."""
        wait = self._timeout(timeout)
        if not self._acquire(wait):
            raise self._timed_out(wait)

    def try_acquire(self, timeout: float) -> bool:
        """Lead within ``timeout`` seconds (0: one look, never less than etcd's first answer),
        or return False (and leave the queue) when another candidate leads;
        :class:`LeadershipUnavailable` when etcd did not answer meanwhile."""
        return self._acquire(timeout)

    def release(self) -> None:
        """Resign, then revoke the lease; stop the driver thread. Idempotent, and callable from
        anywhere — an ``on_lost`` callback, another thread — without deadlock (from the driver
        thread itself it does not wait: the thread leaves once the callback returns)."""
        thread = self._leave_soon()
        if thread is not None and thread is not threading.current_thread():
            # The driver's in-flight step ends within its own RPC bounds; the revoke takes ≤ 1 s.
            thread.join(self.connection.rpc_timeout + 2.0)

    def cancel(self) -> None:
        """Stop a pending :meth:`acquire` from another thread: it leaves the queue and returns
        False (``try_acquire``) or raises :class:`LeadershipTimeout` — even if etcd made it
        leader meanwhile. Once ``acquire`` returned, use :meth:`release`."""
        self._aborted = True
        d = self._driver
        if d is not None:
            d.settled.set()

    def _timeout(self, timeout: float | Default | None) -> float | None:
        return self.timeout if isinstance(timeout, Default) else timeout

    def _timed_out(self, wait: float | None) -> LeadershipTimeout:
        return LeadershipTimeout(
            f"election {self.election!r}: another candidate led for the whole {wait:g}s timeout"
            if wait is not None
            else f"election {self.election!r}: the wait to lead was cancelled"
        )

    def _begin(self) -> Driver:
        """Start one acquisition's driver thread; never waits."""
        with self._lock:
            if self._thread is not None:
                raise LeadershipError(f"election {self.election!r}: already acquired")
            if self._forked_from is not None:
                self._forked_from = None  # a child may campaign for itself, with a lease of its own
            self._aborted = False
            self._left = False
            self.lost.clear()
            self._ended = Signal()
            if self._given_store is not None:
                store = self._store = self._given_store
            else:
                from leaderjob.election.etcd import EtcdStore  # etcd and grpc: only when used

                store = self._store = EtcdStore(self.connection)
            driver: Driver

            def ended() -> None:  # forward the tenure's end while this driver is the current one
                if self._driver is driver and not self._left:
                    self.lost.set()

            driver = Driver(
                store,
                self.timing,
                self.prefix,
                self.identity,
                clock=self._clock,
                rpc_timeout=self.connection.rpc_timeout,
                etcd_timeout=self.etcd_timeout,
                log=self._log,
                on_lost=self._lost,
                metrics=self.metrics,
                label=self.election,
                on_ended=ended,
            )
            self._driver = driver
            self._thread = threading.Thread(
                target=self._run,
                args=(driver, store, self._ended),
                name=f"leaderjob-{self.election}",
                daemon=True,
            )
            self._thread.start()
            return driver

    def _acquire(self, timeout: float | None, stop: threading.Event | None = None) -> bool:
        driver = self._begin()
        try:
            end = None if timeout is None else time.monotonic() + timeout
            # In slices: a signal (Ctrl-C) is handled at once, whichever thread it hit.
            while not driver.settled.wait(_SLICE if end is None else min(_SLICE, end - now())):
                if end is not None and now() >= end and driver.answered.is_set():
                    break
                if stop is not None and stop.is_set():
                    self._aborted = True
                    break
        except BaseException:
            self.release()  # withdraw before anything else: no candidacy outlives its caller
            raise
        return self._outcome(driver, self.release)

    def _outcome(self, driver: Driver, release: Callable[[], None]) -> bool:
        if driver.fatal is not None:
            release()
            raise driver.fatal
        if driver.tenure is None or self._aborted:
            # Stopped waiting while etcd did not answer: that is no "another candidate leads".
            unreachable = None if self._aborted else driver.unreachable()
            release()
            if unreachable is not None:
                raise unreachable
            return False
        return True

    def _leave_soon(self) -> threading.Thread | None:
        """Ask the driver thread to resign and revoke; returns it (None: nothing held)."""
        with self._lock:
            driver, thread = self._driver, self._thread
            self._thread = None
            if thread is not None:
                self._left = True
        if driver is None or thread is None:
            return None
        driver.request_leave()
        self.lost.set()
        return thread

    def _run(self, driver: Driver, store: Store, ended: Signal) -> None:
        try:
            while not driver.forked:
                driver.cycle()
                if driver.done:
                    return
                driver.wait()
        finally:
            driver.close()
            if store is not self._given_store and not driver.forked:
                with contextlib.suppress(Exception):
                    store.close()
                with self._lock:
                    if self._store is store and self._thread is None:
                        self._store = None
            ended.set()

    def _lost(self, reason: str) -> None:
        if self.on_lost is not None:
            self.on_lost(reason)

    # -- the process's own events (leaderjob.inprocess.leadership_lifecycle) ---------------------

    def _after_fork_in_child(self) -> None:
        """In a child of ``os.fork()``: no driver thread, no keepalive — never leading."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        d = self._driver
        if d is not None:
            d.forked = True
            self._forked_from = self._thread
        self._thread = None
        self._store = None  # the parent's connection: never used (nor closed) here
        self.lost.set()

    def _at_exit(self) -> None:
        if self._thread is not None:
            self._log.info("leadership.released_at_exit")
            self.release()

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


_SLICE = 0.2


def now() -> float:
    return time.monotonic()
