"""An election's data in etcd: slot claims, run history and the control switches.

Layout under ``<prefix>/<election>/``::

    leader/<lease-id-hex>      candidate keys (etcd's election recipe; the lowest leads)
    slots/<slot-id>            one claim per firing, written once, by the leader only
    slots/trigger-<id>         one claim per "run now" request
    state/last_slot            id of the newest claimed slot (catch-up starts after it)
    state/schedule             the leader's schedule, for `status` on any machine
    history/<ms>-<run-id>      one record per run or slot not run, keyed by its completion
    output/<ms>-<run-id>       a run's output tails, written with its record (one Txn)
    control/suspended          present while the election is suspended
    control/triggers/<id>      "run now" requests, consumed by the claim that runs them

Claims are fenced (docs/safety.md S3): the Txn compares our own election key's create revision
with our token and the slot key's create revision with 0, so a deposed leader's claim fails and no
slot is ever claimed twice. A claim to *run* (a slot or a trigger) also requires
``control/suspended`` to be absent, so ``suspend`` and ``resume`` take effect for the very next
slot, whatever the leader last read. History is informational and written best-effort.

A slot that did not run has a record too (``not_run``: one of :data:`NOT_RUN_REASONS`), written
only when it did not run: a run that happens costs no extra write. A record with ``first_slot``
and ``count`` stands for every fire time from ``first_slot`` to ``slot`` (a long outage is one
record, not one per slot).

A run's output tails (the last 4 KiB of its stdout and of its stderr) are kept beside its record,
under ``output/`` with the same name, written in the same Txn (still one write per run) and
pruned with it: history records stay small, so reading many of them (status, audit, pruning)
stays far below gRPC's 4 MiB message limit, and only ``history --run`` reads a run's output.

Both slot claims and history are bounded: each is pruned by time (slot ids and history keys
begin with a UTC timestamp, so key order is time order), timed claims and trigger claims each by
their own time. etcd keeps every revision until it is compacted, and a Txn is one revision
however many operations it holds, so pruning rides on the writes that happen anyway: after a
write, the leader finds (off the fire path) the keys the *next* write pushes out of the bound, and
that write deletes them in its own Txn (:meth:`ElectionData.claim_slot`,
:meth:`ElectionData.record`). A run costs two revisions, its claim and its record, before and
after the bounds are reached, and the bounds hold exactly between writes. Only keys already beyond
the bound (a backlog: after a suspension, a leaderless stretch, a lowered limit) go in a prune Txn
of their own, at most :data:`PRUNE_BATCH` keys per call, so a backlog of any size drains over
several cycles without holding up a renewal.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leaderjob.election.store import KeyInfo, Store

SLOT_FORMAT = "%Y%m%dT%H%M%SZ"
#: At most this many keys are deleted per prune call, in one Txn (etcd allows 128 operations).
PRUNE_BATCH = 64
#: etcd's default limit of operations in one Txn (``--max-txn-ops``): a write that carries
#: deletes counts its own puts and deletes against it.
MAX_TXN_OPS = 128
TRIGGER_SLOT = "trigger-"
#: Why a slot did not run: a history record's ``not_run`` and the ``reason`` of
#: ``leaderjob_slots_not_run_total``. skipped: the overlap policy (forbid, or a replacement
#: superseded); missed: nobody led at its time, and the catch-up policy did not run it;
#: suspended; late: past its starting deadline (or too little lease left to start it safely);
#: failed_to_start: the command could not be started.
NOT_RUN_REASONS = ("skipped", "missed", "suspended", "late", "failed_to_start")
#: A skip's reason (``leaderjob_slots_skipped_total``) → why the slot did not run (its record's
#: ``not_run``). Skips that record nothing (already_claimed, claim_rejected) have no entry.
SKIP_NOT_RUN = {
    "overlap": "skipped",
    "superseded": "skipped",
    "suspended": "suspended",
    "deadline": "late",
}
#: History reads that look for something (runs among not-run records, a run id) grow their page
#: up to this many records: a record and its key are well under 1 KiB (output tails live
#: elsewhere), so a reply stays below gRPC's default 4 MiB message limit.
READ_MAX = 4000


def parse_slot_id(slot: str) -> datetime | None:
    try:
        return datetime.strptime(slot, SLOT_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def is_run(record: dict[str, Any]) -> bool:
    """A record of a run (it has a run id, even a start that failed), not of a slot that did
    not run."""
    return bool(record.get("run_id"))


def in_progress(
    claims: dict[str, dict[str, Any]], records: list[dict[str, Any]], token: int, *, full: bool
) -> tuple[str, dict[str, Any]] | None:
    """The run in progress, as etcd shows it: the newest claim *to run* made by the leader
    (``token``) whose slot has no record yet (a run's record is written when it ends).

    ``records`` are the newest records; ``full``: there may be older ones. Then a claim older
    than every record read is not taken for a run in progress: its record may lie beyond them.
    """
    to_run = [
        (str(claim.get("scheduled_time") or claim.get("claimed_at") or ""), slot, claim)
        for slot, claim in claims.items()
        if claim.get("token") == token
        and claim.get("status", "running") in ("running", "replacing")
    ]
    if not to_run:
        return None
    when, slot, claim = max(to_run)
    if any(r.get("slot") == slot for r in records):
        return None
    times = [str(r.get("scheduled_time") or "") for r in records if r.get("scheduled_time")]
    if full and times and when < min(times):
        return None
    return slot, claim


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def not_run_record(
    slot: str,
    scheduled: datetime | None,
    reason: str,
    *,
    outcome: str,
    token: int | None,
    identity: str,
    first_slot: str | None = None,
    count: int | None = None,
) -> dict[str, Any]:
    """The history record of a slot that did not run (``reason``: one of
    :data:`NOT_RUN_REASONS`), the daemon's and ``@leaderjob.singleton``'s alike. With
    ``first_slot`` and ``count`` it stands for every fire time from ``first_slot`` to ``slot``."""
    record: dict[str, Any] = {
        "run_id": None,
        "slot": slot,
        "scheduled_time": iso(scheduled),
        "token": token,
        "identity": identity,
        "outcome": outcome,
        "not_run": reason,
    }
    if first_slot is not None and count is not None:
        record.update(first_slot=first_slot, count=count)
    return record


@dataclass(frozen=True)
class Control:
    suspended: bool
    triggers: list[tuple[str, dict[str, Any]]]  # (key, request), oldest first


class ElectionData:
    def __init__(self, store: Store, prefix: str, election: str) -> None:
        self.store = store
        self.base = f"{prefix.rstrip('/')}/{election}"

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
    def history_prefix(self) -> str:
        return f"{self.base}/history/"

    @property
    def output_prefix(self) -> str:
        return f"{self.base}/output/"

    def output_key(self, history_key: str) -> str:
        return self.output_prefix + history_key.rsplit("/", 1)[-1]

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
        key = self.slot_key(slot)
        puts = [(key, _dump(claim)), (self.last_slot_key, slot.encode())]
        return self.store.guarded_put(
            own_key,
            token,
            puts,
            absent=[key, self.suspended_key] if run else [key],
            deletes=_carried(deletes, puts),
            timeout=timeout,
        )

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

    def old_history(self, limit: int, *, timeout: float) -> tuple[list[str], list[str]]:
        """Keys of old history records, each with its output key: ``(beyond, next)``.

        ``beyond``: the records beyond the newest ``limit`` (a backlog), at most
        :data:`PRUNE_BATCH` and as many output keys (128 operations, etcd's limit per Txn).
        ``next``: the oldest record kept, which the next record pushes out of the bound (that
        record deletes it in its own Txn: :meth:`record`).
        """
        keep = max(1, limit) - 1
        keys = self.store.get_prefix(
            self.history_prefix, timeout=timeout, limit=keep + 1 + PRUNE_BATCH, newest_first=True
        )
        if len(keys) <= keep:
            return [], []

        def with_output(records: Sequence[KeyInfo]) -> list[str]:
            return [k.key for k in records] + [
                self.output_key(k.key) for k in records if _load(k.value).get("output")
            ]

        return with_output(list(reversed(keys[keep + 1 :]))), with_output([keys[keep]])

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

    def record(
        self,
        entry: dict[str, Any],
        at: datetime,
        *,
        timeout: float,
        output: dict[str, Any] | None = None,
        fence: tuple[str, int] | None = None,
        deletes: Sequence[str] = (),
    ) -> bool:
        """Append one history record, keyed by ``at``: when it completed, so a long run's
        outcome sorts after the skips made while it ran, and is pruned after them. A run's
        ``output`` (its tails) goes beside it in the same Txn: one write.

        ``deletes`` (old records this one pushes out of the bound) go in the same Txn too, only
        fenced by our key (``fence``: own key, token): a deposed leader's bookkeeping changes
        nothing. If the fence fails, the record is still written, without the deletes. Returns
        whether the deletes were applied.
        """
        stamp = int(at.timestamp() * 1000)
        key = f"{self.history_prefix}{stamp:013d}-{entry.get('run_id') or uuid.uuid4().hex[:12]}"
        out = self.output_key(key)
        puts = (
            [(key, _dump({**entry, "output": True})), (out, _dump(output))]
            if output
            else [(key, _dump(entry))]
        )
        if fence is not None and deletes:
            own, token = fence
            if self.store.guarded_put(
                own,
                token,
                puts,
                absent=[out] if output else [],
                deletes=_carried(deletes, puts),
                timeout=timeout,
            ):
                return True
        if not output:
            self.store.put(key, _dump(entry), timeout=timeout)
            return False
        # Not fenced (history is written after a tenure too): the Txn's only compare is that
        # the output key is new, which a unique name always is.
        self.store.guarded_put(out, 0, puts, timeout=timeout)
        return False

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

    def history(
        self, limit: int, *, timeout: float, runs_only: bool = False
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` records, newest first; ``runs_only``: of runs alone (read in
        growing pages of the newest records until enough runs are found)."""
        if not runs_only:
            keys = self.store.get_prefix(
                self.history_prefix, timeout=timeout, limit=limit, newest_first=True
            )
            return [_load(k.value) for k in keys]
        page = min(READ_MAX, 2 * limit)
        while True:
            records = self.history(page, timeout=timeout)
            runs = [r for r in records if is_run(r)]
            if len(runs) >= limit or len(records) < page or page >= READ_MAX:
                return runs[:limit]
            page = min(READ_MAX, page * 2)

    def find_run(self, run_id: str, *, timeout: float) -> list[dict[str, Any]]:
        """The records whose run id starts with ``run_id`` (one, unless the prefix is
        ambiguous), newest first. Run ids end each history key, so only matching keys are
        decoded."""
        page = 64
        while True:
            keys = self.store.get_prefix(
                self.history_prefix, timeout=timeout, limit=page, newest_first=True
            )
            found = [
                (k.key, doc)
                for k in keys
                if k.key.rsplit("-", 1)[-1].startswith(run_id)
                and str((doc := _load(k.value)).get("run_id") or "").startswith(run_id)
            ]
            if found or len(keys) < page or page >= READ_MAX:
                break
            page = min(READ_MAX, page * 4)
        if len(found) != 1:
            return [doc for _, doc in found]
        key, doc = found[0]
        if doc.get("output"):
            info = self.store.get(self.output_key(key), timeout=timeout)
            if info is not None:
                doc = {**doc, **_load(info.value)}
        return [doc]

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

    def is_suspended(self, *, timeout: float) -> bool:
        return self.store.get(self.suspended_key, timeout=timeout) is not None

    def suspend(self, who: str, *, timeout: float) -> None:
        body = {"by": who, "at": iso(datetime.now(UTC))}
        self.store.put(self.suspended_key, _dump(body), timeout=timeout)

    def resume(self, *, timeout: float) -> bool:
        return self.store.delete(self.suspended_key, timeout=timeout) > 0

    def trigger(self, who: str, *, timeout: float) -> str:
        trigger_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        body = {"by": who, "requested_at": iso(datetime.now(UTC)), "id": trigger_id}
        self.store.put(self.trigger_prefix + trigger_id, _dump(body), timeout=timeout)
        return trigger_id


def _carried(deletes: Sequence[str], puts: Sequence[tuple[str, bytes]]) -> list[str]:
    """The deletes a write may carry: never a key it writes, and with its puts within
    :data:`MAX_TXN_OPS` (what does not fit is found again after this write)."""
    written = {k for k, _ in puts}
    return [k for k in deletes if k not in written][: MAX_TXN_OPS - len(puts)]


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _load(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}
    return doc if isinstance(doc, dict) else {"value": doc}
