"""The output tail: bounded, in order, pass-through first, never blocking (docs/history.md)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from leaderjob.clock import now as deadline_clock  # the guardian's clock
from leaderjob.guard.tail import SINK_BUFFER, TAIL_BYTES, Ring, Sink


def test_ring_keeps_the_last_bytes_and_says_when_it_cut() -> None:
    ring = Ring(8)
    ring.add(b"abc")
    assert (ring.data, ring.truncated) == (b"abc", False)
    ring.add(b"defghij")
    assert (ring.data, ring.truncated, ring.total) == (b"cdefghij", True, 10)
    ring.add(b"x" * 100)
    assert ring.data == b"x" * 8


def test_ring_text_survives_a_cut_multibyte_character() -> None:
    ring = Ring(4)
    ring.add("aé€".encode())  # 1 + 2 + 3 bytes: the cut lands inside é
    assert ring.text().endswith("€")


def test_a_pipe_sink_never_blocks_and_leaves_the_daemons_own_writes_blocking() -> None:
    """A stdout pipe nobody reads: the sink takes what the pipe holds, keeps the rest (up to its
    buffer) and returns at once; the daemon's own description of the pipe stays blocking (the
    sink writes through a description of its own)."""
    r, w = os.pipe()
    try:
        sink = Sink(w)
        assert os.get_blocking(w)
        chunk = b"x" * 65536
        t0 = time.monotonic()
        for _ in range(SINK_BUFFER // len(chunk) + 4):
            sink.put(chunk)
            sink.flush()
        assert time.monotonic() - t0 < 1.0
        assert sink.full and os.get_blocking(w)
        got = bytearray()
        while len(got) < 65536:
            got += os.read(r, 65536)
        sink.flush()
        assert set(got) == {ord("x")}
    finally:
        os.close(r)
        os.close(w)


def test_a_sink_that_fails_stops_the_pass_through_and_drops_nothing_else() -> None:
    r, w = os.pipe()
    os.close(r)  # writes fail with EPIPE (SIGPIPE is ignored by Python)
    try:
        sink = Sink(w)
        sink.put(b"gone")
        sink.flush()
        assert sink.fd is None and not sink.pending and not sink.full
        sink.put(b"more")  # no pass-through any more: nothing kept either
        assert not sink.pending
    finally:
        os.close(w)


def test_a_terminal_is_left_to_the_jobs() -> None:
    """At a terminal the jobs keep it (colours, progress, line buffering): no sink, no tail."""
    master, slave = os.openpty()
    try:
        assert Sink(slave).tty
    finally:
        os.close(master)
        os.close(slave)


def test_through_the_guardian_a_jobs_output_reaches_the_daemons_stdout_in_order_with_its_tail(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The real guardian between a job and the daemon: 2 MB of stdout arrive on the daemon's fd 1
    whole and in order, stderr on fd 2, and the run reports the last 4 KiB of each."""
    from leaderjob.guard.run import Run

    script = (
        "import sys\n"
        "for i in range(200_000): sys.stdout.write('%09d\\n' % i)\n"
        "sys.stderr.write('warning: something\\n')\n"
        "sys.exit(3)\n"
    )
    run = Run(
        argv=[sys.executable, "-c", script],
        env=dict(os.environ),
        deadline=deadline_clock() + 60,
        grace=1.0,
        wakeup=threading.Event(),
        run_id="tail",
    )
    run.start(time.monotonic(), wait=10)
    try:
        assert run.confirmed and run.wait(30)
    finally:
        run.close()
    out, err = capfd.readouterr()
    expected = "".join(f"{i:09d}\n" for i in range(200_000))
    assert out == expected
    assert err.endswith("warning: something\n")
    assert run.returncode == 3
    assert run.tails == {
        "stdout_tail": expected[-TAIL_BYTES:],
        "stdout_truncated": True,
        "stderr_tail": "warning: something\n",
        "stderr_truncated": False,
    }
    assert not [e for e in run.take_events() if "tails" in e], "tails are data, not events"
