"""The records of one job's runs: the outcome of each finished run (its log line, metrics,
history record, and a retry if one is due), and the history written to etcd while the cycle has
time to spare. The outcome half of :class:`~leaderjob.daemon.runner.Runner`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock
from leaderjob.daemon.model import (
    EXIT_LOST,
    MAX_BACKLOG,
    RETRY_BASE,
    RETRY_CAP,
    SERVICE_RESTART_DELAY,
    ActiveRun,
    Pending,
    Settings,
    Tenure,
)
from leaderjob.daemon.session import Seat, Session
from leaderjob.election.store import StoreError
from leaderjob.history.records import ElectionData, iso, not_run_record

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics
    from leaderjob.ops.notify import Notifier

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
    # Set by the runner (see Runner.__init__).
    s: Settings
    session: Session
    seat: Seat
    data: ElectionData
    clock: Clock
    metrics: Metrics | None
    election: str  # the daemon's (a group's name): the metrics' election label
    log: Any
    runs: list[ActiveRun]
    tenure: Tenure | None
    restart_at: float
    exit_code: int
    last_run: dict[str, Any] | None
    #: The record of the last run this replica saw succeed (for `/status`).
    last_success: dict[str, Any] | None = None
    on_done: Callable[[], None]
    notifier: Notifier | None
    _backlog: list[tuple[dict[str, Any], datetime]]
    #: Keys the next history record pushes out of the bound, found under this token.
    _history_carry: tuple[int, list[str]] | None = None

    def _finished(self, active: ActiveRun) -> None:
        run = active.run
        now = self.clock.monotonic()
        duration = now - run.started_at
        rc = run.returncode
        outcome = run.outcome
        record: dict[str, Any] = {
            "run_id": run.run_id,
            "slot": active.slot,
            "scheduled_time": iso(active.scheduled),
            "token": run.token,
            "identity": self.s.identity,
            "attempt": active.attempt,
            "started_at": iso(self.clock.wall() - timedelta(seconds=duration)),
            "finished_at": iso(self.clock.wall()),
            "duration_seconds": round(duration, 3),
            "exit_code": rc if rc is not None and rc >= 0 else None,
            "signal": _signal_name(rc) if rc is not None else None,
            "outcome": outcome,
        }
        if run.signals:  # what the guardian sent the job's group, and why
            record["signals"] = [{"signal": s.name, "reason": s.reason} for s in run.signals]
        self.last_run = record
        self.log.info(
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
        if self.metrics is not None:
            m = self.metrics
            m.job_running.labels(self.election, self.s.election).set(1 if self.runs else 0)
            m.job_runs.labels(self.election, self.s.election, outcome).inc()
            m.job_duration.labels(self.election, self.s.election).observe(duration)
            if outcome == "succeeded":
                now = self.clock.wall().timestamp()
                m.last_success.labels(self.election, self.s.election).set(now)
        if outcome == "succeeded":
            self.last_success = record
        # The output tails go to etcd beside the record, never into a log or /status; a
        # notification gets them too (on stdin, in the ping's body).
        self._record({**record, OUTPUT: run.tails} if run.tails else record)
        self._notify({**record, **run.tails})
        self.restart_at = now + SERVICE_RESTART_DELAY
        if self.s.mode == "once":
            if run.stop_reason == "killed_on_leadership_loss":
                self.exit_code = EXIT_LOST
            elif rc is not None:
                self.exit_code = rc if rc >= 0 else 128 - rc
            elif outcome == "watchdog_failed":
                self.exit_code = 128 + signal.SIGKILL  # the command was killed with the guardian
            self.on_done()
        elif (
            outcome in ("failed", "timed_out")
            and active.attempt < self.s.retries
            and self.tenure is not None
            and self.tenure.token == run.token
        ):
            backoff = min(RETRY_CAP, RETRY_BASE * 2**active.attempt)
            self.tenure.pending.append(
                Pending(active.slot, active.scheduled, active.attempt + 1, now + backoff, run.token)
            )
            self.log.info(
                "job.retry_scheduled",
                slot=active.slot,
                attempt=active.attempt + 1,
                backoff_seconds=backoff,
            )

    def _not_run(
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
        if self.metrics is not None:
            series = self.metrics.slots_not_run.labels(self.election, self.s.election, reason)
            series.inc(extra.get("count", 1))
        self._record(
            not_run_record(
                slot,
                scheduled,
                reason,
                outcome=outcome,
                token=token,
                identity=self.s.identity,
                **extra,
            )
        )

    def _notify(self, record: dict[str, Any] | None, run_id: str | None = None) -> None:
        """Tell the notifier that run ``run_id`` started (``record`` None) or ended; it returns
        at once (the lease is renewed while a notification runs). Pings are retried within the
        slot's interval (a minute for a service or a lock, at most an hour)."""
        notifier, settings = self.notifier, self.s.notify
        if notifier is None or not settings.enabled:
            return
        interval = self.s.schedule.interval().total_seconds() if self.s.schedule else 60.0
        window = min(max(interval, 10.0), 3600.0)
        if record is None:
            notifier.started(settings, job=self.s.election, window=window, run_id=run_id)
        else:
            notifier.finished(
                settings, record, job=self.s.election, election=self.election, window=window
            )

    def _record(self, entry: dict[str, Any]) -> None:
        """Queue a history record, keyed by now (its completion); written by :meth:`_flush`."""
        if self.s.mode != "schedule":
            return
        self._backlog.append((entry, self.clock.wall()))
        if len(self._backlog) > MAX_BACKLOG:
            dropped = self._backlog.pop(0)[0]
            self.log.warning("history.dropped", slot=dropped.get("slot"))
        if not self.seat.leading:
            self._flush()  # no leader path to protect

    def _flush(self) -> None:
        """Write queued history records while the budget allows. While we lead, a record
        carries the deletes of the records it pushes out of the bound (one Txn, one revision,
        fenced); then the leader finds those the next record pushes out (:meth:`_prune`)."""
        wrote = False
        while self._backlog and self.session.may_bookkeep():
            entry, at = self._backlog[0]
            output = entry.get(OUTPUT)
            if output is not None:
                entry = {k: v for k, v in entry.items() if k != OUTPUT}
            fence, deletes = self._carry(self._history_carry)
            try:
                carried = self.data.record(
                    entry,
                    at,
                    timeout=self.session.io_timeout(),
                    output=output,
                    fence=fence,
                    deletes=deletes,
                )
            except StoreError as exc:
                self.session.store_error(exc)
                return
            if carried:
                self._history_carry = None
            self._backlog.pop(0)
            wrote = True
        if wrote and self.seat.leading:
            carry = self._prune(
                lambda timeout: self.data.old_history(self.s.history_limit, timeout=timeout)
            )
            if carry is not None:
                self._history_carry = carry

    def _carry(
        self, carried: tuple[int, list[str]] | None
    ) -> tuple[tuple[str, int] | None, list[str]]:
        """The fence and the deletes a write may carry: only keys found in this tenure (by our
        token), and only while we lead (a deposed leader deletes nothing)."""
        own, token = self.seat.key, self.seat.token
        if carried is None or own is None or token != carried[0] or not self.seat.leading:
            return None, []
        return (own, token), carried[1]

    def _prune(
        self, find: Callable[[float], tuple[list[str], list[str]]]
    ) -> tuple[int, list[str]] | None:
        """Bookkeeping, only while the cycle has time to spare: find old keys; delete those
        already beyond the bound now, fenced, in one Txn (a backlog); return those the next
        write pushes out, with our token, for that write to delete in its own Txn (None: not
        looked)."""
        own, token = self.seat.key, self.seat.token
        if own is None or token is None or not self.session.may_bookkeep():
            return None
        try:
            beyond, nxt = find(self.session.io_timeout())
            if beyond and self.session.may_bookkeep():
                self.data.delete_fenced(own, token, beyond, timeout=self.session.io_timeout())
        except StoreError as exc:
            self.session.store_error(exc)
            return None
        return token, nxt
