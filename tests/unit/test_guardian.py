"""The guardian on its own: real pipes, real short-lived children, the real clock.

The guardian is standard library only, so it is driven here exactly as the daemon drives it:
``python -S guardian.py CTL STATUS monotonic`` with JSON lines on the control pipe. Each test
names the promise it defends (docs/safety.md §3): no job outlives its run (S6), none starts once
its deadline is near or the daemon has given up on it, none inherits anything odd from us.
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

from leaderjob.guard import guardian as guardian_module
from leaderjob.guard import proctree
from tests.harness.procs import pid_alive

GUARDIAN = guardian_module.__file__
#: A command that leaves its process group: the inner shell writes its pid, then becomes sleep.
ESCAPE = 'setsid sh -c "echo \\$\\$ > {pidfile}; exec sleep 300" &'
#: The same, ignoring SIGTERM (an ignored disposition survives exec): only SIGKILL ends it.
STUBBORN = "setsid sh -c \"trap '' TERM; echo \\$\\$ > {pidfile}; exec sleep 300\" &"
WAIT_PIDFILE = "while [ ! -s {pidfile} ]; do sleep 0.01; done"


class Driven:
    """One guardian process, the test playing the daemon. Runs are keyed "1", "2", …"""

    def __init__(self, *, preexec: Any = None, stdout: Any = None, args: tuple[str, ...] = ()):
        ctl_r, self.ctl = os.pipe()
        self.status, st_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-S", GUARDIAN, str(ctl_r), str(st_w), "monotonic", *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,  # the jobs' stdout is the guardian's
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
        self.keys = 0

    def send(self, **msg: Any) -> None:
        self.send_raw((json.dumps(msg) + "\n").encode())

    def send_raw(self, data: bytes) -> None:
        os.write(self.ctl, data)

    def first(self, argv: list[str], *, left: float = 60.0, grace: float = 1.0) -> str:
        """Start a run; its key."""
        self.keys += 1
        key = str(self.keys)
        self.send(start=key, argv=argv, env=dict(os.environ),
                  deadline=time.monotonic() + left, grace=grace)  # fmt: skip
        return key

    def control(self, key: str = "1", **msg: Any) -> None:
        self.send(run=key, **msg)

    def close_ctl(self) -> None:
        if self.ctl >= 0:
            os.close(self.ctl)
            self.ctl = -1

    def until(
        self, key: str, timeout: float = 10.0, run: str | None = None
    ) -> dict[str, Any] | None:
        """Read reports until one has ``key`` (of run ``run``); None if the guardian ended."""
        end = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if key in ev and (run is None or ev.get("run") == run):
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
        """Close the pipe (the guardian then kills every job) and wait for it; if it does not
        exit, kill it and the jobs' groups by pid."""
        self.close_ctl()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        pids = [self.proc.pid] + [ev["started"] for ev in self.events if "started" in ev]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.wait(10)

    def finish(self, timeout: float = 10.0) -> int:
        self.close_ctl()
        rc = self.proc.wait(timeout)
        with contextlib.suppress(OSError):
            os.close(self.status)
        return rc


def _exit(ev: dict[str, Any] | None) -> Any:
    assert ev is not None
    return ev["exited"]


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
    assert _exit(driven.until("exited")) == 3
    assert driven.finish() == 0


def test_a_command_is_found_on_the_jobs_path_and_a_missing_one_is_named(driven, tmp_path):
    """The command is looked up on the PATH of the job's environment (the guardian finds the
    file before forking); a name found nowhere is a failed start that says which name."""
    tool = tmp_path / "bin" / "leaderjob-test-tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 5\n")
    tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'nothing'}:{tool.parent}:/usr/bin:/bin"}
    driven.send(start="1", argv=[tool.name], env=env, deadline=time.monotonic() + 60, grace=1)
    assert _exit(driven.until("exited", run="1")) == 5
    driven.send(start="2", argv=["leaderjob-no-such-tool"], env=env,
                deadline=time.monotonic() + 60, grace=1)  # fmt: skip
    report = driven.until("error", run="2")
    assert report is not None and report["exited"] is None
    assert "'leaderjob-no-such-tool'" in report["error"], report
    assert "No such file" in report["error"], report


