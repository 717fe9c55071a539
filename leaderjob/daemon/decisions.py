"""What the daemon's policies decide about one job, as plain data.

Reload (:mod:`.reload`), the per-job health gates (:mod:`.gates`) and spreading
(:mod:`.spreading`) look at a :class:`JobView` of each job and return decisions; the daemon
carries them out through one path (:mod:`.applier`). No policy changes a runner, the session or
the election itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from leaderjob.daemon.model import Settings


@dataclass(frozen=True)
class JobView:
    """What a policy may know of one job this cycle."""

    name: str
    settings: Settings
    leading: bool
    #: Between runs: nothing running, nothing pending, no slot claimed ahead.
    idle: bool
    running: bool
    #: This replica holds a key in the job's queue (leading or waiting).
    queued: bool
    #: On its way out (handed over, retiring): no policy acts on it again.
    leaving: bool


@dataclass(frozen=True)
class Add:
    """A job new to the jobs file: a runner, a candidacy, its health gate."""

    job: str
    settings: Settings


@dataclass(frozen=True)
class HandOver:
    """Hand ``job`` over because of ``reason`` and queue again at the back (a standby key just
    steps back). ``stop``: stop its run now; else wait for the run to end on its own."""

    job: str
    reason: str
    stop: bool = True


@dataclass(frozen=True)
class Retire:
    """``job`` left the jobs file: hand it over (as :class:`HandOver`), withdraw from its queue
    instead of queueing again, stop its health gate, forget it and its series."""

    job: str
    reason: str = "removed"
    stop: bool = False


@dataclass(frozen=True)
class Reconfigure:
    """``job`` takes ``settings`` between runs (``stop``: stop its run first: a service's run
    never ends on its own). A slot claimed ahead counts as a run on its way: it starts under
    the old settings first. Slots already claimed are never run again."""

    job: str
    settings: Settings
    stop: bool = False


Decision = Add | HandOver | Retire | Reconfigure
