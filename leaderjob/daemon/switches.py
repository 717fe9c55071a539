"""The trigger and suspend switches, for one job while it is led.

The switches are read along with the confirmation of our key, once per renew interval; a
trigger runs under a claim of its own, a Txn guarded by our leader key (S3), one at a time and
never beside a run the overlap policy would block; a suspension refuses every claim to run.
While the newest slot claim lies ahead of our clock, it is re-read at the same pace, so an
operator's ``repair-schedule`` takes effect at once.

The slot path (:class:`~leaderjob.daemon.scheduling.Scheduling`) polls it from each leading
cycle; a trigger is claimed like a slot (:mod:`.claims`) and starts through the job's runs
(:mod:`.runs`).
"""

from __future__ import annotations

import math
from typing import Any

from leaderjob.daemon.catchup import CatchUp
from leaderjob.daemon.claims import Claims
from leaderjob.daemon.context import JobContext
from leaderjob.daemon.model import Report, Tenure
from leaderjob.daemon.runs import Runs
from leaderjob.election.store import StoreError
from leaderjob.history.records import iso


class Switches:
    def __init__(self, job: JobContext, runs: Runs, claims: Claims, catchup: CatchUp) -> None:
        self.job = job
        self.runs = runs  # a trigger starts a run, never beside one the overlap policy blocks
        self.claims = claims  # why a trigger's claim was refused; its claims pruned
        self.catchup = catchup  # whether the newest claim lies ahead of our clock

    def poll_control(self, tenure: Tenure) -> Report | None:
        """Act on the trigger and suspend switches as last read; no request of their own.

        They are read in the confirmation of our key, once per renew interval (one Txn for every
        job the daemon leads: :meth:`Seat.read_along`), so a trigger runs within one renew
        interval and ``status`` shows a suspension as fast. Only the first look of a tenure
        reads them directly: a trigger that waited for a leader runs at once. Triggers of one
        read run one at a time; one that did not run shows up again in the next read.

        While the newest claim lies ahead of our clock, also re-read it once per renew interval:
        an operator's repair takes effect at once (a re-plan from the repaired claim).
        """
        now = self.job.clock.monotonic()
        interval = self.job.s.timing.renew_interval
        self.job.seat.read_along(self.job.data.control_prefix)
        reading = self.job.seat.reading()
        if tenure.control is None:
            if now < tenure.control_at or not self.job.session.may_call():
                return None
            tenure.control_at = now + interval  # a failed read is tried again an interval on
            try:
                tenure.control = self.job.data.control(timeout=self.job.session.io_timeout())
            except StoreError as exc:
                self.job.session.store_error(exc)
                return None
            tenure.control_read_at = now
            self.note_suspended(tenure, tenure.control.suspended)
        elif reading is not None and reading.sent_at > tenure.control_read_at:
            tenure.control = self.job.data.parse_control(reading.keys)
            tenure.control_read_at = reading.sent_at
            self.note_suspended(tenure, tenure.control.suspended)
        report = self._repair_or_trigger(tenure, now)
        # Wake for the switches only while a trigger can run now, or a skewed claim is re-read;
        # otherwise the next confirmation (and the end of a blocking run) wakes the loop.
        ready = bool(tenure.control.triggers) and not tenure.suspended and not self.runs.blocked()
        skewed = self.catchup.skewed(tenure)
        tenure.control_at = now if ready else (tenure.skew_read_at if skewed else math.inf)
        return report

    def _repair_or_trigger(self, tenure: Tenure, now: float) -> Report | None:
        if (
            self.catchup.skewed(tenure)
            and now >= tenure.skew_read_at
            and self.job.session.may_call()
        ):
            tenure.skew_read_at = now + self.job.s.timing.renew_interval
            try:
                last = self.job.data.last_slot(timeout=self.job.session.io_timeout())
            except StoreError as exc:
                self.job.session.store_error(exc)
                return None
            if last != tenure.last_claimed:
                self.job.log.info("schedule.repaired", last_claimed=iso(last))
                tenure.ready = False
                return None
        control = tenure.control
        if control is None or not control.triggers or tenure.suspended:
            return None
        if self.runs.blocked() or not self.job.session.may_call():
            return None  # a trigger waits for the current run; it is not lost
        key, request = control.triggers.pop(0)
        return self._run_trigger(tenure, key, request)

    def _run_trigger(self, tenure: Tenure, key: str, request: dict[str, Any]) -> Report | None:
        own = self.job.seat.key
        if own is None:
            return None
        claim = {
            "token": tenure.token,
            "identity": self.job.s.identity,
            "request": request,
            "claimed_at": iso(self.job.clock.wall()),
        }
        try:
            ok, slot = self.job.data.claim_trigger(
                own, tenure.token, key, claim, timeout=self.job.session.io_timeout()
            )
            result = "claimed" if ok else self.claims.why_refused()
        except StoreError as exc:
            self.job.session.store_error(exc)
            return None
        if result == "suspended":
            self.note_suspended(tenure, True)  # the trigger waits for `resume`
            return None
        if result == "rejected":
            self.job.log.warning("trigger.claim_failed", trigger=key)
            self.job.seat.recheck()
            return None
        self.job.log.info("trigger.claimed", slot=slot, requested_by=request.get("by"))
        report = self.runs.start(slot, self.job.clock.wall(), 0)
        self.claims.prune_slots(tenure, triggers=True)
        return report

    def note_suspended(self, tenure: Tenure, suspended: bool) -> None:
        suspended = suspended or self.job.s.paused  # the jobs file's `suspend = true` too
        if suspended != tenure.suspended:
            if tenure.suspended:  # resumed: the last moment seen suspended (the freshness alert)
                self.job.suspended_seen = self.job.clock.wall().timestamp()
            if suspended or tenure.suspended is not None:
                self.job.log.info("election.suspended" if suspended else "election.resumed")
            tenure.suspended = suspended
