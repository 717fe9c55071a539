"""Runs one job under a watchdog process, and reports how it ended.

The daemon side of :mod:`leaderjob.watchdog`. A :class:`WatchdogProcess` is one watchdog with its
two pipes (control in, status out) and the thread that reads its reports; a :class:`Run` hands it
the command, environment, local deadline and grace, then moves the deadline forward after each
renewal. The job's stdout and stderr pass through the watchdog to the daemon's own, and their
last 4 KiB come back with the exit report (:attr:`Run.tails`).

Starting a Python interpreter costs tens of milliseconds of wall and CPU time, so watchdogs are
started ahead and reused (:class:`WatchdogPool`): a *spare* is started while the replica follows
or between runs, and a watchdog whose run ended is kept for the next run of the same tenure. A
watchdog stays a watchdog throughout: it exits at once when the daemon's end of its control pipe
closes (the daemon died, or gave up), and while it supervises a run it kills the job at ``D``
with the daemon frozen. A watchdog that served one tenure never serves another: at the end of a
tenure its idle watchdogs are closed (:meth:`WatchdogPool.discard`).

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
from collections.abc import Callable, Hashable, Mapping, Sequence
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


class WatchdogProcess:
    """One watchdog process: its pipes, its reader thread, the run it serves now (if any)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctl: int | None = None
        self.out = b""  # written to the control pipe as it drains
        #: Monotonic time its ``ready`` report was read (None: not yet).
        self.ready_at: float | None = None
        self.run: Run | None = None  # the run it serves; None while idle
        self.served = 0  # runs started on it
        self.ended = threading.Event()  # its status pipe reached EOF: it has exited
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    @classmethod
    def spawn(cls, wakeup: Wakeable | None = None) -> WatchdogProcess:
        """Start a watchdog that waits for a start request. Raises OSError (no pipe, no
        process); the caller decides whether that is a failed start or a spare not made."""
        self = cls()
        ctl_r, ctl_w = os.pipe()
        try:
            st_r, st_w = os.pipe()
        except OSError:
            os.close(ctl_r)
            os.close(ctl_w)
            raise
        self.ctl = ctl_w
        try:
            os.set_blocking(ctl_w, False)
            self.proc = subprocess.Popen(
                [sys.executable, "-S", _WATCHDOG, str(ctl_r), str(st_w)],
                stdin=subprocess.DEVNULL,
                pass_fds=(ctl_r, st_w),
                start_new_session=True,  # our process group's signals are the daemon's business
            )
        except OSError:
            os.close(st_r)
            os.close(ctl_w)
            self.ctl = None
            raise
        finally:
            os.close(ctl_r)
            os.close(st_w)
        reader = threading.Thread(
            target=self._read_status, args=(st_r, wakeup), name="leaderjob-watchdog", daemon=True
        )
        reader.start()
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        """Running, with its control pipe open (idle, or serving a run)."""
        return self.ctl is not None and not self.ended.is_set()

    @property
    def idle(self) -> bool:
        """Alive, its control pipe open, serving no run: it can take a start request."""
        with self.lock:
            return self.run is None and self.ctl is not None and not self.ended.is_set()

    def attach(self, run: Run, request: dict[str, Any]) -> None:
        """Hand ``run``'s start request to this (idle) watchdog."""
        with self.lock:
            self.run = run
            self.served += 1
        data = (json.dumps(request) + "\n").encode()
        if len(data) > _PIPE_DEFAULT and self.ctl is not None:
            with contextlib.suppress(OSError):  # a smaller pipe is written in parts
                fcntl.fcntl(self.ctl, _F_SETPIPE_SZ, min(len(data), _PIPE_MAX))
        self.send_bytes(data)

    def send_bytes(self, data: bytes) -> None:
        self.out += data
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; keep the rest for the next write (never block)."""
        while self.out and self.ctl is not None:
            try:
                n = os.write(self.ctl, self.out)
            except BlockingIOError:
                return  # the watchdog is not reading (slow, frozen): it keeps the old D meanwhile
            except OSError:  # the watchdog is gone: its exit report is on its way
                self.close()
                return
            self.out = self.out[n:]

    def close(self) -> None:
        """Close the control pipe: the watchdog kills its job, if any, at once and exits."""
        self.out = b""
        if self.ctl is not None:
            with contextlib.suppress(OSError):
                os.close(self.ctl)
            self.ctl = None

    def _read_status(self, fd: int, wakeup: Wakeable | None) -> None:
        with os.fdopen(fd, "rb") as f:
            for line in f:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if "ready" in msg:
                    self.ready_at = time.monotonic()
                with self.lock:
                    run = self.run
                    if run is not None and run._apply(msg):
                        self.run = None  # the run is over: this watchdog is idle again
                if run is not None:
                    run.wakeup.set()
                elif wakeup is not None:
                    wakeup.set()
        if self.proc is not None:
            self.proc.wait()
        with self.lock:
            run, self.run = self.run, None
            self.ended.set()
        if run is not None:
            run._ended()
            run.wakeup.set()


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
    pid: int | None = None
    returncode: int | None = None
    error: str | None = None
    stop_reason: str | None = None
    confirmed: bool = False  # the watchdog reported the job's pid within the start budget
    signals: list[Signal] = field(default_factory=list)
    #: Monotonic times of the start's steps: the watchdog ready (earlier than ``started_at``
    #: when it was started ahead), and its report that the job was exec'd.
    watchdog_ready_at: float | None = None
    exec_at: float | None = None
    #: Ask the watchdog to wait for another start request after this run (a pool keeps it);
    #: cleared when its exit report says it will not (``"last"``).
    reuse: bool = False
    #: The last output of the job (leaderjob.tail): stdout_tail, stdout_truncated, stderr_…
    tails: dict[str, Any] = field(default_factory=dict)
    watchdog: WatchdogProcess | None = None
    _events: list[dict[str, Any]] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)

    def start(
        self, started_at: float, wait: float, watchdog: WatchdogProcess | None = None
    ) -> None:
        """Start the job through ``watchdog`` (an idle one started ahead) or a new watchdog;
        wait at most ``wait`` seconds for it to confirm. Sets ``confirmed`` and ``pid``, or
        ``error``. Never raises for a start that fails; an unconfirmed run may still be ending
        (see ``done``)."""
        self.started_at = started_at
        until = time.monotonic() + max(0.0, wait)
        watchdog = watchdog or self.watchdog
        if watchdog is None or not watchdog.idle:
            try:
                watchdog = WatchdogProcess.spawn()
            except OSError as exc:  # no pipe, no process (EMFILE, EAGAIN, ENOMEM): failed start
                self.error = f"cannot start the watchdog: {exc.strerror or exc}"
                self._done.set()
                return
        self.watchdog = watchdog
        request = {
            "argv": list(self.argv),
            "env": dict(self.env),
            "deadline": self.deadline,
            "grace": self.grace,
            "reuse": self.reuse,
            "cwd": self.cwd,
        }
        watchdog.attach(self, request)
        with watchdog.cond:
            while self.pid is None and not self._done.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                watchdog.flush()
                # While part of the start request waits to be written, poll for the pipe to drain.
                watchdog.cond.wait(min(left, 0.01) if watchdog.out else left)
            self.confirmed = self.pid is not None
            if not self.confirmed:
                # Given up: with the pipe closed the watchdog cannot exec the job any more, and
                # kills it at once if it just did. The run ends by itself; "started" from now on
                # is late and is not a confirmation.
                watchdog.close()
                if self.error is None:
                    self.error = f"the watchdog did not confirm the start within {wait:.3f}s"

    @property
    def _proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.watchdog is None else self.watchdog.proc

    def _apply(self, msg: dict[str, Any]) -> bool:
        """One report of the watchdog (its lock held); True if it ends the run."""
        if self.watchdog is not None and self.watchdog_ready_at is None:
            self.watchdog_ready_at = self.watchdog.ready_at
        if "tail" in msg:
            tail.absorb(self.tails, msg)
            return False  # data for the record, not an event
        if "started" in msg:
            self.pid = int(msg["started"])
            self.exec_at = time.monotonic()
        if "error" in msg:
            self.error = str(msg["error"])
        if "signal" in msg:
            self.signals.append(Signal(str(msg["signal"]), str(msg["reason"])))
        if "exited" in msg:
            self.returncode = int(msg["exited"]) if msg["exited"] is not None else None
            if msg.get("last"):
                self.reuse = False  # the watchdog exits now: it must not be handed a next run
        if "ready" not in msg:
            self._events.append(msg)
        if self.watchdog is not None:
            self.watchdog.cond.notify_all()
        if "exited" in msg:
            # Reported only after the job and every descendant were reaped: the run is over.
            self._done.set()
            return True
        return False

    def _ended(self) -> None:
        """The watchdog exited while serving this run (its lock not held)."""
        assert self.watchdog is not None
        with self.watchdog.cond:
            if self.returncode is None and self.pid is not None:
                # The watchdog was killed (not the daemon): its job's main process died of
                # PDEATHSIG, but the rest of its group did not. Kill the group here.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.error = self.error or "the watchdog ended without reporting the job's exit"
            elif self.returncode is None and self.error is None:
                self.error = "the watchdog ended without starting the job"
            self._done.set()
            self.watchdog.cond.notify_all()

    def _send(self, msg: dict[str, Any]) -> None:
        wd = self.watchdog
        if wd is None:
            return
        with wd.lock:
            # A finished run's watchdog may serve the next run: its controls go nowhere.
            if wd.run is not self:
                return
        wd.send_bytes((json.dumps(msg) + "\n").encode())

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
        wd = self.watchdog
        if wd is None:
            events, self._events = self._events, []
            return events
        with wd.lock:
            events, self._events = self._events, []
        return events

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def close(self) -> None:
        """Release the watchdog: if the job still runs, the watchdog kills it at once."""
        if self.watchdog is not None:
            self.watchdog.close()

    def release(self) -> WatchdogProcess | None:
        """A finished run hands back its watchdog, if it can serve another run."""
        wd = self.watchdog
        if wd is None or not self.done or not self.reuse or self.error is not None:
            return None
        return wd if wd.idle else None

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


#: Idle watchdogs a pool keeps for the next runs of their tenures (beyond this, they exit).
KEEP_IDLE = 4
#: After a spare could not be started (no pipe, no process), the pool tries again this much later,
#: doubled after each failure in a row up to SPARE_RETRY_MAX (runs meanwhile start their own).
SPARE_RETRY = 1.0
SPARE_RETRY_MAX = 60.0


class WatchdogPool:
    """Watchdogs started ahead of their runs, and kept between the runs of one tenure.

    One *spare* — a watchdog that has never served a run — is kept ready (:meth:`fill`, called
    by the loop), so neither a slot nor a handover waits for an interpreter to start. A watchdog
    whose run ended well is given back with its owner (the job and the tenure's token) and serves
    that owner's next run; when the tenure ends, :meth:`discard` closes them (they exit at once),
    so a watchdog never carries anything of a lost tenure into the next. ``enabled`` is off until
    the loop serves: a daemon stepped by hand (the tests) starts every run on a new watchdog.
    """

    def __init__(
        self,
        wakeup: Wakeable | None = None,
        *,
        spawn: Callable[[Wakeable | None], WatchdogProcess] = WatchdogProcess.spawn,
        keep: int = KEEP_IDLE,
    ) -> None:
        self.wakeup = wakeup
        self.spawn = spawn
        self.keep = keep
        self.enabled = False
        self.spares: list[WatchdogProcess] = []
        self.kept: list[tuple[Hashable, WatchdogProcess]] = []
        self.retry_at = 0.0
        self.failures = 0
        #: Every watchdog a spare became, with its owner, until it exits (kept or serving).
        self.served: list[tuple[Hashable, WatchdogProcess]] = []

    def fill(self, now: float, owners: Sequence[Hashable | None] = (None,)) -> str | None:
        """Keep one spare ready for ``owners`` (each job's tenure, None for a job that does not
        lead); the error text if one could not be started. No spare is needed while every
        owner has its own watchdog (kept, or serving its run): a leader of one job then holds
        one idle watchdog, not two."""
        if not self.enabled:
            return None
        self.served = [(o, w) for o, w in self.served if w.alive]
        if all(o is not None and any(o == s for s, _ in self.served) for o in owners):
            return None
        for wd in [w for w in self.spares if not w.idle]:
            wd.close()  # died meanwhile (killed from outside): replaced below
            self.spares.remove(wd)
        if self.spares or now < self.retry_at:
            return None
        try:
            self.spares.append(self.spawn(self.wakeup))
        except OSError as exc:
            self.retry_at = now + min(SPARE_RETRY_MAX, SPARE_RETRY * 2**self.failures)
            self.failures += 1
            return f"cannot start a spare watchdog: {exc.strerror or exc}"
        self.failures = 0
        return None

    def take(self, owner: Hashable) -> WatchdogProcess | None:
        """An idle watchdog for ``owner``'s next run: its own kept one, else a spare, else None."""
        for i, (o, wd) in enumerate(self.kept):
            if o == owner and wd.idle:
                del self.kept[i]
                return wd
        while self.spares:
            wd = self.spares.pop(0)
            if wd.idle:
                self.served.append((owner, wd))
                return wd
            wd.close()
        return None

    def give(self, owner: Hashable, wd: WatchdogProcess) -> None:
        """Keep ``wd`` (its run is over) for ``owner``'s next run, or close it."""
        for o, w in list(self.kept):
            if not w.idle:  # died meanwhile
                w.close()
                self.kept.remove((o, w))
        if not self.enabled or not wd.idle or len(self.kept) >= self.keep:
            wd.close()
            return
        self.kept.append((owner, wd))
        if not any(w is wd for _, w in self.served):
            self.served.append((owner, wd))

    def discard(self, owner: Hashable) -> int:
        """``owner``'s tenure ended: its kept watchdogs exit. Returns how many."""
        gone = [wd for o, wd in self.kept if o == owner]
        self.kept = [(o, wd) for o, wd in self.kept if o != owner]
        self.served = [(o, wd) for o, wd in self.served if o != owner]
        for wd in gone:
            wd.close()
        return len(gone)

    def close(self) -> None:
        """Every idle watchdog exits (the daemon is leaving)."""
        for wd in self.spares + [wd for _, wd in self.kept]:
            wd.close()
        self.spares, self.kept, self.served = [], [], []
