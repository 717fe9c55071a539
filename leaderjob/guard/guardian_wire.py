"""The guardian's protocol lines: one JSON object per line, each way
(:mod:`leaderjob.guard.guardian`).

The guardian reads and writes them with the standard library's JSON scanner and encoder
themselves (``_json``), without the ``json`` package around them: that package loads the
regular-expression machinery, half a MiB in a process that is paid for in every pod and forked
for every run. The lines are the same JSON either way; where ``_json`` is missing (another
Python implementation), the ``json`` package does the work.

Standard library only: the guardian runs as ``python -S`` and loads this file beside it.
"""

from __future__ import annotations

import os

#: typing is left unloaded (tens of milliseconds and about a MiB): annotations stay strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _refuse(obj: object) -> object:
    raise TypeError(f"not JSON: {type(obj).__name__}")


try:
    import _json

    class _Context:
        """What the C scanner reads from a decoder: JSON's own rules, nothing added."""

        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float  # NaN, Infinity, -Infinity

    _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
    _encode = _json.make_encoder(
        None, _refuse, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )

    def encode(msg: dict[str, Any]) -> bytes:
        """One line: ``msg`` as JSON (ASCII), then a newline."""
        return ("".join(_encode(msg, 0)) + "\n").encode()

    def decode(line: bytes) -> Any:
        """The JSON value of one line; ValueError if it is not exactly one."""
        text = line.decode().strip()
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            raise ValueError(f"not JSON: {text[:80]!r}") from None
        if end != len(text):
            raise ValueError(f"not one JSON value: {text[:80]!r}")
        return value

except ImportError:  # pragma: no cover - CPython has _json
    import json

    def encode(msg: dict[str, Any]) -> bytes:
        return (json.dumps(msg) + "\n").encode()

    def decode(line: bytes) -> Any:
        return json.loads(line)


def read_messages(
    fd: int, buf: bytes, limit: int, chunk: int
) -> tuple[list[dict[str, Any]] | None, bytes]:
    """The whole messages a non-blocking pipe holds now (read ``chunk`` bytes at a time, up to
    ``limit``), after ``buf`` (what an earlier read left of a line); with what is left of the
    last line. None for the messages at end of file (the writer is gone) when nothing came
    first: what came first is handled, and the end of file is read again next time. A line
    that is not a JSON object raises ValueError."""
    got = 0
    while got < limit:
        try:
            data = os.read(fd, chunk)
        except BlockingIOError:
            break
        except OSError:
            data = b""
        if not data:
            if got:
                break
            return None, buf
        buf += data
        got += len(data)
    if not got:
        return [], buf
    *lines, buf = buf.split(b"\n")
    msgs = [decode(line) for line in lines if line.strip()]
    if not all(isinstance(m, dict) for m in msgs):
        raise ValueError(f"not a message: {lines!r}")
    return msgs, buf
