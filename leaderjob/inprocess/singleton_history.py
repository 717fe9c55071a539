"""What one ``@leaderjob.singleton`` tenure leaves behind: the log line, metrics and history
record of each finished run and of each slot that did not run (skipped, or missed while
nobody led), and a retry when one is due.

The outcome half of :class:`~leaderjob.inprocess.singleton_tenure.SingletonTenure`, as
:mod:`leaderjob.daemon.history` is the daemon runner's. The decisions (outcome, retry, the
records' shape) are :mod:`leaderjob.inprocess.singleton_rules`'; this module writes them out.
History is informational: a record that cannot be written is dropped with a warning, never retried,
and never holds up the tenure. It must not know about claims, threads or leadership beyond the
seat's identity and validity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leaderjob.clock import Clock
from leaderjob.election.store import StoreError
from leaderjob.history.records import SKIP_NOT_RUN, ElectionData, not_run_record
from leaderjob.inprocess.singleton_rules import outcome, retry_backoff, run_record
from leaderjob.inprocess.singleton_run import Active, Pending, Seat
from leaderjob.ops.metrics import Metrics
from leaderjob.schedule import slot_id
from leaderjob.schedule.planner import CatchUpPlan, Slot

__all__ = ["SingletonHistory"]


@dataclass
class SingletonHistory:
    seat: Seat
    data: ElectionData
    clock: Clock
    log: Any
    election: str
    rpc_timeout: float
    metrics: Metrics | None = None

    @property
    def series(self) -> tuple[str, str]:
        """The labels of this function's per-job series: a job named like its election."""
        return (self.election, self.election)

    def finished(self, a: Active, *, retries: int, running: bool) -> Pending | None:
        """A run returned: its ``job.finished`` line, metrics (``running``: whether other runs
        are still active) and history record; the retry to queue, if one is due."""
        run = a.run
        duration = self.clock.monotonic() - a.started
        result = outcome(run.cancel_reason, a.error)
        record = run_record(
            run,
            identity=self.seat.identity,
            started=a.started_wall,
            finished=self.clock.wall(),
            duration=duration,
            outcome=result,
            error=a.error,
        )
        self.log.info(
            "job.finished",
            run_id=run.run_id,
            slot=run.slot,
            token=run.token,
            outcome=result,
            duration_seconds=record["duration_seconds"],
            attempt=run.attempt,
            error=a.error,
        )
        if self.metrics is not None:
            m = self.metrics
            m.job_running.labels(*self.series).set(1 if running else 0)
            m.job_runs.labels(*self.series, result).inc()
            m.job_duration.labels(*self.series).observe(duration)
            if result == "succeeded":
                m.last_success.labels(*self.series).set(self.clock.wall().timestamp())
        self.record(record)
        same_tenure = self.seat.valid() and self.seat.token == run.token
        backoff = retry_backoff(result, run.attempt, retries, same_tenure)
        if backoff is None:
            return None
        self.log.info(
            "job.retry_scheduled",
            slot=run.slot,
            attempt=run.attempt + 1,
            backoff_seconds=backoff,
        )
        return Pending(run.slot, run.scheduled, run.attempt + 1, a.started + duration + backoff)

    def skipped(self, slot: Slot, reason: str, *, also: int = 0, first: Slot | None = None) -> None:
        """A slot skipped for ``reason`` (and ``also`` older ones with it, from ``first`` on):
        its ``slot.skipped`` line, metrics and not-run record, as the daemon's."""
        if also:
            self.log.info("slot.skipped", slot=slot.id, reason=reason, also_skipped=also)
        else:
            self.log.info("slot.skipped", slot=slot.id, reason=reason)
        if self.metrics is not None:
            self.metrics.slots_skipped.labels(*self.series, reason).inc(1 + also)
        span = (first.id, 1 + also) if also and first is not None else (None, None)
        self.not_run(slot.id, slot.fire_time, SKIP_NOT_RUN[reason], f"skipped_{reason}", *span)

    def missed(self, plan: CatchUpPlan, *, after: datetime | None) -> datetime | None:
        """The slots a catch-up ``plan`` does not run: a not-run record each (``missed``), the
        newest one by one and the older as one range, as the daemon's. Slots up to ``after``
        were recorded by an earlier tenure of this function (a re-plan records none twice).
        Returns the newest slot recorded so far."""
        upto = after
        for slot in plan.missed:
            if after is None or slot.fire_time > after:
                self.not_run(slot.id, slot.fire_time, "missed", "missed")
                upto = max(upto or slot.fire_time, slot.fire_time)
        if plan.missed_range is not None and (after is None or plan.missed_range[1] > after):
            first, last = plan.missed_range
            self.not_run(slot_id(last), last, "missed", "missed", slot_id(first), plan.missed_more)
            upto = max(upto or last, last)
        return upto

    def not_run(
        self,
        slot: str,
        scheduled: datetime,
        reason: str,
        outcome: str,
        first_slot: str | None = None,
        count: int | None = None,
    ) -> None:
        """A slot (or ``count`` slots from ``first_slot`` on) did not run for ``reason``:
        ``leaderjob_slots_not_run_total`` and its record."""
        if self.metrics is not None:
            self.metrics.slots_not_run.labels(*self.series, reason).inc(count or 1)
        record = not_run_record(
            slot,
            scheduled,
            reason,
            outcome=outcome,
            token=self.seat.token,
            identity=self.seat.identity,
            first_slot=first_slot,
            count=count,
        )
        self.record(record)

    def record(self, entry: dict[str, Any]) -> None:
        """History is informational: the plain put, best-effort, as the daemon's."""
        try:
            self.data.record(entry, self.clock.wall(), timeout=self.rpc_timeout)
        except StoreError as exc:
            self.store_error(exc)
            self.log.warning("history.dropped", slot=entry.get("slot"))

    def store_error(self, exc: StoreError) -> None:
        """etcd did not answer (or refused): the tenure's one line and counter for it."""
        self.log.warning("etcd.unavailable", operation=exc.operation, error=exc.detail)
        if self.metrics is not None:
            self.metrics.etcd_errors.labels(self.election, exc.operation).inc()
