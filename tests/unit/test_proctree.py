"""The guardian's view of its processes: what lies below it, found without a scan of ``/proc``.

A stop's SIGTERM sweep (and so the exit report the daemon revokes the lease after: L2) must not
wait for a read of every process of the machine; it still reaches a descendant that left the
job's group (S6).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leaderjob.guard import guardian_runs, proctree
from leaderjob.guard.tail import Sink
from tests.harness.procs import pid_alive

#: A job whose main process has a child in its group and one that left it (setsid); each child
#: writes its pid, then all of them sleep. The main process ignores SIGTERM (set after its
#: children started): it stays, so what it started stays below it (the test process is no
#: subreaper, as the guardian is).
TREE = (
    'sleep 300 & echo $! > "$1"; '
    'setsid sh -c "echo \\$\\$ > \\"$2\\"; exec sleep 300" & '
    "trap '' TERM; exec sleep 300"
)


def _pid(path: Path) -> int:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"no pid in {path}")


@pytest.fixture
def job(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """The job (its own process group), its child in the group, its child that left it."""
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    proc = subprocess.Popen(
        ["sh", "-c", TREE, "job", str(inside), str(outside)], start_new_session=True
    )
    pids = (_pid(inside), _pid(outside))
    yield proc, *pids
    for pid in (proc.pid, *pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def test_processes_below_are_those_a_scan_of_proc_finds_below(job):
    proc, inside, outside = job
    me = os.getpid()
    below = proctree.processes_below(me)
    scan = proctree.processes()
    ours = set(proctree.below(proc.pid, scan)) | {proc.pid}
    assert {inside, outside, proc.pid} <= ours
    assert {p: below[p] for p in ours} == {p: scan[p] for p in ours}
    assert below[outside][1] != proc.pid  # it left the job's group
    assert me not in below


def test_processes_below_falls_back_to_the_scan_without_the_children_files(monkeypatch):
    scan = {1: (0, 1), 2: (1, 2)}
    monkeypatch.setattr(proctree, "children", lambda pid: None)
    monkeypatch.setattr(proctree, "processes", lambda: scan)
    assert proctree.processes_below(os.getpid()) is scan


def test_a_stops_sweep_reaches_a_descendant_that_left_the_group_without_a_scan_s6_l2(
    job, monkeypatch
):
    """The SIGTERM of a stop is the sweep the guardian reports the stop after: no scan of
    ``/proc`` in it (a scan takes milliseconds per hundred processes of the host), and the
    process that left the job's group is still signalled."""
    proc, inside, outside = job

    def scan() -> dict[int, tuple[int, int]]:
        raise AssertionError("a stop scanned /proc")

    monkeypatch.setattr(proctree, "processes", scan)
    sent: list[dict[str, object]] = []
    table = guardian_runs.RunTable(os.getpid(), (Sink(1), Sink(2)), lambda **m: sent.append(m))
    run = guardian_runs.Run("1", time.monotonic() + 60, 1.0, time.monotonic() + 60)
    run.pid = proc.pid
    table.runs[run.key] = run
    table.signal_run(run, signal.SIGTERM, "test")
    assert sent == [{"run": "1", "signal": "SIGTERM", "reason": "test"}]
    end = time.monotonic() + 10
    while (pid_alive(inside) or pid_alive(outside)) and time.monotonic() < end:
        time.sleep(0.01)
    assert not pid_alive(inside)
    assert not pid_alive(outside), "the process that left the group was not signalled"


#: The guardian with the scan of /proc made to fail: the package's modules, so one patch
#: reaches every caller.
NO_SCAN_GUARDIAN = """
import sys
from leaderjob.guard import guardian, proctree

def scan():
    raise AssertionError("the guardian scanned /proc")

proctree.processes = scan
sys.exit(guardian.main(sys.argv))
"""


def test_the_guardian_s_last_sweep_kills_every_descendant_without_a_scan_s6(tmp_path):
    """When the daemon is gone (its control pipe closed) the guardian kills everything below it
    and exits: with no scan of ``/proc`` (it runs while a successor starts its job on the same
    host), and still reaching a descendant that left the job's group."""
    ctl_r, ctl_w = os.pipe()
    st_r, st_w = os.pipe()
    guardian = subprocess.Popen(
        [sys.executable, "-c", NO_SCAN_GUARDIAN, str(ctl_r), str(st_w), "monotonic"],
        pass_fds=(ctl_r, st_w),
        start_new_session=True,
    )
    os.close(ctl_r)
    os.close(st_w)
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    start = {
        "start": "1",
        "argv": ["sh", "-c", TREE, "job", str(inside), str(outside)],
        "env": dict(os.environ),
        "deadline": time.monotonic() + 60,
        "grace": 1.0,
    }
    pids: tuple[int, ...] = ()
    try:
        os.write(ctl_w, (json.dumps(start) + "\n").encode())
        pids = (_pid(inside), _pid(outside))
        os.close(ctl_w)  # the daemon is gone
        ctl_w = -1
        assert guardian.wait(10) == 0, "the guardian failed (it scanned /proc)"
        assert not any(pid_alive(p) for p in pids), "a descendant outlived the guardian"
    finally:
        if ctl_w >= 0:
            os.close(ctl_w)
        os.close(st_r)
        for pid in (guardian.pid, *pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        guardian.wait(10)
