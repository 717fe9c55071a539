"""The daemon's side of a run (:class:`leaderjob.supervisor.Run`), with the real watchdog.

What it promises (docs/safety.md §3): starting never blocks the leader path longer than the
lease budget it is given; a run that did not confirm its start in that time can no longer start
(S1: no second, untracked copy) and ends by itself; a watchdog that cannot be started is a failed
start, not a crash; a watchdog killed outright still takes the job's group with it (S6).
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

from leaderjob import supervisor
from leaderjob.clock import now as deadline_clock  # the watchdog's clock
from leaderjob.supervisor import Run
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
    """Runs of a test; their watchdogs and jobs are killed by pid afterwards."""
    made: list[Run] = []
    yield made
    for run in made:
        run.close()  # the watchdog kills its job on EOF; if it does not end, kill both by pid
        run.wait(10)
        for pid in (run.pid, run._proc.pid if run._proc is not None else None):
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


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


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
    """S6: the watchdog refuses a start request that leaves it no time to stop the job."""
    run = _run([SH, "-c", "sleep 300"], left=0.3, grace=1.0)
    runs.append(run)
    run.start(time.monotonic(), wait=0.3)
    assert run.wait(10)
    assert run.pid is None and not run.confirmed
    assert run.error is not None and "grace" in run.error
    assert run.outcome == "failed_to_start"


def test_a_watchdog_that_cannot_be_started_is_a_failed_start_not_a_crash(runs, monkeypatch):
    """Starting the watchdog can fail (EAGAIN at the process limit, ENOMEM): that is a failed
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
    assert _open_fds() == before


SLOW_WATCHDOG = """
import runpy, sys, time
time.sleep({delay})
sys.argv[0] = {real!r}
runpy.run_path({real!r}, run_name="__main__")
"""


def test_an_unconfirmed_start_is_bounded_and_can_never_start_later_s1_s6(
    runs, monkeypatch, tmp_path
):
    """S1/S6: the wait for the watchdog is bounded by the budget the daemon gives (the lease's,
    not a fixed 10 s); a start not confirmed by then can no longer happen — the control pipe is
    closed and the watchdog refuses — so no copy of the job runs that the daemon does not know
    of. The run still ends by itself (the daemon tracks it until then)."""
    slow = tmp_path / "slow_watchdog.py"
    slow.write_text(textwrap.dedent(SLOW_WATCHDOG.format(delay=1.5, real=supervisor._WATCHDOG)))
    monkeypatch.setattr(supervisor, "_WATCHDOG", str(slow))
    marker = tmp_path / "ran"
    run = _run([SH, "-c", f"touch {marker}; sleep 300"])
    runs.append(run)
    t0 = time.monotonic()
    run.start(t0, wait=0.3)
    waited = time.monotonic() - t0
    assert not run.confirmed
    assert waited < 1.2, f"start waited {waited:.2f}s with a 0.3 s budget"
    assert not run.done  # the watchdog may still exist: the caller must keep tracking it
    assert run.wait(15)
    assert run.pid is None, "the job was started after the daemon gave up on it"
    assert not marker.exists()
    assert run.error is not None and "control pipe" in run.error
    assert run.outcome == "failed_to_start"


def test_a_killed_watchdog_is_noticed_and_the_job_group_killed_s6(runs, pidfile):
    """S6: if the watchdog itself is killed (not the daemon), its status pipe ends without an
    exit report; the daemon's side then SIGKILLs the job's process group itself (PDEATHSIG
    reaches only the job's main process, not a background child in its group)."""
    run = _run([SH, "-c", f"sleep 300 & echo $! > {pidfile}; wait"])
    runs.append(run)
    run.start(time.monotonic(), wait=10.0)
    assert run.confirmed and run._proc is not None
    background = _read_pid(pidfile)
    assert pid_alive(background)
    os.kill(run._proc.pid, signal.SIGKILL)
    assert run.wait(10)
    end = time.monotonic() + 5
    while pid_alive(background) and time.monotonic() < end:
        time.sleep(0.01)
    assert not pid_alive(background), "the job's group outlived its killed watchdog"
    assert run.outcome == "watchdog_failed"


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


