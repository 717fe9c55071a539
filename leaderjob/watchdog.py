"""The per-run watchdog: a small process that starts one job and guarantees its end.

It exists because the daemon can be frozen (SIGSTOP, a GC pause, a throttled cgroup) or killed
outright (``kill -9``): the daemon's own timers then cannot fire, yet the job must be dead by the
local deadline ``D``. So each run gets this separate process, started plainly (no ``preexec_fn``
in the daemon, which has gRPC threads), which:

* is a child subreaper (``PR_SET_CHILD_SUBREAPER``): whatever the job forks stays below it, even a
  process that left the job's group with ``setsid()`` (a daemonizing script, ``setsid cmd &``);
* starts the job in a new session, with default signal dispositions and an empty signal mask, but
  only if the control pipe is still open and more than ``grace`` is left before ``D`` — checked on
  its own monotonic clock in the job's process immediately before exec;
* SIGTERMs the job at ``D − grace`` and SIGKILLs it shortly before ``D``, whatever the daemon is
  doing — the daemon moves ``D`` forward over the control pipe after each renewal;
* SIGKILLs it at once when the control pipe closes: the daemon is gone, or gave up on the start;
* on a ``stop`` request, SIGTERMs it and SIGKILLs it ``grace`` later (or before ``D``);
* when the job's main process exits, SIGKILLs everything it left behind;
* if it fails itself (a malformed message, a bug), SIGKILLs everything before it exits.

It may be started ahead of its first run (a *spare*: the daemon starts one while it follows, so a
handover or a slot does not wait for an interpreter to start), and it may serve several runs one
after another (a start request with ``"reuse": true``): after reporting a run's exit it waits for
the next start request. Between runs no job exists, so there is nothing to stop at ``D``; the
control pipe's EOF (the daemon gone) still ends it at once. Control messages that arrive between
runs belong to the finished run (the daemon sends the next start request only after it read the
exit report, and the pipe keeps order), so they are ignored.

"The job" is its process group *and* every descendant of this process (found in ``/proc``); a
SIGKILL is repeated until no descendant is left and all are reaped, and only then is the exit
reported: the daemon revokes the lease after that report, so no part of the run outlives it.

It imports only the standard library (and :mod:`leaderjob.tail`, which does too) and is run as
``python -S watchdog.py CTL_FD STATUS_FD`` so it starts in milliseconds. Protocol: JSON lines.
Daemon → watchdog: a start request ``{"argv", "env", "deadline", "grace", "reuse"?}``, then
``{"deadline": D}``, ``{"stop": reason}`` or ``{"kill": reason}``. Watchdog → daemon:
``{"ready": pid}`` once, when it can take a start request, then per run ``{"started": pid}`` or
``{"error": text}``, then ``{"signal": name, "reason": why}`` for each signal sent, the tail of
the job's output in parts (``{"tail": stream, "part": text}``, ``{"tail": stream, "truncated":
true}``: leaderjob.tail), and finally ``{"exited": returncode}`` (after an ``{"error": text}`` if
the watchdog itself failed), with ``"last": true`` when this watchdog will not serve another run
although asked to (see :meth:`Watchdog.reusable`). The job's stdout and stderr pass through this
process to the daemon's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

if __package__:
    from leaderjob import tail
else:  # run as a script (python -S): the package may not be importable; load the file beside us
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "leaderjob_tail", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tail.py")
    )
    assert _spec is not None and _spec.loader is not None
    tail = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(tail)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: SIGKILL goes out this long before D at most, so the kernel has time to deliver it.
KILL_RESERVE = 0.1
#: Pause between SIGKILL sweeps while descendants are still dying.
SWEEP_PAUSE = 0.01
#: At most this long the exit report waits for the job's last output to be copied through.
TAIL_WAIT = 0.5


class Refused(Exception):
    """The job must not be started; the message says why."""


def _prctl(option: int, arg: int) -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (from ``/proc``), parents before children."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # The command name is in parentheses and may contain anything: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


class Watchdog:
    def __init__(self, ctl_fd: int, status_fd: int) -> None:
        self.ctl = ctl_fd
        self.status = status_fd
        self.me = os.getpid()
        self.buf = b""
        self.ctl_open = True
        self.reset()
        # SIGCHLD wakes the select below through this pipe (the handler itself does nothing).
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def reset(self) -> None:
        """Forget the previous run: every field below is one run's."""
        self.job: subprocess.Popen[bytes] | None = None
        self.job_pid = 0  # also the job's process group id
        self.returncode: int | None = None
        self.deadline = 0.0
        self.grace = 0.0
        self.kill_at: float | None = None  # set once a stop was requested
        self.termed = False
        self.killed = False
        self.reuse = False  # the daemon asked this watchdog to serve another run afterwards
        self.tails: tail.Tails | None = None  # the job's stdout/stderr, passed through

    # -- reports ------------------------------------------------------------------------------

    def send(self, **msg: Any) -> None:
        # Non-blocking: a report lost to a full pipe (the daemon frozen for a long time) is
        # better than a watchdog that cannot kill the job at D.
        with contextlib.suppress(OSError):
            os.write(self.status, (json.dumps(msg) + "\n").encode())

    # -- signals ------------------------------------------------------------------------------

    def signal_all(self, sig: signal.Signals, reason: str | None) -> None:
        """Signal the job's group and every descendant; report it once per signal kind."""
        if sig is signal.SIGKILL:
            if self.killed:
                return
            self.killed = True
        elif sig is signal.SIGTERM:
            if self.termed:
                return
            self.termed = True
        self._signal_tree(sig)
        if reason is not None:
            self.send(signal=sig.name, reason=reason)

    def _signal_tree(self, sig: signal.Signals) -> None:
        if self.job_pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.job_pid, sig)
        for pid in descendants(self.me):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def reap(self) -> bool:
        """Collect every child that ended (orphans re-parented to us included). True if no
        child is left at all."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            if pid == self.job_pid and self.job is not None:
                # Reaped here, not by Popen: as a subreaper we collect every orphan anyway.
                self.returncode = self.job.returncode = os.waitstatus_to_exitcode(status)

    def kill_everything(self) -> None:
        """SIGKILL the group and all descendants until none is left, reaping them all."""
        pause = SWEEP_PAUSE
        while True:
            # No child at all (the kernel's answer, no race): then nothing is below us either —
            # every descendant is a child's descendant, and an orphan is re-parented to us (we
            # are its subreaper) — so nothing of the job's group is left. The common end of a
            # run, answered without scanning /proc (a scan costs ~1 ms CPU per 100 processes).
            if self.reap():
                return
            self._signal_tree(signal.SIGKILL)
            self.reap()
            if not descendants(self.me):
                return
            time.sleep(pause)  # a process in uninterruptible sleep dies when it wakes
            pause = min(0.2, pause * 2)

    # -- the control pipe ---------------------------------------------------------------------

    def read_lines(self) -> list[dict[str, Any]] | None:
        """Read what the daemon sent; None on EOF (the daemon is gone)."""
        try:
            chunk = os.read(self.ctl, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            return None
        self.buf += chunk
        return self.complete_lines()

    def complete_lines(self) -> list[dict[str, Any]]:
        # A line that is not a JSON object raises: the caller treats it as its own failure.
        *lines, self.buf = self.buf.split(b"\n")
        msgs = [json.loads(line) for line in lines if line.strip()]
        if not all(isinstance(m, dict) for m in msgs):
            raise ValueError(f"not a message: {lines!r}")
        return msgs

    def first_message(self) -> dict[str, Any] | None:
        """The next start request; None on EOF. Controls meant for a finished run are skipped."""
        while True:
            while b"\n" not in self.buf:
                chunk = os.read(self.ctl, 65536)
                if not chunk:
                    return None
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            if not line.strip():
                continue
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError(f"not a start request: {line!r}")
            if "argv" in msg:
                return msg

    def ctl_closed(self) -> bool:
        """True once the daemon's end of the control pipe is closed; reads nothing."""
        poller = select.poll()
        poller.register(self.ctl, select.POLLIN)
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))

    def handle(self, msg: dict[str, Any], now: float) -> None:
        if "deadline" in msg:
            self.deadline = max(self.deadline, float(msg["deadline"]))
        if "stop" in msg:
            self.signal_all(signal.SIGTERM, str(msg["stop"]))
            stop_kill = now + self.grace
            self.kill_at = stop_kill if self.kill_at is None else min(self.kill_at, stop_kill)
        if "kill" in msg:
            self.signal_all(signal.SIGKILL, str(msg["kill"]))

    # -- starting -----------------------------------------------------------------------------

    def refusal(self) -> str | None:
        """Why the job must not be started now, or None."""
        if self.ctl_closed():
            return "not started: the daemon closed the control pipe (it gave up or is gone)"
        left = self.deadline - time.monotonic()
        if left <= 0:
            return f"not started: the local deadline passed {-left:.3f}s ago"
        if left <= self.grace:
            return (
                f"not started: {left:.3f}s left before the local deadline, "
                f"less than the grace of {self.grace:g}s"
            )
        return None

    def prepare_child(self) -> None:
        """Runs in the job's process between fork and exec (this process has no threads)."""
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.me:
            raise Refused("the watchdog died")  # before PDEATHSIG was armed
        # Nothing of ours is inherited: dispositions back to default (we ignore SIGINT and
        # handle SIGCHLD; the daemon may have been started ignoring SIGHUP), no wake-up fd.
        signal.set_wakeup_fd(-1)
        for sig in signal.valid_signals():
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
        # The last check, as close to exec as Python gets: a start request that arrived late
        # (the daemon gave up, or D is near) never becomes a job.
        why = self.refusal()
        if why is not None:
            raise Refused(why)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

    def start(self, first: dict[str, Any]) -> bool:
        self.deadline = float(first["deadline"])
        self.grace = float(first["grace"])
        self.reuse = bool(first.get("reuse"))
        argv = [str(a) for a in first["argv"]]
        env = {str(k): str(v) for k, v in dict(first["env"]).items()}
        cwd = first.get("cwd")
        tails = tail.Tails()
        try:
            job = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=tails.child_fds[0],
                stderr=tails.child_fds[1],
                start_new_session=True,
                # No threads here: a previous run's copies have ended (reusable()).
                preexec_fn=self.prepare_child,  # noqa: PLW1509
            )
        except subprocess.SubprocessError:  # prepare_child refused; the reason still holds
            tails.close()
            self.send(error=self.refusal() or "not started: the watchdog is dying")
            return False
        except OSError as exc:
            tails.close()
            where = f" in {cwd}" if cwd and exc.filename == cwd else ""
            self.send(error=f"cannot start {argv[0]!r}{where}: {exc.strerror or exc}")
            return False
        tails.started()  # copy threads from here on, until the run's output ends
        self.job, self.job_pid, self.tails = job, job.pid, tails
        self.send(started=job.pid)
        return True

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self._run()
        except BaseException as exc:  # a malformed message, a bug: the job must still die
            if self.job_pid:
                self.killed = False
                self.signal_all(signal.SIGKILL, "watchdog_failed")
                self.kill_everything()
                with contextlib.suppress(Exception):
                    self.send_tails()
            self.send(error=f"watchdog failed: {exc!r}")
            if self.job_pid:
                self.send(exited=self.returncode)
            return 1

    def _run(self) -> int:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.send(ready=self.me)
        while True:
            first = self.first_message()
            if first is None:
                return 0
            if not self.start(first):
                return 0
            last = self.supervise()
            if last:
                return 0
            self.reset()

    def supervise(self) -> bool:
        """Supervise the started job until it and everything it left behind are gone; report.
        True if this was the last run this watchdog serves."""
        for msg in self.complete_lines():  # sent together with the start request
            self.handle(msg, time.monotonic())
        while True:
            self.reap()
            if self.returncode is not None:
                break
            now = time.monotonic()
            term_at = self.deadline - self.grace
            kill_at = self.deadline - min(KILL_RESERVE, self.grace / 4)
            if self.kill_at is not None:
                kill_at = min(kill_at, self.kill_at)
            if now >= kill_at:
                self.signal_all(signal.SIGKILL, "deadline" if self.kill_at is None else "grace")
            elif now >= term_at:
                self.signal_all(signal.SIGTERM, "deadline")
            wait_until = kill_at if self.termed or now >= term_at else term_at
            timeout = max(0.0, wait_until - now) if not self.killed else 0.05
            fds = [self.wake_r, *([self.ctl] if self.ctl_open else [])]
            ready, _, _ = select.select(fds, [], [], timeout)
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 4096):
                        pass
            if self.ctl_open and self.ctl in ready:
                msgs = self.read_lines()
                if msgs is None:
                    self.ctl_open = False
                    self.signal_all(signal.SIGKILL, "daemon_gone")
                else:
                    for msg in msgs:
                        self.handle(msg, time.monotonic())
        # The main process is gone; nothing it started may outlive the run.
        self.kill_everything()
        self.send_tails()
        if self.reusable():
            self.send(exited=self.returncode)
            return False
        self.send(exited=self.returncode, **({"last": True} if self.reuse else {}))
        return True

    def send_tails(self) -> None:
        """The last output of the job, before the exit report (every writer is dead now, so
        the copies end at once unless the daemon's stdout is stuck: then what was read)."""
        if self.tails is not None:
            for msg in tail.messages(self.tails.report(timeout=TAIL_WAIT)):
                self.send(**msg)

    def reusable(self) -> bool:
        """Asked to serve another run, and able to: the next job is forked from this process,
        which must then have no thread — a copy blocked on a stuck stdout would still run."""
        return self.reuse and (self.tails is None or self.tails.finished())


def main() -> int:
    ctl_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    # The daemon's SIGINT (Ctrl-C at a terminal) must not reach us before it decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_blocking(status_fd, False)
    return Watchdog(ctl_fd, status_fd).run()


if __name__ == "__main__":
    sys.exit(main())
