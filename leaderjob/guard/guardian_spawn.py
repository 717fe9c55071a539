"""How the guardian starts one job: a fork of itself, the job's process up to exec, the answer.

In the job's process, between fork and exec, in this order (this process has no threads):

1. ``PR_SET_PDEATHSIG``: the job's main process dies with the guardian; a guardian already gone
   (before that was armed) means no exec;
2. a new session (its own process group), stdin from ``/dev/null``, stdout and stderr onto the
   guardian's pipes (or its own, for a terminal), the job's directory;
3. signal dispositions back to the default (an ignored signal survives exec), no wake-up fd;
4. the last check, as close to exec as Python gets: the caller's ``check`` (the run's ``D``, the
   daemon still there, the start limit) — a start request that arrived late, or a fork that took
   long, never becomes a job;
5. a mark on the answer pipe (the check passed), every other descriptor closed, the limit of open
   descriptors the guardian was started with set back, the signal mask emptied, exec (``PATH``
   searched in the job's environment).

:meth:`Spawn.fork` returns as soon as the process exists: the guardian does not wait for the
exec, so the next job's fork (and every deadline) never waits behind this one's way to exec. It
learns the outcome later from a close-on-exec pipe (:class:`Pending`): end of file after the mark
means the exec happened; a line after it, or instead of it, says which step failed; end of file with
nothing at all means the process died before its check (a signal: it was never a job).
Forking by hand and not through ``subprocess`` keeps that module (and the threading machinery
it loads, and the Python code it runs in each child) out of the guardian: less memory in every
pod, less copied per fork.

Standard library only: the guardian runs as ``python -S`` and loads this file beside it.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C functions: no enum conversions
import contextlib
import ctypes
import errno
import os
import resource
import signal
import time

#: typing is left unloaded (tens of milliseconds and about a MiB): annotations stay strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class Refused(Exception):
    """The last check before exec said no: the job was not started."""


def _libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once (None where there is none)."""
    try:
        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return fn


_PRCTL = _libc_prctl()


def prctl(option: int, arg: int) -> None:
    if _PRCTL is not None:
        _PRCTL(option, arg, 0, 0, 0)


def not_default() -> list[int]:
    """The signals whose disposition is not the default now: the job's process sets them back
    (an ignored one would survive exec; a caught one is reset by exec, but not before it)."""
    out = []
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(sig) not in (signal.SIG_DFL, None):
                out.append(int(sig))
    return out


#: The descriptor limit the guardian was started with, once it raised its own (empty: not
#: raised): each job's process sets it back before exec.
_JOB_NOFILE: list[tuple[int, int]] = []


def raise_descriptor_limit() -> None:
    """Raise the guardian's soft limit of open descriptors to the hard limit: every run in
    flight holds a few (its output pipes, its answer pipe), so a thousand runs at once need
    more than the 1,024 many hosts and container runtimes give a process by default. The jobs
    get the limit the guardian was started with (as Go's runtime does for the processes it
    starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (soft, hard) or soft >= hard:
        return  # nothing to raise, or no finite limit to raise it to
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        _JOB_NOFILE.append((soft, hard))


#: What the job's process writes once its last check passed, just before exec.
CHECKED = b"+"


class Pending:
    """A job's process between fork and exec, as the guardian sees it: its pid and the read end
    of its answer pipe (non-blocking), read as it becomes readable."""

    __slots__ = ("argv0", "cwd", "fd", "got", "pid")

    def __init__(self, pid: int, fd: int, argv0: str, cwd: str | None) -> None:
        self.pid = pid
        self.fd = fd
        self.argv0 = argv0
        self.cwd = cwd
        self.got = b""

    def read(self) -> bool:
        """Read what the answer pipe holds now; True once it reached end of file (the job's
        process exec'd or is gone) and is closed."""
        while True:
            try:
                chunk = os.read(self.fd, 64)
            except BlockingIOError:
                return False
            except OSError:
                chunk = b""
            if not chunk:
                os.close(self.fd)
                self.fd = -1
                return True
            self.got += chunk

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def outcome(self) -> None:
        """Once :meth:`read` said end of file: returns if the job was exec'd; raises
        :class:`Refused` (the last check said no, or the process died before it) or OSError
        (its directory or its exec failed: ``filename`` says which)."""
        checked = self.got.startswith(CHECKED)
        failed = self.got[1:] if checked else self.got
        if not failed:
            if checked:
                return
            raise Refused("died before exec")
        step, _, number = failed.partition(b" ")
        if step == b"refused" or not number:
            raise Refused
        code = int(number)
        raise OSError(code, os.strerror(code), self.cwd if step == b"cwd" else self.argv0)


class Spawn:
    """One job's process, ready to be forked: everything a fork needs worked out before it (the
    file to exec, the answer pipe, the descriptors to close), so that a burst's forks follow
    each other with as little of the guardian's own work between them as possible (each fork
    marks every page of ours copy-on-write again while a job's process still shares it: the
    guardian's work between two forks is paid for in copied pages)."""

    __slots__ = ("args", "argv0", "cwd", "err_r", "err_w")

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        out: tuple[int | None, int | None],
        *,
        check: Callable[[], bool],
        reset: list[int],
        stall: float = 0.0,
        paths: dict[tuple[str, str | None], str | None] | None = None,
    ) -> None:
        path = resolve(argv[0], env, paths)
        self.err_r, self.err_w = os.pipe()  # both close on exec
        # Every descriptor of ours is close-on-exec already; the job's process closes any other
        # anyway, up to the highest ever open (a loop to the limit is slow where close_range is
        # not): listed once, then raised by the descriptors handed in, not listed at every start.
        top = max(_top(), self.err_r, self.err_w, *(fd for fd in out if fd is not None)) + 1
        self.argv0 = argv[0]
        self.cwd = cwd
        self.args = (path, argv, env, cwd, out, check, reset, stall, os.getpid(), self.err_w, top)

    def fork(self) -> Pending:
        """Fork the process that becomes the job; returned at once, before its exec (its
        outcome: :class:`Pending`). OSError: the fork failed (the answer pipe is closed)."""
        try:
            pid = os.fork()
        except OSError:
            self.close()
            raise
        if pid == 0:
            _child(*self.args)
        os.close(self.err_w)
        os.set_blocking(self.err_r, False)
        return Pending(pid, self.err_r, self.argv0, self.cwd)

    def close(self) -> None:
        """Not forked after all: the answer pipe closed."""
        for fd in (self.err_r, self.err_w):
            with contextlib.suppress(OSError):
                os.close(fd)


