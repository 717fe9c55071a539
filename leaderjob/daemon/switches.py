"""The trigger and suspend switches, for one job while it is led.

The switches are read along with the confirmation of our key, once per renew interval; a
trigger runs under a claim of its own, a Txn guarded by our leader key (S3), one at a time and
never beside a run the overlap policy would block; a suspension refuses every claim to run.
While the newest slot claim lies ahead of our clock, it is re-read at the same pace, so an
operator's ``repair-schedule`` takes effect at once.

A part of :class:`~leaderjob.daemon.scheduling.Scheduling`, which polls it from each leading
cycle; a trigger starts through the runner (``_start``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from leaderjob.clock import Clock
from leaderjob.daemon.model import Report, Settings, Tenure
from leaderjob.daemon.session import Seat, Session
from leaderjob.election.store import StoreError
from leaderjob.history.records import ElectionData, iso


class Switches:
    # Set by the runner (see Runner.__init__).
    s: Settings
    session: Session
    seat: Seat
    data: ElectionData
    clock: Clock
    log: Any

    # The runner's (_start), the tenure start's (_skewed) and the slot path's (the others).
    def _start(
        self,
        slot: str,
        scheduled: datetime,
        attempt: int,
        lag_from: datetime | None = None,
        claimed_at: float | None = None,
    ) -> Report:
        raise NotImplementedError

    def _skewed(self, tenure: Tenure) -> bool:
        raise NotImplementedError

    def _blocked(self) -> bool:
        raise NotImplementedError

    def _why_refused(self) -> str:
        raise NotImplementedError

    def _prune_slots(self, tenure: Tenure, *, triggers: bool = False) -> None:
        raise NotImplementedError

    def _poll_control(self, tenure: Tenure) -> Report | None:
        """Act on the trigger and suspend switches as last read; no request of their own.

        They are read in the confirmation of our key, once per renew interval (one Txn for every
        job the daemon leads: :meth:`Seat.read_along`), so a trigger runs within one renew
        interval and ``status`` shows a suspension as fast. Only the first look of a tenure
        reads them directly: a trigger that waited for a leader runs at once. Triggers of one
        read run one at a time; one that did not run shows up again in the next read.

        While the newest claim lies ahead of our clock, also re-read it once per renew interval:
        an operator's repair takes effect at once (a re-plan from the repaired claim).
        """
        now = self.clock.monotonic()
        interval = self.s.timing.renew_interval
        self.seat.read_along(self.data.control_prefix)
        reading = self.seat.reading()
        if tenure.control is None:
            if now < tenure.control_at or not self.session.may_call():
                return None
            tenure.control_at = now + interval  # a failed read is tried again an interval on
            try:
                tenure.control = self.data.control(timeout=self.session.io_timeout())
            except StoreError as exc:
                self.session.store_error(exc)
                return None
            tenure.control_read_at = now
            self._note_suspended(tenure, tenure.control.suspended)
        elif reading is not None and reading.sent_at > tenure.control_read_at:
            tenure.control = self.data.parse_control(reading.keys)
            tenure.control_read_at = reading.sent_at
            self._note_suspended(tenure, tenure.control.suspended)
        report = self._repair_or_trigger(tenure, now)
        # Wake for the switches only while a trigger can run now, or a skewed claim is re-read;
        # otherwise the next confirmation (and the end of a blocking run) wakes the loop.
        ready = bool(tenure.control.triggers) and not tenure.suspended and not self._blocked()
        tenure.control_at = now if ready else (tenure.skew_read_at if self._skewed(tenure) else
                                              math.inf)  # fmt: skip
        return report

    def _repair_or_trigger(self, tenure: Tenure, now: float) -> Report | None:
        if self._skewed(tenure) and now >= tenure.skew_read_at and self.session.may_call():
            tenure.skew_read_at = now + self.s.timing.renew_interval
            try:
                last = self.data.last_slot(timeout=self.session.io_timeout())
            except StoreError as exc:
                self.session.store_error(exc)
                return None
            if last != tenure.last_claimed:
                self.log.info("schedule.repaired", last_claimed=iso(last))
                tenure.ready = False
                return None
        control = tenure.control
        if control is None or not control.triggers or tenure.suspended:
            return None
        if self._blocked() or not self.session.may_call():
            return None  # a trigger waits for the current run; it is not lost
        key, request = control.triggers.pop(0)
        return self._run_trigger(tenure, key, request)

    def _run_trigger(self, tenure: Tenure, key: str, request: dict[str, Any]) -> Report | None:
        own = self.seat.key
        if own is None:
            return None
        claim = {
            "token": tenure.token,
            "identity": self.s.identity,
            "request": request,
            "claimed_at": iso(self.clock.wall()),
        }
        try:
            ok, slot = self.data.claim_trigger(
                own, tenure.token, key, claim, timeout=self.session.io_timeout()
            )
            result = "claimed" if ok else self._why_refused()
        except StoreError as exc:
            self.session.store_error(exc)
            return None
        if result == "suspended":
            self._note_suspended(tenure, True)  # the trigger waits for `resume`
            return None
        if result == "rejected":
            self.log.warning("trigger.claim_failed", trigger=key)
            self.seat.recheck()
            return None
        self.log.info("trigger.claimed", slot=slot, requested_by=request.get("by"))
        report = self._start(slot, self.clock.wall(), 0)
        self._prune_slots(tenure, triggers=True)
        return report

    def _note_suspended(self, tenure: Tenure, suspended: bool) -> None:
        suspended = suspended or self.s.paused  # the jobs file's `suspend = true` too
        if suspended != tenure.suspended:
            if suspended or tenure.suspended is not None:
                self.log.info("election.suspended" if suspended else "election.resumed")
            tenure.suspended = suspended