def test_refuses_to_exec_once_the_deadline_has_passed_s6(driven, tmp_path):
    """S6: the guardian checks D itself, on its own clock, just before exec: a job is never
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
    """S1/S6: a daemon that gave up waiting closes the control pipe; a guardian that reads its
    start request only afterwards must not start the job (a late, untracked copy)."""
    marker = tmp_path / "ran"
    d = Driven()
    try:
        d.first(_sh(f"touch {marker}; sleep 300"))
        d.close_ctl()  # before the guardian (still starting Python) has read anything
        report = d.until("error")
        assert report is not None and "control channel" in report["error"]
        assert d.finish() == 0
        assert not any("started" in ev for ev in d.events)
        assert not marker.exists()
    finally:
        d.cleanup()


def test_stop_kills_a_descendant_that_left_the_group_s6(driven, escaped):
    """S6: a job that calls setsid() leaves its process group; the guardian is its subreaper and
    kills every descendant at stop, not only the group — before it reports the exit."""
    driven.first(_sh(f"{ESCAPE.format(pidfile=escaped)} sleep 300"))
    driven.until("started")
    pid = _escaped_pid(escaped)
    assert pid_alive(pid)
    driven.control(stop="test")
    assert driven.until("exited", timeout=15) is not None
    assert not pid_alive(pid), "a setsid() descendant survived the stop"


def test_main_exit_kills_what_the_job_left_behind_s6(driven, escaped):
    """S6: when the job's main process exits, whatever it started — in its group or not — dies
    before the exit is reported (the daemon revokes the lease only after that report)."""
    driven.first(
        _sh(f"{ESCAPE.format(pidfile=escaped)} {WAIT_PIDFILE.format(pidfile=escaped)}; exit 0")
    )
    assert _exit(driven.until("exited", timeout=15)) == 0
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
    """S6: a guardian that fails (here: a line that is not JSON) still kills everything it
    started, and says why."""
    driven.first(_sh(f"{ESCAPE.format(pidfile=escaped)} sleep 300"))
    started = driven.until("started")
    assert started is not None
    pid = _escaped_pid(escaped)
    driven.send_raw(b"{this is not json\n")
    assert driven.until("exited", timeout=15) is not None
    error = driven.until("error")
    assert error is not None and "guardian failed" in error["error"]
    assert not pid_alive(pid)
    assert not pid_alive(started["started"])
    assert driven.finish() != 0


def test_deadline_kills_a_descendant_that_left_the_group_s6(driven, escaped):
    """S6: at D the guardian kills the whole tree on its own, with no word from the daemon —
    a descendant that left the group and ignores SIGTERM included."""
    script = f"trap '' TERM; {STUBBORN.format(pidfile=escaped)} sleep 300"
    driven.first(_sh(script), left=5.0, grace=0.5)
    driven.until("started")
    pid = _escaped_pid(escaped)
    assert driven.until("exited", timeout=15) is not None
    assert not pid_alive(pid)
    assert {"run": "1", "signal": "SIGKILL", "reason": "deadline"} in driven.events


def _block_usr1_ignore_usr2() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def test_job_starts_with_default_signal_dispositions_and_an_empty_mask(tmp_path):
    """The job inherits no ignored signal (the guardian ignores SIGINT; a daemon started under
    nohup ignores SIGHUP) and no blocked one: Ctrl-C semantics and `kill` work as in a shell."""
    out = tmp_path / "status"
    d = Driven(preexec=_block_usr1_ignore_usr2, stdout=out.open("wb"))
    try:
        # grep itself, with no shell or Python in between: both change dispositions or the mask.
        d.first(["grep", "-E", "^(SigIgn|SigBlk)", "/proc/self/status"])
        assert _exit(d.until("exited")) == 0
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
    """As a subreaper the guardian inherits every orphan of the job; one that ends while the job
    runs is reaped at once (SIGCHLD wakes the loop), so a long job leaves no zombies behind."""
    orphan = f'(setsid sh -c "echo \\$\\$ > {escaped}; sleep 0.2" &)'
    driven.first(_sh(f"{orphan}; sleep 300"))
    driven.until("started")
    pid = _escaped_pid(escaped)
    end = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
        time.sleep(0.01)
    assert not Path(f"/proc/{pid}").exists(), "an orphan that ended was left a zombie"


def test_the_deadline_is_checked_immediately_before_exec_not_before_fork_s6(tmp_path):
    """S6: D is checked in the job's process just before exec. A fork that takes long (here a
    test-only pause between fork and exec, as on a loaded machine) must not turn a start that
    was in time at the fork into a job that runs past its deadline. Checking before the fork
    instead passes the check here (1 s left, grace 0.2 s) and execs after D."""
    marker = tmp_path / "ran"
    d = Driven(args=("--test-stall-before-exec", "1.2"))
    try:
        d.first(_sh(f"touch {marker}; sleep 300"), left=1.0, grace=0.2)
        report = d.until("exited", timeout=15)
        assert report is not None and report["exited"] is None
        assert "deadline" in report["error"], report
        assert not any("started" in ev for ev in d.events)
        time.sleep(0.2)
        assert not marker.exists(), "the job was exec'd after its deadline"
    finally:
        d.cleanup()


def test_a_start_given_up_on_is_not_exec_d_after_its_limit_even_far_from_d_s1_s6(tmp_path):
    """S1, S6: past ``start_by`` the daemon counts the start as failed and may start another
    run; only the check in the job's process, immediately before exec, stops a fork that was in
    time from exec'ing after that limit. Here ``D`` is a minute away, so the guardian has no
    deadline of its own to signal the job's process by: without the check it execs."""
    marker = tmp_path / "ran"
    d = Driven(args=("--test-stall-before-exec", "0.8"))
    try:
        d.send(start="1", argv=_sh(f"touch {marker}; sleep 300"), env=dict(os.environ),
               deadline=time.monotonic() + 60, grace=1.0,
               start_by=time.monotonic() + 0.3)  # fmt: skip
        report = d.until("exited", run="1", timeout=15)
        assert report is not None and report["exited"] is None, report
        assert "gave up" in report["error"], report
        assert not any("started" in ev for ev in d.events)
        time.sleep(0.2)
        assert not marker.exists(), "the job was exec'd after the daemon gave up on it"
    finally:
        d.cleanup()


