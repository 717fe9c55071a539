"""Log set-up: a library's records (grpc, the etcd client, urllib, warnings) arrive as one JSON
event each, traceback included; NO_COLOR is honoured by the console renderer."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest
import structlog

from leaderjob import log


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_librarys_traceback_is_one_json_event(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    log.configure("json", "info")
    try:
        raise ValueError("Trying to use a failed node")
    except ValueError:
        logging.getLogger("grpc._channel").exception("call failed")
    logging.getLogger("etcd3.client").info("a library's info: below its threshold, dropped")
    log.get_logger().info("job.started", run_id="r1")
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines
    library, ours = (json.loads(line) for line in lines)
    assert library["event"] == "library.log" and library["logger"] == "grpc._channel"
    assert library["level"] == "error" and library["message"] == "call failed"
    assert "Traceback" in library["exception"] and "failed node" in library["exception"]
    assert library["timestamp"].endswith("Z")
    assert ours["event"] == "job.started" and ours["run_id"] == "r1"


def test_a_python_warning_is_a_library_event(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    log.configure("json", "info")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("protobuf is old", DeprecationWarning, stacklevel=1)
    (line,) = err.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "library.log" and event["logger"] == "py.warnings"
    assert "protobuf is old" in event["message"]


def test_configure_twice_installs_one_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    log.configure("json")
    log.configure("json")
    logging.getLogger("urllib.request").warning("once")
    assert len(err.getvalue().splitlines()) == 1


@pytest.mark.parametrize(("no_color", "coloured"), [("1", False), ("", True)])
def test_no_color_turns_the_console_colourless(
    monkeypatch: pytest.MonkeyPatch, no_color: str, coloured: bool
) -> None:
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv("NO_COLOR", no_color)
    log.configure("console")
    log.get_logger().warning("lease.lost", reason="renew_deadline")
    assert "lease.lost" in err.getvalue()
    assert ("\x1b[" in err.getvalue()) is coloured
