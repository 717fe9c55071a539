"""An election's run history in etcd: the records' shape, and their writing, reading and pruning.

Under ``<prefix>/<election>/`` (the whole layout: :mod:`leaderjob.history.records`)::

    history/<ms>-<run-id>      one record per run or slot not run, keyed by its completion
    output/<ms>-<run-id>       a run's output tails, written with its record (one Txn)

History is informational and written best-effort; only its pruning is fenced by the leader's key.

A slot that did not run has a record too (``not_run``: one of :data:`NOT_RUN_REASONS`), written
only when it did not run: a run that happens costs no extra write. A record with ``first_slot``
and ``count`` stands for every fire time from ``first_slot`` to ``slot`` (a long outage is one
record, not one per slot).

A run's output tails (the last 4 KiB of its stdout and of its stderr) are kept beside its record,
under ``output/`` with the same name, written in the same Txn (still one write per run) and
pruned with it: history records stay small, so reading many of them (status, audit, pruning)
stays far below gRPC's 4 MiB message limit, and only ``history --run`` reads a run's output.

History is bounded like slot claims (:mod:`leaderjob.history.records`): once every
:data:`PRUNE_EVERY` records, the leader finds the records each of the *next* ones pushes out of
the bound (:meth:`RunHistory.old_history`), and each record deletes its own in its own Txn
(:meth:`RunHistory.record`); only a backlog goes in a prune Txn of its own, at most
:data:`PRUNE_BATCH` keys per call.

This module owns the history keys and the records' shape; it does not know slot claims, the
control switches, or any leadership rule. :class:`~leaderjob.history.records.ElectionData` adds the
claims and switches on top of :class:`RunHistory`. The JSON encoding and the Txn bounds here are
shared with it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from leaderjob.election.store import KeyInfo, Store

#: At most this many keys are deleted per prune call, in one Txn (etcd allows 128 operations).
PRUNE_BATCH = 64
#: One read for old records (or old claims) serves this many writes: it finds the record (the
#: claim) each of the next ones pushes out of the bound, which that write deletes in its Txn.
PRUNE_EVERY = 10
#: etcd's default limit of operations in one Txn (``--max-txn-ops``): a write that carries
#: deletes counts its own puts and deletes against it.
MAX_TXN_OPS = 128
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


class RunHistory:
    """The history records of one election, under ``<prefix>/<election>/``."""

    def __init__(self, store: Store, prefix: str, election: str) -> None:
        self.store = store
        self.base = f"{prefix.rstrip('/')}/{election}"

    # -- keys ----------------------------------------------------------------------------------

    @property
    def history_prefix(self) -> str:
        return f"{self.base}/history/"

    @property
    def output_prefix(self) -> str:
        return f"{self.base}/output/"

    def output_key(self, history_key: str) -> str:
        return self.output_prefix + history_key.rsplit("/", 1)[-1]

    # -- the leader's side ---------------------------------------------------------------------

    def old_history(
        self, limit: int, *, timeout: float, ahead: int = 1
    ) -> tuple[list[str], list[list[str]]]:
        """Keys of old history records, each with its output key: ``(beyond, upcoming)``.

        ``beyond``: the records beyond the newest ``limit`` (a backlog), at most
        :data:`PRUNE_BATCH` and as many output keys (128 operations, etcd's limit per Txn).
        ``upcoming``: for each of the next ``ahead`` records, in order, the record it pushes out
        of the bound (the oldest kept, then the next oldest ...; none while fewer than ``limit``
        are kept), which that record deletes in its own Txn (:meth:`record`). One read serves
        ``ahead`` writes; after a backlog, only the next (read again once it is written).
        """
        keep = max(1, limit)
        keys = self.store.get_prefix(
            self.history_prefix, timeout=timeout, limit=keep + PRUNE_BATCH, newest_first=True
        )

        def with_output(records: Sequence[KeyInfo]) -> list[str]:
            return [k.key for k in records] + [
                self.output_key(k.key) for k in records if _load(k.value).get("output")
            ]

        beyond = list(reversed(keys[keep:]))
        if beyond:
            ahead = 1
        return with_output(beyond), [
            with_output([keys[keep - i]]) if keep - i < len(keys) else []
            for i in range(1, min(ahead, keep) + 1)
        ]

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

    def window(
        self, since: datetime, until: datetime, *, timeout: float
    ) -> list[tuple[str, dict[str, Any]]]:
        """The records completed from ``since`` to ``until`` (give or take :data:`WINDOW_GRAIN`:
        the caller trims), oldest first, each with its name (its key's last part, which also
        names its output: :meth:`named`).

        Read in key ranges, not in pages of the newest records: history keys begin with the
        completion time in milliseconds, so a window is a handful of decimal prefixes of that
        stamp (:func:`stamp_blocks`), each read whole; a prefix that holds more than
        :data:`READ_MAX` records (a reply near gRPC's 4 MiB limit) is read as its ten
        sub-prefixes instead.
        """
        lo = int(since.timestamp() * 1000) // WINDOW_GRAIN * WINDOW_GRAIN
        hi = -(-int(until.timestamp() * 1000) // WINDOW_GRAIN) * WINDOW_GRAIN
        todo = stamp_blocks(max(0, lo), max(0, hi))
        found: list[tuple[str, dict[str, Any]]] = []
        while todo:
            block = todo.pop(0)
            keys = self.store.get_prefix(
                self.history_prefix + block, timeout=timeout, limit=READ_MAX + 1
            )
            if len(keys) > READ_MAX and len(block) < STAMP_DIGITS:
                todo[:0] = [block + str(d) for d in range(10)]
                continue
            found.extend((k.key.rsplit("/", 1)[-1], _load(k.value)) for k in keys)
        return found

    def named(self, name: str, *, timeout: float) -> dict[str, Any] | None:
        """One record by its name (as :meth:`window` gives it), with its output tails."""
        info = self.store.get(self.history_prefix + name, timeout=timeout)
        if info is None:
            return None
        doc = _load(info.value)
        if doc.get("output"):
            out = self.store.get(self.output_prefix + name, timeout=timeout)
            if out is not None:
                doc = {**doc, **_load(out.value)}
        return doc


#: A history key's stamp: the completion time in milliseconds, 13 digits (until the year 2286).
STAMP_DIGITS = 13
#: :meth:`RunHistory.window` reads whole blocks of this many milliseconds (100 s): a window's
#: edges are rounded out to it, so that it is a few prefixes rather than one per digit.
WINDOW_GRAIN = 100_000


def stamp_blocks(lo: int, hi: int, digits: int = STAMP_DIGITS) -> list[str]:
    """The fewest decimal prefixes of ``digits``-digit numbers that together hold exactly the
    numbers of ``[lo, hi)``, in ascending order: ``stamp_blocks(1200, 1500, 4)`` is
    ``["12", "13", "14"]``."""
    blocks: list[str] = []
    while lo < hi:
        size = 1
        while size < 10**digits and lo % (size * 10) == 0 and lo + size * 10 <= hi:
            size *= 10
        blocks.append(f"{lo:0{digits}d}"[: digits - len(str(size)) + 1])
        lo += size
    return blocks


def _carried(deletes: Sequence[str], puts: Sequence[tuple[str, bytes]]) -> list[str]:
    """The deletes a write may carry: never a key it writes, and with its puts within
    :data:`MAX_TXN_OPS` (what does not fit is found again after this write)."""
    written = {k for k, _ in puts}
    return [k for k in deletes if k not in written][: MAX_TXN_OPS - len(puts)]


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _load(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode())  # str, not bytes: no encoding to detect per record
    except ValueError:
        return {"raw": raw.decode(errors="replace")}
    return doc if isinstance(doc, dict) else {"value": doc}
