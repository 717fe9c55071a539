"""The jobs file: what a daemon runs, read from TOML or a classic crontab.

This module owns the file format: which keys exist, what their values mean, which combinations are
wrong, and where in the file each job and each problem is. It is pure: no clock, no logging, and
no I/O except :func:`load_jobs` reading the file. It must not know about etcd, elections at run
time or processes; the daemon turns a :class:`JobsFile` into campaigns and runs.

Rules:

* A file named ``*.toml``, or whose first line that is neither blank nor a comment begins with
  ``[``, is TOML; anything else is a crontab (cron lines never begin with ``[``).
* Every problem is reported at once, each as ``FILE:LINE: message`` saying what to change. Only a
  TOML syntax error stops the reading (nothing after it can be trusted).
* Option names and values are those of the ``leaderjob run`` flags: ``catch-up = "skip"``,
  ``timeout = "10m"``. ``catch_up`` is accepted as the same key; giving both is a problem.
* A TOML ``command`` is a list of strings (run as is) or a string split like a POSIX shell would
  split it (``shlex.split``: quotes group words; no variables, globs or pipes). A crontab command is
  run as cron runs it: ``/bin/sh -c "<rest of the line>"``.
* A job without ``schedule`` is a service: kept running while its replica leads.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from leaderjob.config import validate_election_name, validate_slot_timing
from leaderjob.notify import redact_url
from leaderjob.planner import CatchUp
from leaderjob.schedule import Schedule, ScheduleError, parse_schedule
from leaderjob.units import DurationError, parse_duration

__all__ = [
    "Concurrency",
    "JobSpec",
    "JobsFile",
    "JobsFileError",
    "is_toml",
    "iter_options",
    "load_jobs",
    "parse_jobs",
    "single_job",
]

Concurrency = Literal["forbid", "replace", "allow"]

#: The most run records a job may keep (as ``--history-limit``).
MAX_HISTORY_LIMIT = 10_000


@dataclass(frozen=True)
class JobSpec:
    """One job of a jobs file. Equal specs mean "unchanged" when a file is reloaded."""

    name: str  # validated like an election name; unique in the file
    command: tuple[str, ...]
    schedule: Schedule | None  # None: service mode (keep it running while leading)
    catch_up: CatchUp = "once"
    starting_deadline: float | None = None
    jitter: float = 0.0
    concurrency: Concurrency = "forbid"
    timeout: float | None = None
    retries: int = 0
    history_limit: int = 50
    grace: float | None = None  # None: the daemon's; else must fit the daemon's budget
    health_cmd: str | None = None  # per-job gate (the daemon's own health gate stays global)
    health_url: str | None = None
    on_failure: str | None = None  # None: the daemon's --on-failure
    on_failure_timeout: float | None = None
    ping_url: str | None = None  # a secret: shown redacted
    line: int = dataclasses.field(default=0, compare=False)  # where the job is defined


@dataclass(frozen=True)
class JobsFile:
    path: str
    jobs: tuple[JobSpec, ...]


class JobsFileError(ValueError):
    """A file that cannot be used; ``problems`` lists every one, each ``FILE:LINE: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- option values ----------------------------------------------------------------------------


class _Bad(ValueError):
    """One option value that cannot be used; the message says what to write instead."""


def _duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Bad(f'expected a duration like "30s", "10m" or "1h30m", got {value!r}')
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DurationError as exc:
            raise _Bad(str(exc)) from None
    if not 0 <= value < float("inf"):
        raise _Bad(f'expected a duration like "30s" or a number of seconds >= 0, got {value!r}')
    return float(value)


def _positive_duration(value: object) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise _Bad('must be a positive duration, e.g. "10m"')
    return seconds


