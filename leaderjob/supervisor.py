"""Runs one job under a watchdog process, and reports how it ended.

The daemon side of :mod:`leaderjob.watchdog`. A :class:`Run` starts the watchdog with two pipes
(control in, status out), hands it the command, environment, local deadline and grace, then moves
the deadline forward after each renewal. The job's stdout and stderr are the daemon's own: they
pass straight through.

Everything here is non-blocking except :meth:`Run.start`, which waits (briefly) for the watchdog to
confirm that the job started, so that a command that cannot be executed is reported at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderjob.clock import Wakeable

_WATCHDOG = str(Path(__file__).with_name("watchdog.py"))


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
    started_at: float = 0.0  # monotonic
    pid: int | None = None
    returncode: int | None = None
    error: str | None = None
    stop_reason: str | None = None
    signals: list[Signal] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _ctl: int | None = None
    _events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    def start(self, started_at: float) -> None:
        """Start the watchdog and, through it, the job. Sets ``pid`` or ``error``."""
        self.started_at = started_at
        ctl_r, ctl_w = os.pipe()
        st_r, st_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", _WATCHDOG, str(ctl_r), str(st_w)],
                stdin=subprocess.DEVNULL,
                pass_fds=(ctl_r, st_w),
                start_new_session=True,  # our process group's signals are the daemon's business
            )
        finally:
            os.close(ctl_r)
            os.close(st_w)
        self._ctl = ctl_w
        first = {
            "argv": list(self.argv),
            "env": dict(self.env),
            "deadline": self.deadline,
            "grace": self.grace,
        }
        self._send(first)
        reader = threading.Thread(
            target=self._read_status, args=(st_r,), name="leaderjob-run", daemon=True
        )
        reader.start()
        # Wait for "started" (or an error, or the watchdog's end) so that callers know the pid.
        with self._cond:
            self._cond.wait_for(lambda: self.pid is not None or self._done.is_set(), 10.0)

    def _read_status(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            for line in f:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                with self._cond:
                    self._apply(msg)
                    self._cond.notify_all()
                self.wakeup.set()
        if self._proc is not None:
            self._proc.wait()
        with self._cond:
            if self.returncode is None and self.error is None:
                self.error = "watchdog ended without reporting the job's exit"
            self._done.set()
            self._cond.notify_all()
        self.wakeup.set()

    def _apply(self, msg: dict[str, Any]) -> None:
        if "started" in msg:
            self.pid = int(msg["started"])
        if "error" in msg:
            self.error = str(msg["error"])
        if "signal" in msg:
            self.signals.append(Signal(str(msg["signal"]), str(msg["reason"])))
        if "exited" in msg:
            self.returncode = int(msg["exited"])
        self._events.append(msg)

    def _send(self, msg: dict[str, Any]) -> None:
        if self._ctl is None:
            return
        try:
            os.write(self._ctl, (json.dumps(msg) + "\n").encode())
        except OSError:  # the watchdog is gone: its exit report is on its way
            self._close_ctl()

    def _close_ctl(self) -> None:
        if self._ctl is not None:
            with contextlib.suppress(OSError):
                os.close(self._ctl)
            self._ctl = None

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
        with self._lock:
            events, self._events = self._events, []
        return events

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def close(self) -> None:
        """Release the control pipe; if the job still runs, the watchdog kills it at once."""
        self._close_ctl()

    @property
    def outcome(self) -> str:
        if self.error is not None and self.returncode is None:
            return "failed_to_start"
        if self.stop_reason is not None and self.signals:
            return self.stop_reason
        if any(s.reason == "deadline" for s in self.signals):
            return "killed_at_deadline"
        return "succeeded" if self.returncode == 0 else "failed"
