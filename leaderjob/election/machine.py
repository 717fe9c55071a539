"""The election state machine: lease bookkeeping, the local deadline, and when to step down.

Owns: the phase (idle, campaigning, leading), the current lease, the local deadline ``D`` and every
rule that changes them. It is pure: callers pass in monotonic ``now`` and ``sent_at`` times and get
back :class:`Transition` records; it performs no I/O, reads no clock and logs nothing. It must not
know about etcd, processes or schedules.

Invariants (docs/safety.md):

* ``D`` only ever comes from the *send* time of a grant or keepalive that etcd answered with a
  positive TTL. etcd sets ``expiry = receive_time + TTL``, and receive is after send, so the server
  cannot expire the lease before ``send + TTL``; ``D`` is that, less clock drift and a margin.
* A keepalive answered with TTL ≤ 0 means the lease is gone (etcd answers an expired or unknown
  lease with TTL 0, not an error).
* Once a lease is abandoned it is never renewed again (under response-only loss, renewing a lease
  we gave up on would keep its key alive with nobody acting on it), and the next campaign uses a
  new lease — so a rejoining replica always gets a new, larger token.
* Work may start only while ``now < D − grace − min_window``; at ``D − grace`` the job is told to
  stop; by ``D`` it is dead.

One lease may carry many candidacies (one per job of a group, each its own key in its own
election queue). The lease, ``D`` and the confirmation are shared: a lost lease, a passed deadline
or a failed confirm ends every tenure at once (one :class:`Transition` that lists them). A lost
key ends one candidacy only (:meth:`Machine.drop`). A machine made with ``single=True`` (the
default, one election per lease) has one candidacy, :data:`DEFAULT`, made with the lease, and a
lost key abandons the whole lease, exactly as before there were groups.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from leaderjob.config import Timing

#: The candidacy of a single-job election.
DEFAULT = ""


class Phase(enum.Enum):
    IDLE = "idle"  # no lease: about to campaign, or not allowed to (unhealthy, shutting down)
    CAMPAIGNING = "campaigning"  # lease and key exist; a predecessor leads or we await confirmation
    LEADING = "leading"  # confirmed by a linearizable read after winning


class Reason(enum.Enum):
    """Why a lease was abandoned or leadership was lost; values appear in logs and metrics."""

    RENEW_DEADLINE = "renew_deadline"  # keepalives failed for the whole renew deadline
    DEADLINE_PASSED = "deadline_passed"  # the local deadline passed (frozen process, slow I/O)
    LEASE_EXPIRED = "lease_expired"  # etcd answered a keepalive with TTL 0
    KEY_LOST = "key_lost"  # our election key vanished or changed under us
    UNCONFIRMED = "unconfirmed"  # keepalives pass but reads of our key kept failing
    RESIGNED = "resigned"  # we chose to go (shutdown, health check, lock released)


@dataclass(frozen=True)
class Lease:
    lease_id: int
    ttl: float  # the TTL the deadline is computed with: min(asked, granted)
    last_ok_sent: float  # send time of the last grant/keepalive etcd answered with TTL > 0
    next_renew_at: float
    failures: int = 0  # renew attempts that failed since the last answered one


@dataclass(frozen=True)
class Transition:
    """One state change, for the log (``event``) and the caller's reaction."""

    event: str  # e.g. "election.acquired", "election.lost", "lease.lost"
    phase: Phase
    lease_id: int | None = None
    token: int | None = None
    reason: Reason | None = None
    job: str = DEFAULT
    #: The tenures a lease abandonment ended: (job, token) of every candidacy that led.
    ended: tuple[tuple[str, int], ...] = ()

    @property
    def lost_leadership(self) -> bool:
        return self.event == "election.lost"


@dataclass
class Candidacy:
    """One job's place in its election queue, on the shared lease."""

    phase: Phase = Phase.CAMPAIGNING  # CAMPAIGNING or LEADING
    token: int | None = None
    leading_since: float | None = None


