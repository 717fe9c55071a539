"""When a scheduled job is *due* a success: what the freshness alert compares the last success
with (``leaderjob_job_due_timestamp_seconds``).

A job is overdue when no run has succeeded since the fire time before the newest one: the run
of that slot did not succeed, and the newest slot's run has not (yet) either. So the alert waits
for the job's own interval — whatever the schedule says it is at that moment: an hour for an
hourly job, three days over a weekend for a weekday job — plus a grace for the newest run.

Only fire times since ``since`` (when this replica began to watch the schedule) count: a replica
that has not yet seen two fire times says nothing (None), so a fresh deployment, or a reload that
changed the schedule, never looks overdue before its job had the chance to run twice. Pure:
the caller hands in the wall-clock time.
"""

from __future__ import annotations

import threading
from datetime import datetime

from leaderjob.schedule import Schedule

#: Fire times stepped over in one call at most (after a long suspension of the process or a
#: clock that jumped ahead, the answer catches up over later calls, lagging meanwhile: it can
#: only be too early a due time, never a spurious alert).
MAX_STEPS = 10_000


class DueWatch:
    """The fire times of ``schedule`` as they pass, from ``since`` on."""

    def __init__(self, schedule: Schedule, since: datetime) -> None:
        self.schedule = schedule
        self._next = schedule.next_after(since)
        self._newest: datetime | None = None
        self._before: datetime | None = None
        self._lock = threading.Lock()  # scrapes may come from several threads

    def due(self, now: datetime) -> datetime | None:
        """The fire time before the newest one at or before ``now``; None until two passed."""
        with self._lock:
            for _ in range(MAX_STEPS):
                if self._next > now:
                    break
                self._before, self._newest = self._newest, self._next
                self._next = self.schedule.next_after(self._next)
            return self._before

    def timestamp(self, now: datetime) -> float:
        """:meth:`due` as a Unix time, 0 for none (the gauge's value)."""
        due = self.due(now)
        return 0.0 if due is None else due.timestamp()
