"""The output tail: bounded, in order, and pass-through first (docs/history.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from leaderjob.clock import now as deadline_clock  # the watchdog's clock
from leaderjob.tail import TAIL_BYTES, Copier, Ring, Tails


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


def _drain(fd: int, into: bytearray) -> threading.Thread:
    def read() -> None:
        while chunk := os.read(fd, 65536):
            into.extend(chunk)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_copier_passes_everything_through_in_order_and_keeps_the_tail() -> None:
    src_r, src_w = os.pipe()
    sink_r, sink_w = os.pipe()
    got = bytearray()
    reader = _drain(sink_r, got)
    copier = Copier(src_r, sink_w)
    copier.start()
    data = b"".join(b"%08d\n" % i for i in range(200_000))  # 1.8 MB
    view = memoryview(data)
    while view:
        view = view[os.write(src_w, view) :]
    os.close(src_w)
    copier.join(5)
    os.close(sink_w)
    reader.join(5)
    assert bytes(got) == data
    assert copier.ring.data == data[-TAIL_BYTES:] and copier.ring.truncated


def test_a_sink_that_fails_stops_the_pass_through_not_the_tail() -> None:
    src_r, src_w = os.pipe()
    sink_r, sink_w = os.pipe()
    os.close(sink_r)  # writes fail with EPIPE (SIGPIPE is ignored by Python)
    copier = Copier(src_r, sink_w)
    copier.start()
    os.write(src_w, b"still kept\n")
    os.close(src_w)
    copier.join(5)
    os.close(sink_w)
    assert copier.ring.data == b"still kept\n"


def test_a_process_writing_megabytes_runs_at_full_speed_and_its_output_arrives_in_order() -> None:
    """A real process writes 8 MB to stdout through Tails: every byte reaches the sink in
    order, the tail is its last 4 KiB, and the run is not much slower than writing to a pipe
    directly (both read by the same kind of reader)."""
    script = (
        "import sys\n"
        "line = b'x' * 99 + b'\\n'\n"
        "for i in range(80_000): sys.stdout.buffer.write(b'%08d' % i + line[8:])\n"
        "sys.stderr.write('done\\n')\n"
    )

    def direct() -> float:
        r, w = os.pipe()
        got = bytearray()
        reader = _drain(r, got)
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", script], stdout=w, stderr=subprocess.DEVNULL,
                       check=True)  # fmt: skip
        os.close(w)
        reader.join(10)
        return time.monotonic() - began

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    got, errs = bytearray(), bytearray()
    readers = [_drain(out_r, got), _drain(err_r, errs)]
    tails = Tails(sinks=(out_w, err_w))
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=tails.child_fds[0],
                            stderr=tails.child_fds[1])  # fmt: skip
    tails.started()
    assert proc.wait(30) == 0
    report = tails.report(timeout=10)
    through = time.monotonic() - began
    os.close(out_w)
    os.close(err_w)
    for t in readers:
        t.join(10)
    expected = b"".join(b"%08d" % i + b"x" * 91 + b"\n" for i in range(80_000))
    assert bytes(got) == expected
    assert bytes(errs) == b"done\n"
    assert report["stdout_tail"].encode() == expected[-TAIL_BYTES:]
    assert report["stdout_truncated"] is True
    assert report == {**report, "stderr_tail": "done\n", "stderr_truncated": False}
    # Loose bound: the machine is shared; a copy that throttled the job would be many times
    # slower (8 MB through 64 KiB reads takes milliseconds of copying).
    assert through < 3 * direct() + 1.0, (through, direct())


def test_tails_leave_out_a_stream_that_wrote_nothing() -> None:
    tails = Tails(sinks=(os.open(os.devnull, os.O_WRONLY), os.open(os.devnull, os.O_WRONLY)))
    proc = subprocess.Popen(["true"], stdout=tails.child_fds[0], stderr=tails.child_fds[1])
    tails.started()
    proc.wait(10)
    assert tails.report(timeout=5) == {}


def test_tails_cross_the_status_pipe_in_parts_below_pipe_buf() -> None:
    """Each message is written whole or not at all on the watchdog's non-blocking pipe."""
    import json

    from leaderjob.tail import absorb, messages

    report = {
        "stdout_tail": "\x01" * TAIL_BYTES,  # the worst case for JSON: 6 bytes a character
        "stdout_truncated": True,
        "stderr_tail": "é" * 10,
        "stderr_truncated": False,
    }
    msgs = messages(report)
    assert all(len(json.dumps(m).encode()) + 1 < 4096 for m in msgs)
    tails: dict[str, object] = {}
    for m in msgs:
        absorb(tails, json.loads(json.dumps(m)))
    assert tails == report


def test_through_the_watchdog_a_jobs_output_reaches_the_daemons_stdout_in_order_with_its_tail(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The real watchdog between a job and the daemon: 2 MB of stdout arrive on the daemon's fd 1
    whole and in order, stderr on fd 2, and the run reports the last 4 KiB of each."""
    from leaderjob.supervisor import Run

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
    assert not [e for e in run.take_events() if "tail" in e], "tails are data, not events"


def test_a_terminal_stays_the_jobs_own_and_keeps_no_tail() -> None:
    """At a terminal the job keeps its terminal (colours, progress, line buffering)."""
    master, slave = os.openpty()
    r, w = os.pipe()
    try:
        tails = Tails(sinks=(slave, w))
        assert tails.child_fds[0] == slave and tails.child_fds[1] != w
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; print(sys.stdout.isatty()); "
             "sys.stderr.write('e')"],
            stdout=tails.child_fds[0],
            stderr=tails.child_fds[1],
        )  # fmt: skip
        tails.started()
        proc.wait(10)
        report = tails.report(timeout=5)
        assert report == {"stderr_tail": "e", "stderr_truncated": False}
        assert os.read(master, 100).startswith(b"True")
    finally:
        for fd in (master, slave, r, w):
            os.close(fd)
