"""Many jobs, one daemon, end to end: real etcd, real daemons, a jobs file of six jobs.

Each replica runs `leaderjob run --election grp --jobs FILE`: one lease per daemon, one election
per job. Jobs fire ``@every 1s`` and run 0.1 s; each journals to a file of its own. TTL is 3 s.
Bounds: a crash moves every job within TTL + 1.5 s; a SIGTERM hands every job over within 1 s;
plus SLACK for a loaded 2-core machine. Across all of it, no (job, slot) runs twice (S3).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from tests.harness.daemons import job, leaderjob, read_journal, wait_for
from tests.harness.procs import JsonLogProcess, ProcessGroup

TTL = 3.0
SLACK = 1.0
HANDOVER = 1.0
JOBS = tuple(f"j{i}" for i in range(6))


def _jobs_file(tmp_path: Path) -> Path:
    lines = []
    for name in JOBS:
        argv = ", ".join(f'"{a}"' for a in job(tmp_path / f"journal-{name}", "--duration", "0.1"))
        lines += [f"[jobs.{name}]", 'schedule = "@every 1s"', f"command = [{argv}]", ""]
    path = tmp_path / "jobs.toml"
    path.write_text("\n".join(lines))
    return path


def _replica(procs: ProcessGroup, tmp_path: Path, name: str, etcd, prefix: str) -> JsonLogProcess:
    """A replica that does not spread: the first one leads every job (failover of them all)."""
    return leaderjob(
        procs,
        tmp_path,
        name,
        etcd.endpoint,
        prefix,
        [],
        election="grp",
        extra=["--jobs", str(tmp_path / "jobs.toml"), "--spread", "off"],
    )


def _staggered(
    procs: ProcessGroup, tmp_path: Path, etcd, prefix: str, n: int
) -> dict[str, JsonLogProcess]:
    """``n`` replicas without spreading, the first one alone until it runs every job: each job's
    queue is ordered by when a replica queued for it, so replicas started together would split
    the jobs between them even with --spread off (which only means "never hand over")."""
    first = _replica(procs, tmp_path, "r0", etcd, prefix)
    assert _leader_of_all(tmp_path, {"r0": first}) == "r0"
    return {"r0": first} | {
        f"r{i}": _replica(procs, tmp_path, f"r{i}", etcd, prefix) for i in range(1, n)
    }


def _starts(tmp_path: Path, name: str) -> list[dict]:
    return [r for r in read_journal(tmp_path / f"journal-{name}") if r["ev"] == "start"]


def _no_slot_twice(tmp_path: Path) -> None:
    for name in JOBS:
        twice = [s for s, n in Counter(r["slot"] for r in _starts(tmp_path, name)).items() if n > 1]
        assert not twice, f"S3: {name} ran slots {twice} twice"


def _all_running_on(tmp_path: Path, identity: str, after: float) -> bool:
    return all(
        any(r["identity"] == identity and r["t"] > after for r in _starts(tmp_path, name))
        for name in JOBS
    )


def _leader_of_all(tmp_path: Path, daemons: dict[str, JsonLogProcess]) -> str:
    now = time.monotonic()
    found: list[str] = []

    def check() -> bool:
        for name in daemons:
            if _all_running_on(tmp_path, name, now):
                found.append(name)
                return True
        return False

    assert wait_for(check, 15.0), "no replica runs every job"
    return found[0]


def test_a_crash_moves_every_job_within_ttl_and_no_slot_runs_twice_l1_s3(
    etcd, prefix, procs, tmp_path
):
    """L1 + S3 per job: three daemons, six jobs; kill -9 the one that leads them: every job
    runs on a survivor within TTL + 1.5 s, and no (job, slot) runs twice."""
    _jobs_file(tmp_path)
    daemons = _staggered(procs, tmp_path, etcd, prefix, 3)
    leader = _leader_of_all(tmp_path, daemons)
    env = _starts(tmp_path, JOBS[0])[0]["env_keys"]
    assert "LEADERJOB_JOB" in env
    daemons[leader].signal_group(signal.SIGKILL)
    killed = time.monotonic()
    survivors = [d for name, d in daemons.items() if name != leader]

    def moved() -> bool:
        return all(
            any(r["identity"] != leader and r["t"] > killed for r in _starts(tmp_path, n))
            for n in JOBS
        )

    when = wait_for(moved, TTL + 1.5 + 1.0 + SLACK + 5)
    assert when is not None, "\n".join(d.tail(10) for d in survivors)
    # A job's first run after the move waits for its next slot (@every 1s): up to 1 s more.
    assert when - killed <= TTL + 1.5 + 1.0 + SLACK, f"jobs moved after {when - killed:.2f}s"
    time.sleep(2)
    _no_slot_twice(tmp_path)


def test_sigterm_hands_every_job_over_within_a_second_l2(etcd, prefix, procs, tmp_path):
    """L2 per job: SIGTERM the replica that leads all six: it stops its runs, resigns, and the
    next replica leads every job within a second (its first runs follow at their next slot)."""
    _jobs_file(tmp_path)
    daemons = _staggered(procs, tmp_path, etcd, prefix, 2)
    name = _leader_of_all(tmp_path, daemons)
    leader = daemons[name]
    other = next(d for n, d in daemons.items() if n != name)
    before = len(other.events("election.acquired"))
    leader.signal(signal.SIGTERM)
    sent = time.monotonic()
    when = wait_for(lambda: len(other.events("election.acquired")) >= before + len(JOBS), 10.0)
    assert when is not None, other.tail(20)
    assert when - sent <= HANDOVER + SLACK, f"handover took {when - sent:.2f}s"
    assert {e["job"] for e in other.events("election.acquired")[before:]} == set(JOBS)
    assert wait_for(lambda: not leader.alive, 5.0)
    time.sleep(1.5)
    _no_slot_twice(tmp_path)


def test_reload_on_a_configmap_swap_adds_and_removes_a_job_s3(etcd, prefix, procs, tmp_path):
    """Reload as Kubernetes does it: the jobs file is a symlink swapped to a new target. The
    added job runs, the removed one stops running, and no (job, slot) runs twice."""
    import os

    def write(version: str, names: tuple[str, ...]) -> Path:
        folder = tmp_path / version
        folder.mkdir()
        lines = []
        for name in names:
            argv = job(tmp_path / f"journal-{name}", "--duration", "0.1")
            quoted = ", ".join(f'"{a}"' for a in argv)
            lines += [f"[jobs.{name}]", 'schedule = "@every 1s"', f"command = [{quoted}]", ""]
        (folder / "jobs.toml").write_text("\n".join(lines))
        return folder / "jobs.toml"

    first = write("v1", ("j0", "j1", "j2"))
    (tmp_path / "jobs.toml").symlink_to(first)
    daemons = {f"r{i}": _replica(procs, tmp_path, f"r{i}", etcd, prefix) for i in range(2)}
    assert wait_for(lambda: all(_starts(tmp_path, n) for n in ("j0", "j1", "j2")), 15.0)
    second = write("v2", ("j1", "j2", "j3"))
    (tmp_path / "next").symlink_to(second)
    os.replace(tmp_path / "next", tmp_path / "jobs.toml")  # atomic, as the kubelet swaps
    swapped = time.monotonic()
    assert wait_for(lambda: _starts(tmp_path, "j3"), 10.0), "\n".join(
        d.tail(10) for d in daemons.values()
    )
    time.sleep(3.0 + SLACK)
    settled = swapped + 2.5 + SLACK  # a check each second, then j0's last run ends
    assert not [r for r in _starts(tmp_path, "j0") if r["t"] > settled], "j0 still runs"
    assert all(d.events("config.reloaded") for d in daemons.values())
    for name in ("j0", "j1", "j2", "j3"):
        starts = _starts(tmp_path, name)
        twice = [s for s, n in Counter(r["slot"] for r in starts).items() if n > 1]
        assert not twice, f"S3: {name} ran slots {twice} twice"


def test_sighup_reloads_the_jobs_file_adding_and_removing_a_job_s3(etcd, prefix, procs, tmp_path):
    """Reload on SIGHUP: the file is rewritten in place with the same size and modification
    time, so the file watch cannot see it; only the signal makes the daemons read it. The added
    job runs, the removed one stops, and no (job, slot) runs twice."""
    import os

    path = _jobs_file(tmp_path)
    v1 = path.read_text()
    path.write_text(v1.replace("[jobs.j5]", "[jobs.j9]").replace("journal-j5", "journal-j9"))
    daemons = {f"r{i}": _replica(procs, tmp_path, f"r{i}", etcd, prefix) for i in range(2)}
    assert wait_for(lambda: _starts(tmp_path, "j0") and _starts(tmp_path, "j9"), 15.0)
    before = path.stat()
    # j0 out, j5 in: the same length, written into the same inode, the old mtime put back.
    path.write_text(v1.replace("[jobs.j0]", "[jobs.j9]").replace("journal-j0", "journal-j9"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    time.sleep(1.5)  # more than one check of the file: the watch saw nothing
    assert not any(d.events("config.reloaded") for d in daemons.values())
    for d in daemons.values():
        d.signal(signal.SIGHUP)
    hupped = time.monotonic()
    assert wait_for(lambda: _starts(tmp_path, "j5"), 10.0), "\n".join(
        d.tail(10) for d in daemons.values()
    )
    assert all(wait_for(lambda d=d: d.events("config.reloaded"), 5.0) for d in daemons.values())
    time.sleep(2.0 + SLACK)
    settled = hupped + 1.5 + SLACK  # j0 stops starting runs at once; its run then ends
    assert not [r for r in _starts(tmp_path, "j0") if r["t"] > settled], "j0 still runs"
    reloaded = [e for d in daemons.values() for e in d.events("config.reloaded")]
    assert all(e["added"] == ["j5"] and e["removed"] == ["j0"] for e in reloaded), reloaded
    for name in ("j0", "j5", "j9"):
        twice = [s for s, n in Counter(r["slot"] for r in _starts(tmp_path, name)).items() if n > 1]
        assert not twice, f"S3: {name} ran slots {twice} twice"


def _leaders_now(tmp_path: Path, since: float) -> dict[str, str]:
    """job → identity of its newest run started after ``since``."""
    out = {}
    for name in JOBS:
        starts = [r for r in _starts(tmp_path, name) if r["t"] > since]
        if starts:
            out[name] = max(starts, key=lambda r: r["t"])["identity"]
    return out


def _spread(tmp_path: Path) -> list[int]:
    counts = Counter(_leaders_now(tmp_path, time.monotonic() - 1.5).values())
    return sorted(counts.values(), reverse=True)


def test_jobs_spread_2_2_2_survive_a_crash_3_3_and_take_in_a_newcomer_s3(
    etcd, prefix, procs, tmp_path
):
    """Spreading (--spread-pace 1s): three daemons settle at 2-2-2; kill -9 one: its jobs move
    within TTL + 1.5 s and the two survivors end at 3-3; a new daemon joins: at most 2 each; a
    fourth live daemon joins: at most 2 each still, and no job moves for it. Across all of it no
    (job, slot) runs twice."""
    _jobs_file(tmp_path)
    extra = ["--jobs", str(tmp_path / "jobs.toml"), "--spread-pace", "1s"]

    def start(name: str) -> JsonLogProcess:
        return leaderjob(
            procs, tmp_path, name, etcd.endpoint, prefix, [], election="grp", extra=extra
        )

    daemons = {f"r{i}": start(f"r{i}") for i in range(3)}
    assert wait_for(lambda: _spread(tmp_path) == [2, 2, 2], 40.0, interval=0.5), _spread(tmp_path)
    # A settled group stays still: no job is handed over (a count of the moves, not a look at
    # the journals' last 1.5 s, which a loaded machine's late start would miss).
    settled = sum(len(d.events("spread.released")) for d in daemons.values())
    time.sleep(3.0)
    assert sum(len(d.events("spread.released")) for d in daemons.values()) == settled
    now: dict[str, str] = {}

    def seen() -> bool:
        now.update(_leaders_now(tmp_path, time.monotonic() - 3.0))
        return JOBS[0] in now

    assert wait_for(seen, 5.0), now
    victim = now[JOBS[0]]
    daemons[victim].signal_group(signal.SIGKILL)
    killed = time.monotonic()

    def moved() -> bool:
        return len(_leaders_now(tmp_path, killed)) == len(JOBS)

    when = wait_for(moved, 15.0)
    assert when is not None and when - killed <= TTL + 1.5 + 1.0 + SLACK
    assert wait_for(lambda: _spread(tmp_path) == [3, 3], 20.0, interval=0.5), _spread(tmp_path)
    daemons["r3"] = start("r3")
    assert wait_for(lambda: _spread(tmp_path) == [2, 2, 2], 40.0, interval=0.5), _spread(tmp_path)
    # A fourth live daemon: the share is still ⌈6/4⌉ = 2, which every replica already keeps, so
    # nothing may move (hysteresis); the newcomer waits in every queue.
    moves = sum(len(d.events("spread.released")) for d in daemons.values())
    daemons["r4"] = start("r4")
    assert wait_for(lambda: daemons["r4"].events("lease.granted"), 10.0), daemons["r4"].tail(10)
    time.sleep(4.0)  # settle 1 s + pace 1 s + a turn of up to 1 s, and a count each second
    assert sum(len(d.events("spread.released")) for d in daemons.values()) == moves
    assert max(_spread(tmp_path)) <= 2, _spread(tmp_path)
    # Every job still runs (a wider window than _spread's: a loaded machine starts late).
    assert wait_for(lambda: len(_leaders_now(tmp_path, time.monotonic() - 3.0)) == len(JOBS), 5.0)
    _no_slot_twice(tmp_path)
