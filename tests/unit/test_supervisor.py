"""The daemon's side of a run (:class:`leaderjob.guard.run.Run`), with the real guardian.

What it promises (docs/safety.md §3): starting never blocks the leader path longer than the
lease budget it is given; a run that did not confirm its start in that time can no longer start
(S1: no second, untracked copy) and ends by itself; a guardian that cannot be started is a failed
start, not a crash; a guardian killed outright still takes the job's group with it (S6).
Processes a test starts are killed by pid at the end, whether it passed or not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leaderjob.clock import now as deadline_clock  # the watchdog's clock
from leaderjob.guard import supervisor
from leaderjob.guard.run import Run
from tests.harness.procs import pid_alive

SH = "/bin/sh"


def _run(argv: list[str], *, left: float = 60.0, grace: float = 1.0) -> Run:
    return Run(
        argv=argv,
        env=dict(os.environ),
        deadline=deadline_clock() + left,
        grace=grace,
        wakeup=threading.Event(),
        run_id="test",
        token=7,
    )


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """Runs of a test; their guardians and jobs are killed by pid afterwards."""
    made: list[Run] = []
    yield made
    for run in made:
        run.close()  # the guardian kills its job on EOF; if it does not end, kill both by pid
        run.wait(10)
        for pid in (run.pid, run.guardian.pid if run.guardian is not None else None):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def pidfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "job.pid"
    yield path
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(path.read_text()), signal.SIGKILL)


def _read_pid(path: Path, timeout: float = 10.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def _open_fds() -> set[tuple[str, str]]:
    """This process's descriptors, each with what it points to. Compared as sets, not counted:
    in a shared test process something else (a finaliser, another thread) may close one of its
    own meanwhile, which is no leak of ours."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            fds.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return fds


def test_start_confirms_the_pid_and_the_exit_is_reported(runs):
    run = _run([SH, "-c", "exit 3"])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert run.confirmed and run.pid is not None
    assert run.wait(10)
    assert run.returncode == 3
    assert run.outcome == "failed"


def test_a_command_that_cannot_be_executed_fails_to_start(runs, tmp_path):
    run = _run([str(tmp_path / "no-such-command")])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert not run.confirmed and run.pid is None
    assert run.error is not None and "no-such-command" in run.error
    assert run.wait(10)
    assert run.outcome == "failed_to_start"


def test_no_start_with_less_than_the_grace_left_s6(runs):
    """S6: the guardian refuses a start request that leaves it no time to stop the job."""
    # 1 s left: the refusal is for the grace even while a new guardian starts on a busy machine.
    run = _run([SH, "-c", "sleep 300"], left=1.0, grace=1.0)
    runs.append(run)
    run.start(time.monotonic(), wait=0.3)
    assert run.wait(10)
    assert run.pid is None and not run.confirmed
    assert run.error is not None and "grace" in run.error
    assert run.outcome == "failed_to_start"


