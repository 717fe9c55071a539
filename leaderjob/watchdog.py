"""The per-run watchdog: a small process that starts one job and guarantees its end.

It exists because the daemon can be frozen (SIGSTOP, a GC pause, a throttled cgroup) or killed
outright (``kill -9``): the daemon's own timers then cannot fire, yet the job must be dead by the
local deadline ``D``. So each run gets this separate process, started plainly (no ``preexec_fn``
in the daemon, which has gRPC threads), which:

* starts the job in a new session, so the job and everything it forks share one process group;
* SIGTERMs the group at ``D − grace`` and SIGKILLs it shortly before ``D``, whatever the daemon
  is doing — the daemon moves ``D`` forward over the control pipe after each renewal;
* SIGKILLs the group at once when the control pipe closes: the daemon is gone;
* on a ``stop`` request, SIGTERMs the group and SIGKILLs it ``grace`` later (or before ``D``);
* when the job's main process exits, SIGKILLs anything it left behind in its group: no part of a
  run outlives the run.

It imports only the standard library and is run as ``python -S watchdog.py CTL_FD STATUS_FD`` so
it starts in milliseconds. Protocol: JSON lines. Daemon → watchdog: the first line
``{"argv", "env", "deadline", "grace"}``, then ``{"deadline": D}``, ``{"stop": reason}`` or
``{"kill": reason}``. Watchdog → daemon: ``{"started": pid}`` or ``{"error": text}``, then
``{"signal": name, "reason": why}`` for each signal sent, and finally ``{"exited": returncode}``.
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

PR_SET_PDEATHSIG = 1
#: SIGKILL goes out this long before D at most, so the kernel has time to deliver it.
KILL_RESERVE = 0.1


def _set_pdeathsig() -> None:  # runs in the job's child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


class Watchdog:
    def __init__(self, ctl_fd: int, status_fd: int) -> None:
        self.ctl = ctl_fd
        self.status = status_fd
        self.buf = b""
        self.pgid = 0
        self.deadline = 0.0
        self.grace = 0.0
        self.kill_at: float | None = None  # set once a stop was requested
        self.termed = False
        self.killed = False
        self.ctl_open = True

    def send(self, **msg: Any) -> None:
        with contextlib.suppress(OSError):
            os.write(self.status, (json.dumps(msg) + "\n").encode())

    def signal_group(self, sig: signal.Signals, reason: str) -> None:
        if sig is signal.SIGKILL:
            if self.killed:
                return
            self.killed = True
        elif sig is signal.SIGTERM:
            if self.termed:
                return
            self.termed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
        self.send(signal=sig.name, reason=reason)

    def read_lines(self) -> list[dict[str, Any]] | None:
        """Read what the daemon sent; None on EOF (the daemon is gone)."""
        try:
            chunk = os.read(self.ctl, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            return None
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def first_message(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            chunk = os.read(self.ctl, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def handle(self, msg: dict[str, Any], now: float) -> None:
        if "deadline" in msg:
            self.deadline = float(msg["deadline"])
        if "stop" in msg:
            self.signal_group(signal.SIGTERM, str(msg["stop"]))
            stop_kill = now + self.grace
            self.kill_at = stop_kill if self.kill_at is None else min(self.kill_at, stop_kill)
        if "kill" in msg:
            self.signal_group(signal.SIGKILL, str(msg["kill"]))

    def run(self) -> int:
        first = self.first_message()
        if first is None:
            return 0
        self.deadline = float(first["deadline"])
        self.grace = float(first["grace"])
        try:
            job = subprocess.Popen(
                first["argv"],
                env=first["env"],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_set_pdeathsig,  # noqa: PLW1509 - no threads in this process
            )
        except OSError as exc:
            self.send(error=f"cannot start {first['argv'][0]!r}: {exc.strerror or exc}")
            return 0
        self.pgid = job.pid
        self.send(started=job.pid)
        try:
            pidfd: int | None = os.pidfd_open(job.pid)
        except (AttributeError, OSError):
            pidfd = None
        while True:
            now = time.monotonic()
            term_at = self.deadline - self.grace
            kill_at = self.deadline - min(KILL_RESERVE, self.grace / 4)
            if self.kill_at is not None:
                kill_at = min(kill_at, self.kill_at)
            if now >= kill_at:
                self.signal_group(signal.SIGKILL, "deadline" if self.kill_at is None else "grace")
            elif now >= term_at:
                self.signal_group(signal.SIGTERM, "deadline")
            if job.poll() is not None:
                break
            wait_until = kill_at if self.termed or now >= term_at else term_at
            timeout = max(0.0, wait_until - now)
            if pidfd is None:
                timeout = min(timeout, 0.02)
            fds = [fd for fd in (self.ctl if self.ctl_open else None, pidfd) if fd is not None]
            ready, _, _ = select.select(fds, [], [], timeout if not self.killed else 0.05)
            if self.ctl in ready and self.ctl_open:
                msgs = self.read_lines()
                if msgs is None:
                    self.ctl_open = False
                    self.signal_group(signal.SIGKILL, "daemon_gone")
                else:
                    for msg in msgs:
                        self.handle(msg, time.monotonic())
        # The main process is gone; nothing it started may outlive the run.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.send(exited=job.returncode)
        return 0


def main() -> int:
    ctl_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    # The daemon's SIGINT (Ctrl-C at a terminal) must not reach us before it decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return Watchdog(ctl_fd, status_fd).run()


if __name__ == "__main__":
    sys.exit(main())
