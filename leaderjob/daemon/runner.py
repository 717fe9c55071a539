"""One job's tenure: what happens to one job while this replica leads it.

The runner is the job as the loop sees it: a tenure begins (:meth:`Runner.begin`) and ends
(:meth:`Runner.end`); each cycle it collects the guardian's reports, keeps the runs' deadline in
step with the lease, starts what is due, and says when it must next wake. It is built of parts,
each handed the ones it uses (nothing is inherited):

* :class:`~leaderjob.daemon.runs.Runs` starts runs through a
  :class:`~leaderjob.daemon.starts.Starter` (the guardian behind it) and tracks them;
* :class:`~leaderjob.daemon.history.History` records what ended or did not run;
* :class:`~leaderjob.daemon.scheduling.Scheduling`, the slot path, with its
  :class:`~leaderjob.daemon.claims.Claims`, :class:`~leaderjob.daemon.catchup.CatchUp` and
  :class:`~leaderjob.daemon.switches.Switches`;

and they share one :class:`~leaderjob.daemon.context.JobContext` (settings, seat, log, ...).

It does not decide leadership: the loop tells it when a tenure begins and ends, and the session
says how much etcd time the cycle has left. It never campaigns while a run of a lost tenure still
lives (:meth:`Runner.may_campaign`): a new tenure would overlap it (S1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock
from leaderjob.daemon.ahead import CLAIM_AHEAD
from leaderjob.daemon.catchup import CatchUp
from leaderjob.daemon.claims import Claims
from leaderjob.daemon.context import JobContext
from leaderjob.daemon.history import History
from leaderjob.daemon.model import (
    RETRY_BASE,
    RETRY_CAP,
    ActiveRun,
    Pending,
    Report,
    Settings,
    Tenure,
)
from leaderjob.daemon.runs import Runs
from leaderjob.daemon.scheduling import Scheduling
from leaderjob.daemon.session import Seat, Session
from leaderjob.daemon.starts import Starter
from leaderjob.daemon.switches import Switches
from leaderjob.election.store import Guarded, StoreError
from leaderjob.history.records import ElectionData, iso
from leaderjob.ops.fingerprint import job_fingerprint
from leaderjob.schedule.due import DueWatch
from leaderjob.schedule.planner import Planner, Slot
from leaderjob.schedule.unknown_claims import UnknownClaims

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics
    from leaderjob.ops.notify import Notifier


class Runner:
    def __init__(
        self,
        settings: Settings,
        session: Session,
        seat: Seat,
        *,
        clock: Clock,
        starter: Starter,
        environ: Mapping[str, str],
        log: Any,
        metrics: Metrics | None = None,
        on_done: Callable[[], None] = lambda: None,
        election: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """``starter`` starts each run (the daemon's guardian behind it); ``on_done`` is called
        when a ``once`` run is over (``leaderjob lock`` is done: the loop leaves); ``election``
        is the daemon's (a group's name when the daemon runs a jobs file)."""
        self.job = JobContext(
            s=settings,
            session=session,
            seat=seat,
            data=ElectionData(session.store, settings.prefix, settings.election),
            clock=clock,
            log=log,
            election=election or settings.election,
            planner=self._planner(settings),
            metrics=metrics,
        )
        self.tenure: Tenure | None = None
        self.ran_once = False
        #: Removed from the jobs file and on its way out (set by the applier).
        self.retiring = False
        unknown = UnknownClaims()  # slots whose claim may or may not have applied
        self.history = History(self.job, notifier)
        self._runs = Runs(
            self.job, starter, self.history, environ=environ, on_done=on_done, retry=self._retry
        )
        claims = Claims(self.job, self.history, unknown)
        catchup = CatchUp(self.job, self.history, unknown)
        switches = Switches(self.job, self._runs, claims, catchup)
        self.scheduling = Scheduling(
            self.job, self._runs, self.history, claims, catchup, switches, unknown
        )
        self._describe()

    # -- what the loop, the applier, the snapshot and the tests read ---------------------------

    @property
    def s(self) -> Settings:
        return self.job.s

    @s.setter
    def s(self, settings: Settings) -> None:
        self.job.s = settings

    @property
    def log(self) -> Any:
        return self.job.log

    @log.setter
    def log(self, log: Any) -> None:
        self.job.log = log  # a tenure's token bound: every part logs with it

    @property
    def seat(self) -> Seat:
        return self.job.seat

    @property
    def session(self) -> Session:
        return self.job.session

    @property
    def data(self) -> ElectionData:
        return self.job.data

    @property
    def planner(self) -> Planner | None:
        return self.job.planner

    @property
    def runs(self) -> list[ActiveRun]:
        """The job's runs, started and not yet reported ended."""
        return self._runs.active

    @property
    def exit_code(self) -> int:
        return self._runs.exit_code

    @exit_code.setter
    def exit_code(self, code: int) -> None:
        self._runs.exit_code = code

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.history.last_run

    @property
    def last_success(self) -> dict[str, Any] | None:
        return self.history.last_success

    def _describe(self) -> None:
        """This job's series exist, and leaderjob_job_info says what it runs."""
        if self.job.metrics is not None:
            s = self.job.s
            expr, zone = (s.schedule.expr, s.schedule.timezone) if s.schedule else (None, None)
            fingerprint = job_fingerprint(s.command, s.mode, expr, zone)
            due = None
            if s.mode == "schedule" and s.schedule is not None:
                watch, wall = DueWatch(s.schedule, self.job.clock.wall()), self.job.clock.wall
                due = lambda: watch.timestamp(wall())  # noqa: E731 - read at each scrape
            self.job.metrics.track(
                s.election,
                mode=s.mode,
                fingerprint=fingerprint,
                due=due,
                suspended=self.suspended_timestamp,
            )

    def suspended_timestamp(self) -> float:
        """Unix time this replica last saw the job suspended (now while it is: by its jobs
        file, or by the switch its tenure read), 0 if never: a slot due no later than this owes
        no success (the freshness alert)."""
        if self.job.s.paused or (self.tenure is not None and self.tenure.suspended):
            self.job.suspended_seen = self.job.clock.wall().timestamp()
        return self.job.suspended_seen

    def reconfigure(self, settings: Settings) -> None:
        """New settings from a reloaded jobs file, between runs: a new planner, and while
        leading a new catch-up from the newest claim — the change takes effect at the next slot
        (slots already claimed are never run again)."""
        self.suspended_timestamp()  # a suspension by the old file ends now
        self.job.s = settings
        self.job.planner = self._planner(settings)
        self._describe()
        if self.tenure is not None:
            self.tenure.ready = False
            self.tenure.published = False

    @staticmethod
    def _planner(settings: Settings) -> Planner | None:
        if settings.schedule is None:
            return None
        return Planner(
            settings.schedule,
            settings.election,
            catch_up=settings.catch_up,
            starting_deadline=(
                None
                if settings.starting_deadline is None
                else timedelta(seconds=settings.starting_deadline)
            ),
            jitter=settings.jitter,
        )

    # -- the tenure -----------------------------------------------------------------------------

    def begin(self, token: int) -> None:
        """A term of leadership begins (``election.acquired``)."""
        self.tenure = Tenure(token=token, since=self.job.clock.wall())
        self._runs.restart_at = 0.0

    def end(self) -> None:
        """The term ended (``election.lost``): drop it, and stop every run of it."""
        self.suspended_timestamp()  # what it saw of a suspension is kept past the tenure
        self.tenure = None
        if self.job.planner is not None:
            self.job.planner.end_tenure()
        for active in self.runs:
            active.run.stop("killed_on_leadership_loss")

    def claim_wanted(self) -> tuple[Slot, Guarded] | None:
        """The claim this job would make ahead now, to be sent with others' (:mod:`.together`)."""
        if self.tenure is None:
            return None
        return self.scheduling.ahead.claim_wanted(self.tenure)

    def claimed_together(self, slot: Slot, outcome: bool | StoreError) -> None:
        assert self.tenure is not None  # nothing ends a tenure between the two
        self.scheduling.ahead.claimed_together(self.tenure, slot, outcome)

    def give_back_ahead(self) -> None:
        """Leaving on purpose: give back a slot claimed ahead (see
        :meth:`~leaderjob.daemon.ahead.Ahead.give_back`)."""
        self.scheduling.ahead.give_back(self.tenure)

    @property
    def idle(self) -> bool:
        """Between runs: nothing running, no retry or replacement waiting, no slot claimed
        ahead (a job may move)."""
        return not self.runs and (
            self.tenure is None or (not self.tenure.pending and self.tenure.ahead is None)
        )

    def may_campaign(self) -> bool:
        # Never campaign while a job of a lost tenure still runs: a new tenure would overlap it.
        return not self.runs and not (self.job.s.mode == "once" and self.ran_once)

    def next_wakeup(self, now: float, leading: bool) -> float:
        """Monotonic time the loop must wake for this job: a timeout, a start's answer, or
        (leading) a start."""
        until = self._runs.confirm_by()  # a start's answer, due by its limit at the latest
        for active in self.runs:
            if active.timeout_at is not None and active.run.stop_reason is None:
                until = min(until, active.timeout_at)
        if leading:
            until = min(until, self._next_start(now))
        return until

    def _next_start(self, now: float) -> float:
        """Monotonic time of the next thing to start while leading."""
        tenure = self.tenure
        if tenure is None:
            return now
        if self.job.s.mode == "service":
            return self._runs.restart_at if not self.runs else math.inf
        if self.job.s.mode == "once":
            return now if not self.ran_once else math.inf
        # Schedule mode only: the switches, catch-up and pending runs exist for slots alone.
        times = [tenure.control_at]
        # A pending run blocked by an active one adds no wake-up: the run's end wakes the loop.
        times += [p.not_before for p in tenure.pending if not self._runs.blocked()]
        if self.job.planner is not None:
            slot = self.job.planner.peek()
            if slot is not None:
                planning = tenure.slot_clock.peek(self.job.clock.wall(), now)
                start = now + (slot.start_time - planning).total_seconds()
                times.append(start)
                if self.scheduling.ahead.may_claim(tenure):  # claimed ahead, once: no busy wake-ups
                    times.append(start - CLAIM_AHEAD.total_seconds())
        if not tenure.ready:
            times.append(now + 0.2)
        return min(times)

    # -- runs ------------------------------------------------------------------------------------

    def collect_runs(self) -> tuple[bool, bool]:
        """Absorb the guardian's reports: whether a run finished, whether any report came."""
        return self._runs.collect()

    def reconcile_runs(self) -> None:
        """Keep the runs' deadline in step with the lease; enforce timeouts."""
        self._runs.reconcile()

    def after_starts(self) -> None:
        """Bookkeeping left until every start of the pass was requested (old claims)."""
        self.scheduling.after_starts(self.tenure)

    def flush(self) -> None:
        """Write the queued history records the cycle has time for."""
        self.history.flush()

    def _retry(self, active: ActiveRun, now: float) -> None:
        """A run failed or timed out with attempts left: retried after a backoff, in its own
        tenure only."""
        run = active.run
        if self.tenure is None or self.tenure.token != run.token:
            return
        backoff = min(RETRY_CAP, RETRY_BASE * 2**active.attempt)
        self.tenure.pending.append(
            Pending(active.slot, active.scheduled, active.attempt + 1, now + backoff, run.token)
        )
        self.job.log.info(
            "job.retry_scheduled",
            slot=active.slot,
            attempt=active.attempt + 1,
            backoff_seconds=backoff,
        )

    # -- starting -----------------------------------------------------------------------------

    def start_due(self) -> Report | None:
        tenure = self.tenure
        if tenure is None:
            return None
        if self.job.s.mode == "once":
            if self.ran_once:
                if not tenure.published and self.job.session.may_bookkeep():
                    self._publish_tenure(tenure)
                return None
            report = self._runs.start("lock", self.job.clock.wall(), 0)
            # A start skipped for the deadline did not happen: the tenure is ending (D − grace
            # is near), and the next one runs the command. Anything else was the one attempt.
            self.ran_once = report.action != "job_skipped"
            return report
        if self.job.s.mode == "service":
            if self.runs or self.job.clock.monotonic() < self._runs.restart_at:
                if not tenure.published and self.job.session.may_bookkeep():
                    self._publish_tenure(tenure)
                return None
            return self._runs.start("service", self.job.clock.wall(), 0)
        return self.scheduling.start_scheduled(tenure)

    def _publish_tenure(self, tenure: Tenure) -> None:
        """Since when this replica leads a service or holds a lock (a schedule publishes it with
        the schedule), for `status`; once per tenure, after the command started, fenced by our
        key."""
        if self.job.seat.key is None:
            return
        info = {"leader": self.job.s.identity, "token": tenure.token, "since": iso(tenure.since)}
        try:
            tenure.published = self.job.data.publish_tenure(
                self.job.seat.key, tenure.token, info, timeout=self.job.session.io_timeout()
            )
        except StoreError as exc:
            self.job.session.store_error(exc)
