"""What the daemon's modules share: the settings of one job, the report of one cycle, and the
records of one tenure (its runs, its pending starts). Data only: no I/O, no rules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from leaderjob.config import Timing, election_prefix
from leaderjob.guard.run import Run
from leaderjob.history.records import Control
from leaderjob.ops.health import HealthSettings
from leaderjob.ops.notify import NotifySettings
from leaderjob.schedule import Schedule
from leaderjob.schedule.planner import CatchUp, Slot, SlotClock

Mode = Literal["schedule", "service", "once"]
Concurrency = Literal["forbid", "replace", "allow"]

#: Exit code of `leaderjob lock` when leadership was lost before the command finished.
EXIT_LOST = 4
#: Exit code when etcd rejects us (credentials, permissions, TLS).
EXIT_REJECTED = 1
#: Wait before restarting a service-mode command that exited.
SERVICE_RESTART_DELAY = 1.0
#: Retry backoff: 1 s, 2 s, 4 s … capped.
RETRY_BASE, RETRY_CAP = 1.0, 60.0
#: History records waiting for a cycle with time to spare; beyond this the oldest are dropped.
MAX_BACKLOG = 100


@dataclass(frozen=True)
class Settings:
    election: str
    prefix: str  # the key prefix root; the election lives under <prefix>/<election>/
    identity: str
    timing: Timing
    command: tuple[str, ...]
    mode: Mode = "schedule"
    schedule: Schedule | None = None
    rpc_timeout: float = 5.0
    catch_up: CatchUp = "once"
    starting_deadline: float | None = None
    jitter: float = 0.0
    concurrency: Concurrency = "forbid"
    timeout: float | None = None
    retries: int = 0
    history_limit: int = 50
    endpoints: tuple[str, ...] = ()  # handed to the job for fenced writes, never credentials
    #: A job's own health gate (jobs file: health-cmd / health-url); the daemon's is separate.
    health: HealthSettings | None = None
    #: What to tell when a run starts, fails or succeeds (--on-failure, --ping-url).
    notify: NotifySettings = field(default_factory=NotifySettings)
    #: A job's own environment (jobs file: env), under its LEADERJOB_* context.
    job_env: tuple[tuple[str, str], ...] = ()
    #: Suspended by its jobs file (suspend = true): leads, starts no run.
    paused: bool = False
    #: The directory its command runs in (jobs file: workdir; None: the daemon's).
    workdir: str | None = None

    @property
    def election_prefix(self) -> str:
        return election_prefix(self.prefix, self.election)


@dataclass(frozen=True)
class Report:
    """What one cycle decided, in one word, with a few facts."""

    action: str
    detail: Mapping[str, Any] | None = None


@dataclass
class ActiveRun:
    run: Run
    slot: str
    scheduled: datetime
    attempt: int
    timeout_at: float | None


@dataclass
class Pending:
    """A slot waiting to start: a retry after backoff, or a replacement waiting for the old run."""

    slot: str
    scheduled: datetime
    attempt: int
    not_before: float
    token: int
    fire: Slot | None = None  # set when the slot still has to be claimed (catch-up)
    #: A claimed replacement (``--concurrency replace``): only the newest one waits, and only
    #: until its starting deadline.
    replacing: Slot | None = None


@dataclass
class Tenure:
    """What belongs to one term of leadership, dropped as a whole when it ends."""

    token: int
    #: The wall time it began: `status` and `/leader` say since when this replica leads.
    since: datetime | None = None
    ready: bool = False  # catch-up decided
    published: bool = False  # state/schedule published (a service's or lock's: state/tenure)
    #: When the control switches next need this job's attention (a wake-up time).
    control_at: float = 0.0
    #: The switches as last read (triggers not yet acted on), and when that read was sent: by
    #: the confirmation of our key, or (once, at the start of the tenure) by a read of their own.
    control: Control | None = None
    control_read_at: float = -math.inf
    #: When the newest claim, ahead of our clock, is next re-read (a repair takes effect).
    skew_read_at: float = 0.0
    #: As last read; None until read. Informational: a claim to run is itself refused while the
    #: election is suspended, and a retry reads the switch before it starts.
    suspended: bool | None = None
    pending: list[Pending] = field(default_factory=list)
    #: The newest slot claimed in etcd: read at the start of the tenure, then ours. Slots only
    #: move forward from it, whatever the wall clock does (a backward step waits it out).
    last_claimed: datetime | None = None
    #: The time slots are planned by: the wall clock, held back after a jump (planner.SlotClock).
    slot_clock: SlotClock = field(default_factory=SlotClock)
    #: The next slot, claimed ahead of its start (Ahead.claim), and the monotonic
    #: time its claim committed; ``ahead_tried``: the slot last tried (claimed or not), so a
    #: refused claim is not retried before its start; ``ahead_previous``: the newest claim
    #: before it (what ``state/last_slot`` goes back to if the claim is given back).
    ahead: Slot | None = None
    ahead_claimed_at: float = 0.0
    ahead_tried: str | None = None
    ahead_previous: datetime | None = None
