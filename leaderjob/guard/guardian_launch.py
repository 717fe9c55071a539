"""The guardian's starts: a run's fork, the check before its exec, and its answer.

A start forks the job's process and goes on (:class:`leaderjob.guard.guardian_spawn.Spawn`); the
run is in the table from then on, so its deadline, a stop or the daemon's end reach its process
even before its exec. The answer comes on the run's answer pipe, which the event loop
(:mod:`leaderjob.guard.guardian`) polls: :meth:`Launcher.answered` reports ``started``, or why the
job was not started (the run then leaves the table). Between the starts of one burst the answers
already there are reported oldest first (:meth:`Launcher.answer_execs`).

Why a start is refused (:meth:`Launcher.refusal`) is asked in the job's process, immediately
before exec: the daemon gone, the run's ``D`` passed or nearer than its grace, the daemon's limit
for the start (``start_by``) passed.

Standard library only: the guardian runs as ``python -S`` and loads this file beside it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time

#: typing is left unloaded (tens of milliseconds and about a MiB): annotations stay strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

if __package__:
    from leaderjob.guard import guardian_runs, guardian_spawn, proctree, tail
else:  # in the guardian run as a script: the files beside it are top-level modules
    import guardian_runs  # type: ignore[no-redef, import-not-found]
    import guardian_spawn  # type: ignore[no-redef, import-not-found]
    import proctree  # type: ignore[no-redef, import-not-found]
    import tail  # type: ignore[no-redef, import-not-found]

Run = guardian_runs.Run


class Launcher:
    """Starts the guardian's runs and answers for them. ``table``: the guardian's runs;
    ``sinks``: its stdout and stderr; ``send`` writes a report; ``now`` reads the deadline
    clock; ``ctl_closed`` says whether the daemon is gone. The stalls are test-only pauses (a
    slow way from fork to exec; a slow fork)."""

    def __init__(
        self,
        table: guardian_runs.RunTable,
        sinks: tuple[tail.Sink, tail.Sink],
        send: Callable[..., None],
        now: Callable[[], float],
        ctl_closed: Callable[[], bool],
        *,
        stall_before_exec: float = 0.0,
        stall_after_fork: float = 0.0,
    ) -> None:
        self.table = table
        self.sinks = sinks
        self.send = send
        self.now = now
        self.ctl_closed = ctl_closed
        self.stall_before_exec = stall_before_exec
        self.stall_after_fork = stall_after_fork
        #: What a job's process sets back to default before exec (known once, not per start).
        self.not_default = guardian_spawn.not_default()
        #: Runs between fork and exec, in the order of their forks (answered ones dropped lazily).
        self.spawning: collections.deque[Run] = collections.deque()

    def refusal(self, run: Run) -> str | None:
        """Why the run's job must not be started now, or None."""
        if self.ctl_closed():
            return "not started: the daemon closed the control channel (it is gone)"
        now = self.now()
        left = run.deadline - now
        if left <= 0:
            return f"not started: the local deadline passed {-left:.3f}s ago"
        if left <= run.grace:
            return (
                f"not started: {left:.3f}s left before the local deadline, "
                f"less than the grace of {run.grace:g}s"
            )
        if now >= run.start_by:
            return "not started: the daemon gave up waiting for the start"
        return None

    def start_all(
        self, msgs: list[dict[str, Any]], between: Callable[[Run], None]
    ) -> list[Run]:
        """Fork the runs' jobs and go on: each answer (exec'd, or why not) is read as it comes
        (:meth:`answered`), so no start waits for another's exec. Every start is prepared
        first (its record, environment, pipes, the file to exec: looked up once per command),
        then the forks follow one another with only ``between`` after each (it is handed the
        run just forked, now in the table: its controls, the deadlines), then each run's pipes
        are set up. The runs now in the table, in order (a run that could not be forked was
        reported and is not among them)."""
        paths: dict[tuple[str, str | None], str | None] = {}
        ready = []
        for msg in msgs:
            prepared = self._prepare(msg, paths)
            if prepared is not None:
                ready.append(prepared)
        forked = []
        for run, spawn, pipes in ready:
            try:
                run.pending = spawn.fork()
            except OSError as exc:
                self._failed(run.key, spawn.argv0, pipes, exc)
                continue
            run.pid = run.pending.pid
            self.table.runs[run.key] = run
            forked.append((run, pipes))
            if self.stall_after_fork:
                time.sleep(self.stall_after_fork)
            between(run)
        for run, pipes in forked:
            for name, p in zip(tail.STREAMS, pipes, strict=True):
                if p is not None:
                    os.close(p[1])  # EOF comes when the job and all it started are gone
                    os.set_blocking(p[0], False)
                    run.pipes[name] = p[0]
            self.spawning.append(run)
        return [run for run, _ in forked]

    def _prepare(
        self, msg: dict[str, Any], paths: dict[tuple[str, str | None], str | None]
    ) -> tuple[Run, guardian_spawn.Spawn, list[Any]] | None:
        """A start's run, its fork made ready, its output pipes (None: it cannot be forked,
        and that was reported)."""
        key = str(msg["start"])
        deadline = float(msg["deadline"])
        run = Run(key, deadline, float(msg["grace"]), float(msg.get("start_by", deadline)))
        argv = [str(a) for a in msg["argv"]]
        env = {str(k): str(v) for k, v in dict(msg["env"]).items()}
        env[proctree.MARKER] = key
        pipes: list[Any] = []
        try:
            for sink in self.sinks:  # one by one: those made are closed if the next one fails
                pipes.append(None if sink.tty else os.pipe())
            spawn = guardian_spawn.Spawn(
                argv,
                env,
                msg.get("cwd"),
                (pipes[0] and pipes[0][1], pipes[1] and pipes[1][1]),
                # The last check, in the job's process immediately before exec: a start request
                # that arrived late (the daemon gone, D near) or a slow fork never becomes a job.
                check=lambda: self.refusal(run) is None,
                reset=self.not_default,
                stall=self.stall_before_exec,
                paths=paths,
            )
        except OSError as exc:
            self._failed(key, argv[0], pipes, exc)
            return None
        return run, spawn, pipes

    def _failed(self, key: str, argv0: str, pipes: list[Any], exc: OSError) -> None:
        """The start could not be forked (out of descriptors or processes): reported, its pipes
        closed."""
        for p in pipes:
            for fd in p or ():
                with contextlib.suppress(OSError):
                    os.close(fd)
        why = f"cannot start {argv0!r}: {exc.strerror or exc}"
        self.send(run=key, error=why, exited=None)

    def answer_execs(self) -> None:
        """Report the answers already there, oldest start first, up to the first still on its
        way to exec (they come roughly in the order of their forks): between the starts of one
        burst, each costs one read."""
        while self.spawning and self.answered(self.spawning[0]):
            self.spawning.popleft()

    def answered(self, run: Run) -> bool:
        """Read the answer of a run whose job is between fork and exec; once it is complete,
        report it: ``started``, or the error (the run leaves the table, its process reaped).
        True once the run has its answer."""
        pending = run.pending
        if pending is None:
            return True
        if not pending.read():
            return False
        run.pending = None
        try:
            pending.outcome()
        except (guardian_spawn.Refused, OSError) as exc:
            if isinstance(exc, OSError):
                cwd = pending.cwd
                where = f" in {cwd}" if cwd and exc.filename == cwd else ""
                why = f"cannot start {pending.argv0!r}{where}: {exc.strerror or exc}"
            else:  # the last check refused, or a signal came first
                why = self.refusal(run) or (
                    "not started: stopped before exec"
                    if run.termed or run.killed
                    else "not started: the job's process died before exec"
                )
            if run.returncode is None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(run.pid, 0)  # it is exiting: reaped here, never reported as a run
            for fd in run.pipes.values():
                os.close(fd)
            run.pipes.clear()
            self.table.runs.pop(run.key, None)
            self.send(run=run.key, error=why, exited=None)
            return True
        # When the exec was seen, on the deadline clock the daemon reads too: its report may be
        # read later than that (a burst of reports, a busy daemon), and the job runs from here.
        self.send(run=run.key, started=run.pid, at=self.now())
        return True

    def settle(self) -> None:
        """Every job's process is gone: each run between fork and exec gets its answer."""
        for run in list(self.table.runs.values()):
            if run.pending is not None:
                self.answered(run)
