"""Process bookkeeping for tests: spawn in a new process group, always clean up by group id.

* :class:`ProcessGroup` records every process it spawns (each leads its own process group, via
  ``start_new_session=True``) and :meth:`ProcessGroup.cleanup` SIGKILLs each recorded *group*, so
  grandchildren die too, even stopped (SIGSTOPped) ones. Nothing is ever killed by name.
* :class:`JsonLogProcess` runs a process whose stderr is JSON lines (structlog style, one object
  with an ``"event"`` key per line) into a file and lets a test wait for events.
* :func:`pid_alive` treats zombies as dead (in a container PID 1 may never reap orphans).
* :func:`wait_until` polls a predicate.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "JsonLogProcess",
    "ProcessGroup",
    "group_pids",
    "kill_group",
    "pid_alive",
    "process_state",
    "wait_until",
]

_File = int | IO[Any] | None


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc/<pid>/stat`` (``R``, ``S``, ``T``, ``Z``...),
    or ``None`` if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0] if fields else None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (``Z``) or dead (``X``).

    ``os.kill(pid, 0)`` alone is not enough: a killed orphan stays a zombie until its new parent
    reaps it, and a container's PID 1 may never do so.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, it just is not ours
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def group_pids(pgid: int) -> list[int]:
    """The pids of all live (non-zombie) processes whose process group is ``pgid`` (from /proc)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return sorted(pids)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to process group ``pgid``; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Call ``predicate`` every ``interval`` s until it returns something truthy (-> True) or
    ``timeout`` s have passed (-> False). The predicate is always called at least once, and once
    more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))


# Registries not cleaned up yet: cleaned at interpreter exit as a last resort (for scripts).
_LIVE_GROUPS: weakref.WeakSet[ProcessGroup] = weakref.WeakSet()


#: select(2) and pselect6(2) on x86_64 and arm64 (arm64 has only pselect6, 72): a Python loop
#: idling in select.select.
_SELECT_SYSCALLS = {"23", "270", "72"}


def stop_when_idle(pid: int, attempts: int = 50) -> bool:
    """SIGSTOP ``pid`` at a moment its main thread idles in ``select()`` -- between two cycles of
    its loop, not in the middle of one -- and leave it stopped; True on success.

    A stopped task still shows the syscall it was blocked in (``/proc/PID/syscall``). When the
    stop lands elsewhere (a cycle, an RPC), the process is continued at once and the stop tried
    again, up to ``attempts`` times (a few ms of pause each)."""
    for _ in range(attempts):
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: process_state(pid) == "T", 2, 0.001)
        try:
            nr = Path(f"/proc/{pid}/syscall").read_text().split()[0]
        except (OSError, IndexError):
            nr = ""
        if nr in _SELECT_SYSCALLS:
            return True
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.011)
    return False