def test_a_guardian_that_cannot_be_started_is_a_failed_start_not_a_crash(runs, monkeypatch):
    """Starting the guardian can fail (EAGAIN at the process limit, ENOMEM): that is a failed
    start the daemon can report and retry, not an exception that kills the daemon with its lease
    unrevoked; and no descriptor leaks."""

    def no_fork(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(supervisor.subprocess, "Popen", no_fork)
    before = _open_fds()
    run = _run([SH, "-c", "true"])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert run.done and not run.confirmed
    assert run.error is not None and os.strerror(errno.EAGAIN) in run.error
    assert run.outcome == "failed_to_start"
    assert _open_fds() - before == set(), "a descriptor was left open"


SLOW_GUARDIAN = """
import runpy, sys, time
time.sleep({delay})
sys.argv[0] = {real!r}
runpy.run_path({real!r}, run_name="__main__")
"""


def test_an_unconfirmed_start_is_bounded_and_can_never_start_later_s1_s6(
    runs, monkeypatch, tmp_path
):
    """S1/S6: the wait for the guardian is bounded by the budget the daemon gives (the lease's,
    not a fixed 10 s); a start not confirmed by then can no longer happen — the control pipe is
    closed and the guardian refuses — so no copy of the job runs that the daemon does not know
    of. The run still ends by itself (the daemon tracks it until then)."""
    slow = tmp_path / "slow_guardian.py"
    slow.write_text(textwrap.dedent(SLOW_GUARDIAN.format(delay=1.5, real=supervisor._GUARDIAN)))
    monkeypatch.setattr(supervisor, "_GUARDIAN", str(slow))
    marker = tmp_path / "ran"
    run = _run([SH, "-c", f"touch {marker}; sleep 300"])
    runs.append(run)
    t0 = time.monotonic()
    run.start(t0, wait=0.3)
    waited = time.monotonic() - t0
    assert not run.confirmed
    assert waited < 1.2, f"start waited {waited:.2f}s with a 0.3 s budget"
    assert not run.done  # the guardian may still exist: the caller must keep tracking it
    assert run.wait(15)
    assert run.pid is None, "the job was started after the daemon gave up on it"
    assert not marker.exists()
    assert run.error is not None and "gave up" in run.error
    assert run.outcome == "failed_to_start"


def test_a_killed_guardian_is_noticed_and_the_job_group_killed_s6(runs, pidfile):
    """S6: if the guardian itself is killed (not the daemon), its status pipe ends without an
    exit report; the daemon's side then SIGKILLs the job's process group itself (PDEATHSIG
    reaches only the job's main process, not a background child in its group)."""
    run = _run([SH, "-c", f"sleep 300 & echo $! > {pidfile}; wait"])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert run.confirmed and run.guardian is not None and run.guardian.pid is not None
    background = _read_pid(pidfile)
    assert pid_alive(background)
    os.kill(run.guardian.pid, signal.SIGKILL)
    assert run.wait(10)
    end = time.monotonic() + 5
    while pid_alive(background) and time.monotonic() < end:
        time.sleep(0.01)
    assert not pid_alive(background), "the job's group outlived its killed guardian"
    assert run.outcome == "watchdog_failed"  # the outcome keeps its name


def test_a_start_request_larger_than_the_pipe_is_delivered_whole(runs, monkeypatch):
    """The start request (command and environment) is written without blocking and without
    losing a byte, even when it does not fit in the pipe at once (short writes)."""
    monkeypatch.setattr(supervisor, "_PIPE_MAX", 4096)  # the pipe shrinks to one page
    env = dict(os.environ)
    for i in range(3):
        env[f"LEADERJOB_TEST_BIG_{i}"] = str(i) * 100_000
    run = Run(
        argv=[SH, "-c", 'test "${#LEADERJOB_TEST_BIG_2}" -eq 100000'],
        env=env,
        deadline=deadline_clock() + 60,
        grace=1.0,
        wakeup=threading.Event(),
    )
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert run.confirmed, run.error
    assert run.wait(10)
    assert run.returncode == 0


def test_stop_ends_the_job_and_reports_the_signal(runs):
    run = _run([SH, "-c", "sleep 300"])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert run.confirmed
    run.stop("shutdown")
    assert run.wait(10)
    assert run.returncode == -signal.SIGTERM
    assert run.outcome == "shutdown"
    assert [(s.name, s.reason) for s in run.signals] == [("SIGTERM", "shutdown")]


def test_a_run_handed_to_a_guardian_that_just_died_is_over_not_wedged_s1(runs, monkeypatch):
    """A run is over when the guardian says so or when the guardian is gone. The guardian was
    seen alive, then died before the start request reached it (its end already read): the run
    must end at once as a failed start, never wait for a report that cannot come (with a
    watchdog per run this wedged the daemon: no campaign, no revoke, for ever)."""
    g = supervisor.GuardianProcess.spawn()
    assert g.pid is not None
    os.kill(g.pid, signal.SIGKILL)
    assert g.ended.wait(10)
    # Seen alive by the caller just before it died: the race, made deterministic.
    monkeypatch.setattr(supervisor.GuardianProcess, "alive", property(lambda self: True))
    run = _run([SH, "-c", "sleep 300"])
    runs.append(run)
    t0 = time.monotonic()
    run.start(t0, wait=5.0, guardian=g)
    assert run.wait(1.0), "the run waits for a guardian that is gone"
    assert time.monotonic() - t0 < 1.0
    assert not run.confirmed and run.pid is None
    assert run.outcome == "failed_to_start"
    assert run.error is not None and "guardian ended" in run.error


def test_a_guardian_that_cannot_be_started_is_retried_later_and_less_often(monkeypatch):
    """No pipe, no process: the failure is reported once, then the daemon tries again 1 s
    later, doubling while it fails (each run meanwhile tries a guardian of its own)."""
    calls: list[float] = []

    def no_fork(*args: object, **kwargs: object) -> None:
        calls.append(time.monotonic())
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(supervisor.GuardianProcess, "spawn", no_fork)
    g = supervisor.Guardian()
    error = g.ensure(100.0)
    assert error is not None and os.strerror(errno.EAGAIN) in error
    assert g.ensure(100.5) is None and len(calls) == 1  # waits for its retry, says nothing
    assert g.ensure(101.0) is not None and len(calls) == 2
    assert g.ensure(102.5) is None and len(calls) == 2  # 2 s after the second failure
    assert g.ensure(103.0) is not None and len(calls) == 3


# -- a start requested now, its confirmation read later -----------------------------------------


@pytest.fixture
def stalled() -> Iterator[supervisor.GuardianProcess]:
    """A guardian whose every job pauses 0.5 s between fork and exec (a slow start), ready."""
    g = supervisor.GuardianProcess.spawn(args=("--test-stall-before-exec", "0.5"))
    end = time.monotonic() + 10
    while g.ready_at is None and time.monotonic() < end:
        time.sleep(0.01)
    yield g
    g.close()
    g.ended.wait(10)


def _requested(run: Run, runs: list[Run], wait: float, g: supervisor.GuardianProcess) -> float:
    runs.append(run)
    t0 = time.monotonic()
    run.request(t0, wait=wait, guardian=g)
    return time.monotonic() - t0


def test_a_start_request_returns_at_once_and_its_confirmation_wakes_the_loop(runs, stalled):
    """The non-blocking start: ``request`` returns before the guardian has exec'd the job (here
    it takes 0.5 s); ``confirm(0)`` says "not yet" without waiting; the caller's wake-up is set
    when the guardian reports the exec, and then ``confirm`` answers True."""
    run = _run([SH, "-c", "sleep 300"])
    took = _requested(run, runs, 10.0, stalled)
    assert took < 0.4, f"request() waited {took:.2f}s"
    assert run.confirm() is None and not run.confirmed and not run.done
    assert run.wakeup.wait(10), "the confirmation did not wake the caller"
    assert run.confirm() is True and run.confirmed and run.pid is not None
    assert pid_alive(run.pid)
    assert run.confirm() is True  # the answer stays


def test_many_start_requests_then_their_confirmations(runs):
    """Requests sent together (a burst on one fire time), confirmations read afterwards: every
    job starts once, under the one guardian, and each run ends with its own exit code."""
    g = supervisor.GuardianProcess.spawn()
    batch = [_run([SH, "-c", f"exit {i}"]) for i in range(8)]
    for run in batch:
        _requested(run, runs, 10.0, g)
    for run in batch:
        assert run.confirm(wait=10.0) is True, run.error
    assert len({run.pid for run in batch}) == len(batch)
    for i, run in enumerate(batch):
        assert run.wait(10)
        assert run.returncode == i and run.outcome == ("succeeded" if i == 0 else "failed")
    g.close()


def test_a_request_not_confirmed_by_its_limit_is_given_up_and_never_starts_later_s1_s6(
    runs, stalled, tmp_path
):
    """S1/S6: a request whose exec is not reported within its ``wait`` is given up by
    ``confirm`` (False, the run killed should the report be on its way) and the guardian, past
    that limit, refuses to exec it: no copy of the job the daemon does not know of. The run
    still ends by itself: the caller tracks it until ``done``."""
    marker = tmp_path / "ran"
    run = _run([SH, "-c", f"touch {marker}; sleep 300"])
    _requested(run, runs, 0.2, stalled)  # the guardian's job is 0.5 s from its exec
    assert run.confirm() is None
    assert run.confirm(wait=5.0) is False  # waits no longer than the limit
    assert not run.confirmed and run.error is not None
    assert run.wait(10)
    assert run.pid is None, "the job was started after the daemon gave up on it"
    assert not marker.exists()
    assert run.outcome == "failed_to_start"


def test_a_confirmation_waited_for_does_not_wake_the_loop(runs):
    """A blocking start waits for its confirmation itself: the daemon's loop is not woken for
    it (one cycle fewer per run); a job's exit still wakes it."""
    woken = threading.Event()
    g = supervisor.GuardianProcess.spawn(woken)
    end = time.monotonic() + 10
    while g.ready_at is None and time.monotonic() < end:
        time.sleep(0.01)
    woken.clear()
    run = _run([SH, "-c", "sleep 0.3"])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0, guardian=g)
    assert run.confirmed
    assert not woken.is_set() and not run.wakeup.is_set()
    assert run.wait(10)
    assert woken.wait(5) and run.wakeup.is_set()
    g.close()


