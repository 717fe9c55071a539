"""What the endpoints, the CLI's in-process API and the tests read of a daemon: its jobs' runner,
runs and tenure, the session's contact and fatal error, why it is leaving. Read only (but the
exit code and the leaving reason, which the loop's owner may set); nothing here decides.

:class:`~leaderjob.daemon.loop.Daemon` is built on it: the loop keeps its state, this names the
parts of it that others read.
"""

from __future__ import annotations

from datetime import datetime

from leaderjob.daemon.leaving import Leaving
from leaderjob.daemon.model import ActiveRun, Tenure
from leaderjob.daemon.runner import Runner
from leaderjob.daemon.session import Session
from leaderjob.daemon.transitions import Transitions
from leaderjob.election.machine import DEFAULT
from leaderjob.history.records import ElectionData
from leaderjob.schedule.planner import Planner


class DaemonView:
    """The read side of a daemon (the loop sets these attributes)."""

    runners: dict[str, Runner]
    grouped: bool
    session: Session
    transitions: Transitions
    departure: Leaving

    @property
    def runner(self) -> Runner:
        """The single-job form's one runner (a group's: its first current job, for tests)."""
        return self.runners.get(DEFAULT) or next(iter(self.runners.values()))

    @property
    def runs(self) -> list[ActiveRun]:
        """Every job's runs (read only: each runner owns its list)."""
        if not self.grouped:
            return self.runner.runs
        return [a for r in self.runners.values() for a in r.runs]

    def _running(self) -> bool:
        """Whether any job's run goes on (without building the list of every run)."""
        return any(r.runs for r in self.runners.values())

    @property
    def tenure(self) -> Tenure | None:
        return self.runner.tenure

    @property
    def planner(self) -> Planner | None:
        return self.runner.planner

    @property
    def data(self) -> ElectionData:
        return self.runner.data

    @property
    def exit_code(self) -> int:
        return self.runner.exit_code

    @exit_code.setter
    def exit_code(self, code: int) -> None:
        self.runner.exit_code = code

    @property
    def leaving(self) -> str | None:
        """Why we are handing over: shutdown, unhealthy, lock_done, fatal (None: we stay)."""
        return self.departure.reason

    @leaving.setter
    def leaving(self, reason: str | None) -> None:
        self.departure.reason = reason

    @property
    def leading_since(self) -> datetime | None:
        return self.transitions.leading_since

    @property
    def fatal(self) -> str | None:
        return self.session.fatal

    @property
    def last_contact(self) -> float | None:
        return self.session.last_contact
