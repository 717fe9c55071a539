"""The confirmation's read: every candidacy's standing, and what rides along with it, in one Txn.

A group's only periodic request besides the keepalive. A led job's key is confirmed with one
range (the lowest key under its prefix must be ours) and the job's control prefix is read in the
same Txn (:meth:`ConfirmRead.query`); a waiting job's key with its predecessor. Two operations
per job, so one request per period for up to :data:`MAX_PER_READ` jobs; a larger group is read in
as many Txns as etcd's cap on a Txn's operations asks, each by the step's deadline. The daemon's
own prefixes (the replicas' fingerprints, a queue's members) ride along as one operation each.

Owns: which prefixes ride along (per job while it leads; shared ones), the Txns of one read, and
the newest :class:`Reading` of each prefix. It must not know what a standing means: judging it
(won, lost, confirmed, who to watch) is the group's (``group.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from leaderjob.election.deadline import Deadline
from leaderjob.election.store import MAX_TXN_OPS, KeyInfo, Query, Standing, Store, StoreError

#: Candidacies confirmed per read: two range operations each (a waiting candidate's key and its
#: predecessor; a leader's key and its job's control switches), under etcd's default
#: --max-txn-ops of 128.
MAX_PER_READ = MAX_TXN_OPS // 2


@dataclass(frozen=True)
class Reading:
    """The keys under a prefix that rode along with a confirming read, and when it was sent."""

    sent_at: float
    keys: tuple[KeyInfo, ...]


class ConfirmRead:
    def __init__(self, store: Store, rpc_timeout: float, *, single: bool) -> None:
        self.store = store
        self.rpc_timeout = rpc_timeout
        self.single = single
        #: Per job, a prefix read with each confirmation while the job leads, and its newest
        #: reading (dropped when the job stops leading).
        self.along: dict[str, str] = {}
        self.readings: dict[str, Reading] = {}
        #: The daemon's own prefixes read with each confirmation (the replicas' fingerprints
        #: while any job leads; a queue's members always), by name, and their newest readings.
        self.shared: dict[str, tuple[str, bool]] = {}
        self.shared_readings: dict[str, Reading] = {}

    def query(self, job: str, prefix: str, key: str, revision: int, *, leading: bool) -> Query:
        """The read of ``job``'s key: a leader's (with its prefix read along), or a waiting
        candidate's (with the key before it)."""
        return Query(
            prefix, key, revision, first=leading, also=self.along.get(job) if leading else None
        )

    def read(
        self, queries: list[Query], dl: Deadline, errors: list[StoreError], sent_at: float
    ) -> list[Standing]:
        """The standings of ``queries``, in order, as many as were read, with the shared
        prefixes read along (their readings kept, stamped ``sent_at``)."""
        leads = any(q.first for q in queries)
        shared = [(n, p) for n, (p, always) in self.shared.items() if always or leads]
        extra = [Query("", "", 0, also=p) for _, p in shared]
        standings = self._read(queries + extra, dl, errors)
        for (name, _), standing in zip(shared, standings[len(queries) :], strict=False):
            self.shared_readings[name] = Reading(sent_at, standing.also)
        return standings[: len(queries)]

    def _read(self, queries: list[Query], dl: Deadline, errors: list[StoreError]) -> list[Standing]:
        """Every candidacy's standing in one linearizable read (the single form: one key); a
        group too large for one Txn in as many as it takes, each by the step's deadline and
        only while one more fits. Returns the standings of the first queries, as many as were
        read: all of them, unless the deadline or an error cut the read short."""
        if self.single and len(queries) == 1:
            q = queries[0]
            timeout = dl.timeout("standing", self.rpc_timeout)
            return [
                self.store.standing(
                    q.prefix, q.key, q.create_revision, timeout=timeout, first=q.first, also=q.also
                )
            ]
        # As few Txns as etcd's cap on a Txn's operations allows: for the groups this is made
        # for (up to MAX_PER_READ jobs), one read.
        chunks: list[list[Query]] = [[]]
        for q in queries:
            if chunks[-1] and sum(c.ops for c in chunks[-1]) + q.ops > MAX_TXN_OPS:
                chunks.append([])
            chunks[-1].append(q)
        read: list[Standing] = []
        for chunk in chunks:
            try:
                read += self.store.standings(
                    chunk, timeout=dl.timeout("standings", self.rpc_timeout)
                )
            except StoreError as exc:
                if not read:
                    raise
                errors.append(exc)  # what was read stands; the rest is read first next step
                break
        return read
