"""One lease, many elections: drives the pure :class:`Machine` with a :class:`Store`.

etcd's election recipe (``concurrency.Election``) run for many jobs on one session, with the fixes
docs/safety.md asks for:

1. Grant one lease (etcd's "session"). For each job, create ``<job prefix>/<lease-id-hex>`` with
   ``If(CreateRevision == 0) Then Put`` (:class:`~.candidacies.Candidacies`). The key's create
   revision is the job's place in its queue and, if it wins, the job's fencing token.
2. Read every candidacy's key and the live key created just before it, all in one linearizable
   Txn. Watch the predecessors (and our own keys) for deletion — one watch stream for the whole
   group (:class:`~.key_watch.KeyWatch`), so a leadership change wakes the next candidate only.
3. A job with nothing before it leads; the read that showed it is its confirmation: our key is
   present, with our token, and no lower key exists (etcd #19597). If that read leaves no job of
   ours waiting, the watch it asks for (our own keys) is opened at the next step, once the
   caller has started the job (from the read's revision: a deletion in between is still seen).
4. Renew the one lease every renew interval (:class:`~.group_lease.GroupLease`) and re-read all
   our keys in one Txn once per renew interval: keepalives alone are not trusted on old etcd
   versions, and a watch is trusted for no longer than that (it can sit on a member that lost its
   peers, silent, for as long as the partition lasts).
5. That Txn is the only periodic request besides the keepalive (:class:`~.confirm_read.ConfirmRead`
   makes it): two operations per job, each led job's control prefix (:meth:`Group.read_along`)
   among them, so one request per period for up to ``MAX_PER_READ`` jobs. What rode along waits
   in :attr:`Group.readings`.

One step on the renew path spends one budget (:meth:`Group.step_deadline`: half a renew
interval, never past ``D − grace``): the keepalive, the keys of jobs that rejoin their queue and
each Txn of a split confirmation take what is left of it, so the next keepalive is never held up.
A confirmation the budget cut short reads the rest first at the next step.

A lost lease, a passed deadline or a failed confirm ends every tenure; a lost key ends one (that
job campaigns again with a new key: a new, larger token). An abandoned lease is revoked only once
the caller says its jobs are dead (:meth:`Group.release`).

With ``single=True`` the group is one election on its own lease (:class:`~.elector.Elector`): a
lost key abandons the lease, and the standing read is the single-key ``standing`` call.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from leaderjob.clock import Clock, Wakeable
from leaderjob.config import Timing
from leaderjob.election.candidacies import Candidacies
from leaderjob.election.confirm_read import ConfirmRead, Reading
from leaderjob.election.deadline import Deadline, DeadlinePassed
from leaderjob.election.group_lease import GroupLease
from leaderjob.election.group_view import GroupView
from leaderjob.election.key_watch import KeyWatch
from leaderjob.election.machine import Machine, Phase, Reason, Transition
from leaderjob.election.store import Query, Standing, Store, StoreError
from leaderjob.election.verdict import Verdict, judge


@dataclass
class Outcome:
    """What one :meth:`Group.step` did: state changes and the etcd errors it met."""

    transitions: list[Transition] = field(default_factory=list)
    errors: list[StoreError] = field(default_factory=list)
    renewed: bool = False
    keepalive_latency: float | None = None
    keepalive_result: str | None = None  # ok | failed | expired
    read: bool = False  # the keys were read (what rides along with them too)
    #: Stray keys removed (put by hand: ours off our lease, or one with no lease before ours):
    #: name, create revision.
    removed: list[tuple[str, int]] = field(default_factory=list)


class Group(GroupView):
    def __init__(
        self,
        store: Store,
        timing: Timing,
        identity: str,
        clock: Clock,
        wakeup: Wakeable,
        rpc_timeout: float = 5.0,
        *,
        single: bool = False,
    ) -> None:
        self.store = store
        self.timing = timing
        self.identity = identity
        self.clock = clock
        self.wakeup = wakeup
        self.rpc_timeout = rpc_timeout
        self.single = single
        self.machine = Machine(timing, single=single)
        #: The one lease: its grant, its keepalive, the abandoned ones to revoke.
        self.lease = GroupLease(store, self.machine, timing, clock, rpc_timeout)
        #: The jobs to campaign for, each with its election prefix.
        self.prefixes: dict[str, str] = {}
        #: Our key in each job's queue on the current lease, made and unmade.
        self.candidacies = Candidacies(store, self.machine, identity, rpc_timeout, single=single)
        #: The confirmation's read, and what rides along with it.
        self.reads = ConfirmRead(store, rpc_timeout, single=single)
        self.watch = KeyWatch(store, wakeup.set, rpc_timeout)
        #: Jobs a confirmation cut short by the step's deadline did not read: read first next.
        self._unread: set[str] = set()
        self._recheck = False
        self._hold: Collection[str] = ()
        self._confirm_at = 0.0

    # -- what to campaign for ---------------------------------------------------------------------

    def want(self, job: str, prefix: str) -> None:
        """Campaign for ``job`` in the election under ``prefix`` (from the next step on)."""
        self.prefixes[job] = prefix.rstrip("/")

    def withdraw(self, job: str) -> Transition | None:
        """Stop campaigning for ``job``; if it led, its tenure ends (say so only once its run is
        dead: the delete of our key lets the next in line take over at once)."""
        self.prefixes.pop(job, None)
        self.reads.along.pop(job, None)
        return self._drop(job, Reason.RESIGNED)

    def read_along(self, job: str, prefix: str) -> None:
        """While ``job`` leads, read ``prefix`` in each confirmation of its key (no request of
        its own); the result is :attr:`readings` ``[job]``."""
        self.reads.along[job] = prefix

    def read_while_leading(self, name: str, prefix: str, *, always: bool = False) -> None:
        """While any job leads (``always``: in every confirmation, leading or waiting), read
        ``prefix`` in each confirmation (one more operation in its Txn, no request of its own);
        the result is :attr:`shared_readings` ``[name]``."""
        self.reads.shared[name] = (prefix, always)

    def requeue(self, job: str) -> Transition | None:
        """Hand ``job`` over (or step back in its queue): delete our key; the next step creates
        a new one, at the back of the queue. Only between runs (the caller's job is dead)."""
        return self._drop(job, Reason.RESIGNED)

    # -- the step's budget ------------------------------------------------------------------

    @property
    def step_budget(self) -> float:
        """etcd time one step may spend on the renew path: half a renew interval, so the next
        keepalive is never more than that late."""
        return max(0.2, self.timing.renew_interval / 2)

    def step_deadline(self) -> Deadline:
        """The deadline of a step on the renew path, from now: :attr:`step_budget`, and never
        past the point where we must act on loss (``D − grace`` while leading, ``D`` otherwise)."""
        limit = self.machine.term_at if self.phase is Phase.LEADING else self.machine.deadline
        return Deadline.after(self.clock.monotonic, self.step_budget, limit=limit)

    def next_wakeup(self, now: float, may_campaign: bool) -> float:
        times = [now + self.timing.renew_interval]
        t = self.machine.next_wakeup(now)
        if t is not None:
            times.append(t)
        if self.machine.phase is not Phase.IDLE:
            times.append(self._confirm_at)
        if self.machine.lease is None and may_campaign:
            times.append(self.lease.next_grant_at)
        return min(times)

    # -- the step ---------------------------------------------------------------------------

    def check(self, now: float) -> Transition | None:
        """Deadline rules only, no I/O: the first thing after any wait or freeze."""
        return self._after(self.machine.check(now))

    def step(
        self, may_campaign: bool, hold: Collection[str] = (), deadline: Deadline | None = None
    ) -> Outcome:
        """One step: deadline rules, campaign or renew, confirm. Jobs in ``hold`` do not join
        their queue now (a run of their lost tenure still lives). On the renew path every call
        of the step ends by ``deadline`` (default: :meth:`step_deadline`); a campaign, which no
        running job relies on, is bounded by the deadline of the lease it is granted."""
        self._hold = hold
        out = Outcome()
        now = self.clock.monotonic()
        self._note(out, self.check(now))
        if self.machine.lease is None:
            if self.candidacies.strays:  # found by the read that ended the lease's tenures
                self.candidacies.remove_strays(self.step_deadline(), out.errors, out.removed)
            if may_campaign and now >= self.lease.next_grant_at:
                self._campaign(out)
            return out
        dl = deadline or self.step_deadline()
        if self.machine.renew_due(now):
            self._renew(out, dl)
        if self.machine.lease is not None and self.candidacies.to_delete:
            self.candidacies.delete_given_up(dl, out.errors)
        if self.candidacies.strays:
            self.candidacies.remove_strays(dl, out.errors, out.removed)
        if self.machine.lease is not None and may_campaign and not self.single:
            self._join_missing(out, dl)
        if self.machine.lease is not None and not self.watch.open_later(dl):
            self._recheck = True  # read again next cycle
        phase = self.machine.phase
        now = self.clock.monotonic()
        # A candidate re-reads its standing at least once per renew interval, watch or not: a
        # watch can sit silent on a member that lost its peers (or froze), and that must delay a
        # successor by one renew interval at most, not for as long as the partition lasts.
        due = now >= self._confirm_at or self.watch.fired
        if self.keys and (
            (phase is Phase.CAMPAIGNING and (self._recheck or due))
            or (phase is Phase.LEADING and due)
        ):
            self._read_standing(out, dl)
        return out

    def recheck(self) -> None:
        """Re-read our standing at the next step (e.g. after a fenced write was refused)."""
        self._recheck = True
        self._confirm_at = 0.0

    def resign(self) -> Transition | None:
        """Give up the lease on purpose. Revoke it with :meth:`release` once the job is dead."""
        return self._after(self.machine.resign())

    def release(self) -> list[StoreError]:
        """Best-effort revoke of abandoned leases (call only when their jobs are dead)."""
        return self.lease.release()

    def close(self) -> None:
        self.watch.cancel()

    # -- internals --------------------------------------------------------------------------

    def _campaign(self, out: Outcome) -> None:
        granted = self.lease.grant(out.errors)
        if granted is None:
            return
        out.transitions.append(granted)
        # The keys: each call within the RPC timeout, and all before D (from the grant's send).
        lease, deadline = self.machine.lease, self.machine.deadline
        assert lease is not None and deadline is not None
        dl = Deadline(deadline, deadline - lease.last_ok_sent, self.clock.monotonic)
        if not self._create_keys(out, [j for j in self.prefixes if j not in self._hold], dl):
            return
        self.lease.campaigned()
        self._recheck = True
        if self.keys:
            # A renewal's budget: a read lost in a blackhole must not hold up the first renewal.
            self._read_standing(out, self.step_deadline())

    def _join_missing(self, out: Outcome, dl: Deadline) -> None:
        lease = self.machine.lease
        assert lease is not None
        missing = self.candidacies.missing(self.prefixes, self._hold, lease.lease_id)
        # Half the step's budget at most: the confirmation of the keys we hold comes after,
        # and a create lost in a blackhole must leave it time (the job joins at a later step).
        if missing and self._create_keys(out, missing, dl, reserve=dl.budget / 2):
            self._recheck = True

    def _create_keys(
        self, out: Outcome, jobs: list[str], dl: Deadline, reserve: float = 0.0
    ) -> bool:
        """Our keys of ``jobs`` (:meth:`Candidacies.create`); False if the lease is gone
        meanwhile (the single form's failed create abandons it)."""
        lease = self.machine.lease
        assert lease is not None
        failed = self.candidacies.create(
            self.prefixes, jobs, lease.lease_id, dl, out.errors, reserve
        )
        if failed is not None:
            self._note(out, self._after(self.machine.key_lost()))
            self.lease.back_off(self.clock.monotonic())
            return False
        return True

    def _renew(self, out: Outcome, dl: Deadline) -> None:
        k = self.lease.keepalive(dl)
        if k.error is not None:
            out.errors.append(k.error)
        out.keepalive_result, out.keepalive_latency = k.result, k.latency
        out.renewed = k.result == "ok"
        self._note(out, self._after(k.transition))

    def _query(self, job: str) -> Query:
        leading = self.machine.phase_of(job) is Phase.LEADING
        prefix = self.prefixes.get(job, "")
        return self.reads.query(job, prefix, self.keys[job], self.revisions[job], leading=leading)

    def _read_keys(
        self, jobs: list[str], dl: Deadline, out: Outcome, sent_at: float
    ) -> tuple[list[Standing], dict[str, bool]]:
        """The standings of ``jobs``' keys, in order, as many as were read (what rides along
        too), and per job whether its read carried the job's control prefix."""
        queries = [self._query(j) for j in jobs]
        # Only a read that carried a job's control prefix says what is under it.
        read_along = {j: q.also is not None for j, q in zip(jobs, queries, strict=True)}
        return self.reads.read(queries, dl, out.errors, sent_at), read_along

    def _read_standing(self, out: Outcome, dl: Deadline) -> None:
        # Jobs a read cut short did not reach go first: each is confirmed within a step or two.
        jobs = sorted(self.keys, key=lambda j: j not in self._unread)
        now = sent_at = self.clock.monotonic()
        try:
            standings, read_along = self._read_keys(jobs, dl, out, sent_at)
        except StoreError as exc:
            out.errors.append(exc)
            self.machine.confirm_failed()
            # Not sent (the step's budget went to the keepalive): read at the next step.
            wait = 0.0 if isinstance(exc, DeadlinePassed) else self.timing.renew_interval / 4
            self._confirm_at = self.clock.monotonic() + wait
            return
        complete = len(standings) == len(jobs)
        self._unread = set(jobs[len(standings) :])
        jobs = jobs[: len(standings)]
        if complete:
            self._recheck = False
        now = self.clock.monotonic()
        self.lease.last_contact = now
        out.read = True
        self._note(out, self.check(now))
        if self.machine.lease is None:
            return
        to_watch: list[str] = []
        won = False
        for job, standing in zip(jobs, standings, strict=True):
            lease = self.machine.lease
            if lease is None:
                return
            if job not in self.keys:
                continue
            leading = self.machine.phase_of(job) is Phase.LEADING
            verdict = judge(standing, self.revisions[job], lease.lease_id, leading=leading)
            self.candidacies.strays_in(standing, lease.lease_id)
            if verdict is not Verdict.LOST:
                # One read confirmed every key it showed intact: the lease's confirmation.
                self._confirm_at = now + self.timing.renew_interval
                self.machine.confirmed(sent_at)
            if verdict in (Verdict.LOST, Verdict.TAMPERED):  # tampered: trust the store
                self._note(out, self._lose_key(job))
                continue
            if verdict is Verdict.WAIT and standing.predecessor is not None:
                to_watch += [standing.predecessor.key, self.keys[job]]
                continue
            if read_along.get(job):
                self.reads.readings[job] = Reading(sent_at, standing.also)
            if self.machine.phase_of(job) is Phase.CAMPAIGNING:
                self._note(out, self._after(self.machine.won(self.revisions[job], now, job)))
                won = won or self.machine.phase_of(job) is Phase.LEADING
                if self.machine.lease is None or job not in self.keys:
                    return
                if self.machine.phase_of(job) is Phase.CAMPAIGNING:
                    # First in the queue, but the campaign was too slow to lead on its grant. Read
                    # again after the next renewal (already due: renew_interval < renew_deadline);
                    # without a re-read our key would stay first, kept alive, nobody leading.
                    self._recheck = True
            to_watch.append(self.keys[job])
        if not complete:
            self._confirm_at = now  # the rest at the next step, with a budget of its own
            return  # the watch stays as it is until a read has seen every key
        if self.machine.lease is not None and to_watch:
            # From the oldest read: a deletion between two reads of a large group is seen.
            self._watch_after_read(to_watch, min(s.revision for s in standings), won, dl)

    def _watch_after_read(self, keys: list[str], revision: int, won: bool, dl: Deadline) -> None:
        """The watch a complete read asks for. A read that made a job lead, with none of ours
        left waiting (only our own keys to watch), leaves it to the next step: the job's start
        goes first (L2), and the watch is opened then from this read's revision, so a deletion
        in between is still seen. A predecessor's key is watched at once: another takeover
        waits on it."""
        later = won and set(keys) <= set(self.keys.values())
        if not self.watch.cover(keys, revision, dl, later=later):
            self._recheck = True  # read again next cycle

    def _lose_key(self, job: str) -> Transition | None:
        self.reads.readings.pop(job, None)
        if self.single:
            return self._after(self.machine.key_lost())
        self.candidacies.forget(job)
        return self.machine.key_lost(job)

    def _drop(self, job: str, reason: Reason) -> Transition | None:
        self.reads.readings.pop(job, None)
        self.candidacies.give_up(job)
        return self.machine.drop(job, reason)

    def _after(self, t: Transition | None) -> Transition | None:
        if t is not None and t.lease_id is not None and self.machine.lease is None:
            self.watch.cancel()
            self.candidacies.clear()
            self.reads.readings.clear()
            if t.reason is not Reason.LEASE_EXPIRED:
                self.lease.to_revoke.append(t.lease_id)
        return t

    @staticmethod
    def _note(out: Outcome, t: Transition | None) -> None:
        if t is not None:
            out.transitions.append(t)
