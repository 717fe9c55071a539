"""The next fire times of a job, in its time zone, with what DST does to them — pure.

The same fire times as `leaderjob next` (the schedule's own search), each as `next` prints it
(UTC, then the local time with its offset and zone abbreviation), and a note where the zone's
offset changes between two fire times: the clocks went forward or back in between, so the
local times on either side of the note are not evenly spaced although the schedule is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from leaderjob.schedule import Schedule, ScheduleError


@dataclass(frozen=True)
class Fire:
    at: datetime  # UTC
    local: datetime
    zone: str  # the abbreviation in force: CET, CEST
    note: str = ""  # a DST change since the previous fire time

    @property
    def line(self) -> str:
        """As `leaderjob next` prints it."""
        utc = self.at.isoformat().replace("+00:00", "Z")
        return f"{utc}  {self.local.isoformat()} {self.zone}"


def upcoming(schedule: Schedule, after: datetime, count: int) -> list[Fire]:
    """The next ``count`` fire times after ``after`` (fewer if the schedule ends)."""
    fires: list[Fire] = []
    t = after
    previous = after.astimezone(schedule.zone).utcoffset()
    for _ in range(count):
        try:
            t = schedule.next_after(t)
        except ScheduleError:
            break
        local = t.astimezone(schedule.zone)
        offset = local.utcoffset()
        note = ""
        if previous is not None and offset is not None and offset != previous:
            note = dst_note(previous, offset, local.tzname() or "")
        fires.append(Fire(t, local, local.tzname() or "", note))
        previous = offset
    return fires


def dst_note(before: timedelta, after: timedelta, zone: str) -> str:
    """What a change of the zone's offset means for the local fire times."""
    shift = after - before
    minutes = abs(int(shift.total_seconds())) // 60
    amount = f"{minutes // 60}h" + (f"{minutes % 60:02d}m" if minutes % 60 else "")
    if shift > timedelta(0):
        return (
            f"clocks go forward {amount} before this one (now {zone}): local times in the "
            "skipped hour fire once, at the end of the gap"
        )
    return (
        f"clocks go back {amount} before this one (now {zone}): a local time in the repeated "
        "hour fires at its first occurrence"
    )
