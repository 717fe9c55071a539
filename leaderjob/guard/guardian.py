"""The guardian: one small process per daemon that starts every run and guarantees its end.

It exists because the daemon can be frozen (SIGSTOP, a GC pause, a throttled cgroup) or killed
outright (``kill -9``): the daemon's own timers then cannot fire, yet each job must be dead by its
local deadline ``D``. One guardian serves every run of every job of its daemon. It is started
plainly (no ``preexec_fn`` in the daemon, which has gRPC threads) and:

* is a child subreaper (``PR_SET_CHILD_SUBREAPER``): whatever a job forks stays below it, even a
  process that left the job's group with ``setsid()`` (a daemonizing script, ``setsid cmd &``);
* holds a table of runs, each with its process group, ``D``, grace and output tails;
* starts a job in a new session, with default signal dispositions and an empty signal mask, only
  if the control channel is still open and more than ``grace`` is left before that run's ``D`` —
  checked on its own clock in the job's process immediately before exec, not before the fork;
* SIGTERMs each run at its ``D − grace`` and SIGKILLs it shortly before ``D``, whatever the daemon
  is doing (the daemon moves ``D`` forward after each renewal);
* SIGKILLs every run and every descendant at once when the control channel closes (the daemon is
  gone) or when it fails itself, then exits;
* when a job's main process exits, SIGKILLs everything the run left behind, and only once all of
  it is reaped reports the exit — the daemon revokes the lease after that report.

One event loop, deadlines first: each turn signals what is due, then reaps, then copies at most
one bounded read per stream. Nothing blocks it: the job's output is passed through to the daemon's
stdout/stderr by non-blocking writes (a stuck reader stalls the *jobs* that write, through their
own full pipes, as if they wrote there directly, never a kill), and reports to the daemon wait in
a queue of their own when the daemon is not reading — never dropped, never blocking.

This file holds the event loop and the control protocol; the table of runs (one run's record, its
signals, its output tail and its end) is :mod:`leaderjob.guard.guardian_runs`, a job's fork and exec
:mod:`leaderjob.guard.guardian_spawn`, the protocol's lines :mod:`leaderjob.guard.guardian_wire`.

Standard library only: the daemon starts it as ``python -S guardian.py CTL_FD STATUS_FD [CLOCK]``.
Protocol: JSON lines. Daemon → guardian: ``{"start": id, "argv", "env", "deadline", "grace"}``,
then ``{"run": id, "deadline": D}``, ``{"run": id, "stop": reason}``, ``{"run": id, "kill":
reason}``. Guardian → daemon: ``{"ready": pid}`` once, then per run ``{"run": id, "started":
pid}`` or ``{"run": id, "error": text}``, ``{"run": id, "signal": name, "reason": why}`` for each
signal kind sent, and last ``{"run": id, "exited": returncode, "tails": {...}}`` (``exited`` is
null when the job never started or the guardian failed).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import sys
import time

#: typing is left unloaded (tens of milliseconds and about a MiB): annotations stay strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

if __package__:
    from leaderjob.guard import guardian_runs, guardian_spawn, guardian_wire, proctree, tail
else:  # run as a script (python -S): the package may not be importable; load the files beside us
    import importlib.util

    def _load(name: str) -> Any:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"leaderjob_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    guardian_runs = _load("guardian_runs")
    guardian_spawn = _load("guardian_spawn")
    guardian_wire = _load("guardian_wire")
    proctree, tail = guardian_runs.proctree, guardian_runs.tail  # loaded once, beside us

#: SIGKILL goes out this long before D at most, so the kernel has time to deliver it.
KILL_RESERVE = 0.1
#: One run's record, and the pause between SIGKILL sweeps, as the runs' module defines them.
Run = guardian_runs.Run
SWEEP_PAUSE = guardian_runs.SWEEP_PAUSE
#: What one turn reads of the control pipe at most: the size the daemon grows the pipe to.
CTL_READ = 1 << 20
#: After a run's processes are all gone, its output pipes get this long to reach EOF.
TAIL_WAIT = 0.5


def clock_id(name: str | None) -> int:
    """The clock deadlines are read on: the daemon names it (both must read the same one)."""
    if name == "monotonic" or not hasattr(time, "CLOCK_BOOTTIME"):
        return time.CLOCK_MONOTONIC
    return time.CLOCK_BOOTTIME


class Guardian:
    """The event loop: the control channel in, reports out, deadlines first; what is done to
    the runs themselves is its table's (:class:`leaderjob.guard.guardian_runs.RunTable`)."""

    def __init__(
        self,
        ctl_fd: int,
        status_fd: int,
        clock: int,
        stall_before_exec: float = 0.0,
        stall_after_fork: float = 0.0,
    ) -> None:
        self.ctl = ctl_fd
        self.status = status_fd
        self.clock = clock
        self.me = os.getpid()
        self.buf = b""
        self.out = bytearray()  # reports the daemon has not read yet: never dropped
        self.ctl_open = True
        self.sinks = (tail.Sink(1), tail.Sink(2))
        self.table = guardian_runs.RunTable(self.me, self.sinks, self.send)
        #: A test-only pause in the job's process between fork and exec (never set by the daemon).
        self.stall_before_exec = stall_before_exec
        #: A test-only pause in the guardian after each fork (a slow fork, as on a loaded machine).
        self.stall_after_fork = stall_after_fork
        # SIGCHLD wakes the poll below through this pipe (the handler itself does nothing).
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        #: What a job's process sets back to default before exec (known once, not per start).
        self.not_default = guardian_spawn.not_default()
        #: Runs between fork and exec, in the order of their forks (answered ones dropped lazily).
        self.spawning: collections.deque[Run] = collections.deque()
        #: Nothing is due before this (a TERM or KILL of some run): :meth:`deadlines` sets it.
        self.due_at = 0.0
        #: Whether the daemon closed its end of the control channel: asked before each exec.
        self.ctl_poll = select.poll()
        self.ctl_poll.register(self.ctl, select.POLLIN)

    def now(self) -> float:
        return time.clock_gettime(self.clock)

    # -- reports ------------------------------------------------------------------------------

    def send(self, **msg: Any) -> None:
        self.out += guardian_wire.encode(msg)
        self.flush_out()

    def flush_out(self) -> None:
        while self.out:
            try:
                n = os.write(self.status, self.out)
            except BlockingIOError:
                return  # the daemon is not reading now: the rest waits, in order
            except OSError:
                self.out.clear()  # the daemon is gone; its control channel says so too
                return
            del self.out[:n]

    # -- the control channel ------------------------------------------------------------------

    def read_ctl(self) -> list[dict[str, Any]] | None:
        """Read what the daemon sent: all the pipe holds now, up to :data:`CTL_READ`, so that
        every control waiting behind a burst of starts is applied before them
        (:meth:`handle_all`); None on EOF (the daemon is gone)."""
        got = 0
        while got < CTL_READ:
            try:
                chunk = os.read(self.ctl, tail.CHUNK)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                if got:
                    break  # what came first is handled; the EOF is read again next turn
                return None
            self.buf += chunk
            got += len(chunk)
        if not got:
            return []
        # A line that is not a JSON object raises: the caller treats it as its own failure.
        *lines, self.buf = self.buf.split(b"\n")
        msgs = [guardian_wire.decode(line) for line in lines if line.strip()]
        if not all(isinstance(m, dict) for m in msgs):
            raise ValueError(f"not a message: {lines!r}")
        return msgs

    def ctl_closed(self) -> bool:
        """True once the daemon's end of the control channel is closed; reads nothing."""
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in self.ctl_poll.poll(0))

    def handle(self, msg: dict[str, Any]) -> None:
        if "start" in msg:
            self.start(msg)
            return
        run = self.table.runs.get(str(msg.get("run")))
        if run is None or run.returncode is not None:
            return  # a finished run's controls go nowhere
        if "deadline" in msg:
            run.deadline = max(run.deadline, float(msg["deadline"]))
        if "stop" in msg:
            self.table.signal_run(run, signal.SIGTERM, str(msg["stop"]))
            stop_kill = self.now() + run.grace
            run.stop_kill = stop_kill if run.stop_kill is None else min(run.stop_kill, stop_kill)
            self.due_at = min(self.due_at, run.stop_kill)
        if "kill" in msg:
            self.table.signal_run(run, signal.SIGKILL, str(msg["kill"]))

    def handle_all(self, msgs: list[dict[str, Any]]) -> None:
        """What one read brought, the messages that protect runs first: every extension, stop
        and kill of a run already started is applied before any start of the same read is
        forked (a burst of starts must not hold up the deadline the daemon just moved), then the
        deadlines are checked, then the starts in order, the deadlines checked again after each
        one (a fork never delays another run's TERM or KILL; the check is a comparison with the
        earliest time something is due, the whole table scanned only then), and the execs that
        happened meanwhile reported as they come. A control for a run whose start is in the same
        read follows that start, in the order they came."""
        starting = {str(m["start"]) for m in msgs if "start" in m}
        later: dict[str, list[dict[str, Any]]] = {}
        for msg in msgs:
            if "start" in msg:
                continue
            key = str(msg.get("run"))
            if key in starting and key not in self.table.runs:
                later.setdefault(key, []).append(msg)
            else:
                self.handle(msg)
        if not starting:
            return
        self.deadlines()
        for msg in msgs:
            if "start" in msg:
                self.start(msg)
                for control in later.pop(str(msg["start"]), ()):
                    self.handle(control)
                if self.now() >= self.due_at:
                    self.deadlines()
                self.answer_execs()

    # -- starting -----------------------------------------------------------------------------

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

    def start(self, msg: dict[str, Any]) -> None:
        """Fork the run's job and go on: its answer (exec'd, or why not) is read as it comes
        (:meth:`answered`), so no start waits for another's exec."""
        key = str(msg["start"])
        deadline = float(msg["deadline"])
        run = Run(key, deadline, float(msg["grace"]), float(msg.get("start_by", deadline)))
        argv = [str(a) for a in msg["argv"]]
        env = {str(k): str(v) for k, v in dict(msg["env"]).items()}
        env[proctree.MARKER] = key
        cwd = msg.get("cwd")
        pipes = [None if sink.tty else os.pipe() for sink in self.sinks]
        try:
            pending = guardian_spawn.fork(
                argv,
                env,
                cwd,
                (pipes[0] and pipes[0][1], pipes[1] and pipes[1][1]),
                # The last check, in the job's process immediately before exec: a start request
                # that arrived late (the daemon gone, D near) or a slow fork never becomes a job.
                check=lambda: self.refusal(run) is None,
                reset=self.not_default,
                stall=self.stall_before_exec,
            )
        except OSError as exc:
            for p in pipes:
                for fd in p or ():
                    os.close(fd)
            why = f"cannot start {argv[0]!r}: {exc.strerror or exc}"  # the fork itself failed
            self.send(run=key, error=why, exited=None)
            return
        for name, p in zip(tail.STREAMS, pipes, strict=True):
            if p is not None:
                os.close(p[1])  # EOF comes when the job and all it started are gone
                os.set_blocking(p[0], False)
                run.pipes[name] = p[0]
        run.pid = pending.pid
        run.pending = pending
        self.table.runs[key] = run
        self.spawning.append(run)
        self.due_at = min(self.due_at, run.deadline - run.grace)
        if self.stall_after_fork:
            time.sleep(self.stall_after_fork)

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
        self.send(run=run.key, started=run.pid)
        return True

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self._run()
        except BaseException as exc:  # a malformed message, a bug: every job must still die
            self.table.kill_everything("guardian_failed")
            self.send(error=f"guardian failed: {exc!r}")
            with contextlib.suppress(Exception):
                self.settle()
            for run in list(self.table.runs.values()):
                self.send(
                    run=run.key,
                    error=f"guardian failed: {exc!r}",
                    exited=run.returncode,
                    tails=run.tails(),
                )
            self.drain_out(1.0)
            return 1

    def _run(self) -> int:
        guardian_spawn.prctl(guardian_spawn.PR_SET_CHILD_SUBREAPER, 1)
        os.set_blocking(self.ctl, False)
        self.send(ready=self.me)
        while True:
            timeout = self.deadlines()
            self.table.reap()
            self.finish()
            if not self.ctl_open:
                break
            for sink in self.sinks:
                sink.flush()
            self.wait(timeout)
        self.table.kill_everything("daemon_gone")
        self.settle()
        for run in list(self.table.runs.values()):
            self.table.report(run)
        self.drain_out(1.0)
        return 0

    def settle(self) -> None:
        """Every job's process is gone: each run between fork and exec gets its answer."""
        for run in list(self.table.runs.values()):
            if run.pending is not None:
                self.answered(run)

    def deadlines(self) -> float:
        """Signal what is due; the time until the next thing is due."""
        now = self.now()
        until = 3600.0
        for run in self.table.runs.values():
            if run.returncode is not None:
                continue
            term_at = run.deadline - run.grace
            kill_at = run.deadline - min(KILL_RESERVE, run.grace / 4)
            if run.stop_kill is not None:
                kill_at = min(kill_at, run.stop_kill)
            if now >= kill_at:
                self.table.signal_run(
                    run, signal.SIGKILL, "deadline" if run.stop_kill is None else "grace"
                )
                until = min(until, 0.05)  # until it is reaped
            elif now >= term_at:
                self.table.signal_run(run, signal.SIGTERM, "deadline")
            if not run.killed:
                nxt = kill_at if run.termed or now >= term_at else term_at
                until = min(until, max(0.0, nxt - now))
        self.due_at = now + until
        return until

    def finish(self) -> None:
        """Runs whose main process exited: SIGKILL what they left behind; report once all of
        it is reaped and the output reached EOF (or TAIL_WAIT passed)."""
        for run in list(self.table.runs.values()):
            if run.returncode is None:
                continue
            # Its process is gone, so its answer is complete: started (reported first) or not.
            if not self.answered(run) or run.key not in self.table.runs:
                continue
            if run.ended_at is None:
                if self.table.orphans() and self.table.sweep(run, signal.SIGKILL, strays=True):
                    continue  # swept again next turn, SWEEP_PAUSE later
                run.ended_at = self.now()
            for name in list(run.pipes):
                self.table.copy(run, name, ending=True)
            if run.pipes and self.now() - run.ended_at < TAIL_WAIT:
                continue
            self.table.report(run)

    def wait(self, timeout: float) -> None:
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        poller.register(self.ctl, select.POLLIN)
        if self.out:
            poller.register(self.status, select.POLLOUT)
        ending = False
        streams: dict[int, tuple[Run, str]] = {}
        spawning: dict[int, Run] = {}
        for run in self.table.runs.values():
            if run.pending is not None:
                poller.register(run.pending.fd, select.POLLIN)
                spawning[run.pending.fd] = run
            if run.returncode is not None:
                ending = True
                continue
            for name, fd in run.pipes.items():
                if not self.sinks[tail.STREAMS.index(name)].full:
                    poller.register(fd, select.POLLIN)
                    streams[fd] = (run, name)
        for sink in self.sinks:
            if sink.pending:
                timeout = min(timeout, 0.05)  # a sink's readiness is polled by trying
        if ending:
            timeout = min(timeout, SWEEP_PAUSE)
        ready = poller.poll(max(0.0, timeout) * 1000)
        for fd, _ev in ready:
            if fd == self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 4096):
                        pass
            elif fd == self.ctl:
                # Controls first, then the starts, the deadlines checked between them.
                msgs = self.read_ctl()
                if msgs is None:
                    self.ctl_open = False
                    return
                self.handle_all(msgs)
            elif fd == self.status:
                self.flush_out()
            elif fd in spawning:
                self.answered(spawning[fd])
            elif fd in streams:
                run, name = streams[fd]
                if name in run.pipes:
                    self.table.copy(run, name, ending=False)

    def drain_out(self, limit: float) -> None:
        """Last reports before exiting: written while the daemon reads, for at most ``limit``."""
        end = time.monotonic() + limit
        while self.out and time.monotonic() < end:
            self.flush_out()
            if self.out:
                with contextlib.suppress(OSError):
                    select.select([], [self.status], [], max(0.0, end - time.monotonic()))


def main(argv: list[str]) -> int:
    ctl_fd, status_fd = int(argv[1]), int(argv[2])
    clock = clock_id(argv[3] if len(argv) > 3 else None)
    stalls = []
    for flag in ("--test-stall-before-exec", "--test-stall-after-fork"):
        # tests only; the daemon never passes them
        stalls.append(float(argv[argv.index(flag) + 1]) if flag in argv else 0.0)
    # The daemon's SIGINT (Ctrl-C at a terminal) must not reach us before it decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_blocking(status_fd, False)
    for fd in (ctl_fd, status_fd):  # passed to us inheritable: no job inherits them
        os.set_inheritable(fd, False)
    return Guardian(ctl_fd, status_fd, clock, *stalls).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
