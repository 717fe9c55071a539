"""No part of a job outlives its run (docs/safety.md §3, S6), end to end: a real etcd, a real
`leaderjob lock`, and a job with a descendant that left its process group.

The job is ``sh -c 'setsid sleep 300 & sleep 300'``: one `sleep 300` in the job's group, one in a
session of its own, out of reach of any signal to the group. Both are found by walking the
process tree down from the daemon's pid (which the test knows) while the job runs, and identified
by pid and start time afterwards, so a recycled pid is never mistaken for a survivor. If a test
fails, the survivors are killed by pid. TTL 3 s; the bounds are generous except where the bound
is the behaviour: after SIGTERM, the job is dead before the daemon exits (it revokes the lease
only then).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.daemons import leaderjob, wait_for
from tests.harness.procs import pid_alive, stop_when_idle

JOB = ["sh", "-c", "setsid sleep 300 & sleep 300"]

Proc = tuple[int, str]  # pid, start time (field 22 of /proc/<pid>/stat)


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, start time) of ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]), fields[19]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        return []


def _descendants(root: int) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[0], []).append((int(entry.name), st[1]))
    found: list[Proc] = []
    todo = [root]
    while todo:
        for proc in children.get(todo.pop(), []):
            found.append(proc)
            todo.append(proc[0])
    return found


def _running(proc: Proc) -> bool:
    st = _stat(proc[0])
    return st is not None and st[1] == proc[1] and pid_alive(proc[0])


def _sleepers(root: int) -> list[Proc]:
    return [p for p in _descendants(root) if _cmdline(p[0]) == ["sleep", "300"]]


@pytest.fixture
def survivors() -> Iterator[list[Proc]]:
    """The job's `sleep 300` processes; whichever still runs after the test is killed by pid."""
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        if _running(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc[0], signal.SIGKILL)


def _start_lock(procs, tmp_path, etcd, prefix, survivors):
    daemon = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, JOB, subcommand="lock")
    daemon.wait_event("job.started", 15)
    assert wait_for(lambda: len(_sleepers(daemon.pid)) == 2, 10), "the job's sleeps never ran"
    survivors += _sleepers(daemon.pid)
    return daemon


def test_sigterm_kills_a_descendant_that_left_the_group_before_the_lock_exits_s6(
    etcd, prefix, procs, tmp_path, survivors
):
    """S6 + L2: on SIGTERM the daemon stops the job and only then revokes the lease and exits;
    the setsid() descendant is part of the job and is dead by then too."""
    daemon = _start_lock(procs, tmp_path, etcd, prefix, survivors)
    daemon.signal(signal.SIGTERM)
    daemon.wait(15)
    alive = [p for p in survivors if _running(p)]
    assert not alive, f"outlived the lock: {alive}\n{daemon.tail()}"


def test_kill9_of_the_lock_kills_a_descendant_that_left_the_group_s6(
    etcd, prefix, procs, tmp_path, survivors
):
    """S6: after `kill -9` of the daemon the guardian sees its control pipe close and kills every
    descendant, the one that left the job's group included, within a fraction of a second."""
    daemon = _start_lock(procs, tmp_path, etcd, prefix, survivors)
    killed_at = time.monotonic()
    daemon.signal(signal.SIGKILL)
    gone = wait_for(lambda: not any(_running(p) for p in survivors), 5)
    alive = [p for p in survivors if _running(p)]
    assert gone is not None, f"outlived the daemon's kill -9: {alive}"
    assert gone - killed_at < 2.0


def _guardians(root: int) -> list[Proc]:
    return [p for p in _descendants(root) if any("guardian.py" in a for a in _cmdline(p[0]))]


def test_kill9_of_the_guardian_kills_the_job_and_its_setsid_child_and_lock_reports_it_s6(
    etcd, prefix, procs, tmp_path, survivors
):
    """S6: if the guardian itself is killed, the daemon notices (its status pipe ends without an
    exit report) and kills the job's process group and every process marked as the run's (the
    `setsid` child too); `lock` then releases and exits 137 (the command was killed), with the
    run's outcome watchdog_failed."""
    daemon = _start_lock(procs, tmp_path, etcd, prefix, survivors)
    [guardian] = _guardians(daemon.pid)
    in_group = [p for p in survivors if os.getpgid(p[0]) != p[0]]
    assert len(in_group) == 1  # the `sleep 300` that stayed in the job's group
    os.kill(guardian[0], signal.SIGKILL)
    assert wait_for(lambda: not any(_running(p) for p in survivors), 5) is not None
    assert daemon.wait(15) == 137
    assert daemon.events("job.finished")[0]["outcome"] == "watchdog_failed"