def test_a_job_slow_to_reach_exec_does_not_hold_up_the_next_start(tmp_path):
    """One guardian starts every run: a job whose way from fork to exec is slow (here 1 s, a
    test-only pause) must not delay the others. Four starts in one read: all exec'd about 1 s
    later, together, not one after another (4 s)."""
    d = Driven(args=("--test-stall-before-exec", "1.0"))
    try:
        sent = time.monotonic()
        msgs = [{"start": str(i), "argv": ["sleep", "300"], "env": dict(os.environ),
                 "deadline": time.monotonic() + 60, "grace": 1.0} for i in range(1, 5)]  # fmt: skip
        d.send_raw(b"".join((json.dumps(m) + "\n").encode() for m in msgs))
        for i in range(1, 5):
            assert d.until("started", run=str(i), timeout=15) is not None
        took = time.monotonic() - sent
        assert took < 2.5, f"the starts waited for one another: {took:.2f} s for four"
    finally:
        d.cleanup()


def _on_their_way(d: Driven, n: int, tmp_path: Path, *, left: float = 60.0) -> list[int]:
    """Send ``n`` starts in one write; the pids of their processes once all are forked (each
    is paused before its last check by the guardian's test-only stall)."""
    msgs = [{"start": f"w{i}", "argv": _sh(f"touch {tmp_path}/ran{i}; sleep 300"),
             "env": dict(os.environ), "deadline": time.monotonic() + left, "grace": 0.3}
            for i in range(n)]  # fmt: skip
    d.send_raw(b"".join((json.dumps(m) + "\n").encode() for m in msgs))
    end = time.monotonic() + 10
    while time.monotonic() < end:
        kids = proctree.children(d.proc.pid) or []
        if len(kids) >= n:
            return kids
        time.sleep(0.01)
    raise AssertionError(f"the guardian forked {len(kids)} of {n}")


def _all_dead(pids: list[int], timeout: float = 5.0) -> list[int]:
    end = time.monotonic() + timeout
    while (alive := [p for p in pids if pid_alive(p)]) and time.monotonic() < end:
        time.sleep(0.02)
    return alive


