"""The per-run watchdog on its own: real pipes, a real short-lived child, the real clock.

The watchdog is standard library only, so it is driven here exactly as the daemon drives it:
``python -S watchdog.py CTL STATUS`` with the first JSON line on the control pipe. Each test names
the promise it defends (docs/safety.md §3): the job must not outlive the run (S6), must not start
once the deadline is near or the daemon has given up on it, and inherits nothing odd from us.
Escaped processes are found by pid (written by the job itself) and killed by pid at the end,
whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leaderjob import watchdog as watchdog_module
from leaderjob.clock import now as deadline_clock  # the watchdog's clock
from tests.harness.procs import pid_alive

WATCHDOG = watchdog_module.__file__
#: A command that leaves its process group: the inner shell writes its pid, then becomes sleep.
ESCAPE = 'setsid sh -c "echo \\$\\$ > {pidfile}; exec sleep 300" &'
#: The same, ignoring SIGTERM (an ignored disposition survives exec): only SIGKILL ends it.
STUBBORN = "setsid sh -c \"trap '' TERM; echo \\$\\$ > {pidfile}; exec sleep 300\" &"
WAIT_PIDFILE = "while [ ! -s {pidfile} ]; do sleep 0.01; done"


class Driven:
    """One watchdog process, the test playing the daemon."""

    def __init__(self, *, preexec: Any = None, stdout: Any = None) -> None:
        ctl_r, self.ctl = os.pipe()
        self.status, st_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-S", WATCHDOG, str(ctl_r), str(st_w)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,  # the job's stdout is the watchdog's
            pass_fds=(ctl_r, st_w),
            start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509 - the test process starts no threads
        )
        os.close(ctl_r)
        os.close(st_w)
        if stdout is not None:
            stdout.close()
        self.buf = b""
        self.events: list[dict[str, Any]] = []

    def send(self, **msg: Any) -> None:
        self.send_raw((json.dumps(msg) + "\n").encode())

    def send_raw(self, data: bytes) -> None:
        os.write(self.ctl, data)

    def first(self, argv: list[str], *, left: float = 60.0, grace: float = 1.0) -> None:
        self.send(argv=argv, env=dict(os.environ), deadline=deadline_clock() + left, grace=grace)

    def close_ctl(self) -> None:
        if self.ctl >= 0:
            os.close(self.ctl)
            self.ctl = -1

    def until(self, key: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """Read reports until one has ``key``; None if the watchdog ended first."""
        end = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if key in ev:
                    return ev
            left = end - time.monotonic()
            assert left > 0, f"no {key!r} report in {timeout} s: {self.events}"
            ready, _, _ = select.select([self.status], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.status, 65536)
            if not chunk:
                return None
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            self.events += [json.loads(line) for line in lines if line.strip()]

    def cleanup(self) -> None:
        """Close the pipe (the watchdog then kills its job) and wait for it; if it does not
        exit, kill it and the job's group by pid."""
        self.close_ctl()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        pids = [self.proc.pid] + [ev["started"] for ev in self.events if "started" in ev]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.wait(10)

    def finish(self, timeout: float = 10.0) -> int:
        rc = self.proc.wait(timeout)
        self.close_ctl()
        with contextlib.suppress(OSError):
            os.close(self.status)
        return rc


@pytest.fixture
def driven() -> Iterator[Driven]:
    d = Driven()
    yield d
    d.cleanup()


