"""The session: one lease and its local deadline ``D``, shared by everything the daemon runs.

It drives the :class:`~leaderjob.election.elector.Elector` (campaign, renew, confirm) and owns
what every etcd call of a cycle has to respect: one deadline per step (:meth:`Session.step`), made
when the step starts — half a renew interval, never past ``D − grace`` — that the keepalive, the
confirmation, the creates of keys, and then the cycle's claims and records all spend
(:meth:`Session.io_timeout`), so that no call holds up the next renewal. Bookkeeping yields when
less than half of it is left. It also remembers the contact with etcd (for ``/healthz``) and
turns store errors into one rate-limited log line and a metric.

It does not know jobs, schedules or processes: the runner asks it whether there is time left.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock, Waker
from leaderjob.config import Timing
from leaderjob.election.confirm_read import Reading
from leaderjob.election.deadline import MIN_CALL, Deadline, DeadlinePassed
from leaderjob.election.elector import Elector, Outcome
from leaderjob.election.group import Group
from leaderjob.election.machine import DEFAULT, Machine, Phase
from leaderjob.election.store import Store, StoreError, StoreRejected

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


#: Bookkeeping waits this long at most for the starts on their way (seconds): a stream of starts
#: that never ends must not hold the history back until its backlog overflows.
BOOKKEEPING_YIELDS = 3.0

class Session:
    def __init__(
        self,
        store: Store,
        timing: Timing,
        election_prefix: str,
        identity: str,
        clock: Clock,
        wakeup: Waker,
        *,
        label: str,
        log: Any,
        rpc_timeout: float = 5.0,
        metrics: Metrics | None = None,
        jobs: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.timing = timing
        self.clock = clock
        self.label = label  # the election label of the daemon's metrics
        self.log = log
        self.rpc_timeout = rpc_timeout
        self.metrics = metrics
        #: With ``jobs``, a group of many elections on one lease (each job's queue under its
        #: prefix); without, one election on a lease of its own (today's single-job form).
        self.elector: Elector | Group
        if jobs is None:
            self.elector = Elector(
                store, timing, election_prefix, identity, clock, wakeup, rpc_timeout=rpc_timeout
            )
            self.group = self.elector.group
        else:
            self.elector = self.group = Group(
                store, timing, identity, clock, wakeup, rpc_timeout=rpc_timeout
            )
            for job, job_prefix in jobs.items():
                self.group.want(job, job_prefix)
        self.ever_connected = False
        self.last_contact: float | None = None
        #: Set when etcd rejects us before we ever got through: the daemon exits.
        self.fatal: str | None = None
        self._last_error: tuple[str, float] | None = None
        #: The deadline of this cycle's etcd calls, from its election step on (None before).
        self.deadline: Deadline | None = None
        #: Whether starts are on their way (requested, not answered yet; set by the daemon):
        #: bookkeeping waits for them, BOOKKEEPING_YIELDS at most.
        self.starts_pending: Callable[[], bool] = lambda: False
        self._yielding_since: float | None = None

    @property
    def machine(self) -> Machine:
        return self.elector.machine

    @property
    def leading(self) -> bool:
        """Leading any job."""
        return self.elector.phase is Phase.LEADING

    # -- contact with etcd ------------------------------------------------------------------------

    def note(self, out: Outcome) -> None:
        """Absorb an election step's errors and keepalive result."""
        for err in out.errors:
            if isinstance(err, StoreRejected) and not self.ever_connected:
                self.fatal = f"etcd rejected leaderjob: {err}"
                self.log.error("etcd.rejected", operation=err.operation, error=err.detail)
                return
            self.store_error(err)
        for key, revision in out.removed:
            # Not an election step's doing: someone put a key in the queue by hand.
            self.log.warning("election.stray_key_removed", key=key, create_revision=revision)
        if out.keepalive_result is not None and self.metrics is not None:
            self.metrics.keepalives.labels(self.label, out.keepalive_result).inc()
            if out.keepalive_latency is not None:
                self.metrics.keepalive_latency.labels(self.label).observe(out.keepalive_latency)
        if self.elector.last_contact is not None:
            if not self.ever_connected:
                self.log.info("etcd.connected", endpoint=getattr(self.store, "endpoint", None))
            self.ever_connected = True
            self.last_contact = self.elector.last_contact

    def store_error(self, err: StoreError) -> None:
        # A call the step's deadline left no time for was not sent: not a failed call, but a
        # cycle that ran out of etcd time (a slow etcd), counted apart.
        deferred = isinstance(err, DeadlinePassed)
        if self.metrics is not None:
            operation = "deadline" if deferred else err.operation
            self.metrics.etcd_errors.labels(self.label, operation).inc()
        now = self.clock.monotonic()
        key = f"{err.operation}:{err.detail}"
        if self._last_error is None or self._last_error[0] != key or now - self._last_error[1] > 5:
            self._last_error = (key, now)
            event = "etcd.rejected" if isinstance(err, StoreRejected) else "etcd.unavailable"
            self.log.warning(
                "etcd.deferred" if deferred else event, operation=err.operation, error=err.detail
            )

    def release(self) -> None:
        for err in self.elector.release():
            self.store_error(err)

    # -- the deadline of a step ----------------------------------------------------------------

    def step(self, may_campaign: bool, hold: Collection[str] = ()) -> Outcome:
        """The election's step, under this cycle's deadline; the rest of the cycle (claims,
        records) spends what the step left of it. After a campaign (bounded by the new lease's
        deadline, not by a renewal's budget) the rest of the cycle gets a budget of its own."""
        campaign = self.machine.lease is None
        self.deadline = None if campaign else self.group.step_deadline()
        out = self.elector.step(may_campaign=may_campaign, hold=hold, deadline=self.deadline)
        if campaign:
            self.deadline = self.group.step_deadline()
        return out

    def io_timeout(self, ceiling: float | None = None) -> float:
        """A timeout for a call of this cycle: what is left of the step's deadline (at most
        ``ceiling`` and the RPC timeout), so that all of a cycle's calls together (keepalive,
        confirmation, claims, reads, bookkeeping) end by then. Callers ask :meth:`may_call`
        first; one that does not gets the shortest call (it is not refused here)."""
        cap = min(ceiling if ceiling is not None else self.cycle_budget(), self.rpc_timeout)
        dl = self.deadline
        if dl is None:
            return self.elector.machine.rpc_deadline(self.clock.monotonic(), cap)
        return max(MIN_CALL, min(cap, dl.remaining()))

    def cycle_budget(self) -> float:
        """etcd time one cycle may spend on the leader path: half a renew interval, so the next
        keepalive is never more than that late."""
        return self.group.step_budget

    def budget_left(self) -> float:
        if self.deadline is None:
            return self.cycle_budget()
        return self.deadline.remaining()

    def may_call(self) -> bool:
        """Enough budget left for one more call this cycle (else it waits for the next)."""
        return self.budget_left() >= MIN_CALL

    def may_bookkeep(self) -> bool:
        """Bookkeeping (history, pruning, publishing) yields to the keepalive: it only runs while
        at least half the cycle's budget is left. It yields to a burst's starts too, for
        :data:`BOOKKEEPING_YIELDS` at most: while starts are on their way, the machine's time
        goes to them (a thousand runs' history records, one write each, held up the last starts
        of a burst by seconds)."""
        if self.starts_pending():
            now = self.clock.monotonic()
            if self._yielding_since is None:
                self._yielding_since = now
            if now - self._yielding_since < BOOKKEEPING_YIELDS:
                return False
        else:
            self._yielding_since = None
        return self.budget_left() >= self.cycle_budget() / 2


