"""The policies that move a group's jobs, asked in turn once a cycle: a reload of the jobs file
(:mod:`.reload`), the jobs' own health gates (:mod:`.gates`) and spreading (:mod:`.spreading`).
Each sees the jobs as the applier shows them (:class:`~leaderjob.daemon.decisions.JobView`) and
returns decisions; the applier carries every decision out, the same way whatever the reason
(:mod:`.applier`). Nothing here touches a runner, the session or a transition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock
from leaderjob.daemon.applier import Applier
from leaderjob.daemon.decisions import Decision
from leaderjob.daemon.gates import Checkers, Gates
from leaderjob.daemon.model import Settings
from leaderjob.daemon.reload import Reloader
from leaderjob.daemon.spread import Spreader
from leaderjob.daemon.spreading import Spreading
from leaderjob.election.group import Group

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


class Policies:
    def __init__(
        self,
        applier: Applier,
        checkers: Checkers,
        group: Group,
        *,
        grouped: bool,
        reload: Callable[[], Sequence[Settings]] | None,
        watch: str | None,
        spreader: Spreader | None,
        on_change: Callable[[list[Settings]], None],
        clock: Clock,
        wake: Callable[[], None],
        election: str,
        log: Any,
        metrics: Metrics | None = None,
    ) -> None:
        """``reload`` reads the jobs file again (on SIGHUP, and when the file ``watch``
        changes); ``on_change`` is handed the jobs as they are to be after a reload changed them.
        Only a group (``grouped``) has gates and spreads."""
        self.applier = applier
        self.on_change = on_change
        self.checkers = checkers
        self.election = election
        self.metrics = metrics
        self.reloader = (
            Reloader(
                reload,
                watch,
                clock=clock,
                wake=wake,
                log=log,
                on_failure=self._count_reload_failure,
            )
            if reload is not None
            else None
        )
        self.gates = Gates(checkers, log)
        if grouped:
            for name, settings in applier.settings().items():
                checkers.sync(name, settings.health)
        #: ``--spread off``: a disabled spreader never moves a job.
        self.spreading = (
            Spreading(group, spreader, clock=clock, log=log)
            if spreader is not None and grouped
            else None
        )

    def _count_reload_failure(self) -> None:
        if self.metrics is not None:
            self.metrics.config_reload_failures.labels(self.election).inc()

    def decide(self, leaving: bool) -> bool:
        """The policies decide about the jobs; the applier carries it out (one path). While the
        replica is ``leaving``, nothing spreads. Whether anything was decided or under way
        (then any job may have changed)."""
        a = self.applier
        busy = bool(a.leaving or a.changes)
        self.checkers.start()
        if self.reloader is not None:
            decisions = self.reloader.tick(a.settings)
            if decisions is not None:
                busy = busy or bool(decisions)
                a.apply(decisions)
                if decisions:  # compared anew with the others', republished under our lease
                    self.on_change(list(a.settings().values()))
        # The gates judge only the jobs with a check, or down: a view of every job each cycle
        # cost a thousand jobs' daemon a tenth of its loop in a burst. Spreading reads every
        # job's view, and only when it may move one (not with --spread off).
        gated = self.checkers.by_job.keys() | self.gates.down
        moves: list[Decision] = list(self.gates.decide(a.views(gated))) if gated else []
        if self.spreading is not None and not leaving and self.spreading.active():
            move = self.spreading.decide(a.views())
            if move is not None:
                moves.append(move)
        a.apply(moves)
        return busy or bool(moves) or bool(a.leaving or a.changes)
