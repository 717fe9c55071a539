"""What every part of one job's runner reads: the job's settings and planner (both replaced
when a reload changes the job), its seat on the shared session, its records in etcd, the clock,
its log (rebound with a tenure's token), its metrics and their election label.

Data only, shared by reference: the runner owns it and changes it (``reconfigure``, the log
rebound by the transitions); its parts (:mod:`.runs`, :mod:`.history`, :mod:`.claims`,
:mod:`.catchup`, :mod:`.switches`, :mod:`.scheduling`) read it, so a change reaches every part at
once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leaderjob.clock import Clock
from leaderjob.daemon.model import Settings
from leaderjob.daemon.session import Seat, Session
from leaderjob.history.records import ElectionData
from leaderjob.schedule.planner import Planner

if TYPE_CHECKING:  # prometheus_client only where metrics are served
    from leaderjob.ops.metrics import Metrics


@dataclass(eq=False)
class JobContext:
    s: Settings
    session: Session
    seat: Seat
    data: ElectionData
    clock: Clock
    log: Any
    #: The daemon's election (a group's name when it runs a jobs file): the metrics' label.
    election: str
    planner: Planner | None = None
    metrics: Metrics | None = None
    #: Unix time this replica last saw the job suspended (0: never); the freshness alert's.
    suspended_seen: float = 0.0
    #: The job's own series of the gauges set at every pass, looked up once (a label lookup
    #: costs more than the set).
    _series: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def gauge(self, name: str) -> Any:
        """The job's series of the gauge ``name`` of its metrics (there must be metrics)."""
        assert self.metrics is not None
        key = (name, self.election, self.s.election)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = getattr(self.metrics, name).labels(*key[1:])
        return found
