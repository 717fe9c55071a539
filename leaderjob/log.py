"""structlog set-up: one JSON object per line when stderr is not a terminal, readable otherwise.

Event names are identifiers (``election.acquired``, ``lease.lost``, ``job.finished``); the data is
in keys. Every line carries ``timestamp`` (ISO 8601, UTC), ``level`` and ``event``; the daemon binds
``election`` and ``identity`` and, while leading, ``token``.

Libraries log through the standard library (grpc, the etcd client, urllib, Python's warnings):
their records go through the same renderer, as one event ``library.log`` with ``logger``,
``message`` and, for a traceback, ``exception`` — a library's traceback is one JSON line, not a
dozen lines a log shipper splits apart. The console renderer is colourless when ``NO_COLOR`` is
set (https://no-color.org) or stderr is not a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _LibraryHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic in typeshed only
    """The root logger's handler that :func:`configure` installs (and replaces when called
    again)."""


def _as_library_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # A library's message is free text: it becomes `message`, under one event name of ours.
    event["message"] = event.get("event")
    event["event"] = "library.log"
    return event


def configure(fmt: LogFormat = "auto", level: str = "info") -> None:
    """Configure structlog and the standard library's root logger for the whole process
    (idempotent)."""
    renderer: Any
    if fmt == "json" or (fmt == "auto" and not sys.stderr.isatty()):
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        colors = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # WriteLogger flushes after every line: a log is never behind the events it reports.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = _LibraryHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                timestamper,
                _as_library_event,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries say much at info that an operator does not need (Python's own default shows them
    # from warning up): theirs from warning up, everything with --log-level debug.
    root.setLevel(
        max(logging.WARNING, _LEVELS.get(level, logging.INFO))
        if level != "debug"
        else logging.DEBUG
    )
    logging.captureWarnings(True)  # a Python warning is a library.log event too


#: Where the library logs until someone configures structlog: the standard library's
#: ``leaderjob`` logger, with a ``NullHandler`` — nowhere, until the application configures
#: logging (the convention for libraries), never to stdout.
LIBRARY_LOGGER = "leaderjob"
logging.getLogger(LIBRARY_LOGGER).addHandler(logging.NullHandler())


def get_logger(**bound: Any) -> Any:
    """A bound logger: structlog's configuration when the daemon (:func:`configure`) or the
    application configured structlog, else the standard library's ``leaderjob`` logger."""
    if structlog.is_configured():
        return structlog.get_logger().bind(**bound)
    return structlog.wrap_logger(
        logging.getLogger(LIBRARY_LOGGER),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.render_to_log_kwargs,
        ],
    ).bind(**bound)
