"""structlog set-up: one JSON object per line when stderr is not a terminal, readable otherwise.

Event names are identifiers (``election.acquired``, ``lease.lost``, ``job.finished``); the data is
in keys. Every line carries ``timestamp`` (ISO 8601, UTC), ``level`` and ``event``; the daemon binds
``election`` and ``identity`` and, while leading, ``token``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(fmt: LogFormat = "auto", level: str = "info") -> None:
    """Configure structlog for the whole process (idempotent)."""
    renderer: Any
    if fmt == "json" or (fmt == "auto" and not sys.stderr.isatty()):
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # WriteLogger flushes after every line: a log is never behind the events it reports.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
