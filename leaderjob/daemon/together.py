"""Claims of one pass, together: many jobs of a group due at once claim their slots in a few
requests instead of one each.

Crontabs put many jobs on one instant (``0 * * * *``, midnight): every job of the daemon then
wants to claim its next slot ahead (:meth:`~.ahead.Ahead.claim_wanted`) in the same
pass of the loop. Their claims go to etcd in batches (:meth:`~leaderjob.election.store.Store.
guarded_puts`): one Txn per batch, each claim in it a nested Txn of its own with its job's own
compares — its leader key's create revision (the job's token), the slot absent, the job not
suspended — so each claim is applied or refused alone, exactly as if it were sent by itself
(S3). One job's refused compare (deposed, suspended, claimed before) refuses only its claim, and
is explained as a refused claim always is. A batch whose request fails leaves every claim in it
unknown: each such slot joins its job's unknown claims (:mod:`.unknown`) and is read back before
it could run. A batch is one revision for all its claims (at most one per run, as before), kept
within etcd's ``--max-txn-ops`` (:func:`~leaderjob.election.store.batches`).

A lone claim is left to its job's own path (one request either way). Each batch is sent only
while the cycle's etcd budget allows (:meth:`~.session.Session.may_call`): the claims not sent
are made by each job's own path later in the cycle, or in the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from leaderjob.daemon.model import Report
from leaderjob.daemon.session import Session
from leaderjob.election.store import Guarded, StoreError, batches
from leaderjob.schedule.planner import Slot


class Claimant(Protocol):
    def claim_wanted(self) -> tuple[Slot, Guarded] | None: ...

    def claimed_together(self, slot: Slot, outcome: bool | StoreError) -> None: ...


class Due(Claimant, Protocol):
    """A job of the pass (the daemon's runner)."""

    def start_due(self) -> Report | None: ...

    def after_starts(self) -> None: ...


_D = TypeVar("_D", bound=Due)


def start_together(
    order: Sequence[tuple[str, _D]], may_start: Callable[[_D], bool], session: Session, log: Any
) -> dict[str, Report]:
    """One pass of a group's jobs, by name, in ``order``: the jobs that may start now whose next
    slot comes at once claim it together, then each job that may start starts what is due, in
    turn (within what the election step left of the cycle's deadline), then the bookkeeping the
    starts left (old claims pruned), once every start of the pass is out. Each job's report."""
    claim_together([r for _, r in order if may_start(r)], session, log)
    reports: dict[str, Report] = {}
    for name, r in order:
        if may_start(r):
            report = r.start_due()
            if report is not None:
                reports[name] = report
    for _, r in order:
        r.after_starts()
    return reports


def claim_together(claimants: Sequence[Claimant], session: Session, log: Any) -> int:
    """Send the claims ``claimants`` want now, batched; each one's outcome goes back to it.
    Returns how many claims were sent."""
    wants = [(c, w) for c in claimants if (w := c.claim_wanted()) is not None]
    if len(wants) < 2:
        return 0
    sent = applied = unknown = txns = 0
    for chunk in batches([write for _, (_, write) in wants]):
        if not session.may_call():
            break
        batch = [wants[i] for i in chunk]
        outcomes: list[bool | StoreError]
        try:
            outcomes = list(
                session.store.guarded_puts(
                    [write for _, (_, write) in batch], timeout=session.io_timeout()
                )
            )
        except StoreError as exc:
            outcomes = [exc] * len(batch)
            unknown += len(batch)
        txns += 1
        sent += len(batch)
        for (claimant, (slot, _)), outcome in zip(batch, outcomes, strict=True):
            applied += outcome is True
            claimant.claimed_together(slot, outcome)
    log.info(
        "slots.claimed_together",
        claims=sent,
        applied=applied,
        refused=sent - applied - unknown,
        unknown=unknown,
        txns=txns,
        left=len(wants) - sent,
    )
    return sent