def exit_on_sigterm() -> None:
    """SIGTERM ends this process as ``sys.exit`` does, not at once: every ``finally``, context
    manager and ``atexit`` hook still stops what it started (an etcd, a daemon, its jobs). A
    benchmark or a soak stopped with ``kill`` leaves nothing behind."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


@atexit.register
def _cleanup_leftovers() -> None:
    for group in list(_LIVE_GROUPS):
        with contextlib.suppress(Exception):
            group.cleanup(timeout=5)


class ProcessGroup:
    """A registry of spawned processes, each the leader of its own process group.

    Guarantees: every process returned by :meth:`spawn` was started with
    ``start_new_session=True`` (so its pid is also its process-group id), and :meth:`cleanup`
    SIGKILLs every recorded process group -- SIGKILL also ends stopped processes -- and then reaps
    each child, so no zombie and no ``ResourceWarning`` is left behind. ``cleanup`` is idempotent
    and safe to call from a ``finally`` or fixture teardown. Usable as a context manager. A
    registry never cleaned up is cleaned at interpreter exit (``atexit``).
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        _LIVE_GROUPS.add(self)

    def spawn(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        stdout: _File = None,
        stderr: _File = None,
        cwd: str | os.PathLike[str] | None = None,
        stdin: _File = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session/process group and record it for :meth:`cleanup`.

        ``env`` replaces the environment when given (pass ``{**os.environ, ...}`` to extend it).
        ``stdout``/``stderr`` accept what :class:`subprocess.Popen` accepts; stdin defaults to
        ``/dev/null`` so a child never waits on the test's terminal.
        """
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            env=dict(env) if env is not None else None,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def adopt(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        """Record a process started elsewhere; it must lead its own process group
        (``start_new_session=True``), else ``ValueError``."""
        if proc.poll() is None and os.getpgid(proc.pid) != proc.pid:
            raise ValueError(f"pid {proc.pid} does not lead its own process group")
        self._procs.append(proc)
        return proc

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The recorded processes, in spawn order."""
        return list(self._procs)

    def cleanup(self, timeout: float = 10.0) -> None:
        """SIGKILL every recorded process group, then reap every recorded process.

        ``ProcessLookupError`` (group already gone) is ignored. Raises ``RuntimeError`` only if a
        process survives SIGKILL for ``timeout`` seconds (e.g. stuck in uninterruptible I/O).
        """
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.returncode is not None and Path(f"/proc/{proc.pid}").exists():
                # Our leader was reaped earlier and its pid now belongs to someone else: its
                # group id may too. Our own orphans (if any) would have no process with that pid.
                continue
            kill_group(proc.pid, signal.SIGKILL)
        stuck: list[int] = []
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stuck.append(proc.pid)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if stuck:
            raise RuntimeError(f"processes did not exit after SIGKILL: {stuck}")

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class JsonLogProcess:
    """A process whose stderr (JSON lines) goes to ``log_path``; wait for and inspect its events.

    Spawned through ``procs`` (a :class:`ProcessGroup`), so the owner's cleanup kills it. Each
    line that parses as a JSON object is an event record, returned exactly as parsed (nothing is
    added); other lines (tracebacks, plain prints) are tolerated and kept in :meth:`lines`.
    stdout goes to ``<log_path>.stdout`` unless ``stdout`` is given.
    """

    def __init__(
        self,
        procs: ProcessGroup,
        argv: Sequence[str | os.PathLike[str]],
        log_path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stdout: _File = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.argv = [os.fspath(a) for a in argv]
        # The child gets its own copies of the descriptors; the parent's are closed right away.
        with contextlib.ExitStack() as stack:
            err = stack.enter_context(self.log_path.open("ab"))
            out: _File = stdout
            if out is None:
                out = stack.enter_context(Path(f"{self.log_path}.stdout").open("ab"))
            self.popen = procs.spawn(self.argv, env=env, cwd=cwd, stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        """The process id (also its process-group id)."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal), else None."""
        return self.popen.poll()

    @property
    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process itself (not its group; its children are its business)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process's whole process group."""
        kill_group(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit and return the exit status; ``subprocess.TimeoutExpired`` on timeout."""
        return self.popen.wait(timeout=timeout)

    def _read(self) -> tuple[list[str], bool]:
        """All lines; the bool says whether the last one is complete (newline-terminated)."""
        try:
            text = self.log_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return [], True
        complete = text.endswith("\n") or not text
        return text.splitlines(), complete

    def lines(self) -> list[str]:
        """Every line written so far (JSON or not), re-read from the file."""
        return self._read()[0]

    def events(self, event: str | None = None, **match: object) -> list[dict[str, Any]]:
        """The JSON-object lines, re-read from the file, optionally filtered.

        With ``event``, keep records whose ``"event"`` equals it; each ``match`` key/value must
        also be equal in the record. A trailing line without newline is skipped while the process
        runs (it may be half-written).
        """
        lines, complete = self._read()
        if lines and not complete and self.alive:
            lines = lines[:-1]
        records: list[dict[str, Any]] = []
        for line in lines:
            stripped = line.strip()
            if not stripped.startswith("{"):
                continue
            try:
                record = json.loads(stripped)
            except ValueError:
                continue
            if isinstance(record, dict) and _matches(record, event, match):
                records.append(record)
        return records

    def tail(self, n: int = 30) -> str:
        """The last ``n`` lines of the log, as one string."""
        return "\n".join(self.lines()[-n:])

    def wait_event(self, event: str, timeout: float, **match: object) -> dict[str, Any]:
        """Poll the log until a record with ``"event" == event`` and all ``match`` pairs appears;
        return the first such record.

        Raises ``AssertionError`` (message: what was awaited, whether the process exited, and the
        last 30 log lines) on timeout, or as soon as the process has exited without writing it.
        """
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive  # read exit status *before* the final read of the file
            found = self.events(event, **match)
            if found:
                return found[0]
            if exited or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        why = (
            f"process exited with status {self.returncode}"
            if not self.alive
            else f"timed out after {timeout}s"
        )
        want = ", ".join([f"event={event!r}", *(f"{k}={v!r}" for k, v in match.items())])
        raise AssertionError(
            f"no log record with {want} ({why}); pid={self.pid} argv={self.argv}\n"
            f"--- last 30 lines of {self.log_path} ---\n{self.tail(30)}"
        )


def _matches(record: Mapping[str, Any], event: str | None, match: Mapping[str, object]) -> bool:
    if event is not None and record.get("event") != event:
        return False
    return all(k in record and record[k] == v for k, v in match.items())
