"""The TOML form of a jobs file: ``[defaults]`` and ``[jobs.NAME]`` tables.

Keys are the ``leaderjob run`` flags without ``--`` (``catch_up`` is the same key as
``catch-up``; giving both is a problem). A ``command`` is a list of strings (run as is) or a string
split like a POSIX shell would split it (``shlex.split``). tomllib reports no line numbers, so
:class:`_TomlLines` finds them in the text, for ``FILE:LINE:`` messages. Pure: text in, specs and
problems out."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from typing import Any, cast

from leaderjob.jobsfile.spec import (
    _JOB_KEYS,
    _OPTIONS,
    _ZONE_PREFIX,
    JobSpec,
    Problems,
    _Bad,
    _did_you_mean,
    _name_problems,
)
from leaderjob.schedule import Schedule, ScheduleError, parse_schedule


def _parse_toml(text: str, default_timezone: str) -> tuple[list[JobSpec], Problems]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\s*\(at line (\d+), column \d+\)$", str(exc))
        line = int(found.group(1)) if found else 1
        message = str(exc)[: found.start()] if found else str(exc)
        return [], [(line, f"not valid TOML: {message}")]
    lines = _TomlLines(text)
    problems: Problems = []
    for key in doc:
        if key not in ("defaults", "jobs"):
            hint = _did_you_mean(key, ("defaults", "jobs"))
            problems.append((lines.at((key,)), f"unknown top-level key {key!r}{hint}"))
    defaults: dict[str, object] = {}
    raw_defaults = doc.get("defaults", {})
    if isinstance(raw_defaults, dict):
        defaults = _options(raw_defaults, ("defaults",), lines, problems, allowed=tuple(_OPTIONS))
    else:
        problems.append((lines.at(("defaults",)), "defaults must be a table: write [defaults]"))
    raw_jobs = doc.get("jobs", {})
    if not isinstance(raw_jobs, dict):
        problems.append((lines.at(("jobs",)), "jobs must be tables: write [jobs.NAME]"))
        return [], problems
    jobs: list[JobSpec] = []
    for name, table in raw_jobs.items():
        where = ("jobs", name)
        if not isinstance(table, dict):
            problems.append((lines.at(where), f"jobs.{name} must be a table: write [jobs.{name}]"))
            continue
        given = _options(table, where, lines, problems, allowed=_JOB_KEYS)
        spec = _toml_job(name, given, defaults, default_timezone, lines, where, problems)
        if spec is not None:
            jobs.append(spec)  # checked for its name and cross-field rules by the caller
    return jobs, problems


def _options(
    table: Mapping[str, object],
    where: tuple[str, ...],
    lines: _TomlLines,
    problems: Problems,
    *,
    allowed: tuple[str, ...],
) -> dict[str, object]:
    """The table's keys under their canonical (hyphen) names, values parsed; problems appended."""
    out: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, value in table.items():
        line = lines.at((*where, key))
        canonical = key.replace("_", "-")
        if canonical not in allowed:
            problems.append(
                (line, f"unknown key {key!r} in [{'.'.join(where)}]" + _did_you_mean(key, allowed))
            )
            continue
        if canonical in spelled:
            problems.append(
                (line, f"{key!r} and {spelled[canonical]!r} are the same key: keep one")
            )
            continue
        spelled[canonical] = key
        parser = _OPTIONS.get(canonical)
        if parser is None:  # schedule and command: read with the job
            out[canonical] = value
            continue
        try:
            out[canonical] = parser(value)
        except _Bad as exc:
            problems.append((line, f"{key}: {exc}"))
    return out


def _toml_job(
    name: str,
    given: dict[str, object],
    defaults: dict[str, object],
    default_timezone: str,
    lines: _TomlLines,
    where: tuple[str, ...],
    problems: Problems,
) -> JobSpec | None:
    line = lines.at(where)
    command = _command(given.get("command"), name, lines.at((*where, "command")), problems)
    schedule: Schedule | None = None
    expr = given.get("schedule")
    if expr is not None:
        sline = lines.at((*where, "schedule"))
        if not isinstance(expr, str) or not expr.strip():
            problems.append(
                (
                    sline,
                    f'schedule: expected a cron expression like "*/5 * * * *" '
                    f"(or no schedule for a service), got {expr!r}",
                )
            )
        else:
            # A CRON_TZ= prefix wins over a zone from [defaults]; against the job's own
            # timezone key it is a conflict that parse_schedule reports.
            zone = given.get("timezone")
            if zone is None:
                own_prefix = _ZONE_PREFIX.match(expr)
                zone = "UTC" if own_prefix else defaults.get("timezone", default_timezone)
            try:
                schedule = parse_schedule(expr, cast(str, zone))
            except ScheduleError as exc:
                problems.append((sline, f"schedule {expr!r}: {exc}"))
    options = {**defaults, **given}
    fields: dict[str, Any] = {
        key.replace("-", "_"): value
        for key, value in options.items()
        if key not in ("schedule", "command", "timezone")
    }
    if command is None:
        # The command's problem is reported; the name is still judged.
        problems += [(line, message) for message in _name_problems(name)]
        return None
    # With a bad schedule the job is kept as a service only to judge its other rules: the
    # schedule's problem is reported, so the file is refused anyway.
    return JobSpec(name=name, command=command, schedule=schedule, line=line, **fields)


def _command(value: object, name: str, line: int, problems: Problems) -> tuple[str, ...] | None:
    if value is None:
        problems.append((line, f'job {name!r} has no command: add command = ["program", "arg"]'))
        return None
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            problems.append((line, f"command: {exc} (quotes must be closed); or give a list"))
            return None
    if isinstance(value, list) and all(isinstance(word, str) for word in value):
        return tuple(value)
    problems.append((line, f"command: expected a list of strings or a string, got {value!r}"))
    return None


_KEY_PART = r"(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER = re.compile(rf"\s*\[\s*({_DOTTED})\s*\]")
_ASSIGN = re.compile(rf"\s*({_DOTTED})\s*=")


class _TomlLines:
    """Line numbers of tables and keys, found in the text (tomllib does not report them).

    ``at(path)`` is the line of the table header or key assignment that defines ``path``; for a
    key it falls back to its table's line, then to line 1.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_string = False
        for number, line in enumerate(text.splitlines(), start=1):
            quotes = line.count('"""') + line.count("'''")
            if in_string:
                in_string = quotes % 2 == 0
                continue
            in_string = quotes % 2 == 1
            header = _HEADER.match(line)
            if header is not None:
                table = _key_path(header.group(1))
                self._lines.setdefault(table, number)
                continue
            assign = _ASSIGN.match(line)
            if assign is not None:
                self._lines.setdefault((*table, *_key_path(assign.group(1))), number)

    def at(self, path: tuple[str, ...]) -> int:
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return 1


def _key_path(dotted: str) -> tuple[str, ...]:
    # tomllib unquotes and splits the key exactly as TOML does.
    node: object = tomllib.loads(f"{dotted} = 0")
    path: list[str] = []
    while isinstance(node, dict):
        key = next(iter(node))
        path.append(key)
        node = node[key]
    return tuple(path)
