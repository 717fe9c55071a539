"""The one place that carries out the policies' decisions on the daemon's jobs.

Every way a job leaves this replica goes through one hand-over path — stop its run (or let it
end) → wait for it to be dead → give back a slot claimed ahead (fenced by our key, so before the
key goes) → queue again at the back, or withdraw from the queue → (withdrawn) stop its health
gate and forget the job. A change of settings waits for the same "between runs". Decisions last
across cycles: a job being handed over starts nothing, and the hand-over completes in the first
cycle its run is dead.

The order is what makes it safe: the successor can only take over after our key is deleted, and
the key is deleted only after our run is dead (S1, S6); the give-back happens while the key is
still ours (S3) and lets the successor run that slot (L2).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from leaderjob.daemon.decisions import Add, Decision, HandOver, JobView, Reconfigure, Retire
from leaderjob.daemon.gates import Checkers
from leaderjob.daemon.model import Settings
from leaderjob.daemon.runner import Runner
from leaderjob.election.machine import Transition

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


class Queues(Protocol):
    """What the applier does to the election: join, leave, or step back in a job's queue."""

    @property
    def keys(self) -> Mapping[str, str]: ...

    def want(self, job: str, prefix: str) -> None: ...

    def withdraw(self, job: str) -> Transition | None: ...

    def requeue(self, job: str) -> Transition | None: ...


class Applier:
    def __init__(
        self,
        runners: dict[str, Runner],
        make_runner: Callable[[str, Settings], Runner],
        queues: Queues,
        on_transition: Callable[[Transition], None],
        checkers: Checkers,
        *,
        log: Any,
        metrics: Metrics | None = None,
    ) -> None:
        self.runners = runners
        self.make_runner = make_runner
        self.queues = queues
        self.on_transition = on_transition
        self.checkers = checkers
        self.log = log
        self.metrics = metrics
        #: Jobs on their way out (a hand-over or a retirement waiting for their run to end).
        self.leaving: dict[str, HandOver | Retire] = {}
        #: New settings waiting for the job to be between runs.
        self.changes: dict[str, Reconfigure] = {}

    # -- what the loop and the policies read ---------------------------------------------------

    def holds(self, job: str) -> bool:
        """``job`` starts nothing now: it is being handed over or retired."""
        return job in self.leaving

    def settings(self) -> dict[str, Settings]:
        """The jobs as they are to be: new settings included, retiring jobs left out."""
        return {
            name: self.changes[name].settings if name in self.changes else r.s
            for name, r in self.runners.items()
            if not isinstance(self.leaving.get(name), Retire)
        }

    def views(self, only: Collection[str] | None = None) -> dict[str, JobView]:
        """What the policies see of each job (``only``: of those jobs alone, as they exist)."""
        keys = self.queues.keys
        runners = (
            self.runners
            if only is None
            else {name: self.runners[name] for name in only if name in self.runners}
        )
        return {
            name: JobView(
                name=name,
                settings=r.s,
                leading=r.seat.leading,
                idle=r.idle,
                running=bool(r.runs),
                queued=name in keys,
                leaving=name in self.leaving,
            )
            for name, r in runners.items()
        }

    # -- deciding -----------------------------------------------------------------------------

    def apply(self, decisions: Iterable[Decision]) -> None:
        """Take the decisions on; each is carried out now or as soon as its job is between
        runs (:meth:`tick`)."""
        for d in decisions:
            if isinstance(d, Add):
                self._add(d)
            elif isinstance(d, Retire):
                self.leaving[d.job] = d  # stronger than a hand-over under way
                self.changes.pop(d.job, None)
                if d.job in self.runners:
                    self.runners[d.job].retiring = True
            elif isinstance(d, HandOver):
                self.leaving.setdefault(d.job, d)
            else:
                self.changes[d.job] = d
        self.tick()

    def _add(self, d: Add) -> None:
        r = self.runners.get(d.job)
        if r is None:
            self.make_runner(d.job, d.settings)  # its series exist from now (Runner)
        elif isinstance(self.leaving.get(d.job), Retire):  # removed, then back before it retired
            del self.leaving[d.job]
            r.retiring = False
            if d.settings != r.s:
                self.changes[d.job] = Reconfigure(d.job, d.settings, r.s.mode == "service")
        self.queues.want(d.job, d.settings.election_prefix)
        self.checkers.sync(d.job, d.settings.health)

    # -- carrying out ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Once per cycle, after the runs' reports: move every decision on that can move."""
        for name, d in list(self.leaving.items()):
            if self._between_runs(name, d.reason if d.stop else None):
                del self.leaving[name]
                self._hand_over(name, d)
        for name, c in list(self.changes.items()):
            if name in self.leaving:
                continue  # after the hand-over
            # A slot claimed ahead is a run on its way: it starts under the settings it was
            # claimed under, on its one claim (S3). Given back here, the new plan claimed it
            # again and ran it: two claims of one slot.
            if self._between_runs(name, "reconfigured" if c.stop else None) and not (
                self._claimed_ahead(name)
            ):
                del self.changes[name]
                r = self.runners[name]
                r.reconfigure(c.settings)
                self.checkers.sync(name, c.settings.health)

    def _between_runs(self, name: str, stop: str | None) -> bool:
        """Whether ``name``'s runs are over; ``stop``: stop them (a reason) meanwhile."""
        r = self.runners.get(name)
        if r is None:
            return True
        if r.runs and stop is not None:
            for active in r.runs:
                active.run.stop(stop)
        return not r.runs

    def _claimed_ahead(self, name: str) -> bool:
        r = self.runners.get(name)
        return r is not None and r.tenure is not None and r.tenure.ahead is not None

    def _hand_over(self, name: str, d: HandOver | Retire) -> None:
        """The job's run is dead: give its claim ahead back, then leave or step back."""
        r = self.runners.get(name)
        if r is None:
            return
        r.give_back_ahead()  # before the key goes: the successor runs that slot
        if isinstance(d, Retire):
            t = self.queues.withdraw(name)
        elif name in self.queues.keys:
            t = self.queues.requeue(name)
        else:
            t = None
        if t is not None:
            self.on_transition(t)
        if isinstance(d, Retire):
            self.checkers.drop(name)
            r.flush()  # its last records: nobody writes them once it is forgotten
            del self.runners[name]
            if self.metrics is not None:
                self.metrics.forget(name)
            self.log.info("job.retired", job=name)

    def leave_all(self, reason: str, *, kill: bool) -> bool:
        """The whole replica leaves (shutdown, its own gate, lock done, fatal): every job's run
        stopped (``kill``: killed); True once all are dead and every claim ahead is given back
        (then the lease may be resigned)."""
        done = True
        for r in self.runners.values():
            for active in r.runs:
                active.run.stop(reason)
                if kill:
                    active.run.kill(reason)
            done = done and not r.runs
        if done:
            for r in self.runners.values():
                r.give_back_ahead()  # before the key goes: the successor runs that slot
        return done
