"""The one error every part of the schedule raises for input that cannot be used."""

from __future__ import annotations


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the bad part and what to write instead."""