def test_runs_on_their_way_to_exec_never_exec_once_the_daemon_is_gone_s6(tmp_path):
    """S6 with many runs between fork and exec at once (the guardian does not wait for each
    exec): the daemon's end (its control pipe closed) kills every one of them; none reaches
    exec, none is reported started, the guardian exits."""
    d = Driven(args=("--test-stall-before-exec", "1.0"))
    try:
        pids = _on_their_way(d, 20, tmp_path)
        d.close_ctl()
        assert d.finish() == 0
        assert _all_dead(pids) == []
        time.sleep(1.2)  # past the stall: a survivor would have exec'd by now
        assert not list(tmp_path.glob("ran*")), "a job was exec'd after the daemon was gone"
        assert not any("started" in ev for ev in d.events)
    finally:
        d.cleanup()


def test_runs_on_their_way_to_exec_die_with_a_killed_guardian_s6(tmp_path):
    """S6: ``kill -9`` of the guardian while twenty runs are between fork and exec: each one's
    process dies with it (the parent-death signal is armed first thing after the fork), so no
    job is exec'd without a guardian to kill it at its D."""
    d = Driven(args=("--test-stall-before-exec", "1.0"))
    try:
        pids = _on_their_way(d, 20, tmp_path)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(10)
        assert _all_dead(pids) == []
        time.sleep(1.2)
        assert not list(tmp_path.glob("ran*")), "a job was exec'd with its guardian gone"
    finally:
        d.cleanup()


def test_runs_on_their_way_to_exec_when_their_deadline_nears_are_not_started_s6(tmp_path):
    """S6: twenty runs between fork and exec when their ``D − grace`` comes (D 1 s away, grace
    0.3 s, 1.5 s from fork to exec): each is stopped there and reported not started, for its
    deadline; none is exec'd."""
    d = Driven(args=("--test-stall-before-exec", "1.5"))
    try:
        _on_their_way(d, 20, tmp_path, left=1.0)
        for i in range(20):
            report = d.until("exited", run=f"w{i}", timeout=15)
            assert report is not None and report["exited"] is None, report
            assert "deadline" in report["error"], report
        assert not any("started" in ev for ev in d.events)
        time.sleep(0.3)
        assert not list(tmp_path.glob("ran*"))
    finally:
        d.cleanup()