def test_the_start_limit_is_on_the_deadline_clock_not_the_monotonic_clock(runs, monkeypatch):
    """The limit past which the guardian refuses to exec is read on the guardian's clock (the
    deadline clock, CLOCK_BOOTTIME where there is one). After a suspend of the host, the
    monotonic clock lags that one by the suspend's length: a limit taken from it was already
    past for the guardian, and every start was refused."""
    real = time.monotonic
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: real() - 100.0)
    run = _run([SH, "-c", "exit 0"])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert run.confirmed, run.error
    assert run.wait(10) and run.outcome == "succeeded"


class _CountingWaker:
    """The loop's wake-up, counting how often the report reader sets it."""

    def __init__(self) -> None:
        self.sets = 0
        self.event = threading.Event()

    def set(self) -> None:
        self.sets += 1
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def clear(self) -> None:
        self.event.clear()

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout)


def test_the_answers_to_a_burst_of_starts_wake_the_loop_once(runs, stalled):
    """A pass of the loop requests several starts at once; their answers come one by one (a
    fork and exec each: here 0.5 s apart). The reports that come while another start of the
    burst is still unanswered wait for it, and the last answer wakes the loop once: one pass
    absorbs them all, rather than one pass each (CPU per run). Nothing is held back any longer
    than the burst's own answers take."""
    woken = _CountingWaker()
    batch = [_run([SH, "-c", "sleep 300"]) for _ in range(3)]
    for run in batch:
        run.wakeup = woken
        _requested(run, runs, 10.0, stalled)
    assert woken.wait(10), "the answers did not wake the loop"
    assert [run.confirm() for run in batch] == [True, True, True]
    assert woken.sets == 1, f"woken {woken.sets} times for one burst's answers"
    woken.clear()
    batch[0].stop("test")  # a report with no start unanswered wakes the loop at once
    assert woken.wait(10) and batch[0].wait(10)


