"""In-process leadership for Python applications: the daemon's election, in a background thread.

    with Leadership("cleanup", endpoints=["etcd-0:2379"], ttl=15) as lead:   # blocks until leading
        while lead.valid():        # False from D − grace on, or once leadership was lost
            lead.fenced_put("/app/cursor", next_cursor())   # StaleToken once deposed

Owns: one background thread that drives the same :class:`~leaderjob.election.elector.Elector`,
pure :class:`~leaderjob.election.machine.Machine` and etcd adapter as the daemon (no second
election: the same key layout, token, local deadline and timing budget), and the queries an
application asks of it. It must not know about jobs, processes or schedules.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from leaderjob.clock import Clock, SystemClock, Waker
from leaderjob.config import (
    DEFAULT_PREFIX,
    DEFAULT_TTL,
    Connection,
    Endpoints,
    Timing,
    default_identity,
    election_prefix,
    join_errors,
    system_ca_bundle,
    validate_election_name,
)
from leaderjob.election.elector import Elector
from leaderjob.election.machine import Phase, Reason, Transition
from leaderjob.election.store import Store, StoreError, StoreRejected
from leaderjob.fencing import StaleToken
from leaderjob.fencing.etcd import EtcdFence
from leaderjob.log import get_logger

__all__ = [
    "Leadership",
    "LeadershipError",
    "LeadershipRejected",
    "LeadershipTimeout",
    "LeadershipUnavailable",
    "build_connection",
    "build_timing",
]


class LeadershipError(Exception):
    """Leadership could not be had or used (never led, etcd unreachable or refusing us)."""


class LeadershipUnavailable(LeadershipError):
    """etcd could not be reached for ``etcd_timeout`` seconds while waiting to lead."""


class LeadershipRejected(LeadershipError):
    """etcd refused us (credentials, permissions, TLS): retrying will not help."""


class LeadershipTimeout(LeadershipError, TimeoutError):
    """Another candidate led for the whole ``timeout``."""


# -- options, validated like the CLI's ---------------------------------------------------------


def build_timing(
    ttl: float,
    *,
    renew_interval: float | None = None,
    renew_deadline: float | None = None,
    grace: float | None = None,
    margin: float | None = None,
) -> Timing:
    """The timing budget from the same options as ``leaderjob run``; :class:`ValueError` with the
    CLI's one-line message when it cannot be met."""
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"--ttl must be a positive duration, e.g. 15s (got {ttl:g})")
    timing = Timing.from_ttl(
        ttl,
        renew_interval=renew_interval,
        renew_deadline=renew_deadline,
        grace=grace,
        margin=margin,
    )
    errors = timing.validate()
    if errors:
        raise ValueError(join_errors(errors))
    return timing


def build_connection(
    endpoints: Sequence[str] | str,
    *,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    user: str | None = None,
    password: str | None = None,
    tls_server_name: str | None = None,
    rpc_timeout: float = 5.0,
) -> Connection:
    """How to reach etcd, read like ``--endpoints`` and the TLS and auth options;
    :class:`ValueError` with the CLI's one-line message when something is wrong."""
    text = endpoints if isinstance(endpoints, str) else ",".join(endpoints)
    parsed = Endpoints.parse(text)
    errors = list(parsed.errors)
    if parsed.tls is False and (cacert or cert):
        errors.append(
            "--endpoints http:// means plain text, but --cacert/--cert ask for TLS: "
            "write https:// (or drop the scheme)"
        )
    if parsed.tls and cacert is None:
        cacert = system_ca_bundle()
        if cacert is None:
            errors.append("--endpoints https://: no system CA bundle found; give --cacert FILE")
    if not (math.isfinite(rpc_timeout) and rpc_timeout > 0):
        errors.append(f"--rpc-timeout must be a positive duration, got {rpc_timeout!r}")
    if errors:
        raise ValueError(join_errors(errors))
    conn = Connection(
        endpoints=parsed.hosts,
        cacert=cacert,
        cert=cert,
        key=key,
        user=user,
        password=password,
        rpc_timeout=rpc_timeout,
        server_name=tls_server_name,
    )
    errors = conn.validate()
    if errors:
        raise ValueError(join_errors(errors))
    return conn


# -- the driver: one elector, stepped by one thread ----------------------------------------------


@dataclass(frozen=True)
class Tenure:
    """What one term of leadership hands the application: the fencing token and the leader key."""

    token: int
    key: str


