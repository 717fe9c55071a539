"""The jobs file: what a daemon runs, read from TOML or a classic crontab.

This package owns the file format: which keys exist, what their values mean, which combinations are
wrong, and where in the file each job and each problem is. It is pure: no clock, no logging, and
no I/O except :func:`load_jobs` reading the file. It must not know about etcd, elections at run
time or processes; the daemon turns a :class:`JobsFile` into campaigns and runs.

Its seams: :mod:`.spec` (one job, its option values and its cross-field rules, shared by every
form), :mod:`.toml_form` and :mod:`.crontab` (the two forms), and this module (which form a file
is, and the rules of a whole file: names unique, at least one job).

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
* One validator: ``leaderjob jobs check``, a daemon's start and each reload all judge a file with
  :func:`load_jobs` (the daemon adds its ``timing``, against which a job's own ``grace`` is
  judged). What passes here, the daemon can build: no value overflows later (a duration is at
  most :data:`~leaderjob.units.MAX_DURATION`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from leaderjob.config import Timing
from leaderjob.jobsfile.crontab import _parse_crontab
from leaderjob.jobsfile.spec import (
    _JOB_KEYS,
    MAX_HISTORY_LIMIT,
    Concurrency,
    JobsFile,
    JobsFileError,
    JobSpec,
    _job_problems,
)
from leaderjob.jobsfile.toml_form import _parse_toml
from leaderjob.ops.notify import redact_url
from leaderjob.schedule import Schedule

__all__ = [
    "MAX_HISTORY_LIMIT",
    "_JOB_KEYS",
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


def load_jobs(
    path: str | os.PathLike[str], *, default_timezone: str = "UTC", timing: Timing | None = None
) -> JobsFile:
    """Read and judge the file at ``path``: the one validator of ``jobs check``, a daemon's start
    and its reloads (with the daemon's ``timing``). An unreadable file is a
    :class:`JobsFileError` too."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise JobsFileError([f"{name}:1: cannot read the jobs file: {reason}"]) from None
    return parse_jobs(text, name, default_timezone=default_timezone, timing=timing)


def is_toml(text: str, path: str) -> bool:
    """The format rule: ``*.toml``, or the first significant line begins with ``[``."""
    if path.lower().endswith(".toml"):
        return True
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return line.startswith("[")
    return False


def parse_jobs(
    text: str, path: str, *, default_timezone: str = "UTC", timing: Timing | None = None
) -> JobsFile:
    """Parse a jobs file; raise :class:`JobsFileError` with every problem at once.

    ``default_timezone`` is the zone of jobs that set none (the daemon's ``--timezone``);
    ``timing``: the daemon's, whose lease budget each job's options must fit.
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
        problems += [(spec.line, message) for message in _job_problems(spec, timing)]
    if problems:
        raise JobsFileError([f"{path}:{line}: {msg}" for line, msg in sorted(problems, key=_first)])
    return JobsFile(path=path, jobs=tuple(jobs))


def _first(problem: tuple[int, str]) -> int:
    return problem[0]


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
