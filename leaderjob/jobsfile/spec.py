"""One job of a jobs file, whatever its form: :class:`JobSpec`, the option values every form
accepts (named like the ``leaderjob run`` flags), and the rules that judge one job across its
fields. Pure: no clock, no logging, no I/O. The forms (:mod:`.toml_form`, :mod:`.crontab`) build
specs; :mod:`leaderjob.jobsfile` reads a file and judges the whole of it."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from leaderjob.config import Timing, validate_election_name, validate_slot_timing
from leaderjob.schedule import Schedule, ScheduleError, parse_schedule
from leaderjob.schedule.planner import CatchUp
from leaderjob.units import DurationError, check_duration, format_duration, parse_duration

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
    #: Extra environment of the job's command (its LEADERJOB_* context still wins).
    env: tuple[tuple[str, str], ...] = ()
    #: Paused by the file itself (a GitOps pause): no slot or trigger starts a run.
    suspend: bool = False
    #: The directory the command runs in (None: the daemon's own).
    workdir: str | None = None
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
    try:
        return check_duration(float(value), value)
    except DurationError as exc:
        raise _Bad(str(exc)) from None


def _positive_duration(value: object) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise _Bad('must be a positive duration, e.g. "10m"')
    return seconds


def _choice(*allowed: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        # Any case: `Forbid` is how a Kubernetes CronJob spells it.
        if not isinstance(value, str) or value.lower() not in allowed:
            raise _Bad(f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value.lower()

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


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {value!r}")
    return value


#: Names a job's ``env`` may not set: the run's context, which leaderjob sets itself.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _environment(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise _Bad(f'expected a table of NAME = "value", got {value!r}')
    out = []
    for name, text in value.items():
        if not _ENV_NAME.fullmatch(name):
            raise _Bad(f"{name!r} is not a variable name (letters, digits, _)")
        if name.startswith("LEADERJOB_"):
            raise _Bad(f"{name}: LEADERJOB_* is the run's context, set by leaderjob itself")
        if not isinstance(text, str):
            raise _Bad(f'{name}: expected a string, got {text!r} (write "{text}")')
        out.append((name, text))
    return tuple(sorted(out))


def _workdir(value: object) -> str:
    path = _text(value)
    if not path.startswith("/"):
        raise _Bad(f"{path!r}: give an absolute path (the daemon's own directory is not yours)")
    return path


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
    "env": _environment,
    "suspend": _bool,
    "workdir": _workdir,
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


def _job_problems(spec: JobSpec, timing: Timing | None = None) -> list[str]:
    """Cross-field rules of one job, each message saying what to change; with ``timing`` (the
    daemon's, at its start and at each reload), the job's options against its lease budget too."""
    problems = _name_problems(spec.name)
    # A job's own grace (TERM to KILL) must fit the lease budget like the daemon's, so that its
    # job is dead before etcd can expire the lease.
    if (
        timing is not None
        and spec.grace is not None
        and dataclasses.replace(timing, grace=spec.grace).validate()
    ):
        problems.append(
            f"job {spec.name}: grace {format_duration(spec.grace)} does not fit the daemon's "
            f"budget (renew deadline {format_duration(timing.renew_deadline)} + grace + "
            f"margin {format_duration(timing.margin)} must stay under --ttl "
            f"{format_duration(timing.ttl)}): lower it, or raise --ttl"
        )
    if not spec.command or not any(word.strip() for word in spec.command):
        problems.append(f"job {spec.name!r} has an empty command: give the program to run")
    if spec.schedule is not None:
        interval = spec.schedule.interval().total_seconds()
        for error in validate_slot_timing(interval, spec.jitter, spec.starting_deadline):
            # The flag's name is the key's name.
            problems.append(f"job {spec.name!r}: {error.removeprefix('--')}")
    return problems


#: Problems found while reading a file: (line, message).
Problems = list[tuple[int, str]]