class Driver:
    """The elector's loop for one acquisition: campaign, lead, leave. Not thread-safe: one thread
    calls :meth:`cycle` and :meth:`wait`; other threads only read, or call :meth:`request_leave`
    and :meth:`deposed`, which set a flag and wake it.

    Each cycle returns one word saying what it decided (``campaigning``, ``leading``, ``lost``,
    ``left``, ``fatal``, ``idle``).
    """

    def __init__(
        self,
        store: Store,
        timing: Timing,
        prefix: str,
        identity: str,
        *,
        clock: Clock,
        rpc_timeout: float,
        etcd_timeout: float,
        log: Any,
        on_lost: Callable[[str], None] | None = None,
        lost: threading.Event | None = None,
    ) -> None:
        self.timing = timing
        self.clock = clock
        self.waker = Waker()
        self.elector = Elector(store, timing, prefix, identity, clock, self.waker, rpc_timeout)
        self.etcd_timeout = etcd_timeout
        self.log = log
        self.on_lost = on_lost
        self.tenure: Tenure | None = None
        self.lost = threading.Event() if lost is None else lost
        #: Set once leading, on a fatal error, or after leaving: what ``acquire`` waits for.
        self.settled = threading.Event()
        self.fatal: LeadershipError | None = None
        self.done = False
        self.lost_reason: str | None = None
        self._campaign = True  # one tenure per acquisition: no campaign once it began or ended
        self._leave = False
        self._deposed = False
        #: Monotonic time since which every etcd call failed (None: etcd answers).
        self._failing_since: float | None = clock.monotonic()
        self._last_error: StoreError | None = None
        self._said: tuple[str, float] | None = None

    # -- queries (any thread) ---------------------------------------------------------------

    def valid(self) -> bool:
        """Leading, and the clock is before ``D − grace``: read here, not from the thread."""
        tenure = self.tenure
        if tenure is None or self.lost.is_set() or self._deposed:
            return False
        now = self.clock.monotonic()
        # is_leader(t) is "leading and t < D"; at t = now + grace that is now < D − grace, the
        # moment the machine itself steps down (a job would get SIGTERM there).
        return self.elector.token == tenure.token and self.elector.machine.is_leader(
            now + self.timing.grace
        )

    def remaining(self) -> float:
        """Seconds until :meth:`valid` turns False unless a renewal extends ``D`` first."""
        if not self.valid():
            return 0.0
        deadline = self.elector.machine.deadline
        if deadline is None:
            return 0.0
        return max(0.0, deadline - self.timing.grace - self.clock.monotonic())

    # -- requests (any thread) --------------------------------------------------------------

    def request_leave(self) -> None:
        self._leave = True
        self.waker.set()

    def deposed(self) -> None:
        """A fenced write was refused: our key is gone or re-created, so this tenure is over."""
        self._deposed = True
        self.waker.set()

    # -- the loop (the driver thread) -------------------------------------------------------

    def cycle(self) -> str:
        self.waker.clear()
        # The deadline first: after a wait or a freeze, step down before any other I/O.
        self._transition(self.elector.check(self.clock.monotonic()))
        if self._leave:
            return self._depart()
        if self._deposed and self.tenure is not None and not self.lost.is_set():
            self._transition(self.elector.resign(), reason="stale_token")
        out = self.elector.step(may_campaign=self._campaign)
        now = self.clock.monotonic()
        for err in out.errors:
            self._error(err)
        if not out.errors and self.elector.phase is not Phase.IDLE:
            if self._failing_since is not None or self._last_error is not None:
                self.log.info("etcd.connected")
            self._failing_since = None
            self._last_error = None
        elif out.errors and self._failing_since is None:
            self._failing_since = now
        for t in out.transitions:
            self._transition(t)
        if self.fatal is not None:
            self.settled.set()
            return "fatal"
        if self.lost.is_set():
            return "lost"
        if self.elector.phase is Phase.LEADING:
            return "leading"
        if (
            self.tenure is None
            and self._failing_since is not None
            and now - self._failing_since >= self.etcd_timeout
        ):
            detail = "" if self._last_error is None else f": {self._last_error}"
            self.fatal = LeadershipUnavailable(
                f"etcd unreachable for {self.etcd_timeout:g}s{detail}"
            )
            self.settled.set()
            return "fatal"
        return str(self.elector.phase.value)

    def unreachable(self) -> LeadershipUnavailable | None:
        """The error to raise when the caller stops waiting while etcd does not answer."""
        since = self._failing_since
        if since is None or self.tenure is not None:
            return None
        detail = "" if self._last_error is None else f": {self._last_error}"
        took = self.clock.monotonic() - since
        return LeadershipUnavailable(f"etcd unreachable for {took:.1f}s{detail}")

    def wait(self) -> None:
        if self._leave or self.done:
            return
        now = self.clock.monotonic()
        until = self.elector.next_wakeup(now, self._campaign)
        if self.tenure is None and self._failing_since is not None and self.fatal is None:
            until = min(until, self._failing_since + self.etcd_timeout)  # give up on time
        self.clock.wait(self.waker, max(0.0, until - now))

    def close(self) -> None:
        self.waker.close()

    # -- internals ----------------------------------------------------------------------------

    def _depart(self) -> str:
        """Leave: the caller's code has returned, so resign, then revoke (L2)."""
        self._campaign = False
        self._transition(self.elector.resign(), reason="resigned")
        for err in self.elector.release():
            self._error(err)
        self.elector.close()
        self.done = True
        self.settled.set()
        return "left"

    def _error(self, err: StoreError) -> None:
        self._last_error = err
        if isinstance(err, StoreRejected) and self.tenure is None and self.fatal is None:
            self.fatal = LeadershipRejected(f"etcd rejected leaderjob: {err}")
            self.log.error("etcd.rejected", operation=err.operation, error=err.detail)
            return
        now = self.clock.monotonic()
        said = f"{err.operation}:{err.detail}"
        if self._said is None or self._said[0] != said or now - self._said[1] > 5.0:
            self._said = (said, now)  # one line per distinct error per 5 s, as the daemon
            self.log.warning("etcd.unavailable", operation=err.operation, error=err.detail)

    def _transition(self, t: Transition | None, reason: str | None = None) -> None:
        if t is None:
            return
        why = reason or (t.reason.value if t.reason is not None else None)
        lease = None if t.lease_id is None else f"{t.lease_id:x}"
        if t.event == "lease.granted":
            self.log.info("lease.granted", lease_id=lease)
        elif t.event == "election.acquired":
            key = self.elector.key
            assert t.token is not None and key is not None
            self.tenure = Tenure(t.token, key)
            self._campaign = False
            self.log = self.log.bind(token=t.token)
            self.log.info("election.acquired", lease_id=lease, key=key)
            self.settled.set()
        elif t.event == "election.lost":
            self._campaign = False
            planned = self._leave and t.reason is Reason.RESIGNED and reason == "resigned"
            (self.log.info if planned else self.log.warning)(
                "election.lost", reason=why, lease_id=lease
            )
            self.lost_reason = why
            self.lost.set()
            if not planned and self.on_lost is not None:
                try:
                    self.on_lost(why or "lost")
                except Exception as exc:  # the loop must survive the application's callback
                    self.log.error("leadership.callback_failed", error=repr(exc))
        elif t.event == "lease.lost":
            if self._leave and t.reason is Reason.RESIGNED:
                self.log.info("election.withdrawn", reason="resigned", lease_id=lease)
            else:
                self.log.warning("lease.lost", reason=why, lease_id=lease)


