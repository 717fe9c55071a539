"""The driver of in-process leadership: one elector, stepped by one background thread.

Owns: the loop of one acquisition — campaign, lead, leave — over the daemon's
:class:`~leaderjob.election.elector.Elector`, its log events and metrics (one metric set per
registry: :func:`metrics_for`), and the queries (``valid``, ``remaining``) any thread may ask of it.
It must not know about threads of the application, asyncio, or the fencing helpers:
:mod:`leaderjob.inprocess.leadership` is the handle.

Rules (docs/safety.md, docs/inprocess.md): every cycle checks the deadline first, then steps the
elector; :meth:`Driver.valid` reads the monotonic clock itself, so it turns False at ``D − grace``
even if the thread is starved or the process was frozen.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock, Waker
from leaderjob.config import Timing
from leaderjob.election.elector import Elector
from leaderjob.election.machine import Phase, Reason, Transition
from leaderjob.election.store import Store, StoreError, StoreRejected
from leaderjob.inprocess.leadership_lifecycle import Signal
from leaderjob.inprocess.leadership_options import (
    LeadershipError,
    LeadershipRejected,
    LeadershipUnavailable,
)
from leaderjob.ops.metrics import Metrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["Driver", "Tenure", "metrics_for"]


#: One :class:`Metrics` per registry the application passes in: several elections (and a
#: singleton's leadership) may share a registry, each under its own ``election`` label; a
#: second ``Metrics`` on the same registry would register the same names twice.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()
_METRICS_LOCK = threading.Lock()


def metrics_for(registry: CollectorRegistry, election: str) -> Metrics:
    """The daemon's metric set on ``registry``, with ``election``'s series present from the
    start (0)."""
    with _METRICS_LOCK:
        metrics = _METRICS.get(registry)
        if metrics is None:
            metrics = _METRICS[registry] = Metrics(registry, election)
        metrics.track(election, mode="inprocess", fingerprint="", election=election)
        for result in ("ok", "failed", "expired"):
            metrics.keepalives.labels(election, result)
        return metrics


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
        metrics: Metrics | None = None,
        label: str = "",
        on_ended: Callable[[], None] | None = None,
    ) -> None:
        self.timing = timing
        self.clock = clock
        self.waker = Waker()
        self.elector = Elector(store, timing, prefix, identity, clock, self.waker, rpc_timeout)
        self.etcd_timeout = etcd_timeout
        self.log = log
        self.on_lost = on_lost
        #: The daemon's metrics, under ``label`` (the election's name), if the application
        #: passed a registry.
        self.metrics = metrics
        self.label = label
        self.tenure: Tenure | None = None
        self.lost = threading.Event() if lost is None else lost
        #: Set once leading, on a fatal error, or after leaving: what ``acquire`` waits for.
        self.settled = Signal()
        #: Set once the first cycle finished: the candidate knows where it stands (or that etcd
        #: did not answer). ``try_acquire(0)`` waits for it, never less.
        self.answered = Signal()
        #: Set when the tenure ends (lost or left): the handle forwards it while current.
        self.on_ended = on_ended
        #: Set in a child process after ``os.fork()``: it holds no keepalive, so it never leads.
        self.forked = False
        self._wlock = threading.Lock()  # request_leave/deposed vs. close: never a closed fd
        self._closed = False
        self.fatal: LeadershipError | None = None
        self.done = False
        self.lost_reason: str | None = None
        self._campaign = True  # one tenure per acquisition: no campaign once it began or ended
        self._leave = False
        self._deposed = False
        self._expired = False  # valid() saw D − grace pass: this tenure is over
        #: Monotonic time since which every etcd call failed (None: etcd answers).
        self._failing_since: float | None = clock.monotonic()
        self._last_error: StoreError | None = None
        self._said: tuple[str, float] | None = None

    # -- queries (any thread) ---------------------------------------------------------------

    def valid(self) -> bool:
        """Leading, and the clock is before ``D − grace``: read here, not from the thread."""
        tenure = self.tenure
        if tenure is None or self.forked or self.lost.is_set() or self._deposed or self._expired:
            return False
        now = self.clock.monotonic()
        # is_leader(t) is "leading and t < D"; at t = now + grace that is now < D − grace, the
        # moment the machine itself steps down (a job would get SIGTERM there).
        if self.elector.token == tenure.token and self.elector.machine.is_leader(
            now + self.timing.grace
        ):
            return True
        # Once False, for good: a late renewal never makes a tenure valid again, and the
        # tenure ends now — ``lost`` is set no later than the first valid() that says False,
        # even while the driver thread is held up (an RPC in flight across a freeze).
        self._expired = True
        self.lost.set()
        if self.on_ended is not None:
            self.on_ended()
        self._wake()
        return False

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
        self._wake()

    def deposed(self) -> None:
        """A fenced write was refused: our key is gone or re-created, so this tenure is over."""
        self._deposed = True
        self._wake()

    def _wake(self) -> None:
        with self._wlock:
            if not self._closed:
                self.waker.set()

    def _settle(self) -> None:
        self.settled.set()

    # -- the loop (the driver thread) -------------------------------------------------------

    def cycle(self) -> str:
        try:
            return self._cycle()
        finally:
            self.answered.set()

    def _cycle(self) -> str:
        self.waker.clear()
        # The deadline first: after a wait or a freeze, step down before any other I/O.
        self._transition(self.elector.check(self.clock.monotonic()))
        if self._leave:
            return self._depart()
        if self._deposed and self.tenure is not None and not self.lost.is_set():
            self._transition(self.elector.resign(), reason="stale_token")
        if self._expired and self.elector.phase is Phase.LEADING:
            # valid() saw D − grace pass: end the tenure the machine still holds.
            self._transition(self.elector.resign(), reason="deadline_passed")
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
        for key, revision in out.removed:
            # Not an election step's doing: someone put a key in the queue by hand.
            self.log.warning("election.stray_key_removed", key=key, create_revision=revision)
        for t in out.transitions:
            self._transition(t)
        self._measure(out.keepalive_result, out.keepalive_latency)
        if self.fatal is not None:
            self._settle()
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
            self._settle()
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
        with self._wlock:
            self._closed = True
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
        self._settle()
        return "left"

    def _measure(self, keepalive: str | None, latency: float | None) -> None:
        m = self.metrics
        if m is None:
            return
        if keepalive is not None:
            m.keepalives.labels(self.label, keepalive).inc()
            if latency is not None:
                m.keepalive_latency.labels(self.label).observe(latency)
        leading = self.tenure is not None and not self.lost.is_set()
        deadline = self.elector.machine.deadline
        left = 0.0 if not leading or deadline is None else deadline - self.clock.monotonic()
        m.deadline_remaining.labels(self.label, self.label).set(max(0.0, left))

    def _error(self, err: StoreError) -> None:
        self._last_error = err
        if self.metrics is not None:
            self.metrics.etcd_errors.labels(self.label, err.operation).inc()
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
            if self.metrics is not None:
                self.metrics.transitions.labels(self.label, self.label, "acquired").inc()
                self.metrics.set_leader(t.token, election=self.label)
            self._settle()
        elif t.event == "election.lost":
            self._campaign = False
            planned = self._leave and t.reason is Reason.RESIGNED and reason == "resigned"
            (self.log.info if planned else self.log.warning)(
                "election.lost", reason=why, lease_id=lease
            )
            self.lost_reason = why
            self.lost.set()
            if self.on_ended is not None:
                self.on_ended()
            if self.metrics is not None:
                self.metrics.transitions.labels(self.label, self.label, "lost").inc()
                self.metrics.set_leader(None, election=self.label)
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
