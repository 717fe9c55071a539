"""A group's candidacies on its lease: our key in each job's queue, made and unmade.

A job's candidacy is ``<job prefix>/<lease-id-hex>``, created with ``If(CreateRevision == 0) Then
Put`` on the group's lease. Its create revision is the job's place in its queue and, if it wins,
the job's fencing token.

Owns: the keys and their create revisions on the current lease; their creation, each call by the
step's deadline (every job's at the campaign; later, the jobs missing a key join at the back of
their queue: a job added, a key lost, a hold ended); the keys given up on purpose, kept until
their delete succeeds. It must not know the confirmation, the watch or the lease's renewal: the
group (``group.py``) decides when to create and to delete, and what a failure means for the
lease.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from leaderjob.election.deadline import MIN_CALL, Deadline, DeadlinePassed
from leaderjob.election.machine import Machine
from leaderjob.election.store import KeyInfo, Standing, Store, StoreError


class Candidacies:
    def __init__(
        self, store: Store, machine: Machine, identity: str, rpc_timeout: float, *, single: bool
    ) -> None:
        self.store = store
        self.machine = machine
        self.identity = identity
        self.rpc_timeout = rpc_timeout
        self.single = single
        #: Our key and its create revision, per candidacy on the current lease.
        self.keys: dict[str, str] = {}
        self.revisions: dict[str, int] = {}
        #: Keys of candidacies given up on purpose whose delete has not yet succeeded.
        self.to_delete: list[str] = []
        #: Stray keys found in our queues, to be removed (:meth:`remove_strays`).
        self.strays: list[KeyInfo] = []

    def missing(
        self, prefixes: Mapping[str, str], hold: Collection[str], lease_id: int
    ) -> list[str]:
        """The jobs of ``prefixes`` with no key on ``lease_id`` that may join their queue now."""
        return [
            j
            for j, prefix in prefixes.items()
            if j not in self.keys
            and j not in hold
            # Our old key of a re-queued job must be gone first: a create would find it, not
            # make a new one at the back, and its delete would then remove our new candidacy.
            and f"{prefix}/{lease_id:x}" not in self.to_delete
        ]

    def create(
        self,
        prefixes: Mapping[str, str],
        jobs: Iterable[str],
        lease_id: int,
        dl: Deadline,
        errors: list[StoreError],
        reserve: float = 0.0,
    ) -> str | None:
        """Create our key in each job's queue, each call by ``dl`` less ``reserve`` (the jobs
        left over join at a later step; a job whose create failed tries again at the next).
        In the single form a failed create ends the candidacy: returns its job, whose key is
        then to be treated as lost (the lease abandoned)."""
        for job in jobs:
            key = f"{prefixes[job]}/{lease_id:x}"
            try:
                if not dl.fits(reserve + MIN_CALL):
                    raise DeadlinePassed("create", "no time left in this step")
                info = self.store.create(
                    key,
                    self.identity.encode(),
                    lease_id,
                    timeout=min(self.rpc_timeout, dl.remaining() - reserve),
                )
            except StoreError as exc:
                if not self.single and isinstance(exc, DeadlinePassed):
                    return None  # the rest join at a later step
                errors.append(exc)
                if self.single:
                    self.keys[job] = key  # as a lost key: the lease is abandoned
                    return job
                continue  # this job tries again next step
            if info.lease_id != lease_id:
                self.stray(info, lease_id)  # our name, not our lease: not ours to take
                if self.single:
                    self.keys[job] = key  # the lease is abandoned: the next one has a new name
                    return job
                continue
            self.keys[job] = key
            self.revisions[job] = info.create_revision
            if not self.single:
                self.machine.join(job)
        return None

    def forget(self, job: str) -> str | None:
        """Our key of ``job`` is gone (lost, or given up): forget it; returns it."""
        self.revisions.pop(job, None)
        return self.keys.pop(job, None)

    def give_up(self, job: str) -> None:
        """Forget our key of ``job`` and delete it from its queue at the next step."""
        key = self.forget(job)
        if key is not None:
            self.to_delete.append(key)

    def delete_given_up(self, dl: Deadline, errors: list[StoreError]) -> None:
        """Delete the keys given up, oldest first, while ``dl`` leaves time for a call."""
        # A key of ours left behind on a lease we keep alive would hold its queue for ever.
        while self.to_delete and dl.fits():
            key = self.to_delete[0]
            try:
                self.store.delete(key, timeout=dl.timeout("delete", self.rpc_timeout))
            except StoreError as exc:
                errors.append(exc)
                return
            self.to_delete.pop(0)

    def stray(self, found: KeyInfo | None, lease_id: int) -> None:
        """A key of our name that a read or a create found: kept for :meth:`remove_strays` if
        it is not on ``lease_id``, our lease."""
        if found is not None and found.lease_id != lease_id and found not in self.strays:
            self.strays.append(found)

    def strays_in(self, standing: Standing, lease_id: int) -> None:
        """The stray keys a confirming read shows (:meth:`remove_strays`): ours if it is not
        on ``lease_id`` (our lease), and the key before ours if it has no lease at all — no
        election step makes one (every candidacy is created on a lease), and nothing would
        ever remove it: a key put by hand, first in the queue for ever otherwise (a leader's key
        put again after its daemon died, say)."""
        self.stray(standing.own, lease_id)
        before = standing.predecessor
        if before is not None and before.lease_id == 0:
            self.stray(before, lease_id)

    def remove_strays(
        self, dl: Deadline, errors: list[StoreError], removed: list[tuple[str, int]]
    ) -> None:
        """Remove the stray keys found, oldest first, while ``dl`` leaves time for a call;
        ``removed`` gets each one removed (its name, its create revision).

        Such a key was put again by hand (``etcdctl put`` without ``--lease``, or with
        another): it may keep a candidate's name and its create revision, but it is nobody's
        candidacy, and no lease will ever remove it. Left there it would hold its queue for
        ever (a key nobody renews, first in line), and the create of the candidate whose name
        it bears would keep finding it. Only that key goes: the delete is guarded by the create
        revision it was found with, so a key made again meanwhile is left for a later read to
        judge. A lost lease does not clear these."""
        while self.strays and dl.fits():
            found = self.strays[0]
            try:
                gone = self.store.guarded_put(
                    found.key,
                    found.create_revision,
                    [],
                    deletes=[found.key],
                    timeout=dl.timeout("delete", self.rpc_timeout),
                )
            except StoreError as exc:
                errors.append(exc)
                return
            self.strays.pop(0)
            if gone:
                removed.append((found.key, found.create_revision))

    def clear(self) -> None:
        """The lease is gone: so are its keys, or they will be within the TTL."""
        self.keys.clear()
        self.revisions.clear()
        self.to_delete.clear()
