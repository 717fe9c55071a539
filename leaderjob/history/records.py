"""An election's data in etcd: slot claims, run history and the control switches.

Layout under ``<prefix>/<election>/``::

    leader/<lease-id-hex>      candidate keys (etcd's election recipe; the lowest leads)
    slots/<slot-id>            one claim per firing, written once, by the leader only
    slots/trigger-<id>         one claim per "run now" request
    state/last_slot            id of the newest claimed slot (catch-up starts after it)
    state/schedule             the leader's schedule, for `status` on any machine
    state/tenure               since when the leader of a service or lock leads, for `status`
    history/<ms>-<run-id>      one record per run or slot not run, keyed by its completion
    output/<ms>-<run-id>       a run's output tails, written with its record (one Txn)
    control/suspended          present while the election is suspended
    control/triggers/<id>      "run now" requests, consumed by the claim that runs them

Claims are fenced (docs/safety.md S3): the Txn compares our own election key's create revision
with our token and the slot key's create revision with 0, so a deposed leader's claim fails and no
slot is ever claimed twice. A claim to *run* (a slot or a trigger) also requires
``control/suspended`` to be absent, so ``suspend`` and ``resume`` take effect for the very next
slot, whatever the leader last read.

The history records (``history/``, ``output/``) — their shape, writing, reading and pruning —
are :mod:`leaderjob.history.runs`: :class:`ElectionData` is its
:class:`~leaderjob.history.runs.RunHistory` with the claims and the switches added, and this
module re-exports the history names (``iso``, ``not_run_record``, ``NOT_RUN_REASONS``, …) that
the daemon, the singleton and the CLI import from here.

Both slot claims and history are bounded: each is pruned by time (slot ids and history keys
begin with a UTC timestamp, so key order is time order), timed claims and trigger claims each by
their own time. etcd keeps every revision until it is compacted, and a Txn is one revision
however many operations it holds, so pruning rides on the writes that happen anyway: once every
:data:`~leaderjob.history.runs.PRUNE_EVERY` writes, the leader finds in one read (off the fire
path) the keys each of the *next* writes pushes out of the bound, and each write deletes its own
in its Txn (:meth:`ElectionData.claim_slot`, :meth:`ElectionData.record`). A run costs two
revisions, its claim and its record, before and after the bounds are reached, and the bounds hold
exactly between the leader's writes (what others wrote goes at its next read). Only keys already
beyond the bound (a backlog: after a suspension, a leaderless stretch, a lowered limit) go in a
prune Txn of their own, at most :data:`PRUNE_BATCH` keys per call, so a backlog of any size
drains over several cycles without holding up a renewal.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leaderjob.election.store import Guarded, KeyInfo
from leaderjob.history.runs import (
    NOT_RUN_REASONS,
    PRUNE_BATCH,
    READ_MAX,
    SKIP_NOT_RUN,
    RunHistory,
    _carried,
    _dump,
    _load,
    in_progress,
    is_run,
    iso,
    not_run_record,
)

__all__ = [
    "NOT_RUN_REASONS",
    "PRUNE_BATCH",
    "READ_MAX",
    "SKIP_NOT_RUN",
    "SLOT_FORMAT",
    "TRIGGER_SLOT",
    "Control",
    "ElectionData",
    "in_progress",
    "is_run",
    "iso",
    "not_run_record",
    "parse_slot_id",
]

SLOT_FORMAT = "%Y%m%dT%H%M%SZ"
TRIGGER_SLOT = "trigger-"


def parse_slot_id(slot: str) -> datetime | None:
    try:
        return datetime.strptime(slot, SLOT_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class Control:
    suspended: bool
    triggers: list[tuple[str, dict[str, Any]]]  # (key, request), oldest first


class ElectionData(RunHistory):
    """An election's records: its history (:class:`RunHistory`), slot claims and switches."""

    # -- keys ----------------------------------------------------------------------------------

    def slot_key(self, slot: str) -> str:
        return f"{self.base}/slots/{slot}"

    @property
    def last_slot_key(self) -> str:
        return f"{self.base}/state/last_slot"

    @property
    def schedule_key(self) -> str:
        return f"{self.base}/state/schedule"

    @property
    def tenure_key(self) -> str:
        """Since when the leader of a service or a lock leads (a schedule carries its own)."""
        return f"{self.base}/state/tenure"

    @property
    def control_prefix(self) -> str:
        return f"{self.base}/control/"

    @property
    def suspended_key(self) -> str:
        return f"{self.base}/control/suspended"

    @property
    def trigger_prefix(self) -> str:
        return f"{self.base}/control/triggers/"

    # -- the leader's side ---------------------------------------------------------------------

    def last_slot(self, *, timeout: float) -> datetime | None:
        info = self.store.get(self.last_slot_key, timeout=timeout)
        return None if info is None else parse_slot_id(info.value.decode())

    def claim_slot(
        self,
        own_key: str,
        token: int,
        slot: str,
        claim: dict[str, Any],
        *,
        run: bool = True,
        deletes: Sequence[str] = (),
        timeout: float,
    ) -> bool:
        """S3: claim one slot, fenced by our own key; moves ``state/last_slot`` forward.

        A claim to ``run`` the slot also requires the election not to be suspended (a refused
        claim's cause is then read with :meth:`is_suspended`); a claim that records a skip does
        not. ``deletes``: old claims this claim pushes out of the bound, deleted in the same Txn
        (one revision, fenced like the claim; never the claimed slot nor ``state/last_slot``).
        """
        w = self.claim_write(own_key, token, slot, claim, run=run, deletes=deletes)
        return self.store.guarded_put(
            w.guard_key, w.guard_revision, w.puts, absent=w.absent, deletes=w.deletes,
            timeout=timeout,
        )  # fmt: skip

    def claim_write(
        self,
        own_key: str,
        token: int,
        slot: str,
        claim: dict[str, Any],
        *,
        run: bool = True,
        deletes: Sequence[str] = (),
    ) -> Guarded:
        """The fenced write of :meth:`claim_slot`, to be sent with other jobs' claims in one
        request (:meth:`~leaderjob.election.store.Store.guarded_puts`): the same compares and
        writes, decided on its own."""
        key = self.slot_key(slot)
        puts = ((key, _dump(claim)), (self.last_slot_key, slot.encode()))
        return Guarded(
            own_key,
            token,
            puts,
            absent=(key, self.suspended_key) if run else (key,),
            deletes=tuple(_carried(deletes, list(puts))),
        )

    def mark_start(self, own_key: str, token: int, slot: str, *, timeout: float) -> bool:
        """A new election's start: ``state/last_slot`` set to ``slot`` (just before the first
        slot) if it is still absent, fenced by our own key; catch-up then starts there."""
        return self.store.guarded_put(
            own_key,
            token,
            [(self.last_slot_key, slot.encode())],
            absent=[self.last_slot_key],
            timeout=timeout,
        )

    def claim(self, slot: str, *, timeout: float) -> dict[str, Any] | None:
        """The claim of ``slot`` (status, token, identity, claimed_at), None if there is none."""
        info = self.store.get(self.slot_key(slot), timeout=timeout)
        return None if info is None else _load(info.value)

    def unclaim_slot(
        self, own_key: str, token: int, slot: str, previous: str, *, timeout: float
    ) -> bool:
        """Give back a slot claimed ahead and not started: delete its claim and move
        ``state/last_slot`` back to ``previous``, fenced by our own key."""
        return self.store.guarded_put(
            own_key,
            token,
            [(self.last_slot_key, previous.encode())],
            deletes=[self.slot_key(slot)],
            timeout=timeout,
        )

    def claim_trigger(
        self, own_key: str, token: int, trigger_key: str, claim: dict[str, Any], *, timeout: float
    ) -> tuple[bool, str]:
        """Claim a "run now" request like a slot (refused while suspended), consuming it in the
        same Txn."""
        slot = TRIGGER_SLOT + trigger_key.rsplit("/", 1)[-1]
        key = self.slot_key(slot)
        ok = self.store.guarded_put(
            own_key,
            token,
            [(key, _dump(claim))],
            absent=[key, self.suspended_key],
            deletes=[trigger_key],
            timeout=timeout,
        )
        return ok, slot

    def old_claims(
        self, timed_before: datetime, keep_triggers: int, *, triggers: bool, timeout: float
    ) -> list[str]:
        """Keys of old claims of one kind, at most :data:`PRUNE_BATCH`, oldest first.

        Timed claims older than ``timed_before``; or (``triggers``) trigger claims beyond the
        newest ``keep_triggers``. Each kind by its own time: trigger claims never push out timed
        ones, nor the reverse.
        """
        slots = f"{self.base}/slots/"
        if triggers:
            newest = self.store.get_prefix(
                slots + TRIGGER_SLOT,
                timeout=timeout,
                limit=keep_triggers + PRUNE_BATCH,
                newest_first=True,
            )
            return [k.key for k in reversed(newest[keep_triggers:])]
        # Timed slot ids sort before "trigger-" (they begin with a digit): the oldest keys under
        # slots/ are the oldest timed claims.
        old = []
        for k in self.store.get_prefix(slots, timeout=timeout, limit=PRUNE_BATCH):
            fired = parse_slot_id(k.key[len(slots) :])
            if fired is None or fired >= timed_before:
                break
            old.append(k.key)
        return old

    def fire_time(self, claim_key: str) -> datetime | None:
        """The fire time of a timed claim's key (None for a trigger claim)."""
        return parse_slot_id(claim_key.rsplit("/", 1)[-1])

    def delete_fenced(self, own_key: str, token: int, keys: list[str], *, timeout: float) -> bool:
        """Delete ``keys`` in one Txn, only while we still hold our key (a deposed leader's
        bookkeeping changes nothing)."""
        return self.store.guarded_put(own_key, token, [], deletes=keys, timeout=timeout)

    def publish_schedule(
        self, own_key: str, token: int, info: dict[str, Any], *, timeout: float
    ) -> bool:
        return self.store.guarded_put(
            own_key, token, [(self.schedule_key, _dump(info))], timeout=timeout
        )

    def publish_tenure(
        self, own_key: str, token: int, info: dict[str, Any], *, timeout: float
    ) -> bool:
        return self.store.guarded_put(
            own_key, token, [(self.tenure_key, _dump(info))], timeout=timeout
        )

    def control(self, *, timeout: float) -> Control:
        return self.parse_control(self.store.get_prefix(self.control_prefix, timeout=timeout))

    def parse_control(self, keys: Sequence[KeyInfo]) -> Control:
        """The switches, from the keys under :attr:`control_prefix` (however they were read)."""
        suspended = any(k.key == self.suspended_key for k in keys)
        triggers = sorted(
            ((k.key, _load(k.value)) for k in keys if k.key.startswith(self.trigger_prefix)),
            key=lambda kv: str(kv[1].get("requested_at", "")),
        )
        return Control(suspended, triggers)

    # -- anyone's side (CLI) -------------------------------------------------------------------

    def repair_last_slot(self, to: datetime, *, timeout: float) -> tuple[datetime | None, int]:
        """Undo a clock that ran ahead: move ``state/last_slot`` back to ``to`` if it lies beyond.
        Returns the newest claim before the repair and how many claims of slots after ``to``
        exist: they stay, so a slot the fast clock ran early is not run a second time (S3); at
        its real time its claim is refused.

        Fix the fast clock first: a leader whose clock is still ahead claims future slots again.
        """
        last = self.last_slot(timeout=timeout)
        if last is None or last <= to:
            return last, 0
        self.store.put(self.last_slot_key, to.strftime(SLOT_FORMAT).encode(), timeout=timeout)
        slots = f"{self.base}/slots/"
        later = 0
        for info in self.store.get_prefix(slots, timeout=timeout):
            fired = parse_slot_id(info.key[len(slots) :])
            later += fired is not None and fired > to
        return last, later

    def claims(self, *, timeout: float, triggers: bool = False) -> dict[str, dict[str, Any]]:
        """Slot claims still kept (timed ones; ``triggers``: trigger claims too): slot id →
        claim (status, token, identity, claimed_at)."""
        slots = f"{self.base}/slots/"
        return {
            k.key[len(slots) :]: _load(k.value)
            for k in self.store.get_prefix(slots, timeout=timeout)
            if triggers or not k.key[len(slots) :].startswith(TRIGGER_SLOT)
        }

    def schedule_info(self, *, timeout: float) -> dict[str, Any] | None:
        info = self.store.get(self.schedule_key, timeout=timeout)
        return None if info is None else _load(info.value)

    def tenure_info(self, *, timeout: float) -> dict[str, Any] | None:
        info = self.store.get(self.tenure_key, timeout=timeout)
        return None if info is None else _load(info.value)

    def is_suspended(self, *, timeout: float) -> bool:
        return self.store.get(self.suspended_key, timeout=timeout) is not None

    def suspension(self, *, timeout: float) -> dict[str, Any] | None:
        """Who suspended the election, when and why (None: not suspended)."""
        info = self.store.get(self.suspended_key, timeout=timeout)
        return None if info is None else _load(info.value)

    def suspend(self, who: str, *, timeout: float, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"by": who, "at": iso(datetime.now(UTC))}
        if reason:
            body["reason"] = reason
        self.store.put(self.suspended_key, _dump(body), timeout=timeout)
        return body

    def resume(self, *, timeout: float) -> bool:
        return self.store.delete(self.suspended_key, timeout=timeout) > 0

    def trigger(self, who: str, *, timeout: float) -> str:
        trigger_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        body = {"by": who, "requested_at": iso(datetime.now(UTC)), "id": trigger_id}
        self.store.put(self.trigger_prefix + trigger_id, _dump(body), timeout=timeout)
        return trigger_id