_TOP: list[int] = []


def _top() -> int:
    """The highest descriptor open at the first start (the guardian opens none of its own
    after that but the pipes it hands in, which the caller adds)."""
    if not _TOP:
        try:
            _TOP.append(max(int(fd) for fd in os.listdir("/proc/self/fd")))
        except (OSError, ValueError):
            _TOP.append(os.sysconf("SC_OPEN_MAX") - 1)
    return _TOP[0]


def resolve(
    name: str, env: dict[str, str], memo: dict[tuple[str, str | None], str | None] | None = None
) -> str | None:
    """The file ``PATH`` (the job's) gives for ``name``, found here rather than by failed execs
    in the job's process (each step there costs pages copied); None: let exec search and say
    what is wrong. ``memo``: the answers already found for the same name and ``PATH`` in the
    same burst of starts (a burst looks each command up once, as at one instant)."""
    if os.sep in name:
        return name
    search = env.get("PATH")
    if memo is not None and (name, search) in memo:
        return memo[(name, search)]
    found = None
    # os.get_exec_path, without the warnings filter it sets up at every call.
    for d in (os.defpath if search is None else search).split(os.pathsep):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            found = path
            break
    if memo is not None:
        memo[(name, search)] = found
    return found


def _child(
    path: str | None,
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    out: tuple[int | None, int | None],
    check: Callable[[], bool],
    reset: list[int],
    stall: float,
    parent: int,
    err_w: int,
    top: int,
) -> NoReturn:
    """The job's process, from fork to exec; a step that fails says which, then exits."""
    step = b"exec"
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            raise Refused  # the guardian died before PDEATHSIG was armed
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, target in zip(out, (1, 2), strict=True):
            if fd is not None:
                os.dup2(fd, target)
        if cwd:
            step = b"cwd"
            os.chdir(cwd)
            step = b"exec"
        _signal.set_wakeup_fd(-1)
        for sig in reset:
            with contextlib.suppress(OSError, ValueError):
                _signal.signal(sig, _signal.SIG_DFL)
        if stall:
            time.sleep(stall)
        step = b"refused"
        if not check():
            raise Refused
        os.write(err_w, CHECKED)
        step = b"exec"
        os.closerange(3, err_w)
        os.closerange(err_w + 1, top)
        for limits in _JOB_NOFILE:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        if path is not None:
            os.execve(path, argv, env)  # noqa: S606 - the job's own command, no shell
        os.execvpe(argv[0], argv, env)  # noqa: S606 - not found above: the error, from exec
    except OSError as exc:
        step += b" %d" % (exc.errno or 0)
    except ValueError:  # a NUL byte in the command or its environment
        step += b" %d" % errno.EINVAL
    finally:
        with contextlib.suppress(OSError):
            os.write(err_w, step)
        os._exit(127)
