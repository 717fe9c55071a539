"""The guardian's runs: one run's record, which processes are its, its signals, its output tail
and its end (:mod:`leaderjob.guard.guardian` holds the event loop and the control protocol).

Which run a descendant belongs to: the run's main process and everything below it; its process
group; and an orphan (re-parented to us) whose environment carries the run's marker
(``LEADERJOB_GUARDIAN_RUN``) or whose group is the run's. An orphan of no known run is killed at
the end of any run: nothing unknown outlives a run's end.

Standard library only: the guardian runs as ``python -S`` and loads this file beside it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

#: typing is left unloaded (tens of milliseconds and about a MiB): annotations stay strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

if __package__:
    from leaderjob.guard import proctree, tail
else:  # in the guardian run as a script: the files beside it are top-level modules
    import proctree  # type: ignore[no-redef, import-not-found]
    import tail  # type: ignore[no-redef, import-not-found]

#: Pause between SIGKILL sweeps of a run whose processes are still dying.
SWEEP_PAUSE = proctree.SWEEP_PAUSE


class Run:
    """One run in the table."""

    def __init__(self, key: str, deadline: float, grace: float, start_by: float) -> None:
        self.key = key
        self.deadline = deadline
        self.grace = grace
        self.start_by = start_by  # the daemon gives up on the start then: no exec after it
        self.pid = 0  # also its process group id (0: not started)
        self.returncode: int | None = None
        self.stop_kill: float | None = None  # set once a stop was requested
        self.termed = False
        self.killed = False
        self.ended_at: float | None = None  # every process of the run reaped
        self.pipes: dict[str, int] = {}  # stream → read end, until EOF
        self.rings = {name: tail.Ring() for name in tail.STREAMS}
        self.members: set[int] = set()  # orphans known to be the run's
        #: Between fork and exec: the job's process and its answer pipe (None once answered).
        self.pending: Any = None

    def tails(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, ring in self.rings.items():
            if ring.total:
                out[f"{name}_tail"] = ring.text()
                out[f"{name}_truncated"] = ring.truncated
        return out


class Sight:
    """The processes below the guardian at one moment (every process a run may own is: we are
    the jobs' subreaper, so no scan of ``/proc``), indexed once for every run looked at in the
    same turn: children by parent, the groups, the orphans (children of ours that are no run's
    main process) and their markers, read once each."""

    def __init__(self, me: int, procs: dict[int, tuple[int, int]], mains: set[int]) -> None:
        self.procs = procs
        self.children: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            self.children.setdefault(ppid, []).append(pid)
        self.groups: dict[int, list[int]] = {}
        for pid in proctree.below(me, procs):
            self.groups.setdefault(procs[pid][1], []).append(pid)
        self.orphans = [p for p in self.children.get(me, ()) if p not in mains]
        self._markers: dict[int, str | None] = {}

    def marker(self, pid: int) -> str | None:
        if pid not in self._markers:
            self._markers[pid] = proctree.marker_of(pid)
        return self._markers[pid]


class RunTable:
    """The guardian's table of runs and what it does to them: signals, reaping, copying their
    output, their end. ``me`` is the guardian's pid; ``send`` writes one report to the daemon."""

    def __init__(
        self, me: int, sinks: tuple[tail.Sink, tail.Sink], send: Callable[..., None]
    ) -> None:
        self.me = me
        self.sinks = sinks
        self.send = send
        self.runs: dict[str, Run] = {}

    # -- signals ------------------------------------------------------------------------------

    def sight(self) -> Sight:
        """The processes below us now, indexed for every run signalled in the same turn."""
        mains = {r.pid for r in self.runs.values() if r.pid}
        return Sight(self.me, proctree.processes_below(self.me), mains)

    def members(self, run: Run, sight: Sight, strays: bool) -> list[int]:
        """The run's processes as ``sight`` saw them: its main process and everything below it,
        its group, and orphans marked as the run's or in its group (``strays``: unknown orphans
        too)."""
        procs = sight.procs
        roots = [run.pid] if run.pid in procs else []
        for pid in sight.orphans:
            if pid in run.members or procs[pid][1] == run.pid:
                roots.append(pid)
                continue
            owner = sight.marker(pid)
            if owner == run.key:
                run.members.add(pid)
                roots.append(pid)
            elif strays and (owner is None or owner not in self.runs):
                roots.append(pid)
        # A group id matches only below us (pids are reused).
        found = list(sight.groups.get(run.pid, ())) if run.pid else []
        todo = list(roots)
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += sight.children.get(pid, ())
        return [p for p in dict.fromkeys(found) if p != self.me]

    def signal_run(self, run: Run, sig: signal.Signals, reason: str | None) -> None:
        """Signal the run's group and every process of it; report it once per signal kind."""
        self.signal_runs([(run, sig, reason)])

    def signal_runs(self, batch: list[tuple[Run, signal.Signals, str | None]]) -> None:
        """Signal several runs at once (a thousand reaching one ``D``, a stop of every run):
        every run's group first, then one look at the processes below us for all of them, then
        each run's other processes, then the reports, once per run and signal kind. A look per
        run made the last of a thousand runs at one ``D`` die tens of seconds after it."""
        todo = [(run, sig, reason) for run, sig, reason in batch if self._first(run, sig)]
        if not todo:
            return
        for run, sig, _ in todo:
            self._signal_group(run, sig)
        sight = self.sight()
        for run, sig, _ in todo:
            self._signal_members(run, sig, sight, strays=False)
        for run, sig, reason in todo:
            if reason is not None:
                self.send(run=run.key, signal=sig.name, reason=reason)

    @staticmethod
    def _first(run: Run, sig: signal.Signals) -> bool:
        """Whether ``sig`` is news for ``run`` (a KILL once, a TERM once and not after a KILL);
        notes it."""
        if sig is signal.SIGKILL:
            if run.killed:
                return False
            run.killed = True
        elif sig is signal.SIGTERM:
            if run.termed or run.killed:
                return False
            run.termed = True
        return True

    def sweep(self, run: Run, sig: signal.Signals, strays: bool, sight: Sight | None = None) -> int:
        """Signal the run's group and every process of it now (``strays``: unknown orphans
        too); how many processes were found. ``sight``: the processes seen this turn (None:
        look now)."""
        self._signal_group(run, sig)
        return self._signal_members(run, sig, sight or self.sight(), strays)

    @staticmethod
    def _signal_group(run: Run, sig: signal.Signals) -> None:
        if run.pid and run.returncode is None:  # its main process unreaped: the group is ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, sig)

    def _signal_members(self, run: Run, sig: signal.Signals, sight: Sight, strays: bool) -> int:
        found = self.members(run, sight, strays)
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        return len(found)

    def reap(self) -> None:
        """Collect every child that ended (orphans re-parented to us included)."""
        mains = {r.pid: r for r in self.runs.values() if r.pid}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = mains.get(pid)
            if run is not None:
                run.returncode = os.waitstatus_to_exitcode(status)
            for r in self.runs.values():
                r.members.discard(pid)

    # -- copying ------------------------------------------------------------------------------

    def copy(self, run: Run, name: str, ending: bool) -> None:
        """One bounded read of one stream: passed through, and its tail kept. A run that is
        ending reads even when the sink is stuck (what does not fit is not passed through)."""
        fd = run.pipes[name]
        sink = self.sinks[tail.STREAMS.index(name)]
        if sink.full and not ending:
            return
        try:
            chunk = os.read(fd, tail.CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            os.close(fd)
            del run.pipes[name]
            return
        run.rings[name].add(chunk)
        sink.put(chunk)

    # -- a run's end --------------------------------------------------------------------------

    def orphans(self) -> bool:
        """Whether any child of ours is no live run's main process. Whatever a run whose main
        process was reaped left behind is among those (re-parented to us, its subreaper): none
        at all is the common end of a run, known from one small read instead of a scan of
        ``/proc`` (the scan is the answer where the kernel lacks that read)."""
        found = proctree.children(self.me)
        if found is None:
            return True
        mains = {r.pid for r in self.runs.values() if r.returncode is None}
        return any(c not in mains for c in found)

    def report(self, run: Run) -> None:
        if run.pending is not None:
            run.pending.close()
        for fd in run.pipes.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        run.pipes.clear()
        self.runs.pop(run.key, None)
        self.send(run=run.key, exited=run.returncode, tails=run.tails())

    def kill_everything(self, reason: str) -> None:
        """SIGKILL every run and every descendant until none is left, reaping them all."""
        self.signal_runs(
            [(run, signal.SIGKILL, reason) for run in self.runs.values() if run.returncode is None]
        )
        pause = SWEEP_PAUSE
        while True:
            self.reap()
            below = [p for p in proctree.processes_below(self.me) if p != self.me]
            if not below:
                self.reap()
                return
            for pid in below:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for run in self.runs.values():
                if run.pid and run.returncode is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(run.pid, signal.SIGKILL)
            time.sleep(pause)  # a process in uninterruptible sleep dies when it wakes
            pause = min(0.2, pause * 2)
