"""Runs jobs under the daemon's guardian process, and reports how each ended.

The daemon side of :mod:`leaderjob.guard.guardian`. A :class:`GuardianProcess` is a daemon's one
guardian, with its two pipes (control in, status out) and the thread that reads its reports; a
:class:`Run` hands it the command, environment, local deadline and grace, then moves the deadline
forward after each renewal. :class:`Guardian` is the daemon's handle: it keeps one guardian up
(started with the daemon, so a start is one fork + exec), and starts a fresh one when it died.

A run is over when the guardian says so, or when the guardian is gone. If the guardian dies (it
is killed, it fails), its status pipe ends: every job's main process has died of PDEATHSIG, and
here the rest is SIGKILLed — each run's process group, and every process still marked as one of
its runs (a ``setsid`` grandchild re-parented elsewhere). Its runs end as failed
(``watchdog_failed``); none is left untracked.

Starting a run is two steps, so that many runs can be started together:

* :meth:`Run.request` sends the start request and returns at once (a write to a pipe). It
  carries a limit, ``start_by`` (now + the ``wait`` the caller gives, on the deadline clock):
  past it the guardian refuses to exec, so a start given up on never happens later. The guardian
  still checks the run's ``D`` (and that the daemon is alive) itself, immediately before exec.
* :meth:`Run.confirm` reads the answer: True once the guardian reported the exec (``pid``),
  False if the start failed or ``start_by`` passed without a report (the run is then killed at
  once, should that report be on its way), None while the answer may still come. ``confirm()``
  never blocks; ``confirm(wait=s)`` waits at most ``s`` seconds, never past ``start_by``. The
  caller's wake-up is set when a report arrives that nobody waits for in ``confirm`` (once for
  a burst of starts: a report that comes while another start is unanswered waits for the last
  answer, see ``GuardianProcess._wakeups``); a caller that does not wait asks again by
  ``start_by`` at the latest (a guardian that says nothing sends no report to wake it).

:meth:`Run.start` is both, waiting for the answer (the daemon gives the time left before
``D − grace``, after which the guardian would refuse anyway). A requested run counts as running
from the request on: it still exists, confirmed or not, until the guardian reports its exit
(``done``); the caller must keep tracking it until then. Nothing else here blocks.

Writes to the control pipe never block: what does not fit waits in a buffer for the next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderjob import clock as clock_module
from leaderjob.clock import Wakeable
from leaderjob.clock import now as clock_now
from leaderjob.guard import proctree

_GUARDIAN = str(Path(__file__).with_name("guardian.py"))
#: Linux's F_SETPIPE_SZ (the fallback is its value, for a fcntl module built without it).
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
#: The control pipe is grown to this size (the default limit for unprivileged processes,
#: /proc/sys/fs/pipe-max-size): a burst of start requests fits at once.
_PIPE_MAX = 1 << 20
#: A burst's answers wake the daemon's loop at least every this many (see
#: GuardianProcess._wakeups): half the starts the daemon keeps unanswered in the guardian's
#: pipe (daemon/starts.py), so that more are sent while the guardian starts the rest.
HOLD_ANSWERS = 8
#: After a guardian could not be started, the next try waits this long, doubled after each
#: failure in a row up to RETRY_MAX (a start meanwhile tries on its own).
RETRY = 1.0
RETRY_MAX = 60.0
#: The clock the daemon reads its deadlines on: the guardian reads the same one (CLOCK_BOOTTIME
#: once leaderjob.clock says it reads that, by its CLOCK_ID).
CLOCK = (
    "boottime"
    if getattr(clock_module, "CLOCK_ID", time.CLOCK_MONOTONIC)
    == getattr(time, "CLOCK_BOOTTIME", -1)
    else "monotonic"
)


@dataclass
class Signal:
    name: str  # SIGTERM | SIGKILL
    reason: str  # deadline | grace | daemon_gone | <the stop reason the daemon gave>


class GuardianProcess:
    """One guardian process: its pipes, its reader thread, the runs it serves."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctl: int | None = None
        self.out = b""  # written to the control pipe as it drains
        #: Monotonic time its ``ready`` report was read (None: not yet).
        self.ready_at: float | None = None
        self.runs: dict[str, Run] = {}
        #: Keys of the runs whose start request has no answer yet (``started`` or ``error``).
        self.unanswered: set[str] = set()
        #: Wake-ups held back while a start of the same burst is unanswered (see _wakeups), and
        #: how many answers they hold.
        self._held: list[Wakeable] = []
        self._answers_held = 0
        self.ended = threading.Event()  # its status pipe reached EOF: it has exited
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._keys = itertools.count(1)

    @classmethod
    def spawn(cls, wakeup: Wakeable | None = None, *, args: Sequence[str] = ()) -> GuardianProcess:
        """Start a guardian. Raises OSError (no pipe, no process)."""
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
            with contextlib.suppress(OSError):
                fcntl.fcntl(ctl_w, _F_SETPIPE_SZ, _PIPE_MAX)
            self.proc = subprocess.Popen(
                [sys.executable, "-S", _GUARDIAN, str(ctl_r), str(st_w), CLOCK, *args],
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
            target=self._read_status, args=(st_r, wakeup), name="leaderjob-guardian", daemon=True
        )
        reader.start()
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        """Running, with its control pipe open: it can take a start request."""
        return self.ctl is not None and not self.ended.is_set()

    def attach(self, run: Run, request: dict[str, Any]) -> str:
        """Hand ``run``'s start request to this guardian; the run's key. A guardian that died
        meanwhile (after the caller saw it alive) ends the run at once: a run is over when the
        guardian says so or when the guardian is gone, never left waiting for a dead one."""
        key = f"{next(self._keys)}-{run.run_id}"
        with self.lock:
            if self.ended.is_set():
                run._ended()
                return key
            self.runs[key] = run
            self.unanswered.add(key)
        self.send({"start": key, **request})
        return key

    def send(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.out += (json.dumps(msg) + "\n").encode()
            self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        """Write what the pipe takes now; keep the rest for the next write (never block)."""
        while self.out and self.ctl is not None:
            try:
                n = os.write(self.ctl, self.out)
            except BlockingIOError:
                return  # the guardian is not reading (slow, frozen): it keeps the old D meanwhile
            except OSError:  # the guardian is gone: its end is on its way
                self.out = b""
                return
            self.out = self.out[n:]

    def close(self) -> None:
        """Close the control pipe: the guardian kills every job at once and exits."""
        with self.lock:
            self.out = b""
            if self.ctl is not None:
                with contextlib.suppress(OSError):
                    os.close(self.ctl)
                self.ctl = None

    def _wakeups(
        self, run: Run | None, wakeup: Wakeable | None, *, quiet: bool, answer: bool
    ) -> list[Wakeable]:
        """Whom one report wakes now (the lock held; ``answer``: it answers a start). A pass of
        the loop requests a burst of starts at once and the guardian answers them one by one, a
        fork and exec apart: a report that comes while another start is unanswered is held until
        the last answer, which wakes the loop once for them all (one pass, not one per report).
        A long burst wakes it every :data:`HOLD_ANSWERS` answers too, so that the starts still
        waiting on the daemon's side are sent while the guardian works on the others. The hold
        lasts no longer than the answers the guardian owes; should one never come, the loop
        looks at that start by its limit anyway (``Run.confirm``), and the guardian's end wakes
        all."""
        if not quiet:
            if run is not None:
                self._held.append(run.wakeup)
            if wakeup is not None:
                self._held.append(wakeup)
        self._answers_held += answer
        if self.unanswered and self._answers_held < HOLD_ANSWERS:
            return []
        wake, self._held = list({id(w): w for w in self._held}.values()), []
        self._answers_held = 0
        return wake

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
                    self.ready_at = clock_now()  # the daemon's clock: compared with its own
                with self.lock:
                    key = str(msg.get("run"))
                    run = self.runs.get(key)
                    if run is not None and run._apply(msg):
                        del self.runs[key]
                    answer = key in self.unanswered and bool(
                        msg.keys() & {"started", "error", "exited"}
                    )
                    if answer:
                        self.unanswered.discard(key)
                    # A confirmation its caller waits for in ``confirm`` wakes only that caller:
                    # the daemon's loop has nothing more to do about it.
                    quiet = run is not None and run._waiting and msg.keys() <= {"run", "started"}
                    wake = self._wakeups(run, wakeup, quiet=quiet, answer=answer)
                    self.cond.notify_all()
                for w in wake:
                    w.set()
                if run is not None and run.own and run.done:
                    self.close()  # a guardian of one run's own exits with it
        if self.proc is not None:
            self.proc.wait()
        with self.lock:
            runs, self.runs = list(self.runs.values()), {}
            self.unanswered.clear()
            self._held = []  # everyone is woken below
            self.ended.set()
            self.out = b""
            if self.ctl is not None:
                with contextlib.suppress(OSError):
                    os.close(self.ctl)
                self.ctl = None
        # The guardian is gone without reporting these runs' ends: every job's main process
        # died of PDEATHSIG; the rest of each run dies here.
        proctree.kill_marked({r.key for r in runs}, [r.pid for r in runs if r.pid])
        with self.lock:
            for run in runs:
                run._ended()
            self.cond.notify_all()
        for run in runs:
            run.wakeup.set()
        if wakeup is not None:
            wakeup.set()


class Guardian:
    """The daemon's guardian, kept up: started with the daemon, started again if it died."""

    def __init__(self, wakeup: Wakeable | None = None, *, args: Sequence[str] = ()) -> None:
        self.wakeup = wakeup
        self.args = tuple(args)
        #: Off until the loop serves: a daemon stepped by hand (the tests) starts each run on a
        #: guardian of its own, which exits with the run.
        self.enabled = False
        self.current: GuardianProcess | None = None
        self.retry_at = 0.0
        self.failures = 0
        #: Guardians that ended while in use (killed, failed): each one's runs ended as failed.
        self.lost = 0

    def ensure(self, now: float) -> str | None:
        """A guardian is up (started now if none is); the error text if one could not be."""
        cur = self.current
        if cur is not None and cur.alive:
            cur.flush()
            return None
        if cur is not None:
            self.lost += 1
            self.current = None
        if now < self.retry_at:
            return None  # the failure was reported when it happened; tried again at retry_at
        try:
            self.current = GuardianProcess.spawn(self.wakeup, args=self.args)
        except OSError as exc:
            self.retry_at = now + min(RETRY_MAX, RETRY * 2**self.failures)
            self.failures += 1
            return f"cannot start the guardian: {exc.strerror or exc}"
        self.failures = 0
        return None

    def take(self) -> GuardianProcess | None:
        """The live guardian for the next run (None: the run starts one of its own)."""
        if not self.enabled:
            return None
        self.ensure(time.monotonic())
        return self.current

    def close(self) -> None:
        """The daemon is leaving: the guardian kills whatever still runs and exits."""
        if self.current is not None:
            self.current.close()


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
    #: it is started with the daemon), and its report that the job was exec'd.
    watchdog_ready_at: float | None = None
    exec_at: float | None = None
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
            self.exec_at = clock_now()
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
