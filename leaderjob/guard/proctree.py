"""The machine's processes as the guardian sees them (from ``/proc``): parents, process groups,
what lies below a process, and the marker that ties a process to its run.

A job's processes carry the run's marker in their environment (``LEADERJOB_GUARDIAN_RUN``, set by
the guardian when it starts the job, inherited by whatever the job starts): that is how an orphan
that left the job's group and was re-parented is still found to be the run's — by the guardian,
and by the daemon when the guardian itself is gone. Standard library only: the guardian runs as
``python -S`` and loads this file beside it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

#: The environment variable that marks a job's processes with its run (orphans are found by it).
MARKER = "LEADERJOB_GUARDIAN_RUN"
#: Pause between SIGKILL sweeps while processes are still dying.
SWEEP_PAUSE = 0.01


def processes() -> dict[int, tuple[int, int]]:
    """Every process of the machine (from ``/proc``): pid → (parent pid, process group)."""
    out: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = _stat(int(name))
            if found is not None:
                out[int(name)] = found[:2]
    return out


def processes_below(root: int) -> dict[int, tuple[int, int]]:
    """The processes below ``root`` (``root`` excluded): pid → (parent pid, process group), as
    :func:`processes` gives them. Found by following each process's children: two small reads
    per single-threaded process below ``root`` instead of one per process of the machine (a
    scan of ``/proc`` takes milliseconds on a busy host, and a stop waits for it). Where the
    kernel does not list a process's children, every process of the machine (the scan)."""
    if children(root) is None:
        return processes()
    out: dict[int, tuple[int, int]] = {}
    todo = [(root, 0)]  # a process, and its thread count (0: unknown)
    while todo:
        for pid in _children_now(*todo.pop()):
            if pid in out:
                continue
            found = _stat(pid)
            if found is not None:  # None: gone meanwhile
                out[pid] = found[:2]
                todo.append((pid, found[2]))
    return out


def _children_now(pid: int, threads: int) -> list[int]:
    """The direct children of ``pid`` that its live threads list (none once it is gone); a
    process of one thread has one list, its own."""
    tids = [str(pid)] if threads == 1 else None
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in tids or os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(x) for x in f.read().split()]
    return out


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, thread count) of ``pid``; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain anything: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) <= 17:
        return None
    return int(fields[1]), int(fields[2]), int(fields[17])


def children(pid: int) -> list[int] | None:
    """The direct children of ``pid`` (``/proc/PID/task/*/children``: no scan of ``/proc``);
    None where the kernel does not offer that file (then only a scan can tell)."""
    try:
        out: list[int] = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        return None
    return out


def marker_of(pid: int) -> str | None:
    """The run marker in a process's environment, if it has one."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    key = MARKER.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode(errors="replace")
    return None


def kill_marked(keys: set[str], groups: list[int], rounds: int = 3) -> None:
    """SIGKILL the process groups of runs whose guardian is gone, and every process marked as
    one of those runs (a ``setsid`` grandchild re-parented away from the dead guardian). Run by
    the daemon; repeated a few times for a process that forks meanwhile."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    if not keys:
        return
    me = os.getpid()
    for _ in range(rounds):
        found = [p for p in processes() if p != me and marker_of(p) in keys]
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(SWEEP_PAUSE)


def below(root: int, procs: dict[int, tuple[int, int]]) -> list[int]:
    """Every process below ``root`` in ``procs``, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found
