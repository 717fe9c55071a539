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
signals, its output tail and its end) is :mod:`leaderjob.guard.guardian_runs`, a run's start and
its answer :mod:`leaderjob.guard.guardian_launch`, a job's fork and exec
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
    from leaderjob.guard import guardian_launch, guardian_runs, guardian_spawn, guardian_wire, tail
else:  # run as a script (python -S): the files beside us, imported as top-level modules
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import guardian_launch  # type: ignore[no-redef, import-not-found]
    import guardian_runs  # type: ignore[no-redef, import-not-found]
    import guardian_spawn  # type: ignore[no-redef, import-not-found]
    import guardian_wire  # type: ignore[no-redef, import-not-found]
    import tail  # type: ignore[no-redef, import-not-found]

#: SIGKILL goes out this long before D at most, so the kernel has time to deliver it.
KILL_RESERVE = 0.1
#: One run's record, and the pause between SIGKILL sweeps, as the runs' module defines them.
Run = guardian_runs.Run
SWEEP_PAUSE = guardian_runs.SWEEP_PAUSE
#: What one turn reads of the control pipe at most: the size the daemon grows the pipe to.
CTL_READ = 1 << 20
#: The starts of one read are forked this many at a time, back to back (each fork's pages are
#: copied again by whatever the guardian does before the next one), the execs that happened
#: meanwhile reported between two such runs of forks.
START_CHUNK = 8
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
        # SIGCHLD wakes the poll below through this pipe (the handler itself does nothing).
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        #: Nothing is due before this (a TERM or KILL of some run): :meth:`deadlines` sets it.
        self.due_at = 0.0
        #: Whether the daemon closed its end of the control channel: asked before each exec.
        self.ctl_poll = select.poll()
        self.ctl_poll.register(self.ctl, select.POLLIN)
        self.launcher = guardian_launch.Launcher(
            self.table,
            self.sinks,
            self.send,
            self.now,
            self.ctl_closed,
            stall_before_exec=stall_before_exec,
            stall_after_fork=stall_after_fork,
        )

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
        msgs, self.buf = guardian_wire.read_messages(self.ctl, self.buf, CTL_READ, tail.CHUNK)
        return msgs

    def ctl_closed(self) -> bool:
        """True once the daemon's end of the control channel is closed; reads nothing."""
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in self.ctl_poll.poll(0))

    def handle(self, msg: dict[str, Any], signals: list[Any]) -> None:
        """One message; the signals it asks for go into ``signals`` (sent together by
        :meth:`signal`)."""
        if "start" in msg:
            for started in self.launcher.start_all([msg], lambda run: None):
                self.due_at = min(self.due_at, started.deadline - started.grace)
            return
        run = self.table.runs.get(str(msg.get("run")))
        if run is None or run.returncode is not None:
            return  # a finished run's controls go nowhere
        if "deadline" in msg:
            run.deadline = max(run.deadline, float(msg["deadline"]))
        if "stop" in msg:
            signals.append((run, signal.SIGTERM, str(msg["stop"])))
            stop_kill = self.now() + run.grace
            run.stop_kill = stop_kill if run.stop_kill is None else min(run.stop_kill, stop_kill)
            self.due_at = min(self.due_at, run.stop_kill)
        if "kill" in msg:
            signals.append((run, signal.SIGKILL, str(msg["kill"])))

    def signal(self, signals: list[Any]) -> None:
        """Send what the messages handled asked for, every run in one sweep (a stop of a
        thousand runs looks at the processes below us once, not once per run)."""
        if signals:
            self.table.signal_runs(signals)
            signals.clear()

    def handle_all(self, msgs: list[dict[str, Any]]) -> None:
        """What one read brought, the messages that protect runs first: every extension, stop
        and kill of a run already started is applied before any start of the same read is
        forked (a burst of starts must not hold up the deadline the daemon just moved), then the
        deadlines are checked, then the starts in order, forked :data:`START_CHUNK` at a time
        back to back, the deadlines checked again after each fork (a fork never delays another
        run's TERM or KILL; the check is a comparison with the earliest time something is due,
        the whole table scanned only then), and the execs that happened meanwhile reported
        between two such runs of forks. A control for a run whose start is in the same read
        follows that start's fork, in the order they came."""
        starting = {str(m["start"]) for m in msgs if "start" in m}
        later: dict[str, list[dict[str, Any]]] = {}
        signals: list[Any] = []
        for msg in msgs:
            if "start" in msg:
                continue
            key = str(msg.get("run"))
            if key in starting and key not in self.table.runs:
                later.setdefault(key, []).append(msg)
            else:
                self.handle(msg, signals)
        self.signal(signals)
        if not starting:
            return
        self.deadlines()

        def between(run: Run) -> None:
            for control in later.pop(run.key, ()):
                self.handle(control, signals)
            self.signal(signals)
            if self.now() >= self.due_at:
                self.deadlines()

        starts = [m for m in msgs if "start" in m]
        for at in range(0, len(starts), START_CHUNK):
            for run in self.launcher.start_all(starts[at : at + START_CHUNK], between):
                self.due_at = min(self.due_at, run.deadline - run.grace)
            self.launcher.answer_execs()

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self._run()
        except BaseException as exc:  # a malformed message, a bug: every job must still die
            self.table.kill_everything("guardian_failed")
            self.send(error=f"guardian failed: {exc!r}")
            with contextlib.suppress(Exception):
                self.launcher.settle()
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
        self.launcher.settle()
        for run in list(self.table.runs.values()):
            self.table.report(run)
        self.drain_out(1.0)
        return 0

    def deadlines(self) -> float:
        """Signal what is due, every run due now in one sweep; the time until the next thing is
        due."""
        now = self.now()
        until = 3600.0
        signals: list[Any] = []
        for run in self.table.runs.values():
            if run.returncode is not None:
                continue
            term_at = run.deadline - run.grace
            kill_at = run.deadline - min(KILL_RESERVE, run.grace / 4)
            if run.stop_kill is not None:
                kill_at = min(kill_at, run.stop_kill)
            if now >= kill_at:
                if not run.killed:
                    reason = "deadline" if run.stop_kill is None else "grace"
                    signals.append((run, signal.SIGKILL, reason))
                until = min(until, 0.05)  # until it is reaped
                continue
            if now >= term_at and not run.termed and not run.killed:
                signals.append((run, signal.SIGTERM, "deadline"))
            if not run.killed:
                nxt = kill_at if run.termed or now >= term_at else term_at
                until = min(until, max(0.0, nxt - now))
        self.signal(signals)
        self.due_at = now + until
        return until

    def finish(self) -> None:
        """Runs whose main process exited: SIGKILL what they left behind; report once all of
        it is reaped and the output reached EOF (or TAIL_WAIT passed). One look at the
        processes below us serves every run that ended in this turn."""
        sight = None
        for run in list(self.table.runs.values()):
            if run.returncode is None:
                continue
            # Its process is gone, so its answer is complete: started (reported first) or not.
            if not self.launcher.answered(run) or run.key not in self.table.runs:
                continue
            if run.ended_at is None:
                if sight is None and self.table.orphans():
                    sight = self.table.sight()
                if sight is not None and self.table.sweep(
                    run, signal.SIGKILL, strays=True, sight=sight
                ):
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
                self.launcher.answered(spawning[fd])
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
    guardian_spawn.raise_descriptor_limit()  # every run in flight holds a few
    os.set_blocking(status_fd, False)
    for fd in (ctl_fd, status_fd):  # passed to us inheritable: no job inherits them
        os.set_inheritable(fd, False)
    return Guardian(ctl_fd, status_fd, clock, *stalls).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
