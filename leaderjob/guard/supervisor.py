"""The daemon's guardian process, kept up, and the thread that reads its reports.

The daemon side of :mod:`leaderjob.guard.guardian`. A :class:`GuardianProcess` is a daemon's one
guardian, with its two pipes (control in, status out) and the thread that reads its reports and
hands each to its run (:class:`leaderjob.guard.run.Run`). :class:`Guardian` is the daemon's
handle: it keeps one guardian up (started with the daemon, so a start is one fork), and starts a
fresh one when it died.

A run is over when the guardian says so, or when the guardian is gone. If the guardian dies (it
is killed, it fails), its status pipe ends: every job's main process has died of PDEATHSIG, and
here the rest is SIGKILLed — each run's process group, and every process still marked as one of
its runs (a ``setsid`` grandchild re-parented elsewhere). Its runs end as failed
(``watchdog_failed``); none is left untracked.

The caller's wake-up is set when a report arrives that nobody waits for (once for a burst of
starts: a report that comes while another start is unanswered waits for the last answer, see
``GuardianProcess._wakeups``). Writes to the control pipe never block: what does not fit waits
in a buffer for the next write.
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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leaderjob import clock as clock_module
from leaderjob.clock import Wakeable
from leaderjob.clock import now as clock_now
from leaderjob.guard import proctree

if TYPE_CHECKING:  # a run's module starts a guardian of its own through this one
    from leaderjob.guard.run import Run

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


#: The keys of a start's answer that says only that the job was exec'd (and when).
STARTED = frozenset({"run", "started", "at"})


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
                    quiet = run is not None and run._waiting and msg.keys() <= STARTED
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
