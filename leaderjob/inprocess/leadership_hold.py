"""How a :class:`~leaderjob.inprocess.leadership.Leadership` holds its election: one driver
thread per acquisition, begun, waited for, and asked to leave.

Owns: the current acquisition — its :class:`~leaderjob.inprocess.leadership_driver.Driver` and
the thread that steps it, the store it talks to (made when an acquisition begins, closed by the
thread that used it), the ``lost`` and ``ended`` signals — and what the process's own events do
to it (a forked child never leads; the interpreter's exit releases). It must not know the
options (the handle validates them) nor the election rules (the driver's).

Rules (docs/inprocess.md):

* One acquisition at a time; waiting for it is done in slices, so that a signal (Ctrl-C) is
  handled at once, whichever thread it hit. Any exception while waiting withdraws the
  candidacy first: no candidacy outlives its caller.
* Leaving asks the driver thread to resign and revoke; it may be asked from any thread, the
  driver's own callbacks included (from the driver thread it does not wait).
* A wait that ends without leadership (cancelled, timed out, etcd unreachable) withdraws whatever
  etcd decided meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from leaderjob.clock import Clock
from leaderjob.config import Connection, Timing
from leaderjob.election.store import Store
from leaderjob.inprocess.leadership_driver import Driver
from leaderjob.inprocess.leadership_lifecycle import Signal, register
from leaderjob.inprocess.leadership_options import LeadershipError
from leaderjob.ops.metrics import Metrics

__all__ = ["Hold"]

#: How long one wait for an acquisition lasts before signals and ``stop`` are looked at again.
_SLICE = 0.2


class Hold:
    def __init__(
        self,
        election: str,
        *,
        timing: Timing,
        prefix: str,
        identity: str,
        connection: Connection,
        etcd_timeout: float,
        store: Store | None,
        clock: Clock,
        log: Any,
        metrics: Metrics | None,
        on_lost: Callable[[str], None],
    ) -> None:
        self.election = election
        self.timing = timing
        self.prefix = prefix
        self.identity = identity
        self.connection = connection
        self.etcd_timeout = etcd_timeout
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.on_lost = on_lost
        #: Set when the tenure ends (lost, or left); one event for the handle's whole life,
        #: cleared when an acquire begins.
        self.lost = Signal()
        #: Set once the current acquisition's thread has cleaned up (revoked, store closed).
        self.ended = Signal()
        self.ended.set()
        self.left = False
        self.aborted = False
        self.forked_from: threading.Thread | None = None
        #: The store handed to the handle (tests), else None: an etcd adapter per acquisition.
        self.given_store = store
        self.store: Store | None = None
        self.driver: Driver | None = None
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        register(self)

    def begin(self) -> Driver:
        """Start one acquisition's driver thread; never waits."""
        with self._lock:
            if self.thread is not None:
                raise LeadershipError(f"election {self.election!r}: already acquired")
            if self.forked_from is not None:
                self.forked_from = None  # a child may campaign for itself, with a lease of its own
            self.aborted = False
            self.left = False
            self.lost.clear()
            self.ended = Signal()
            if self.given_store is not None:
                store = self.store = self.given_store
            else:
                from leaderjob.election.etcd import EtcdStore  # etcd and grpc: only when used

                store = self.store = EtcdStore(self.connection)
            driver: Driver

            def ended() -> None:  # forward the tenure's end while this driver is the current one
                if self.driver is driver and not self.left:
                    self.lost.set()

            driver = Driver(
                store,
                self.timing,
                self.prefix,
                self.identity,
                clock=self.clock,
                rpc_timeout=self.connection.rpc_timeout,
                etcd_timeout=self.etcd_timeout,
                log=self.log,
                on_lost=self.on_lost,
                metrics=self.metrics,
                label=self.election,
                on_ended=ended,
            )
            self.driver = driver
            self.thread = threading.Thread(
                target=self._run,
                args=(driver, store, self.ended),
                name=f"leaderjob-{self.election}",
                daemon=True,
            )
            self.thread.start()
            return driver

    def acquire(self, timeout: float | None, stop: threading.Event | None = None) -> bool:
        """Begin an acquisition and wait for it: True once leading, False when another
        candidate leads for the whole ``timeout`` or ``stop`` is set (the candidacy withdrawn)."""
        driver = self.begin()
        try:
            end = None if timeout is None else time.monotonic() + timeout
            # In slices: a signal (Ctrl-C) is handled at once, whichever thread it hit.
            while not driver.settled.wait(_SLICE if end is None else min(_SLICE, end - _now())):
                if end is not None and _now() >= end and driver.answered.is_set():
                    break
                if stop is not None and stop.is_set():
                    self.aborted = True
                    break
        except BaseException:
            self.release()  # withdraw before anything else: no candidacy outlives its caller
            raise
        return self.outcome(driver, self.release)

    def outcome(self, driver: Driver, release: Callable[[], None]) -> bool:
        """What a settled (or abandoned) wait for ``driver`` comes to: True when leading; else
        the candidacy is withdrawn with ``release`` and False is returned, or the reason etcd
        could not be used raised."""
        if driver.fatal is not None:
            release()
            raise driver.fatal
        if driver.tenure is None or self.aborted:
            # Stopped waiting while etcd did not answer: that is no "another candidate leads".
            unreachable = None if self.aborted else driver.unreachable()
            release()
            if unreachable is not None:
                raise unreachable
            return False
        return True

    def release(self) -> None:
        """Leave (:meth:`leave_soon`) and wait for the driver thread, unless called from it."""
        thread = self.leave_soon()
        if thread is not None and thread is not threading.current_thread():
            # The driver's in-flight step ends within its own RPC bounds; the revoke takes ≤ 1 s.
            thread.join(self.connection.rpc_timeout + 2.0)

    def cancel(self) -> None:
        """Stop a pending acquisition from another thread."""
        self.aborted = True
        d = self.driver
        if d is not None:
            d.settled.set()

    def leave_soon(self) -> threading.Thread | None:
        """Ask the driver thread to resign and revoke; returns it (None: nothing held)."""
        with self._lock:
            driver, thread = self.driver, self.thread
            self.thread = None
            if thread is not None:
                self.left = True
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
            if store is not self.given_store and not driver.forked:
                with contextlib.suppress(Exception):
                    store.close()
                with self._lock:
                    if self.store is store and self.thread is None:
                        self.store = None
            ended.set()

    # -- the process's own events (leaderjob.inprocess.leadership_lifecycle) ---------------------

    def _after_fork_in_child(self) -> None:
        """In a child of ``os.fork()``: no driver thread, no keepalive — never leading."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        d = self.driver
        if d is not None:
            d.forked = True
            self.forked_from = self.thread
        self.thread = None
        self.store = None  # the parent's connection: never used (nor closed) here
        self.lost.set()

    def _at_exit(self) -> None:
        if self.thread is not None:
            self.log.info("leadership.released_at_exit")
            self.release()


def _now() -> float:
    return time.monotonic()
