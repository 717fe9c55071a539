"""The daemon loop: one cycle = deadline check → job reports → health → election → job ↔
leadership → control switches → schedule → wait.

Each :meth:`Daemon.cycle` returns a :class:`Report` that says what it decided; the log and the
tests read those. The loop waits on one :class:`~leaderjob.clock.Waker` that everything wakes:
the predecessor watch, the guardian's reports, the health checker, the signal handlers (which
must take no lock). Stop is therefore prompt, and no thread but the main one decides anything.

Modes: ``schedule`` (run the command for each slot of the schedule while leading), ``service`` (no
schedule: keep the command running while leading, restart it when it exits), and ``once``
(``leaderjob lock``: run it once under leadership, release, exit with its exit code).

Leaving on purpose (shutdown, a failing health check, lock done) is :mod:`.leaving`'s: stop the
job (renewing the lease meanwhile) → resign → revoke. What lives as long as the process (the
guardian, the health checkers, the signal handlers) is :mod:`.process`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock, SystemClock, Waker
from leaderjob.daemon.applier import Applier
from leaderjob.daemon.fingerprints import config_watch
from leaderjob.daemon.gates import Checkers
from leaderjob.daemon.group_pass import GroupPass
from leaderjob.daemon.leaving import Leaving
from leaderjob.daemon.model import Report, Settings
from leaderjob.daemon.policies import Policies
from leaderjob.daemon.process import Process, install_signal_handlers
from leaderjob.daemon.runner import Runner
from leaderjob.daemon.session import Seat, Session
from leaderjob.daemon.snapshot import Publisher
from leaderjob.daemon.spread import Spreader
from leaderjob.daemon.starts import GuardianStarter, Starter
from leaderjob.daemon.transitions import Transitions
from leaderjob.daemon.view import DaemonView
from leaderjob.election.machine import DEFAULT, Phase, Transition
from leaderjob.election.store import Store
from leaderjob.guard.supervisor import Guardian
from leaderjob.log import get_logger
from leaderjob.ops.health import HealthChecker
from leaderjob.ops.notify import Notifier

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


class Daemon(DaemonView):
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        health: HealthChecker | None = None,
        environ: Mapping[str, str] | None = None,
        jobs: Sequence[Settings] | None = None,
        reload: Callable[[], Sequence[Settings]] | None = None,
        watch: str | None = None,
        spreader: Spreader | None = None,
        starter: Starter | None = None,
        observed: bool = True,
    ) -> None:
        """``settings`` are the daemon's (the election, identity, timing, connection) and, without
        ``jobs``, its one job's too. With ``jobs`` (a jobs file), the election is a group: each
        job's settings name it (``election``) and where its keys live (``prefix``: the group's
        ``<prefix>/<group>/jobs``), and all of them share one lease. ``reload`` reads the jobs
        again (on SIGHUP, and when the file ``watch`` changes); it raises ValueError with
        ``problems`` for an invalid file, which is then refused and the old jobs kept.
        ``starter`` starts every job's runs (None: under the daemon's guardian). ``observed``:
        something reads the snapshot (the HTTP endpoints); else none is built."""
        self.s = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.health = health
        self.environ = dict(os.environ if environ is None else environ)
        self.wakeup = Waker()  # set from signal handlers too: no locks
        self.log = get_logger(election=settings.election, identity=settings.identity)
        self.session = Session(
            store,
            settings.timing,
            settings.election_prefix,
            settings.identity,
            self.clock,
            self.wakeup,
            label=settings.election,
            log=self.log,
            rpc_timeout=settings.rpc_timeout,
            metrics=metrics,
            jobs=None if jobs is None else {j.election: j.election_prefix for j in jobs},
        )
        self.elector = self.session.elector
        #: --on-failure and --ping-url of every job: threads of their own, started when needed.
        self.notifier = Notifier(
            self.log,
            metrics.count_notification if metrics is not None else lambda *_: None,
            environ=self.environ,
            clock=self.clock.monotonic,
        )
        #: One guardian process for every run of every job (started by serve).
        self.guardian = Guardian(self.wakeup)
        #: How every job's runs start: under that guardian, unless told otherwise.
        self.starter = starter or GuardianStarter(self.wakeup, self.guardian)
        if isinstance(self.starter, GuardianStarter):
            self.session.starts_pending = self.starter.pending
        self.grouped = jobs is not None
        #: One runner per job (its tenure, runs, schedule, records), keyed by job name.
        self.runners: dict[str, Runner] = {}
        for job in jobs if jobs is not None else [settings]:
            self._add_runner(job.election if jobs is not None else DEFAULT, job)
        #: The jobs' reports, a group's pass over what is due, and when they need the loop.
        self.passes = GroupPass(self.runners, self.clock)
        self.attention = self.passes.attention
        #: Begins and ends the jobs' tenures as the election's transitions say.
        self.transitions = Transitions(
            self.runners,
            lambda: self.runner,
            grouped=self.grouped,
            election=settings.election,
            clock=self.clock,
            log=lambda: self.log,
            set_log=self._set_log,
            metrics=metrics,
        )
        #: Each gated job's health checker (a jobs file's health-cmd / health-url).
        self.checkers = Checkers(self.wakeup.set)
        #: Carries out what the policies (reload, gates, spreading) decide, one path for all.
        self.applier = Applier(
            self.runners,
            self._add_runner,
            self.session.group,
            self._on_transition,
            self.checkers,
            log=self.log,
            metrics=metrics,
        )
        #: What moves a group's jobs (a reload, the jobs' gates, spreading), decided each cycle.
        self.policies = Policies(
            self.applier,
            self.checkers,
            self.session.group,
            grouped=self.grouped,
            reload=reload,
            watch=watch,
            spreader=spreader,
            on_change=self._jobs_changed,
            clock=self.clock,
            wake=self.wakeup.set,
            election=settings.election,
            log=self.log,
            metrics=metrics,
        )
        p = self.policies
        self.reloader, self.gates, self.spreading = p.reloader, p.gates, p.spreading
        self.config = config_watch(store, settings, jobs, log=self.log, metrics=metrics)
        if self.config.enabled:  # compared from the leader's confirmations: no read of its own
            self.session.group.read_while_leading("fingerprints", self.config.prefix)
        #: Why and how this replica leaves on purpose (the health gate among the reasons).
        self.departure = Leaving(
            self.applier,
            self.session,
            self.runners,
            lambda: self.runner,
            self._on_transition,
            self.wakeup.set,
            election=settings.election,
            log=lambda: self.log,
            metrics=metrics,
        )
        #: What starts with the process and is torn down with it.
        self.process = Process(
            self.guardian,
            self.checkers,
            self.notifier,
            self.elector,
            lambda: self.health,
            log=lambda: self.log,
        )
        self.snapshot: dict[str, Any] = {}
        #: Without a reader (--metrics-addr off) no snapshot is built: one pass's CPU in ten.
        self.observed = observed
        self.publisher = Publisher(self.clock, lambda: len(self.runners) if self.grouped else 1)
        self._publish("starting")

    def _add_runner(self, name: str, job: Settings) -> Runner:
        self.runners[name] = Runner(
            job,
            self.session,
            Seat(self.session, name),
            clock=self.clock,
            starter=self.starter,
            environ=self.environ,
            log=self.log.bind(job=name) if self.grouped else self.log,
            metrics=self.metrics,
            on_done=self._lock_done,
            election=self.s.election,
            notifier=self.notifier,
        )
        return self.runners[name]

    def _set_log(self, log: Any) -> None:
        """Rebind the daemon's logger (a tenure's token) in the session and the runner too."""
        self.log = self.session.log = self.runner.log = log

    def _lock_done(self) -> None:
        self.departure.lock_done()

    # -- the loop ---------------------------------------------------------------------------

    def serve(self) -> int:
        """Run until stopped; returns the process exit code."""
        self._install_signal_handlers()
        self.process.start(self.s, self.clock.monotonic())
        try:
            while True:
                report = self.cycle()
                self._publish(report.action, throttled=True)
                if report.action == "exited":
                    return self.exit_code
                self._wait()
        finally:
            self.process.stop(lambda: self.runs)

    def request_stop(self, reason: str = "signal") -> None:
        """Graceful stop: stop the job, release leadership, exit 0. Safe in a signal handler."""
        self.departure.request_stop(reason)

    def cycle(self) -> Report:
        self.wakeup.clear()
        self.session.deadline = None  # each cycle's calls end by the deadline of its own step
        # 1. The deadline first: after a freeze, step down before any other I/O.
        t = self.elector.check(self.clock.monotonic())
        if t is not None:
            self._on_transition(t)
        # 2. What the guardian reported.
        finished = self.passes.collect()
        self.starter.pump(self.clock.monotonic())  # answers came: more starts may go
        if self.grouped and self.policies.decide(leaving=self.leaving is not None):
            self.attention.everyone()
        # 3. Health: an unhealthy replica hands over and does not campaign.
        self.departure.apply_health(self.health, self._running())
        if self.leaving is not None:
            return self.departure.step()
        # 4. Election: campaign, renew, confirm.
        out = self.session.step(may_campaign=self._may_campaign(), hold=self._held())
        self.session.note(out)
        if out.read:  # the control switches ride on the read of the keys
            self.attention.everyone()
        if self.fatal is not None:
            self.leaving = "fatal"
            return self.departure.step()
        for t in out.transitions:
            self._transition(t)
        if out.transitions:
            # One snapshot for the step's changes: it covers every job, so one per transition
            # would hold up the next renewal when a thousand jobs are acquired at once.
            self._publish(out.transitions[-1].event)
        self.config.tick(
            self.clock.monotonic(),
            self.elector.lease_id,
            leading=self.elector.phase is Phase.LEADING,
            timeout=self.session.io_timeout(),
            on_error=self.session.store_error,
            reading=self.session.group.shared_readings.get("fingerprints"),
        )
        if self.elector.phase is not Phase.LEADING:
            if not self._running() and self.elector.to_revoke:
                self.session.release()
            return Report("job_finished" if finished else self.elector.phase.value)
        # 5. Leading: keep the guardian's deadlines in step with the lease; enforce timeouts.
        for r in self.runners.values():
            r.reconcile_runs()
        # 6. Start what is due: every job within one etcd budget for the cycle (the keepalive
        # comes first), in turn, so that no job keeps the others waiting cycle after cycle.
        if not self.grouped:
            started = self.runner.start_due()
            self.runner.after_starts()
            if started is not None:
                return started
            return Report("job_finished" if finished else "leading")
        return self._start_jobs(finished)

    def _jobs_changed(self, jobs: list[Settings]) -> None:
        """A reload changed the jobs: their fingerprint is compared anew with the others'."""
        self.config = config_watch(self.store, self.s, jobs, log=self.log, metrics=self.metrics)

    def _start_jobs(self, finished: bool) -> Report:
        reports = self.passes.start(self._may_start, self.session, self.log)
        if reports:
            return Report("jobs", {job: rep.action for job, rep in reports.items()})
        return Report("job_finished" if finished else "leading")

    def _may_start(self, r: Runner) -> bool:
        return r.seat.leading and not self.applier.holds(r.seat.job)

    def _wait(self) -> None:
        now = self.clock.monotonic()
        if self.leaving is None and not (self.s.mode == "once" and self.runner.ran_once):
            # The guardian is up while following too: a handover or a slot does not wait for
            # an interpreter to start. Started again here, off the fire path, if it died.
            self.process.keep_guardian(now)
        self.clock.wait(self.wakeup, max(0.0, self.next_wakeup(now) - now))

    def next_wakeup(self, now: float) -> float:
        """Monotonic time the next cycle is due, unless something wakes the loop first."""
        until = self.elector.next_wakeup(now, self._may_campaign())
        staying = self.leaving is None
        until = min(until, self.passes.wakeup(now, staying, every=not staying or not self.grouped))
        if self.leaving is not None:
            until = min(until, now + 0.05)
        return min(until, self.publisher.due())

    # -- election -----------------------------------------------------------------------------

    def _may_campaign(self) -> bool:
        if self.grouped:
            return self.leaving is None
        return self.leaving is None and self.runner.may_campaign()

    def _held(self) -> list[str]:
        """Jobs that may not campaign now: a run of their lost tenure still lives (S1)."""
        if not self.grouped:
            return []
        return [job for job, r in self.runners.items() if not r.may_campaign()] + self.gates.held(
            self.runners
        )

    def _on_transition(self, t: Transition) -> None:
        self._transition(t)
        self._publish(t.event)  # probes see a leadership change at once, not after the cycle

    def _transition(self, t: Transition) -> None:
        self.transitions.apply(t)
        self.attention.everyone()

    # -- what others see ------------------------------------------------------------------------

    def _publish(self, action: str, throttled: bool = False) -> None:
        """Swap in a fresh snapshot for the HTTP endpoints (read from other threads);
        ``throttled``: the one after each cycle (see :class:`Publisher`). Nothing is built
        when nothing reads it (``observed``)."""
        if self.observed:
            self.snapshot = self.publisher.publish(self, self.snapshot, action, throttled)

    def _install_signal_handlers(self) -> None:
        install_signal_handlers(self.request_stop, self.reloader)