def test_a_long_burst_wakes_the_loop_every_few_answers(runs, stalled):
    """A burst longer than :data:`HOLD_ANSWERS` wakes the loop every that many answers, and at
    the last: the daemon sends its waiting starts while the guardian works on the others."""
    woken = _CountingWaker()
    n = supervisor.HOLD_ANSWERS + 2
    batch = [_run([SH, "-c", "sleep 300"]) for _ in range(n)]
    for run in batch:
        run.wakeup = woken
        _requested(run, runs, 10.0, stalled)
    end = time.monotonic() + 10
    while not all(run.pid for run in batch) and time.monotonic() < end:
        time.sleep(0.01)
    assert [run.confirm() for run in batch] == [True] * n
    assert woken.sets == 2, f"woken {woken.sets} times for {n} answers"


def test_a_start_given_up_on_holds_no_report_back(runs, stalled):
    """A start past its limit is given up by ``confirm``: from then on the other runs' reports
    do not wait for its answer (a guardian that never answered it would hold them until the
    loop's next pass for another reason)."""
    run = _run([SH, "-c", "sleep 300"])
    _requested(run, runs, 0.2, stalled)  # the guardian's job is 0.5 s from its exec
    assert run.key in stalled.unanswered
    assert run.confirm(wait=5.0) is False
    assert run.key not in stalled.unanswered


def test_the_exec_time_is_when_the_guardian_saw_it_not_when_its_report_was_read(runs, pidfile):
    """The caller hands the start's timing the guardian's reading: ``exec_at`` (a
    ``job.started`` line's ``exec_seconds``, the fire → exec figures) is when the guardian saw
    the exec, on the deadline clock both read; when the daemon read that report is
    ``exec_reported_at``. Here the report reader is held up 0.3 s after the job is running: the
    exec time stays where the job began."""
    g = supervisor.GuardianProcess.spawn()
    run = _run([SH, "-c", f"echo $$ > {pidfile}; exec sleep 300"])
    asked = deadline_clock()
    _requested(run, runs, 10.0, g)
    with g.lock:  # the reader applies reports under it
        _read_pid(pidfile)
        running = deadline_clock()
        time.sleep(0.3)
    assert run.confirm(wait=10.0) is True
    assert run.exec_at is not None and run.exec_reported_at is not None
    assert asked <= run.exec_at < running + 0.2, (asked, run.exec_at, running)
    assert run.exec_reported_at >= running + 0.25
    g.close()
