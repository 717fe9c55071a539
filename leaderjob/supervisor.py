"""Runs one job under a watchdog process, and reports how it ended.

The daemon side of :mod:`leaderjob.watchdog`. A :class:`Run` starts the watchdog with two pipes
(control in, status out), hands it the command, environment, local deadline and grace, then moves
the deadline forward after each renewal. The job's stdout and stderr pass through the watchdog
to the daemon's own, and their last 4 KiB come back with the exit report (:attr:`Run.tails`).

Everything here is non-blocking except :meth:`Run.start`, which waits for the watchdog to confirm
that the job started — at most for the budget it is given (the daemon gives the time left before
``D − grace``, after which the watchdog would refuse anyway). A start not confirmed by then is
given up for certain: the control pipe is closed, so the watchdog either refuses to exec or, if it
just did, kills the job at once. Such a run still exists until its watchdog exits (``done``); the
caller must keep tracking it until then.

Writes to the control pipe never block: what does not fit waits in a buffer for the next write.
If the watchdog is killed outright, its status pipe ends without an exit report: the job's main
process has died of PDEATHSIG, and :class:`Run` SIGKILLs the job's process group at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderjob import tail
from leaderjob.clock import Wakeable

_WATCHDOG = str(Path(__file__).with_name("watchdog.py"))
#: Linux's F_SETPIPE_SZ (the fallback is its value, for a fcntl module built without it).
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
#: The control pipe is grown to hold a whole start request up to this size (the default limit
#: for unprivileged processes, /proc/sys/fs/pipe-max-size); a larger one is written in parts.
_PIPE_MAX = 1 << 20
#: Linux's default pipe capacity: a start request up to this size fits as it is.
_PIPE_DEFAULT = 1 << 16


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
    confirmed: bool = False  # the watchdog reported the job's pid within the start budget
    signals: list[Signal] = field(default_factory=list)
    #: The last output of the job (leaderjob.tail): stdout_tail, stdout_truncated, stderr_…
    tails: dict[str, Any] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None
    _ctl: int | None = None
    _out: bytes = b""  # written to the control pipe as it drains
    _events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    def start(self, started_at: float, wait: float) -> None:
        """Start the watchdog and, through it, the job; wait at most ``wait`` seconds for it to
        confirm. Sets ``confirmed`` and ``pid``, or ``error``. Never raises for a start that
        fails; an unconfirmed run may still be ending (see ``done``)."""
        self.started_at = started_at
        until = time.monotonic() + max(0.0, wait)
        try:
            self._spawn()
        except OSError as exc:  # no pipe, no process (EMFILE, EAGAIN, ENOMEM): a failed start
            self._close_ctl()
            self.error = f"cannot start the watchdog: {exc.strerror or exc}"
            self._done.set()
            return
        with self._cond:
            while self.pid is None and not self._done.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._flush()
                # While part of the start request waits to be written, poll for the pipe to drain.
                self._cond.wait(min(left, 0.01) if self._out else left)
            self.confirmed = self.pid is not None
            if not self.confirmed:
                # Given up: with the pipe closed the watchdog cannot exec the job any more, and
                # kills it at once if it just did. The run ends by itself; "started" from now on
                # is late and is not a confirmation.
                self._close_ctl()
                if self.error is None:
                    self.error = f"the watchdog did not confirm the start within {wait:.3f}s"

    def _spawn(self) -> None:
        ctl_r, ctl_w = os.pipe()
        try:
            st_r, st_w = os.pipe()
        except OSError:
            os.close(ctl_r)
            os.close(ctl_w)
            raise
        self._ctl = ctl_w
        try:
            first = {
                "argv": list(self.argv),
                "env": dict(self.env),
                "deadline": self.deadline,
                "grace": self.grace,
            }
            self._out = (json.dumps(first) + "\n").encode()
            if len(self._out) > _PIPE_DEFAULT:
                with contextlib.suppress(OSError):  # a smaller pipe is written in parts
                    fcntl.fcntl(ctl_w, _F_SETPIPE_SZ, min(len(self._out), _PIPE_MAX))
            os.set_blocking(ctl_w, False)
            # Written before the watchdog exists: it finds its start request waiting.
            self._flush()
            self._proc = subprocess.Popen(
                [sys.executable, "-S", _WATCHDOG, str(ctl_r), str(st_w)],
                stdin=subprocess.DEVNULL,
                pass_fds=(ctl_r, st_w),
                start_new_session=True,  # our process group's signals are the daemon's business
            )
        except OSError:
            os.close(st_r)
            raise
        finally:
            os.close(ctl_r)
            os.close(st_w)
        reader = threading.Thread(
            target=self._read_status, args=(st_r,), name="leaderjob-run", daemon=True
        )
        reader.start()

    def _read_status(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            for line in f:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                with self._cond:
                    self._apply(msg)
                    self._cond.notify_all()
                self.wakeup.set()
        if self._proc is not None:
            self._proc.wait()
        with self._cond:
            if self.returncode is None and self.pid is not None:
                # The watchdog was killed (not the daemon): its job's main process died of
                # PDEATHSIG, but the rest of its group did not. Kill the group here.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.error = self.error or "the watchdog ended without reporting the job's exit"
            elif self.returncode is None and self.error is None:
                self.error = "the watchdog ended without starting the job"
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
        if "tail" in msg:
            tail.absorb(self.tails, msg)
            return  # data for the record, not an event
        self._events.append(msg)

    def _send(self, msg: dict[str, Any]) -> None:
        if self._ctl is None:
            return
        self._out += (json.dumps(msg) + "\n").encode()
        self._flush()

    def _flush(self) -> None:
        """Write what the pipe takes now; keep the rest for the next write (never block)."""
        while self._out and self._ctl is not None:
            try:
                n = os.write(self._ctl, self._out)
            except BlockingIOError:
                return  # the watchdog is not reading (slow, frozen): it keeps the old D meanwhile
            except OSError:  # the watchdog is gone: its exit report is on its way
                self._close_ctl()
                return
            self._out = self._out[n:]

    def _close_ctl(self) -> None:
        self._out = b""
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
        if not self.confirmed:
            return "failed_to_start"
        if self.error is not None:
            return "watchdog_failed"
        if self.stop_reason is not None and self.signals:
            return self.stop_reason
        if any(s.reason == "deadline" for s in self.signals):
            return "killed_at_deadline"
        return "succeeded" if self.returncode == 0 else "failed"