# -- the application's handle --------------------------------------------------------------------


class Leadership:
    """Leadership of one election, held in-process by a background thread.

    ``with`` (or :meth:`acquire`) blocks until leading; leaving the block resigns and revokes.
    The options are ``leaderjob run``'s, with the same defaults, budget and error messages (as
    :class:`ValueError`). ``timeout`` bounds the wait to lead (None: as long as it takes while
    etcd answers); ``etcd_timeout`` (default: the TTL) bounds how long an unreachable etcd is
    waited for before :class:`LeadershipUnavailable`. ``on_lost(reason)`` is called from the
    driver thread when leadership ends other than by leaving; keep it short and thread-safe (set
    a flag, cancel a task). ``store`` and ``clock`` replace the etcd adapter and the system clock
    (tests).
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
        self.lost = threading.Event()
        self._given_store = store
        self._store: Store | None = None
        self._clock = clock or SystemClock()
        self._driver: Driver | None = None
        self._thread: threading.Thread | None = None
        self._aborted = False
        self._lock = threading.Lock()
        self._log = get_logger(election=election, identity=self.identity)

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
        return d is not None and d.valid()

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

    @property
    def fence(self) -> EtcdFence:
        """Writes to etcd guarded by our key (etcd's ``IsOwner`` compare, one Txn each)."""
        d = self._driver
        if d is None or d.tenure is None or self._store is None:
            raise LeadershipError(f"not leading election {self.election!r}: nothing to fence with")
        return EtcdFence(self._store, d.tenure.key, d.tenure.token, self.connection.rpc_timeout)

    def fenced_put(self, key: str, value: bytes | str) -> None:
        """Put ``key`` only while etcd still holds our leader key with our token; raises
        :class:`~leaderjob.fencing.StaleToken` (and ends the tenure) when it does not."""
        self._fenced(lambda f: f.put(key, value))

    def fenced_delete(self, key: str) -> None:
        """Delete ``key`` under the same guard as :meth:`fenced_put`."""
        self._fenced(lambda f: f.delete(key))

    def _fenced(self, write: Callable[[EtcdFence], None]) -> None:
        fence = self.fence
        try:
            write(fence)
        except StaleToken:
            d = self._driver
            if d is not None:
                d.deposed()
            raise

    # -- acquiring and leaving ------------------------------------------------------------------

    def acquire(self, timeout: float | None = None) -> None:
        """Block until leading; :class:`LeadershipTimeout` after ``timeout`` seconds (default:
        the constructor's), :class:`LeadershipUnavailable` / :class:`LeadershipRejected` when
        etcd cannot be used."""
        if not self._acquire(self.timeout if timeout is None else timeout):
            raise LeadershipTimeout(
                f"election {self.election!r}: another candidate led for the whole "
                f"{self.timeout if timeout is None else timeout:g}s timeout"
            )

    def try_acquire(self, timeout: float) -> bool:
        """Lead within ``timeout`` seconds, or return False (and leave the queue) when another
        candidate leads; :class:`LeadershipUnavailable` when etcd did not answer meanwhile."""
        return self._acquire(timeout)

    def release(self) -> None:
        """Resign, then revoke the lease; stop the driver thread. Idempotent."""
        with self._lock:
            driver, thread = self._driver, self._thread
            self._thread = None
        if driver is None or thread is None:
            return
        driver.request_leave()
        # The driver's in-flight step ends within its own RPC bounds; the revoke takes ≤ 1 s.
        thread.join(self.connection.rpc_timeout + 2.0)
        if not thread.is_alive():
            driver.close()
        if self._given_store is None and self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None
        self.lost.set()

    def _acquire(self, timeout: float | None) -> bool:
        with self._lock:
            if self._thread is not None:
                raise LeadershipError(f"election {self.election!r}: already acquired")
            self._aborted = False
            self.lost = threading.Event()
            if self._given_store is not None:
                self._store = self._given_store
            else:
                from leaderjob.election.etcd import EtcdStore  # etcd and grpc: only when used

                self._store = EtcdStore(self.connection)
            driver = Driver(
                self._store,
                self.timing,
                self.prefix,
                self.identity,
                clock=self._clock,
                rpc_timeout=self.connection.rpc_timeout,
                etcd_timeout=self.etcd_timeout,
                log=self._log,
                on_lost=self._lost,
                lost=self.lost,
            )
            self._driver = driver
            self._thread = threading.Thread(
                target=self._run, args=(driver,), name=f"leaderjob-{self.election}", daemon=True
            )
            self._thread.start()
        driver.settled.wait(timeout)
        if driver.fatal is not None:
            self.release()
            raise driver.fatal
        if driver.tenure is None or self._aborted:
            # Stopped waiting while etcd did not answer: that is no "another candidate leads".
            unreachable = None if self._aborted else driver.unreachable()
            self.release()
            if unreachable is not None:
                raise unreachable
            return False
        return True

    def _run(self, driver: Driver) -> None:
        while True:
            driver.cycle()
            if driver.done:
                return
            driver.wait()

    def _lost(self, reason: str) -> None:
        if self.on_lost is not None:
            self.on_lost(reason)

    def cancel(self) -> None:
        """Stop a pending :meth:`acquire` from another thread: it leaves the queue and returns
        False (``try_acquire``) or raises :class:`LeadershipTimeout`. No effect once leading."""
        self._abort()

    def _abort(self) -> None:
        """Stop waiting to lead (a cancelled ``async with``): the waiting thread cleans up."""
        self._aborted = True
        d = self._driver
        if d is not None:
            d.settled.set()

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

    async def __aenter__(self) -> Leadership:
        try:
            await asyncio.to_thread(self.acquire)
        except asyncio.CancelledError:
            self._abort()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.release)
