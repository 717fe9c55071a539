"""A job's run under the daemon's guardian, as the daemon sees it: its start, its deadline, its
controls and how it ended.

A :class:`Run` hands the guardian (:class:`leaderjob.guard.supervisor.GuardianProcess`) the
command, environment, local deadline and grace, then moves the deadline forward after each
renewal; the guardian's reports reach it through the guardian's reader thread.

Starting a run is two steps, so that many runs can be started together:

* :meth:`Run.request` sends the start request and returns at once (a write to a pipe). It
  carries a limit, ``start_by`` (now + the ``wait`` the caller gives, on the deadline clock):
  past it the guardian refuses to exec, so a start given up on never happens later. The guardian
  still checks the run's ``D`` (and that the daemon is alive) itself, immediately before exec.
* :meth:`Run.confirm` reads the answer: True once the guardian reported the exec (``pid``),
  False if the start failed or ``start_by`` passed without a report (the run is then killed at
  once, should that report be on its way), None while the answer may still come. ``confirm()``
  never blocks; ``confirm(wait=s)`` waits at most ``s`` seconds, never past ``start_by``. A
  caller that does not wait asks again by ``start_by`` at the latest (a guardian that says
  nothing sends no report to wake it).

:meth:`Run.start` is both, waiting for the answer (the daemon gives the time left before
``D − grace``, after which the guardian would refuse anyway). A requested run counts as running
from the request on: it still exists, confirmed or not, until the guardian reports its exit
(``done``); the caller must keep tracking it until then. Nothing else here blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from leaderjob.clock import Wakeable
from leaderjob.clock import now as clock_now
from leaderjob.guard.supervisor import GuardianProcess


@dataclass
class Signal:
    name: str  # SIGTERM | SIGKILL
    reason: str  # deadline | grace | daemon_gone | <the stop reason the daemon gave>


@dataclass
class Run:
    argv: Sequence[str]
    env: Mapping[str, str]
    deadline: float
    grace: float
    wakeup: Wakeable
    run_id: str = ""
    token: int = 0
    cwd: str | None = None  # the job's directory (None: the daemon's)
    started_at: float = 0.0  # monotonic
    #: The guardian execs the job only before this (the deadline clock; set by ``request``).
    start_by: float = 0.0
    pid: int | None = None
    returncode: int | None = None
    error: str | None = None
    stop_reason: str | None = None
    confirmed: bool = False  # the guardian reported the job's pid within the start budget
    signals: list[Signal] = field(default_factory=list)
    #: Monotonic times of the start's steps: the guardian ready (earlier than ``started_at``:
    #: it is started with the daemon), the job exec'd (as the guardian saw it), and the
    #: guardian's report of that read here.
    watchdog_ready_at: float | None = None
    exec_at: float | None = None
    exec_reported_at: float | None = None
    #: The last output of the job: stdout_tail, stdout_truncated, stderr_…
    tails: dict[str, Any] = field(default_factory=dict)
    guardian: GuardianProcess | None = None
    key: str = ""
    #: The run started a guardian of its own (no daemon's guardian): closing the run closes it.
    own: bool = False
    _events: list[dict[str, Any]] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)
    _wait: float = 0.0
    #: The answer to the start request, once known (see ``confirm``).
    _answer: bool | None = None
    #: A caller blocks in ``confirm`` (the guardian's lock held when read or written).
    _waiting: bool = False

    def start(
        self, started_at: float, wait: float, guardian: GuardianProcess | None = None
    ) -> None:
        """Start the job through ``guardian`` (the daemon's) or a guardian of its own; wait at
        most ``wait`` seconds for it to confirm: :meth:`request`, then :meth:`confirm` that
        waits. Sets ``confirmed`` and ``pid``, or ``error``. Never raises for a start that
        fails; an unconfirmed run may still be ending (``done``)."""
        self.request(started_at, wait, guardian)
        self.confirm(wait=wait)

    def request(
        self, started_at: float, wait: float, guardian: GuardianProcess | None = None
    ) -> None:
        """Ask for the job's start and return at once (a write to a pipe, never a wait).

        The guardian execs the job only within ``wait`` seconds from now (``start_by``, on the
        deadline clock) and while more than ``grace`` is left before ``deadline``: past that it
        refuses, so a start the caller gives up on never happens later. The answer is read
        with :meth:`confirm`; the caller's wake-up is set when it arrives. From now until the
        run is ``done`` it counts as running (tracked; no second copy, no revoke)."""
        self.started_at = started_at
        self._wait = max(0.0, wait)
        self.start_by = clock_now() + self._wait
        guardian = guardian or self.guardian
        if guardian is None or not guardian.alive:
            try:
                guardian = GuardianProcess.spawn()
            except OSError as exc:  # no pipe, no process (EMFILE, EAGAIN, ENOMEM): failed start
                self.error = f"cannot start the guardian: {exc.strerror or exc}"
                self._answer = False
                self._done.set()
                return
            self.own = True
        self.guardian = guardian
        request = {
            "argv": list(self.argv),
            "env": dict(self.env),
            "deadline": self.deadline,
            "grace": self.grace,
            "cwd": self.cwd,
            # Past this the guardian refuses to exec: a start given up on never happens later.
            "start_by": self.start_by,
        }
        self.key = guardian.attach(self, request)

    def confirm(self, wait: float = 0.0) -> bool | None:
        """The answer to :meth:`request`: True once the guardian reported the exec
        (``confirmed``, ``pid``); False if the start failed (``error``) or ``start_by`` passed
        without a report — then the run is given up on: killed at once should the report be on
        its way, and ``done`` once the guardian says so; None while the answer may still come.
        Waits at most ``wait`` seconds for it (0: never blocks). Once given, the answer stays."""
        g = self.guardian
        if self._answer is not None or g is None:
            return self._answer
        with g.cond:
            until = min(self.start_by, clock_now() + max(0.0, wait))
            self._waiting = True  # the reader need not wake the caller's loop: it waits here
            try:
                while self.pid is None and not self._done.is_set():
                    left = until - clock_now()
                    if left <= 0:
                        break
                    g._flush()
                    # While part of the start request waits to be written, poll for the pipe to
                    # drain.
                    g.cond.wait(min(left, 0.01) if g.out else left)
            finally:
                self._waiting = False
            if self.pid is None and not self._done.is_set() and clock_now() < self.start_by:
                g._flush()
                return None
            self.confirmed = self.pid is not None
            self._answer = self.confirmed
            # Answered, or given up on: either way no report need wait for this start any more.
            g.unanswered.discard(self.key)
        if not self.confirmed:
            # Given up: past ``start_by`` the guardian cannot exec the job any more; if it just
            # did, the kill below ends it at once. "started" from now on is not a confirmation.
            self.kill("failed_to_start")
            if self.error is None:
                self.error = f"the guardian did not confirm the start within {self._wait:.3f}s"
        return self._answer

    def _apply(self, msg: dict[str, Any]) -> bool:
        """One report of the guardian (its lock held); True if it ends the run."""
        if self.guardian is not None and self.watchdog_ready_at is None:
            self.watchdog_ready_at = self.guardian.ready_at
        if "started" in msg:
            self.pid = int(msg["started"])
            # The guardian says when it saw the exec, on this same clock (it is told which).
            self.exec_reported_at = clock_now()
            self.exec_at = float(msg["at"]) if "at" in msg else self.exec_reported_at
        if "error" in msg:
            self.error = str(msg["error"])
        if "signal" in msg:
            self.signals.append(Signal(str(msg["signal"]), str(msg["reason"])))
        if "tails" in msg and isinstance(msg["tails"], dict):
            self.tails = dict(msg["tails"])
        if "exited" in msg:
            self.returncode = int(msg["exited"]) if msg["exited"] is not None else None
        event = {k: v for k, v in msg.items() if k not in ("run", "tails")}
        self._events.append(event)
        if "exited" in msg:
            # Reported only after the job and every descendant were reaped: the run is over.
            self._done.set()
            return True
        return False

    def _ended(self) -> None:
        """The guardian exited without reporting this run's end (its lock held)."""
        if self.pid is not None:
            self.error = self.error or "the guardian ended without reporting the job's exit"
        elif self.error is None:
            self.error = "the guardian ended without starting the job"
        self._done.set()

    def _send(self, msg: dict[str, Any]) -> None:
        g = self.guardian
        if g is None or self._done.is_set():
            return  # a finished run's controls go nowhere
        g.send({"run": self.key, **msg})

    # -- the daemon's controls ---------------------------------------------------------------

    def extend(self, deadline: float) -> None:
        if deadline > self.deadline:
            self.deadline = deadline
            self._send({"deadline": deadline})

    def stop(self, reason: str) -> None:
        """SIGTERM the job's group now, SIGKILL it ``grace`` later (or before the deadline)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self._send({"stop": reason})

    def kill(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self._send({"kill": reason})

    def take_events(self) -> list[dict[str, Any]]:
        g = self.guardian
        if g is None:
            events, self._events = self._events, []
            return events
        if not self._events:
            # Nothing yet, seen without the lock: an event added just after wakes the loop
            # (the reader sets the waker after it), and the next collection takes it.
            return []
        with g.lock:
            events, self._events = self._events, []
        return events

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def close(self) -> None:
        """If the job still runs, it is killed at once (a guardian of its own exits)."""
        if self.own and self.guardian is not None:
            self.guardian.close()
        elif not self.done:
            self._send({"kill": "daemon_gone"})

    @property
    def outcome(self) -> str:
        if not self.confirmed:
            return "failed_to_start"
        if self.error is not None:
            return "watchdog_failed"
        if self.stop_reason is not None and self.signals:
            return self.stop_reason
        if any(s.reason == "deadline" for s in self.signals):
            return "killed_at_deadline"
        return "succeeded" if self.returncode == 0 else "failed"