def _choice(*allowed: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in allowed:
            raise _Bad(f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value

    return parse


def _int_range(low: int, high: int | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected a whole number, got {value!r}")
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"from {low} to {high}"
            raise _Bad(f"expected a whole number {span}, got {value}")
        return value

    return parse


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"expected a non-empty string, got {value!r}")
    return value


def _url(value: object) -> str:
    url = _text(value)
    if not url.startswith(("http://", "https://")):
        raise _Bad(f"{url!r}: give an http:// or https:// URL")
    return url


def _secret_url(value: object) -> str:
    # The URL is a secret (a dead-man's-switch check): no message repeats it.
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _Bad("give an http:// or https:// URL")
    return value


def _zone(value: object) -> str:
    name = _text(value)
    try:
        return parse_schedule("@daily", name).timezone
    except ScheduleError as exc:
        raise _Bad(str(exc)) from None


#: Per-job options: the key as written (the ``leaderjob run`` flag without ``--``) → its parser.
#: ``timezone`` is not a JobSpec field: it is folded into the schedule.
_OPTIONS: dict[str, Callable[[object], object]] = {
    "timezone": _zone,
    "jitter": _duration,
    "catch-up": _choice("once", "skip"),
    "starting-deadline": _duration,
    "concurrency": _choice("forbid", "replace", "allow"),
    "timeout": _positive_duration,
    "retries": _int_range(0),
    "history-limit": _int_range(1, MAX_HISTORY_LIMIT),
    "grace": _positive_duration,
    "health-cmd": _text,
    "health-url": _url,
    "on-failure": _text,
    "on-failure-timeout": _positive_duration,
    "ping-url": _secret_url,
}
_JOB_KEYS = ("schedule", "command", *_OPTIONS)
_ZONE_PREFIX = re.compile(r"\s*(CRON_TZ|TZ)=")


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"


# --- the job rules shared by every form -------------------------------------------------------


def _name_problems(name: str) -> list[str]:
    # Job names become etcd key segments and metric labels: the election-name rule.
    return [
        f"job name {name!r}: " + error.split(": ", 1)[-1] for error in validate_election_name(name)
    ]


def _job_problems(spec: JobSpec) -> list[str]:
    """Cross-field rules of one job, each message saying what to change."""
    problems = _name_problems(spec.name)
    if not spec.command or not any(word.strip() for word in spec.command):
        problems.append(f"job {spec.name!r} has an empty command: give the program to run")
    if spec.schedule is not None:
        interval = spec.schedule.interval().total_seconds()
        for error in validate_slot_timing(interval, spec.jitter, spec.starting_deadline):
            # The flag's name is the key's name.
            problems.append(f"job {spec.name!r}: {error.removeprefix('--')}")
    return problems


def single_job(
    name: str, command: tuple[str, ...], schedule: Schedule | None, **options: Any
) -> JobsFile:
    """What ``leaderjob run --schedule … -- CMD`` becomes: a jobs file of one job.

    ``options`` are :class:`JobSpec` fields (``catch_up=``, ``timeout=``…). The same cross-field
    rules as for a file apply; a :class:`JobsFileError` lists their messages without a location.
    """
    spec = JobSpec(name=name, command=tuple(command), schedule=schedule, **options)
    problems = _job_problems(spec)
    if problems:
        raise JobsFileError(problems)
    return JobsFile(path="", jobs=(spec,))


# --- reading ----------------------------------------------------------------------------------


def load_jobs(path: str | os.PathLike[str], *, default_timezone: str = "UTC") -> JobsFile:
    """Read and parse the file at ``path``; an unreadable file is a :class:`JobsFileError`."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise JobsFileError([f"{name}:1: cannot read the jobs file: {reason}"]) from None
    return parse_jobs(text, name, default_timezone=default_timezone)


def is_toml(text: str, path: str) -> bool:
    """The format rule: ``*.toml``, or the first significant line begins with ``[``."""
    if path.lower().endswith(".toml"):
        return True
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return line.startswith("[")
    return False


def parse_jobs(text: str, path: str, *, default_timezone: str = "UTC") -> JobsFile:
    """Parse a jobs file; raise :class:`JobsFileError` with every problem at once.

    ``default_timezone`` is the zone of jobs that set none (the daemon's ``--timezone``).
    """
    if not text.strip():
        raise JobsFileError(
            [f"{path}:1: the jobs file is empty: add [jobs.NAME] tables (TOML) or crontab lines"]
        )
    parse = _parse_toml if is_toml(text, path) else _parse_crontab
    jobs, problems = parse(text, default_timezone)
    if not jobs and not problems:
        problems.append((1, "the jobs file defines no job: add a [jobs.NAME] table or a cron line"))
    seen: dict[str, int] = {}
    for spec in jobs:
        if spec.name in seen:
            problems.append(
                (
                    spec.line,
                    f"job {spec.name!r} is defined twice (also on line "
                    f"{seen[spec.name]}): give each job its own name",
                )
            )
        else:
            seen[spec.name] = spec.line
        problems += [(spec.line, message) for message in _job_problems(spec)]
    if problems:
        raise JobsFileError([f"{path}:{line}: {msg}" for line, msg in sorted(problems, key=_first)])
    return JobsFile(path=path, jobs=tuple(jobs))


def _first(problem: tuple[int, str]) -> int:
    return problem[0]


Problems = list[tuple[int, str]]


# --- TOML -------------------------------------------------------------------------------------


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


# --- crontab ----------------------------------------------------------------------------------

_ENV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_NAME = re.compile(r"#\s*name:\s*(\S*)\s*(.*)")
_FIELDS = re.compile(r"(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?")
_EVERY = re.compile(r"(@every\s+\S+)(?:\s+(.*))?")
_MACRO = re.compile(r"(@\S+)(?:\s+(.*))?")
_UNESCAPED_PERCENT = re.compile(r"(?<!\\)%")


def _parse_crontab(text: str, default_timezone: str) -> tuple[list[JobSpec], Problems]:
    problems: Problems = []
    jobs: list[JobSpec] = []
    zone = default_timezone
    name: str | None = None  # from a `# name: X` comment on the line just before
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        pending, name = name, None
        env = _ENV.fullmatch(line)
        if pending and (not line or line.startswith("#") or env is not None):
            # Otherwise the job below would silently be called line-N.
            problems.append(
                (
                    number - 1,
                    f"'# name: {pending}' names the line right after it, which is not a job: "
                    "put the comment directly above the job's line",
                )
            )
        if not line:
            continue
        if line.startswith("#"):
            named = _NAME.fullmatch(line)
            if named is not None:
                name = named.group(1)
                if not name or named.group(2):
                    problems.append((number, "write a job's name as '# name: NAME', one word"))
            continue
        if env is not None:
            zone = _crontab_env(env.group(1), env.group(2), zone, number, problems)
            continue
        spec = _cron_line(line, number, pending or f"line-{number}", zone, problems)
        if spec is not None:
            jobs.append(spec)
    return jobs, problems


def _crontab_env(key: str, value: str, zone: str, number: int, problems: Problems) -> str:
    if key not in ("CRON_TZ", "TZ"):
        problems.append(
            (
                number,
                f"{key}=: only CRON_TZ= and TZ= are read from a crontab; set "
                "other variables in the daemon's environment or in the command "
                "(env NAME=value program)",
            )
        )
        return zone
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    try:
        return _zone(value)
    except _Bad as exc:
        problems.append((number, f"{key}={value}: {exc}"))
        return zone


def _cron_line(line: str, number: int, name: str, zone: str, problems: Problems) -> JobSpec | None:
    match = _EVERY.fullmatch(line) or _MACRO.fullmatch(line) or _FIELDS.fullmatch(line)
    if match is None:
        problems.append(
            (
                number,
                "expected five cron fields or a macro, then the command, e.g. "
                "'*/5 * * * * ./cleanup.sh'",
            )
        )
        return None
    if match.re is _FIELDS:
        expr, rest = " ".join(match.groups()[:5]), match.group(6)
    else:
        expr, rest = match.group(1), match.group(2)
    if expr == "@reboot":
        problems.append(
            (
                number,
                "@reboot is not supported: a job without a schedule (TOML, "
                "no schedule key) runs continuously while its replica leads",
            )
        )
        return None
    try:
        schedule = parse_schedule(expr, zone)
    except ScheduleError as exc:
        problems.append((number, f"schedule {expr!r}: {exc}"))
        schedule = None
    command = (rest or "").strip()
    if _UNESCAPED_PERCENT.search(command):
        # cron turns an unescaped % into a newline and feeds the rest to stdin; leaderjob does not
        # feed stdin, so a silent difference would change what the command does.
        problems.append(
            (
                number,
                "unescaped '%' in the command (cron would send the text after "
                "it to stdin, which leaderjob does not): write \\% for a literal %",
            )
        )
    # With a bad schedule the job is kept as a service only to judge its name and command: the
    # schedule's problem is reported, so the file is refused anyway.
    return JobSpec(
        name=name,
        command=("/bin/sh", "-c", command.replace("\\%", "%")) if command else (),
        schedule=schedule,
        line=number,
    )


def iter_options(spec: JobSpec) -> Iterator[tuple[str, object]]:
    """The options of ``spec`` that differ from a JobSpec's defaults, under their key names."""
    for f in dataclasses.fields(JobSpec):
        if f.name in ("name", "command", "schedule", "line"):
            continue
        value = getattr(spec, f.name)
        if f.name == "ping_url" and value is not None:
            value = redact_url(value)  # a secret, shown as its host only
        if value != f.default:
            yield f.name.replace("_", "-"), value
