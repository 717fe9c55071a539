"""The tail of a job's output, and the daemon's stdout and stderr written without blocking.

Used by :mod:`leaderjob.guard.guardian`, the parent of every job: each job writes into a
pipe per stream; the guardian's loop reads each pipe in bounded chunks, writes every chunk on to
the daemon's stdout or stderr (a :class:`Sink`) and keeps the last :data:`TAIL_BYTES` in a
:class:`Ring`. When the run is over, the tails go to the daemon in the exit report and into the
run's history record.

Rules:

* Pass-through first: a chunk is written on, in order, as soon as it is read; the ring only keeps
  a copy. A job writing megabytes runs at the speed of the daemon's own stdout.
* Never block the loop: a stuck stdout (a blocked log collector) fills the sink's buffer, then the
  guardian stops reading the jobs' pipes for that stream — the jobs wait on their own full pipes,
  as they would writing there directly — and never a deadline waits for it.
* Bounded: each ring holds at most :data:`TAIL_BYTES`; the record says when output was cut.
* The tail is data, never logged: a job's output may hold secrets.
* A terminal is left to the jobs (a person watches it): no pipe, no tail for that stream.

Standard library only: the guardian runs as ``python -S`` and loads this file beside it.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

#: The last bytes of each stream kept for the run's history record.
TAIL_BYTES = 4096
#: Bytes read from one stream of one job per turn of the guardian's loop.
CHUNK = 65536
#: Output waiting for a stuck stdout/stderr, per sink; beyond it the jobs' pipes are not read.
SINK_BUFFER = 1 << 18
STREAMS = ("stdout", "stderr")


class Ring:
    """The last ``limit`` bytes written to it, and whether anything before them was cut."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.data = b""
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data = (self.data + chunk[-self.limit :])[-self.limit :]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.data)

    def text(self) -> str:
        # Cutting may split a multi-byte character at the front: it becomes U+FFFD.
        return self.data.decode("utf-8", errors="replace")


class Sink:
    """The daemon's stdout or stderr, written without ever blocking the loop.

    A pipe is opened again (a description of our own, made non-blocking, so the daemon's writes
    stay blocking), a socket is sent to with ``MSG_DONTWAIT``, a file or a device is written as
    it is (they do not block for long). A terminal is left to the jobs themselves (no tail)."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self.tty = False
        self.sock: socket.socket | None = None
        self.pending = bytearray()
        try:
            mode = os.fstat(fd).st_mode
            self.tty = os.isatty(fd)
        except OSError:
            self.fd = None
            return
        if self.tty:
            return
        if stat.S_ISFIFO(mode):
            try:
                self.fd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                self.fd = None  # cannot write it without blocking: no pass-through
        elif stat.S_ISSOCK(mode):
            try:
                import socket  # only for a socket (journald's stdout): not loaded otherwise

                self.sock = socket.socket(fileno=os.dup(fd))
            except OSError:
                self.fd = None

    @property
    def full(self) -> bool:
        return len(self.pending) >= SINK_BUFFER

    def put(self, chunk: bytes) -> None:
        if self.fd is not None and not self.full:
            self.pending += chunk

    def flush(self) -> None:
        while self.pending and self.fd is not None:
            try:
                if self.sock is not None:
                    import socket  # loaded already: self.sock is one

                    n = self.sock.send(self.pending, socket.MSG_DONTWAIT)
                else:
                    n = os.write(self.fd, self.pending)
            except BlockingIOError:
                return
            except OSError:  # closed, EPIPE: no more pass-through; tails are still kept
                self.fd = None
                self.pending.clear()
                return
            del self.pending[:n]