def test_kill9_of_the_daemon_ends_its_idle_guardian_s6(etcd, prefix, procs, tmp_path):
    """§3: the guardian, up with no run (the schedule's next slot is an hour away), belongs to
    its daemon: after `kill -9` of the daemon its control pipe closes, and it exits at once."""
    daemon = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, ["true"], schedule="@hourly")
    daemon.wait_event("election.acquired", 15)
    assert wait_for(lambda: len(_guardians(daemon.pid)) == 1, 10), "no guardian"
    [spare] = _guardians(daemon.pid)
    try:
        killed_at = time.monotonic()
        daemon.signal(signal.SIGKILL)
        gone = wait_for(lambda: not _running(spare), 5)
        assert gone is not None, "the guardian outlived its daemon's kill -9"
        assert gone - killed_at < 2.0
    finally:
        if _running(spare):
            os.kill(spare[0], signal.SIGKILL)


def test_a_frozen_daemons_guardian_kills_the_job_by_its_deadline_s6(etcd, prefix, procs, tmp_path):
    """S6 + §3: the first slot's job exits at once; the next slot's job (`sleep 300`) runs under
    the same guardian (both jobs record their parent). With the daemon SIGSTOPped, the guardian
    alone kills the job by the local deadline (< TTL)."""
    parents = tmp_path / "parents"
    marker = tmp_path / "ran-once"
    script = f"echo $PPID >> {parents}; [ -e {marker} ] && exec sleep 300; touch {marker}"
    job = ["sh", "-c", script]
    daemon = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, job, schedule="@every 1s")
    assert wait_for(lambda: parents.exists() and len(parents.read_text().split()) >= 2, 20)
    first, second = parents.read_text().split()[:2]
    assert first == second, "the second run had another parent than the first"
    # The second run wrote its line before its exec of `sleep`.
    sleepers: list[Proc] = []

    def sleeping() -> bool:
        sleepers[:] = [p for p in _descendants(daemon.pid) if _cmdline(p[0]) == ["sleep", "300"]]
        return len(sleepers) == 1

    assert wait_for(sleeping, 5), sleepers
    try:
        assert stop_when_idle(daemon.pid), "never caught the daemon idle"
        frozen_at = time.monotonic()
        try:
            dead = wait_for(lambda: not _running(sleepers[0]), 3.0 + 1.0)
            assert dead is not None, "the job outlived its frozen daemon's deadline"
            assert dead - frozen_at < 3.0, f"killed {dead - frozen_at:.2f}s after the freeze"
        finally:
            daemon.signal(signal.SIGCONT)
        daemon.wait_event("election.lost", 5)
    finally:
        if _running(sleepers[0]):
            os.kill(sleepers[0][0], signal.SIGKILL)


def test_kill9_of_the_guardian_kills_every_job_and_the_daemon_recovers_s6(
    etcd, prefix, procs, tmp_path, survivors
):
    """S6 with one guardian for every job: three jobs of one daemon each run a `sleep` in their
    group and one that left it (setsid). `kill -9` of the guardian kills all six at once; the
    daemon notices, counts the three runs as failed (watchdog_failed), starts a fresh guardian
    and runs the jobs again under it, leadership kept."""
    argv = ", ".join(f'"{a}"' for a in JOB)
    lines = []
    for name in ("a1", "a2", "a3"):
        lines += [f"[jobs.{name}]", 'schedule = "@every 1s"', f"command = [{argv}]", ""]
    (tmp_path / "jobs.toml").write_text("\n".join(lines))
    daemon = leaderjob(
        procs, tmp_path, "a", etcd.endpoint, prefix, [], election="grp",
        extra=["--jobs", str(tmp_path / "jobs.toml"), "--spread", "off"],
    )  # fmt: skip
    assert wait_for(lambda: len(_sleepers(daemon.pid)) == 6, 20), "the jobs never all ran"
    survivors += _sleepers(daemon.pid)
    [guardian] = _guardians(daemon.pid)
    killed_at = time.monotonic()
    os.kill(guardian[0], signal.SIGKILL)
    gone = wait_for(lambda: not any(_running(p) for p in survivors), 5)
    alive = [p for p in survivors if _running(p)]
    assert gone is not None, f"outlived the guardian's kill -9: {alive}"
    assert gone - killed_at < 2.0
    assert wait_for(lambda: len(daemon.events("job.finished")) >= 3, 10)
    assert {e["outcome"] for e in daemon.events("job.finished")} == {"watchdog_failed"}
    assert wait_for(lambda: daemon.events("guardian.lost"), 5)
    # Recovered: a fresh guardian runs every job again; leadership was never given up.
    assert wait_for(lambda: len(_sleepers(daemon.pid)) == 6, 20), "the jobs never ran again"
    survivors += _sleepers(daemon.pid)
    [fresh] = _guardians(daemon.pid)
    assert fresh != guardian
    assert not daemon.events("election.lost")