def test_an_extension_behind_a_burst_of_starts_in_one_read_is_applied_first_s6_l1(tmp_path):
    """S6 without killing early (L1): a deadline extension that arrives in the same read as a
    burst of start requests, behind them, is applied before any of them is forked. Each fork
    here takes the guardian 0.15 s (a test-only pause after it, as on a loaded machine), so
    ten of them outlast the first run's old D; handled in arrival order, the first run is
    TERMed and KILLed at that old D although the daemon had already moved it."""
    marker = tmp_path / "ran"
    d = Driven(args=("--test-stall-after-fork", "0.15"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        key = d.first(_sh("trap '' TERM; sleep 300"), left=1.2, grace=0.3)
        assert d.until("started", run=key) is not None
        burst = [
            {"start": f"b{i}", "argv": _sh(f"touch {marker}{i}; sleep 300"), "env": env,
             "deadline": time.monotonic() + 60, "grace": 1.0}
            for i in range(10)
        ]  # fmt: skip
        extend = {"run": key, "deadline": time.monotonic() + 60}
        d.send_raw(b"".join((json.dumps(m) + "\n").encode() for m in [*burst, extend]))
        assert d.until("started", run="b9", timeout=15) is not None
        time.sleep(0.2)
        signals = [e for e in d.events if e.get("run") == key and "signal" in e]
        assert signals == [], f"the extension waited behind the starts: {signals}"
        assert not any(e.get("run") == key and "exited" in e for e in d.events)
    finally:
        d.cleanup()


def test_a_stop_in_the_same_read_as_its_run_s_start_still_stops_it_s6(driven):
    """S6: controls go before starts within a read, but a stop for a run whose start is in the
    same read follows that start: the run is forked, then stopped, never left running. The stop
    may find the job's process before its exec (the guardian does not wait for it): then it was
    never a job, and is reported so; or after: then it ended by the SIGTERM."""
    start = {"start": "1", "argv": _sh("sleep 300"), "env": dict(os.environ),
             "deadline": time.monotonic() + 60, "grace": 1.0}  # fmt: skip
    driven.send_raw(b"".join((json.dumps(m) + "\n").encode()
                             for m in [start, {"run": "1", "stop": "asked"}]))  # fmt: skip
    end = driven.until("exited", run="1")
    assert end is not None
    assert {"run": "1", "signal": "SIGTERM", "reason": "asked"} in driven.events
    if any(e.get("run") == "1" and "started" in e for e in driven.events):
        assert end["exited"] == -signal.SIGTERM, end
    else:
        assert end == {"run": "1", "error": "not started: stopped before exec", "exited": None}


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 1 << 16):
            pass


@pytest.mark.parametrize("stdout", ["drained", "never_read"])
def test_each_run_is_killed_at_its_own_deadline_while_one_floods_s6(tmp_path, stdout):
    """S6 with one guardian for every run: four runs of different jobs with different
    deadlines, each ignoring SIGTERM, are each SIGKILLed by their own D — while another job
    floods stdout as fast as it can, and whether the daemon's stdout is drained or never read
    at all (a stuck log collector). Deadlines come first; copying never delays a kill."""
    import threading

    out_r, out_w = os.pipe()
    if stdout == "drained":
        threading.Thread(target=_drain, args=(out_r,), daemon=True).start()
    d = Driven(stdout=os.fdopen(out_w, "wb"))
    try:
        flood = d.first(["sh", "-c", "trap '' TERM; exec yes flood"], left=60, grace=1.0)
        t0 = time.monotonic()
        lefts = {d.first(_sh("trap '' TERM; echo hi; sleep 300"), left=left, grace=0.3): left
                 for left in (1.0, 1.6, 2.2, 2.8)}  # fmt: skip
        for key, left in lefts.items():
            report = d.until("exited", timeout=15, run=key)
            assert report is not None and report["exited"] == -signal.SIGKILL
            took = time.monotonic() - t0
            assert took < left + 0.3, f"run {key} killed {took:.2f}s after its start, D {left}"
            signals = [(e["signal"], e["reason"]) for e in d.events if e.get("run") == key
                       and "signal" in e]  # fmt: skip
            assert signals == [("SIGTERM", "deadline"), ("SIGKILL", "deadline")], signals
        assert d.until("started", run=flood) is not None
        assert not any(e.get("run") == flood and "exited" in e for e in d.events)
    finally:
        d.cleanup()
        os.close(out_r)


def test_no_exit_report_is_dropped_when_the_daemon_does_not_read_for_a_while():
    """A daemon that does not read (frozen, slow) while many runs end with full tails: more
    than a pipe holds. Every exit report still arrives, in full and after its run's start —
    the reports wait in the guardian, they are never dropped (and the kills never wait)."""
    d = Driven(stdout=open(os.devnull, "wb"))  # noqa: SIM115 - Driven closes it
    try:
        keys = [
            d.first(_sh("head -c 6000 /dev/zero | tr '\\0' x; head -c 6000 /dev/zero >&2"))
            for _ in range(24)
        ]
        time.sleep(3.0)  # the status pipe (64 KiB) fills long before all of them ended
        for key in keys:
            report = d.until("exited", timeout=15, run=key)
            assert report is not None and report["exited"] == 0
            assert report["tails"]["stdout_tail"] == "x" * 4096
            assert report["tails"]["stdout_truncated"] is True
    finally:
        d.cleanup()


def test_the_guardian_loads_no_grpc_nor_etcd3(driven):
    """The guardian is standard library only (started as ``python -S``): no gRPC threads to
    fork under, no etcd client, a few MiB of memory."""
    assert driven.until("ready") is not None
    maps = Path(f"/proc/{driven.proc.pid}/maps").read_text()
    for lib in ("grpc", "etcd3", "protobuf", "structlog", "prometheus"):
        assert lib not in maps, f"the guardian loaded {lib}"
    threads = len(os.listdir(f"/proc/{driven.proc.pid}/task"))
    assert threads == 1, f"the guardian runs {threads} threads: it forks jobs"


def _many(d: Driven, n: int, argv: list[str], deadline: float, grace: float) -> list[int]:
    """Start ``n`` runs of ``argv`` in one write, all with one ``D``; their pids once all
    are exec'd."""
    msgs = [{"start": f"m{i}", "argv": argv, "env": dict(os.environ), "deadline": deadline,
             "grace": grace} for i in range(n)]  # fmt: skip
    d.send_raw(b"".join((json.dumps(m) + "\n").encode() for m in msgs))
    return [int(d.until("started", run=f"m{i}", timeout=60)["started"]) for i in range(n)]  # type: ignore[index]


#: Runs at once in the tests of many runs: a look at the processes per run made the last of
#: 200 die 3.5 s after their D, of 500 25 s after it.
MANY = 300


def test_many_runs_at_one_deadline_are_all_killed_by_it_s6(tmp_path):
    """S6 with one guardian for every run: three hundred runs that ignore SIGTERM reach the
    same ``D`` (a lease lost with every job running). Each is SIGKILLed by then: the guardian
    signals every run due in one turn with one look at the processes below it, where a look
    per run left the last of them alive seconds after ``D``."""
    d = Driven()
    try:
        deadline = time.monotonic() + 6.0
        pids = _many(d, MANY, _sh("trap '' TERM; exec sleep 300"), deadline, grace=1.0)
        assert time.monotonic() < deadline - 1.5, "the runs took too long to start to test this"
        time.sleep(max(0.0, deadline - time.monotonic()))
        alive = _all_dead(pids, timeout=0.5)
        assert alive == [], f"{len(alive)} of {MANY} runs alive 0.5 s after their D"
    finally:
        d.cleanup()


def test_a_stop_of_many_runs_in_one_read_reaches_each_at_once_s6(tmp_path):
    """S6 (and a prompt handover): the daemon stops every run at once (its lease lost, or it
    leaves): three hundred stops in one read. Each run's SIGTERM goes out in the same turn, so
    all are dead well within their grace — not one after another, a look at the processes
    below the guardian per run."""
    d = Driven()
    try:
        pids = _many(d, MANY, ["sleep", "300"], time.monotonic() + 120, grace=30.0)
        t0 = time.monotonic()
        d.send_raw(b"".join((json.dumps({"run": f"m{i}", "stop": "asked"}) + "\n").encode()
                            for i in range(MANY)))  # fmt: skip
        alive = _all_dead(pids, timeout=1.0)
        assert alive == [], f"{len(alive)} of {MANY} runs alive {time.monotonic() - t0:.1f} s after"
    finally:
        d.cleanup()


def test_a_deadline_due_in_the_middle_of_a_run_of_forks_is_met_there_s6(tmp_path):
    """S6 with the starts of one read forked back to back: a running job's ``D`` that falls
    due while a burst is being forked is met between two forks, not after the burst. Each fork
    here takes the guardian 0.2 s (a test-only pause after it), so the ten starts take 2 s; the
    running job ignores SIGTERM and its ``D`` is less than 1.5 s after the burst was sent."""
    d = Driven(args=("--test-stall-after-fork", "0.2"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        deadline = time.monotonic() + 1.5
        d.send(start="1", argv=_sh("trap '' TERM; sleep 300"), env=env, deadline=deadline,
               grace=0.3)  # fmt: skip
        assert d.until("started", run="1") is not None
        assert time.monotonic() < deadline - 1.0, "the first run took too long to start"
        burst = [
            {"start": f"b{i}", "argv": _sh("sleep 300"), "env": env,
             "deadline": time.monotonic() + 60, "grace": 1.0}
            for i in range(10)
        ]  # fmt: skip
        d.send_raw(b"".join((json.dumps(m) + "\n").encode() for m in burst))
        killed = next(
            (e for e in d.events if e.get("run") == "1" and e.get("signal") == "SIGKILL"), None
        )
        while killed is None:
            term = d.until("signal", run="1", timeout=5)  # the SIGTERM at D - grace comes first
            assert term is not None, "the guardian ended"
            d.events.remove(term)
            killed = term if term["signal"] == "SIGKILL" else None
        got = time.monotonic()
        assert got < deadline + 0.4, f"SIGKILL reported {got - deadline:.2f} s after D"
        assert not any(e.get("run") == "b9" and "started" in e for e in d.events), (
            "the burst was over before the kill: the test proves nothing"
        )
    finally:
        d.cleanup()


def test_a_burst_looks_each_command_up_once_and_the_next_burst_afresh(tmp_path):
    """The command's file is looked up on the job's ``PATH`` once per burst of starts (a
    burst is read as one instant), never carried over to the next: a command installed
    earlier on the ``PATH`` after one burst is the one the next burst runs."""
    from leaderjob.guard import guardian_spawn

    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        d.mkdir()
    tool = second / "leaderjob-test-tool"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    env = {"PATH": f"{first}:{second}"}
    memo: dict[tuple[str, str | None], str | None] = {}
    assert guardian_spawn.resolve(tool.name, env, memo) == str(tool)
    early = first / tool.name
    early.write_text("#!/bin/sh\nexit 0\n")
    early.chmod(0o755)
    assert guardian_spawn.resolve(tool.name, env, memo) == str(tool)  # the same burst
    assert guardian_spawn.resolve(tool.name, {"PATH": str(first)}, memo) == str(early)
    assert guardian_spawn.resolve(tool.name, env, {}) == str(early)  # the next burst
    assert guardian_spawn.resolve(tool.name, {"PATH": str(tmp_path)}, memo) is None


def _few_descriptors() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))


def test_a_burst_out_of_descriptors_fails_the_starts_it_cannot_make_and_leaks_nothing():
    """Bad input gets a clear error and nothing lost: a burst of starts larger than the
    guardian's descriptors allow (each start needs a few pipes while it is prepared). The starts
    that cannot be made each fail with the reason; the others run; once they end, the guardian
    holds no more descriptors than before the burst, and starts the next job."""
    d = Driven(preexec=_few_descriptors)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        assert d.until("ready") is not None
        fds = f"/proc/{d.proc.pid}/fd"
        before = len(os.listdir(fds))
        burst = [
            {"start": f"b{i}", "argv": ["sleep", "300"], "env": env,
             "deadline": time.monotonic() + 60, "grace": 1.0}
            for i in range(16)
        ]  # fmt: skip
        d.send_raw(b"".join((json.dumps(m) + "\n").encode() for m in burst))
        answers = {}
        for i in range(16):
            got = d.until("run", run=f"b{i}")
            assert got is not None
            answers[f"b{i}"] = got
        failed = [k for k, a in answers.items() if "error" in a]
        started = [k for k, a in answers.items() if "started" in a]
        assert failed and started, answers
        for k in failed:
            assert "Too many open files" in answers[k]["error"], answers[k]
        for k in started:
            d.control(k, kill="test")
        for k in started:
            assert d.until("exited", run=k) is not None
        end = time.monotonic() + 5
        while len(os.listdir(fds)) > before and time.monotonic() < end:
            time.sleep(0.05)
        assert len(os.listdir(fds)) == before, "descriptors left behind by the burst"
        d.send(start="next", argv=["true"], env=env, deadline=time.monotonic() + 60, grace=1.0)
        assert _exit(d.until("exited", run="next")) == 0
    finally:
        d.cleanup()


def _low_soft_descriptor_limit() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))


def _nofile(pid: int) -> tuple[str, str]:
    """Soft and hard "Max open files" of ``pid``, as /proc shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-files limit shown")


def test_the_guardian_raises_its_descriptor_limit_and_its_jobs_get_the_one_it_was_given(
    tmp_path: Path,
) -> None:
    """A thousand runs in flight need more descriptors than the 1,024 many hosts and container
    runtimes start a process with: the guardian raises its soft limit to the hard one. A job
    gets the limit the guardian was started with, as if nothing had changed."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 64:
        pytest.skip(f"no finite hard limit above 64 to raise to ({hard})")
    out = tmp_path / "limit"
    d = Driven(preexec=_low_soft_descriptor_limit)
    try:
        assert d.until("ready") is not None
        assert _nofile(d.proc.pid) == (str(hard), str(hard))
        d.first(_sh(f"ulimit -n > {out}"))
        assert _exit(d.until("exited")) == 0
        assert out.read_text().strip() == "64"
    finally:
        d.cleanup()