@pytest.fixture
def escaped(tmp_path: Path) -> Iterator[Path]:
    """A pid file for a process that leaves the job's group; killed by pid afterwards."""
    pidfile = tmp_path / "escaped.pid"
    yield pidfile
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def _escaped_pid(pidfile: Path, timeout: float = 10.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(pidfile.read_text())
        time.sleep(0.01)
    raise AssertionError("the job never wrote its escaped pid")


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_runs_the_job_and_reports_its_exit(driven):
    driven.first(_sh("exit 3"))
    assert driven.until("started") is not None
    assert driven.until("exited") == {"exited": 3}
    assert driven.finish() == 0


def test_refuses_to_exec_once_the_deadline_has_passed_s6(driven, tmp_path):
    """S6: the watchdog checks D itself, on its own clock, just before exec: a job is never
    started after its deadline, however late the start request reached it."""
    marker = tmp_path / "ran"
    driven.first(_sh(f"touch {marker}"), left=-0.5, grace=0.1)
    report = driven.until("error")
    assert report is not None and "deadline" in report["error"]
    assert driven.finish() == 0
    assert not any("started" in ev for ev in driven.events)
    assert not marker.exists()


def test_refuses_to_exec_with_less_than_the_grace_left_s6(driven, tmp_path):
    """S6: with less than ``grace`` left before D there is no time to stop the job politely,
    so it is not started at all."""
    marker = tmp_path / "ran"
    driven.first(_sh(f"touch {marker}"), left=0.5, grace=2.0)
    report = driven.until("error")
    assert report is not None and "grace" in report["error"]
    driven.finish()
    assert not any("started" in ev for ev in driven.events)
    assert not marker.exists()


def test_does_not_start_once_the_control_pipe_has_closed_s1_s6(tmp_path):
    """S1/S6: a daemon that gave up waiting closes the control pipe; a watchdog that reads its
    start request only afterwards must not start the job (a late, untracked copy)."""
    marker = tmp_path / "ran"
    d = Driven()
    try:
        d.first(_sh(f"touch {marker}; sleep 300"))
        d.close_ctl()  # before the watchdog (still starting Python) has read anything
        report = d.until("error")
        assert report is not None and "control pipe" in report["error"]
        assert d.finish() == 0
        assert not any("started" in ev for ev in d.events)
        assert not marker.exists()
    finally:
        d.cleanup()


def test_stop_kills_a_descendant_that_left_the_group_s6(driven, escaped):
    """S6: a job that calls setsid() leaves its process group; the watchdog is its subreaper and
    kills every descendant at stop, not only the group — before it reports the exit."""
    driven.first(_sh(f"{ESCAPE.format(pidfile=escaped)} sleep 300"))
    driven.until("started")
    pid = _escaped_pid(escaped)
    assert pid_alive(pid)
    driven.send(stop="test")
    assert driven.until("exited", timeout=15) is not None
    assert not pid_alive(pid), "a setsid() descendant survived the stop"


def test_main_exit_kills_what_the_job_left_behind_s6(driven, escaped):
    """S6: when the job's main process exits, whatever it started — in its group or not — dies
    before the exit is reported (the daemon revokes the lease only after that report)."""
    driven.first(
        _sh(f"{ESCAPE.format(pidfile=escaped)} {WAIT_PIDFILE.format(pidfile=escaped)}; exit 0")
    )
    assert driven.until("exited", timeout=15) == {"exited": 0}
    assert not pid_alive(_escaped_pid(escaped))


def test_daemon_gone_kills_a_descendant_that_left_the_group_s6(driven, escaped):
    """S6: the control pipe closing (the daemon died, kill -9) kills every descendant too."""
    driven.first(_sh(f"{ESCAPE.format(pidfile=escaped)} sleep 300"))
    driven.until("started")
    pid = _escaped_pid(escaped)
    driven.close_ctl()
    assert driven.until("exited", timeout=15) is not None
    assert not pid_alive(pid)


def test_malformed_message_still_kills_the_job_and_its_descendants_s6(driven, escaped):
    """S6: a watchdog that fails (here: a line that is not JSON) still kills everything it
    started, and says why."""
    driven.first(_sh(f"{ESCAPE.format(pidfile=escaped)} sleep 300"))
    started = driven.until("started")
    assert started is not None
    pid = _escaped_pid(escaped)
    driven.send_raw(b"{this is not json\n")
    assert driven.until("exited", timeout=15) is not None
    error = driven.until("error")
    assert error is not None and "watchdog failed" in error["error"]
    assert not pid_alive(pid)
    assert not pid_alive(started["started"])
    assert driven.finish() != 0


def test_deadline_kills_a_descendant_that_left_the_group_s6(driven, escaped):
    """S6: at D the watchdog kills the whole tree on its own, with no word from the daemon —
    a descendant that left the group and ignores SIGTERM included."""
    script = f"trap '' TERM; {STUBBORN.format(pidfile=escaped)} sleep 300"
    driven.first(_sh(script), left=5.0, grace=0.5)
    driven.until("started")
    pid = _escaped_pid(escaped)
    assert driven.until("exited", timeout=15) is not None
    assert not pid_alive(pid)
    assert {"signal": "SIGKILL", "reason": "deadline"} in driven.events


def _block_usr1_ignore_usr2() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def test_job_starts_with_default_signal_dispositions_and_an_empty_mask(tmp_path):
    """The job inherits no ignored signal (the watchdog ignores SIGINT; a daemon started under
    nohup ignores SIGHUP) and no blocked one: Ctrl-C semantics and `kill` work as in a shell."""
    out = tmp_path / "status"
    d = Driven(preexec=_block_usr1_ignore_usr2, stdout=out.open("wb"))
    try:
        # grep itself, with no shell or Python in between: both change dispositions or the mask.
        d.first(["grep", "-E", "^(SigIgn|SigBlk)", "/proc/self/status"])
        assert d.until("exited") == {"exited": 0}
        d.finish()
    finally:
        d.cleanup()
    fields = dict(line.split(":\t", 1) for line in out.read_text().splitlines())
    # glibc reserves signals 32 and 33 for its threads (not in valid_signals(), not settable from
    # Python); a disposition inherited for them from the machine's own shell says nothing here.
    settable = sum(1 << (int(s) - 1) for s in signal.valid_signals())
    assert int(fields["SigBlk"], 16) & settable == 0, fields
    assert int(fields["SigIgn"], 16) & settable == 0, fields


def test_orphans_that_end_during_the_run_are_reaped_at_once(driven, escaped):
    """As a subreaper the watchdog inherits every orphan of the job; one that ends while the job
    runs is reaped at once (SIGCHLD wakes the loop), so a long job leaves no zombies behind."""
    orphan = f'(setsid sh -c "echo \\$\\$ > {escaped}; sleep 0.2" &)'
    driven.first(_sh(f"{orphan}; sleep 300"))
    driven.until("started")
    pid = _escaped_pid(escaped)
    end = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
        time.sleep(0.01)
    assert not Path(f"/proc/{pid}").exists(), "an orphan that ended was left a zombie"


def _next_run(d: Driven) -> None:
    """Forget the reports of the run that ended (the watchdog serves another)."""
    d.events = []


def test_a_reused_watchdog_ignores_a_finished_runs_controls_and_kills_the_next_at_d_s6(
    driven, tmp_path
):
    """S6 with reuse: a watchdog that served a run (ended by a kill) serves the next one as if
    it were new — a control meant for the finished run does not touch it, and the next run is
    still SIGTERMed at D − grace and SIGKILLed before D."""
    assert driven.until("ready") is not None  # started ahead, waiting for a start request
    driven.send(argv=_sh("sleep 300"), env=dict(os.environ),
                deadline=deadline_clock() + 60, grace=1.0, reuse=True)  # fmt: skip
    driven.until("started")
    driven.send(kill="test")
    assert driven.until("exited")["exited"] == -signal.SIGKILL
    _next_run(driven)
    driven.send(stop="late")  # for the run that ended: must not reach the next one
    t0 = time.monotonic()
    driven.send(argv=_sh("trap '' TERM; sleep 300"), env=dict(os.environ),
                deadline=t0 + 1.5, grace=0.5, reuse=True)  # fmt: skip
    driven.until("started")
    report = driven.until("exited", timeout=10)
    took = time.monotonic() - t0
    assert report is not None and report["exited"] == -signal.SIGKILL
    signals = [(e["signal"], e["reason"]) for e in driven.events if "signal" in e]
    assert signals == [("SIGTERM", "deadline"), ("SIGKILL", "deadline")], signals
    assert took < 1.5 + 0.5, f"killed {took:.2f}s after the start, D was 1.5 s"


def test_an_idle_watchdog_exits_when_the_daemon_is_gone_s6(driven):
    """S6/§3: a watchdog waiting between runs (or started ahead) exits as soon as the daemon's
    end of its control pipe closes: nothing of a dead daemon is left behind."""
    driven.until("ready")
    driven.send(argv=_sh("exit 0"), env=dict(os.environ),
                deadline=deadline_clock() + 60, grace=1.0, reuse=True)  # fmt: skip
    assert driven.until("exited")["exited"] == 0
    assert driven.proc.poll() is None  # kept for the next run
    driven.close_ctl()
    assert driven.finish(timeout=5) == 0