class Seat:
    """One job's view of the shared session: its key and token, and whether it may start work.

    The runner of a job reads leadership only through its seat, so that many runners share one
    lease and each sees its own tenure (a lost key ends one seat's tenure; a lost lease, all).
    """

    def __init__(self, session: Session, job: str = DEFAULT) -> None:
        self.session = session
        self.job = job

    @property
    def key(self) -> str | None:
        return self.session.group.keys.get(self.job)

    @property
    def token(self) -> int | None:
        return self.session.machine.token_of(self.job)

    @property
    def lease_id(self) -> int | None:
        return self.session.group.lease_id

    @property
    def leading(self) -> bool:
        return self.session.machine.phase_of(self.job) is Phase.LEADING

    @property
    def deadline(self) -> float | None:
        return self.session.machine.deadline

    @property
    def term_at(self) -> float | None:
        return self.session.machine.term_at

    def can_start_work(self, now: float) -> bool:
        return self.session.machine.can_start_work(now, job=self.job)

    def recheck(self) -> None:
        """Re-read our standing (a fenced write was refused: deposed, or claimed before)."""
        self.session.group.recheck()

    def read_along(self, prefix: str) -> None:
        """Read ``prefix`` with each confirmation of our key while we lead (no request of its
        own): :meth:`reading` is its newest result."""
        self.session.group.read_along(self.job, prefix)

    def reading(self) -> Reading | None:
        return self.session.group.readings.get(self.job)
