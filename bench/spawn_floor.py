"""What one start costs below the daemon: the job's process from fork to exec, measured three
ways from a process the size of the guardian (``python -S`` with the guardian's files loaded).

- ``guardian``: the guardian's own way (:class:`leaderjob.guard.guardian_spawn.Spawn`): fork,
  then in the job's process PDEATHSIG, a new session, stdin and signals set, the last check
  of ``D``, the descriptors closed, exec. The fork returns at once; the exec is seen on the
  answer pipe.
- ``posix_spawn``: ``os.posix_spawn`` (a vfork-like clone, no Python between fork and exec).
  A floor, not an option: nothing can run in that process before exec, so neither
  ``PR_SET_PDEATHSIG`` (the job dies with the guardian) nor the last check of ``D`` can be
  made there.
- ``forked ahead``: forked and set up before the fire time, waiting on a pipe; at the fire
  time the go (the environment, ``D``) is written, and the process checks ``D`` and execs. The
  work a fork-ahead design would leave at the fire time.

For N starts at once (the command ``true``), over several rounds: the time from the first start
(or the first go) until the last exec was seen (median), and the CPU per start of the starter
and of the jobs' processes (``true`` itself included: its own exec is part of every start).

    .venv/bin/python bench/spawn_floor.py [--starts 1 4 16 100] [--rounds 20]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GUARD = Path(__file__).resolve().parents[1] / "leaderjob" / "guard"


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _spawn_module() -> Any:
    """The guardian's spawn module, loaded as the guardian loads it (a file beside it)."""
    if str(GUARD) not in sys.path:
        sys.path.insert(0, str(GUARD))
    return importlib.import_module("guardian_spawn")


def _wait_eof(fd: int) -> None:
    while True:
        select.select([fd], [], [], 5)
        try:
            if not os.read(fd, 64):
                return
        except BlockingIOError:
            continue


def _guardian_way(n: int, path: str, env: dict[str, str]) -> tuple[float, list[int]]:
    guardian_spawn = _spawn_module()
    t0 = time.perf_counter()
    pending = []
    for _ in range(n):
        spawn = guardian_spawn.Spawn(
            ["true"], env, None, (None, None), check=lambda: True, reset=[]
        )
        pending.append(spawn.fork())
    for p in pending:
        while not p.read():
            select.select([p.fd], [], [], 5)
    return time.perf_counter() - t0, [p.pid for p in pending]


def _posix_spawn(n: int, path: str, env: dict[str, str]) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    pids = [os.posix_spawn(path, ["true"], env, setsid=True) for _ in range(n)]
    # posix_spawn returns once the exec happened (glibc's clone waits for it).
    return time.perf_counter() - t0, pids


def _ahead_child(go: int, answer: int, path: str) -> None:
    guardian_spawn = _spawn_module()
    guardian_spawn.prctl(guardian_spawn.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    data = b""
    while chunk := os.read(go, 1 << 16):
        data += chunk
    msg = json.loads(data)
    if time.monotonic() >= msg["deadline"]:
        os._exit(3)
    os.write(answer, b"+")
    os.execve(path, ["true"], msg["env"])


def _forked_ahead(n: int, path: str, env: dict[str, str]) -> tuple[float, list[int]]:
    waiting = []
    for _ in range(n):
        go_r, go_w = os.pipe()
        ans_r, ans_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(go_w)
                os.close(ans_r)
                _ahead_child(go_r, ans_w, path)
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(ans_w)
        waiting.append((pid, go_w, ans_r))
    time.sleep(0.05)  # set up before the fire time
    t0 = time.perf_counter()
    go = json.dumps({"deadline": time.monotonic() + 60, "env": env}).encode()
    for _, go_w, _ in waiting:
        os.write(go_w, go)
        os.close(go_w)
    for _, _, ans_r in waiting:
        _wait_eof(ans_r)
        os.close(ans_r)
    return time.perf_counter() - t0, [pid for pid, _, _ in waiting]


WAYS: dict[str, Callable[[int, str, dict[str, str]], tuple[float, list[int]]]] = {
    "guardian": _guardian_way,
    "posix_spawn": _posix_spawn,
    "forked ahead": _forked_ahead,
}


def worker(starts: list[int], rounds: int) -> None:
    """In a ``python -S`` process with the guardian's files loaded: each way, each N."""
    _spawn_module()  # loaded before any fork, as in the guardian

    path = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    env = dict(os.environ)
    out = []
    for n in starts:
        for way, fn in WAYS.items():
            walls = []
            cpu_self = cpu_jobs = 0.0
            for _ in range(rounds):
                s0, c0 = _cpu_self(), _cpu_children()
                wall, pids = fn(n, path, env)
                for pid in pids:
                    os.waitpid(pid, 0)
                cpu_self += _cpu_self() - s0
                cpu_jobs += _cpu_children() - c0
                walls.append(wall)
            walls.sort()
            out.append(
                {
                    "n": n,
                    "way": way,
                    "last_exec_ms": walls[len(walls) // 2] * 1000,
                    "starter_ms": cpu_self / (rounds * n) * 1000,
                    "job_ms": cpu_jobs / (rounds * n) * 1000,
                }
            )
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--starts", type=int, nargs="+", default=[1, 4, 16, 100])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.starts, a.rounds)
        return
    from benchlib import table  # puts the repository on the path

    starts = [str(n) for n in a.starts]
    argv = [sys.executable, "-S", __file__, "--worker", "--rounds", str(a.rounds), "--starts"]
    done = subprocess.run([*argv, *starts], capture_output=True, text=True, check=True)
    rows = [
        [
            str(r["n"]),
            r["way"],
            f"{r['last_exec_ms']:.1f}",
            f"{r['starter_ms']:.2f}",
            f"{r['job_ms']:.2f}",
        ]
        for r in json.loads(done.stdout)
    ]
    print(
        table(
            [
                "starts at once",
                "way",
                "first start → last exec (ms, median)",
                "starter CPU per start (ms)",
                "job's process CPU per start (ms)",
            ],
            rows,
        )
    )
    print(f"\n`true` started {a.rounds} times per row; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
