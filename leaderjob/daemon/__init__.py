"""The daemon: the loop (:mod:`.loop`), the shared lease and its deadline (:mod:`.session`), one
job's tenure (:mod:`.runner`) and its scheduling (:mod:`.scheduling`); :mod:`.model` holds the
data they share."""

from leaderjob.daemon.loop import Daemon
from leaderjob.daemon.model import (
    EXIT_LOST,
    EXIT_REJECTED,
    MAX_BACKLOG,
    RETRY_BASE,
    RETRY_CAP,
    SERVICE_RESTART_DELAY,
    ActiveRun,
    Concurrency,
    Mode,
    Pending,
    Report,
    Settings,
    Tenure,
)

__all__ = [
    "EXIT_LOST",
    "EXIT_REJECTED",
    "MAX_BACKLOG",
    "RETRY_BASE",
    "RETRY_CAP",
    "SERVICE_RESTART_DELAY",
    "ActiveRun",
    "Concurrency",
    "Daemon",
    "Mode",
    "Pending",
    "Report",
    "Settings",
    "Tenure",
]
