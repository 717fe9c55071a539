"""The tail of a job's output: its stdout and stderr pass through, the last bytes are kept.

Used by the watchdog (:mod:`leaderjob.watchdog`), the job's parent: the job writes into a pipe
per stream; a thread per stream copies each chunk at once to the watchdog's own stdout or
stderr (the daemon's, inherited) and keeps the last :data:`TAIL_BYTES` of it in a ring. When the
run is over, the tails go to the daemon with the exit report and into the run's history record.

Rules:

* Pass-through first: a chunk is written on, in order, as soon as it is read; the ring only
  keeps a copy. A job writing megabytes runs at the speed of the daemon's own stdout, as when it
  wrote there directly.
* Copying runs in threads so that a blocked stdout (a stuck log collector) blocks only the copy
  — and, through the full pipe, the job, as before — never the watchdog's deadline loop.
* Bounded: each ring holds at most :data:`TAIL_BYTES`; the record says when output was cut.
* The tail is data, never logged: a job's output may hold secrets.
* A terminal is left to the job (a person watches it): no pipe, no tail for that stream.

Standard library only: the watchdog runs as ``python -S`` and starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

#: The last bytes of each stream kept for the run's history record.
TAIL_BYTES = 4096
#: Bytes read from a job's pipe at a time.
CHUNK = 65536


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


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


class Copier:
    """One stream: read ``source`` until EOF, write each chunk through to ``sink``, keep a tail.

    A sink that fails (closed, EPIPE) stops the pass-through, not the reading: the job never
    blocks on a pipe nobody drains, and the tail is still kept.
    """

    def __init__(self, source: int, sink: int, limit: int = TAIL_BYTES) -> None:
        self.source = source
        self.sink: int | None = sink
        self.ring = Ring(limit)
        self.thread = threading.Thread(target=self._copy, name="leaderjob-tail", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _copy(self) -> None:
        try:
            while chunk := os.read(self.source, CHUNK):
                if self.sink is not None:
                    try:
                        _write_all(self.sink, chunk)
                    except OSError:
                        self.sink = None
                self.ring.add(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(self.source)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)


class Tails:
    """A job's stdout and stderr through pipes: hand :attr:`child_fds` to the job, call
    :meth:`started` once it runs, :meth:`report` once it and every descendant are gone."""

    STREAMS = ("stdout", "stderr")

    def __init__(self, sinks: tuple[int, int] = (1, 2), limit: int = TAIL_BYTES) -> None:
        self.sinks = sinks
        self.limit = limit
        # A terminal stays the job's own (colours, progress, line buffering): someone watches
        # it, and no tail is kept of it.
        self.pipes = [None if _isatty(sink) else os.pipe() for sink in sinks]
        self.copiers: dict[str, Copier] = {}

    @property
    def child_fds(self) -> tuple[int, int]:
        """The job's stdout and stderr: a pipe's write end, or the terminal itself."""
        out, err = (p[1] if p else sink for p, sink in zip(self.pipes, self.sinks, strict=True))
        return out, err

    def started(self) -> None:
        """The job has its copies of the write ends: close ours (EOF comes when the job and
        everything it started are gone) and start copying."""
        for name, pipe, sink in zip(self.STREAMS, self.pipes, self.sinks, strict=True):
            if pipe is None:
                continue
            os.close(pipe[1])
            copier = Copier(pipe[0], sink, self.limit)
            copier.start()
            self.copiers[name] = copier

    def close(self) -> None:
        """The job did not start: release the pipes."""
        for pipe in self.pipes:
            for fd in pipe or ():
                with contextlib.suppress(OSError):
                    os.close(fd)

    def finished(self) -> bool:
        """Every copy reached EOF: no thread of ours is left running."""
        return not any(c.thread.is_alive() for c in self.copiers.values())

    def report(self, timeout: float) -> dict[str, Any]:
        """Wait up to ``timeout`` for the copies to reach EOF; the tails, for the record:
        ``{"stdout_tail": text, "stdout_truncated": bool, …}`` (a stream that wrote nothing is
        left out)."""
        out: dict[str, Any] = {}
        for name, copier in self.copiers.items():
            copier.join(timeout)
            ring = copier.ring
            if ring.total:
                out[f"{name}_tail"] = ring.text()
                out[f"{name}_truncated"] = ring.truncated
        return out


# -- over the watchdog's status pipe -------------------------------------------------------------

#: The watchdog writes its reports to a non-blocking pipe: a message longer than PIPE_BUF (4096
#: bytes on Linux) could be written in part and break the line protocol, one up to it is written
#: whole or not at all. So a tail goes in parts of at most this many characters (JSON escapes a
#: character into at most 6 bytes).
PART_CHARS = 600


def messages(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The tails of :meth:`Tails.report` as status messages, each well below PIPE_BUF."""
    out: list[dict[str, Any]] = []
    for stream in Tails.STREAMS:
        text = report.get(f"{stream}_tail")
        if text is None:
            continue
        out += [
            {"tail": stream, "part": text[i : i + PART_CHARS]}
            for i in range(0, len(text), PART_CHARS)
        ]
        if report.get(f"{stream}_truncated"):
            out.append({"tail": stream, "truncated": True})
    return out


def absorb(tails: dict[str, Any], msg: dict[str, Any]) -> None:
    """The daemon's side: add one ``{"tail": …}`` message to ``tails`` (the report's shape).
    A part lost to a full pipe (the daemon frozen) leaves a gap, never a broken protocol."""
    stream = str(msg.get("tail"))
    if stream not in Tails.STREAMS:
        return
    if "part" in msg:
        tails[f"{stream}_tail"] = tails.get(f"{stream}_tail", "") + str(msg["part"])
        tails.setdefault(f"{stream}_truncated", False)
    if msg.get("truncated"):
        tails[f"{stream}_truncated"] = True