class Machine:
    def __init__(self, timing: Timing, *, single: bool = True) -> None:
        self.timing = timing
        self.single = single
        self.lease: Lease | None = None
        self.jobs: dict[str, Candidacy] = {}
        self.confirmed_sent: float | None = None  # send time of the last successful confirm
        self.confirm_failures = 0  # confirm reads that failed since the last successful one

    # -- queries ----------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """IDLE without a lease; LEADING if any candidacy leads; else CAMPAIGNING."""
        if self.lease is None:
            return Phase.IDLE
        if any(c.phase is Phase.LEADING for c in self.jobs.values()):
            return Phase.LEADING
        return Phase.CAMPAIGNING

    def phase_of(self, job: str = DEFAULT) -> Phase:
        c = self.jobs.get(job)
        return Phase.IDLE if c is None or self.lease is None else c.phase

    def token_of(self, job: str = DEFAULT) -> int | None:
        c = self.jobs.get(job)
        return None if c is None else c.token

    @property
    def token(self) -> int | None:
        return self.token_of(DEFAULT)

    @property
    def leading_since(self) -> float | None:
        c = self.jobs.get(DEFAULT)
        return None if c is None else c.leading_since

    def leading(self) -> list[str]:
        return [job for job, c in self.jobs.items() if c.phase is Phase.LEADING]

    @property
    def deadline(self) -> float | None:
        """The local deadline ``D`` of the current lease, or None without one."""
        if self.lease is None:
            return None
        return self.timing.deadline_after(self.lease.last_ok_sent, self.lease.ttl)

    @property
    def term_at(self) -> float | None:
        """When a running job must be told to stop: ``D − grace``."""
        d = self.deadline
        return None if d is None else d - self.timing.grace

    @property
    def give_up_at(self) -> float | None:
        """When failing renewals make us abandon the lease: last success + renew deadline."""
        if self.lease is None:
            return None
        return self.lease.last_ok_sent + self.timing.renew_deadline

    def is_leader(self, now: float, job: str = DEFAULT) -> bool:
        d = self.deadline
        return self.phase_of(job) is Phase.LEADING and d is not None and now < d

    def can_start_work(self, now: float, min_window: float = 0.0, job: str = DEFAULT) -> bool:
        """S5/S6: start only while leading with enough deadline left to stop the work in time."""
        term_at, give_up = self.term_at, self.give_up_at
        return (
            self.phase_of(job) is Phase.LEADING
            and term_at is not None
            and give_up is not None
            and now + min_window < min(term_at, give_up)
        )

    def renew_due(self, now: float) -> bool:
        return self.lease is not None and now >= self.lease.next_renew_at

    def rpc_deadline(self, now: float, ceiling: float) -> float:
        """Timeout for an RPC started now: never past the point where we must act on loss
        (``D − grace`` while leading, ``D`` otherwise)."""
        limits = [ceiling]
        t = self.term_at if self.phase is Phase.LEADING else self.deadline
        if t is not None:
            limits.append(t - now)
        return max(0.05, min(limits))

    def next_wakeup(self, now: float) -> float | None:
        """The earliest monotonic time at which :meth:`check` or a renewal has work to do."""
        if self.lease is None:
            return None
        times = [self.lease.next_renew_at]
        if self.lease.failures > 0:
            times.append(self.give_up_at or now)
        if self.phase is Phase.LEADING and self.term_at is not None:
            times.append(self.term_at)
            times.append(self.deadline or now)
        return min(times)

    # -- events -----------------------------------------------------------------------------

    def granted(self, lease_id: int, granted_ttl: float, sent_at: float) -> Transition:
        assert self.lease is None, "a new campaign always starts from a fresh lease"
        ttl = min(self.timing.ttl, granted_ttl)
        self.lease = Lease(lease_id, ttl, sent_at, sent_at + self.timing.renew_interval)
        if self.single:
            self.jobs[DEFAULT] = Candidacy()
        return Transition("lease.granted", self.phase, lease_id=lease_id)

    def join(self, job: str) -> None:
        """A new candidacy on the current lease (its key was created)."""
        assert self.lease is not None and not self.single
        self.jobs[job] = Candidacy()

    def renewed(self, sent_at: float, ttl: float, now: float) -> Transition | None:
        """A keepalive sent at ``sent_at`` was answered with ``ttl``."""
        if self.lease is None:
            return None
        if ttl <= 0:
            return self._abandon(Reason.LEASE_EXPIRED)
        # A reply that arrives after the deadline (the process was frozen mid-call) revives
        # nothing: the watchdog has already stopped the job, so this tenure is over.
        late = self.check(now)
        if late is not None:
            return late
        lease = self.lease
        last_ok = max(lease.last_ok_sent, sent_at)
        self.lease = Lease(
            lease.lease_id, min(lease.ttl, ttl), last_ok, sent_at + self.timing.renew_interval, 0
        )
        return self.check(now)

    def renew_failed(self, now: float, sent_at: float | None = None) -> Transition | None:
        """A keepalive (sent at ``sent_at``, if known) failed: retry a quarter interval after it
        was sent, or at once if it took longer than that to fail. A keepalive that waited out its
        timeout on a member without a leader (etcd electing a new one) is followed at once by
        the next, on the next endpoint: an etcd election costs nothing if a renewal gets through
        within the renew deadline (a new etcd leader extends every lease by a full TTL), and a
        further wait would only spend that budget. A fast failure (a member that refuses) still
        waits, so a dead cluster is not called in a tight loop."""
        if self.lease is None:
            return None
        retry = max(0.05, self.timing.renew_interval / 4)
        start = now if sent_at is None else min(sent_at, now)
        lease = self.lease
        self.lease = Lease(
            lease.lease_id,
            lease.ttl,
            lease.last_ok_sent,
            max(now, start + retry),
            lease.failures + 1,
        )
        return self.check(now)

    def won(self, token: int, now: float, job: str = DEFAULT) -> Transition | None:
        """A linearizable read showed our key present, with ``token``, and nothing lower."""
        c = self.jobs.get(job)
        if c is None or c.phase is not Phase.CAMPAIGNING or self.lease is None:
            return None
        if not self.can_lead_at(now):
            return self.check(now)
        c.phase = Phase.LEADING
        c.token = token
        c.leading_since = now
        self.confirmed_sent = now
        return Transition(
            "election.acquired", Phase.LEADING, lease_id=self.lease.lease_id, token=token, job=job
        )

    def can_lead_at(self, now: float) -> bool:
        term_at, give_up = self.term_at, self.give_up_at
        return term_at is not None and give_up is not None and now < min(term_at, give_up)

    def confirmed(self, sent_at: float) -> None:
        """A linearizable read sent at ``sent_at`` showed our key intact."""
        if self.confirmed_sent is None or sent_at > self.confirmed_sent:
            self.confirmed_sent = sent_at
        self.confirm_failures = 0

    def confirm_failed(self) -> None:
        """A confirm read failed (timeout, unreachable)."""
        self.confirm_failures += 1

    def key_lost(self, job: str = DEFAULT) -> Transition | None:
        """Our key vanished or changed: one election ends (with one lease per election, the
        lease is abandoned too, so that a rejoin uses a new lease)."""
        if self.lease is None:
            return None
        if self.single:
            return self._abandon(Reason.KEY_LOST)
        return self.drop(job, Reason.KEY_LOST)

    def drop(self, job: str, reason: Reason) -> Transition | None:
        """End one candidacy of a group (its key lost, or resigned on purpose); the lease and
        every other candidacy stay."""
        c = self.jobs.pop(job, None)
        if c is None or self.lease is None:
            return None
        was_leading = c.phase is Phase.LEADING
        return Transition(
            "election.lost" if was_leading else "candidacy.lost",
            self.phase_of(job),
            lease_id=self.lease.lease_id,
            token=c.token,
            reason=reason,
            job=job,
            ended=((job, c.token),) if was_leading and c.token is not None else (),
        )

    def resign(self) -> Transition | None:
        if self.lease is None:
            return None
        return self._abandon(Reason.RESIGNED)

    def check(self, now: float) -> Transition | None:
        """Apply the deadline rules at ``now``. Call first after any wait or blocking call."""
        if self.lease is None:
            return None
        d, give_up = self.deadline, self.give_up_at
        assert d is not None and give_up is not None
        if now >= d:
            return self._abandon(Reason.DEADLINE_PASSED)
        if now >= give_up and self.lease.failures > 0:
            # Renewals *failed* for the renew deadline. A process that merely slept through it
            # (frozen) first tries once more: D − grace, below, is the hard limit either way.
            return self._abandon(Reason.RENEW_DEADLINE)
        if self.phase is Phase.LEADING and self.term_at is not None and now >= self.term_at:
            # Renewals did not extend the deadline in time: stop now rather than at D.
            return self._abandon(Reason.DEADLINE_PASSED)
        confirmed = self.confirmed_sent
        if (
            self.phase is Phase.LEADING
            and confirmed is not None
            and now >= confirmed + self.timing.renew_deadline
            and self.confirm_failures > 0
        ):
            # Keepalives alone are not trusted (etcd 3.4 lease bugs): no confirm, no tenure.
            return self._abandon(Reason.UNCONFIRMED)
        return None

    # -- internals --------------------------------------------------------------------------

    def _abandon(self, reason: Reason) -> Transition:
        assert self.lease is not None
        ended = tuple(
            (job, c.token)
            for job, c in self.jobs.items()
            if c.phase is Phase.LEADING and c.token is not None
        )
        lease_id, token = self.lease.lease_id, self.token
        self.lease = None
        self.jobs.clear()
        self.confirmed_sent = None
        self.confirm_failures = 0
        event = "election.lost" if ended else "lease.lost"
        return Transition(
            event, Phase.IDLE, lease_id=lease_id, token=token, reason=reason, ended=ended
        )