def test_a_kept_watchdog_serves_the_next_run_and_a_finished_runs_controls_go_nowhere(runs):
    """Reuse within a tenure: the pool's watchdog, started ahead, serves one run, is given back,
    and serves the next run of the same owner (no interpreter start). A control the daemon sends
    to the finished run (a late stop) must not reach the run the watchdog serves now."""
    pool = supervisor.WatchdogPool()
    pool.enabled = True
    try:
        assert pool.fill(time.monotonic()) is None
        wd = pool.take(("job", 7))
        assert wd is not None and wd.idle
        first = _run([SH, "-c", "exit 0"])
        first.reuse, first.watchdog = True, wd
        runs.append(first)
        first.start(time.monotonic(), wait=10.0)
        assert first.confirmed and first.wait(10) and first.returncode == 0
        kept = first.release()
        assert kept is wd
        pool.give(("job", 7), kept)
        assert pool.take(("job", 8)) is not wd  # another tenure's run never gets it
        again = pool.take(("job", 7))
        assert again is wd
        second = _run([SH, "-c", "sleep 0.5; exit 4"])
        second.reuse, second.watchdog = True, again
        runs.append(second)
        second.start(time.monotonic(), wait=10.0)
        assert second.confirmed and second._proc is first._proc
        first.stop("late")  # the finished run: nothing may be sent for it any more
        assert second.wait(10)
        assert second.returncode == 4 and not second.signals, second.signals
    finally:
        pool.close()


def test_a_discarded_watchdog_exits(runs):
    """S6: the pool closes the watchdogs of a tenure that ended; each exits at once (EOF)."""
    pool = supervisor.WatchdogPool()
    pool.enabled = True
    pool.fill(time.monotonic())
    wd = pool.take("owner")
    assert wd is not None
    pool.give("owner", wd)
    assert pool.discard("owner") == 1
    assert wd.ended.wait(10), "a discarded watchdog did not exit"
    assert wd.proc is not None and wd.proc.wait(5) == 0


def test_a_spare_that_cannot_be_started_is_retried_later_and_less_often():
    """A spare that cannot be started (EAGAIN at the process limit) is no failed run — the run
    starts its own watchdog — and is retried 1 s later, then 2 s, 4 s… (one log line each)."""

    def no_fork(wakeup: object) -> supervisor.WatchdogProcess:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    pool = supervisor.WatchdogPool(spawn=no_fork)
    assert pool.fill(0.0) is None  # disabled until the loop serves
    pool.enabled = True
    tried = [t for t in (0.0, 0.5, 1.0, 2.0, 2.9, 3.0, 6.9, 7.0) if pool.fill(t) is not None]
    assert tried == [0.0, 1.0, 3.0, 7.0]
    assert pool.take("owner") is None


class _Puppet:
    """A watchdog process as the pool sees it (no process): alive and idle until closed."""

    def __init__(self, wakeup: object = None) -> None:
        self.closed = False

    @property
    def idle(self) -> bool:
        return not self.closed

    alive = idle

    def close(self) -> None:
        self.closed = True


def test_a_spare_is_kept_only_for_a_job_without_a_watchdog_of_its_own():
    """One idle watchdog per job, not two: a follower (owner None) keeps a spare; a leader whose
    spare became its watchdog (kept between runs, or serving one) gets no second spare until
    its tenure ends."""
    made: list[_Puppet] = []

    def spawn(wakeup: object) -> _Puppet:
        made.append(_Puppet())
        return made[-1]

    pool = supervisor.WatchdogPool(spawn=spawn)  # type: ignore[arg-type]
    pool.enabled = True
    pool.fill(0.0, [None])  # following
    assert len(made) == 1
    owner = ("job", 7)
    wd = pool.take(owner)
    assert wd is made[0]
    pool.fill(1.0, [owner])  # leading, its run on that watchdog
    pool.give(owner, wd)  # type: ignore[arg-type]
    pool.fill(2.0, [owner])  # leading, between runs
    assert len(made) == 1, "a second idle watchdog for a job that has one"
    pool.discard(owner)
    assert made[0].closed
    pool.fill(3.0, [None])  # following again
    assert len(made) == 2 and not made[1].closed
