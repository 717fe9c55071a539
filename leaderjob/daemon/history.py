"""The records of one job's runs: the outcome of each run that ended (its ``job.finished`` line,
metrics, history record and notification), a slot that did not run (its not-run record), and the
history written to etcd while the cycle has time to spare, with the fenced pruning that keeps it
bounded (:meth:`History.carry`, :meth:`History.prune`; the slot claims are pruned the same way).

The runner's recorder: :mod:`.runs` hands it each run's end and start, the slot path
(:mod:`.scheduling`, :mod:`.catchup`, :mod:`.claims`) the slots that did not run. It decides
nothing about the job (a retry, an exit code): it records.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from leaderjob.daemon.context import JobContext
from leaderjob.daemon.model import MAX_BACKLOG, ActiveRun
from leaderjob.election.store import StoreError
from leaderjob.history.records import iso, not_run_record
from leaderjob.history.runs import PRUNE_EVERY

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.notify import Notifier

#: What a write carries: the keys it pushes out of a bound, as each kind finds them.
T = TypeVar("T")

#: A queued record's output tails, written beside it (records.ElectionData.record).
OUTPUT = "_output"


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"SIG{-returncode}"


class History:
    def __init__(self, job: JobContext, notifier: Notifier | None = None) -> None:
        self.job = job
        #: --on-failure and --ping-url (shared by the daemon's jobs; never blocks).
        self.notifier = notifier
        #: The record of the last run this replica saw end, and of the last it saw succeed
        #: (for `/status`).
        self.last_run: dict[str, Any] | None = None
        self.last_success: dict[str, Any] | None = None
        #: History records (entry, completed at) not yet written: bookkeeping waits for a cycle
        #: with time to spare, so it never delays a renewal.
        self._backlog: list[tuple[dict[str, Any], datetime]] = []
        #: For each of the next history records, in order, the keys it pushes out of the bound,
        #: found under this token (one read for several records: PRUNE_EVERY).
        self._history_carry: tuple[int, list[list[str]]] | None = None

    def finished(self, active: ActiveRun, now: float, *, running: bool) -> str:
        """A run ended (``now``; ``running``: another run of the job still goes on): its
        ``job.finished`` line, metrics, history record (its output tails beside it) and
        notification. Returns its outcome."""
        run = active.run
        duration = now - run.started_at
        rc = run.returncode
        outcome = run.outcome
        record: dict[str, Any] = {
            "run_id": run.run_id,
            "slot": active.slot,
            "scheduled_time": iso(active.scheduled),
            "token": run.token,
            "identity": self.job.s.identity,
            "attempt": active.attempt,
            "started_at": iso(self.job.clock.wall() - timedelta(seconds=duration)),
            "finished_at": iso(self.job.clock.wall()),
            "duration_seconds": round(duration, 3),
            "exit_code": rc if rc is not None and rc >= 0 else None,
            "signal": _signal_name(rc) if rc is not None else None,
            "outcome": outcome,
        }
        if run.signals:  # what the guardian sent the job's group, and why
            record["signals"] = [{"signal": s.name, "reason": s.reason} for s in run.signals]
        self.last_run = record
        self.job.log.info(
            "job.finished",
            run_id=run.run_id,
            slot=active.slot,
            token=run.token,
            exit_code=record["exit_code"],
            signal=record["signal"],
            outcome=outcome,
            duration_seconds=record["duration_seconds"],
            attempt=active.attempt,
        )
        if self.job.metrics is not None:
            m, series = self.job.metrics, (self.job.election, self.job.s.election)
            m.job_running.labels(*series).set(1 if running else 0)
            m.job_runs.labels(*series, outcome).inc()
            m.job_duration.labels(*series).observe(duration)
            if outcome == "succeeded":
                m.last_success.labels(*series).set(self.job.clock.wall().timestamp())
        if outcome == "succeeded":
            self.last_success = record
        # The output tails go to etcd beside the record, never into a log or /status; a
        # notification gets them too (on stdin, in the ping's body).
        self.record({**record, OUTPUT: run.tails} if run.tails else record)
        self.notify({**record, **run.tails})
        return outcome

    def not_run(
        self,
        slot: str,
        scheduled: datetime | None,
        reason: str,
        outcome: str,
        token: int | None,
        **extra: Any,
    ) -> None:
        """A slot did not run: count it and record why (``reason``: one of NOT_RUN_REASONS).
        ``extra``: ``first_slot`` and ``count`` when the record stands for a range of slots."""
        if self.job.metrics is not None:
            series = self.job.metrics.slots_not_run.labels(
                self.job.election, self.job.s.election, reason
            )
            series.inc(extra.get("count", 1))
        self.record(
            not_run_record(
                slot,
                scheduled,
                reason,
                outcome=outcome,
                token=token,
                identity=self.job.s.identity,
                **extra,
            )
        )

    def notify(self, record: dict[str, Any] | None, run_id: str | None = None) -> None:
        """Tell the notifier that run ``run_id`` started (``record`` None) or ended; it returns
        at once (the lease is renewed while a notification runs). Pings are retried within the
        slot's interval (a minute for a service or a lock, at most an hour)."""
        notifier, settings = self.notifier, self.job.s.notify
        if notifier is None or not settings.enabled:
            return
        interval = self.job.s.schedule.interval().total_seconds() if self.job.s.schedule else 60.0
        window = min(max(interval, 10.0), 3600.0)
        if record is None:
            notifier.started(settings, job=self.job.s.election, window=window, run_id=run_id)
        else:
            notifier.finished(
                settings, record, job=self.job.s.election, election=self.job.election, window=window
            )

    def record(self, entry: dict[str, Any]) -> None:
        """Queue a history record, keyed by now (its completion); written by :meth:`flush`."""
        if self.job.s.mode != "schedule":
            return
        self._backlog.append((entry, self.job.clock.wall()))
        if len(self._backlog) > MAX_BACKLOG:
            dropped = self._backlog.pop(0)[0]
            self.job.log.warning("history.dropped", slot=dropped.get("slot"))
        if not self.job.seat.leading:
            self.flush()  # no leader path to protect

    def flush(self) -> None:
        """Write queued history records while the budget allows. While we lead, a record
        carries the deletes of the record it pushes out of the bound (one Txn, one revision,
        fenced); the leader finds those of the next :data:`PRUNE_EVERY` records in one read
        (:meth:`prune`) once the ones found before are used up."""
        wrote = False
        while self._backlog and self.job.session.may_bookkeep():
            entry, at = self._backlog[0]
            output = entry.get(OUTPUT)
            if output is not None:
                entry = {k: v for k, v in entry.items() if k != OUTPUT}
            fence, upcoming = self.carry(self._history_carry)
            deletes = upcoming[0] if upcoming else []
            try:
                carried = self.job.data.record(
                    entry,
                    at,
                    timeout=self.job.session.io_timeout(),
                    output=output,
                    fence=fence,
                    deletes=deletes,
                )
            except StoreError as exc:
                self.job.session.store_error(exc)
                return
            if deletes and not carried:
                self._history_carry = None  # deposed: nothing found under this token holds
            elif upcoming:
                upcoming.pop(0)
            self._backlog.pop(0)
            wrote = True
        if wrote and self.job.seat.leading and not self.carry(self._history_carry)[1]:
            carry = self.prune(
                lambda timeout: self.job.data.old_history(
                    self.job.s.history_limit, timeout=timeout, ahead=PRUNE_EVERY
                )
            )
            if carry is not None:
                self._history_carry = carry

    def carry(self, carried: tuple[int, T] | None) -> tuple[tuple[str, int] | None, T | None]:
        """The fence and what a write may carry: only what was found in this tenure (by our
        token), and only while we lead (a deposed leader deletes nothing)."""
        own, token = self.job.seat.key, self.job.seat.token
        if carried is None or own is None or token != carried[0] or not self.job.seat.leading:
            return None, None
        return (own, token), carried[1]

    def prune(self, find: Callable[[float], tuple[list[str], T]]) -> tuple[int, T] | None:
        """Bookkeeping, only while the cycle has time to spare: find old keys; delete those
        already beyond the bound now, fenced, in one Txn (a backlog); return what the next
        writes push out, with our token, for those writes to delete in their own Txns (None:
        not looked)."""
        own, token = self.job.seat.key, self.job.seat.token
        if own is None or token is None or not self.job.session.may_bookkeep():
            return None
        try:
            beyond, nxt = find(self.job.session.io_timeout())
            if beyond and self.job.session.may_bookkeep():
                self.job.data.delete_fenced(
                    own, token, beyond, timeout=self.job.session.io_timeout()
                )
        except StoreError as exc:
            self.job.session.store_error(exc)
            return None
        return token, nxt
