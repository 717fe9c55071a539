"""The classic crontab form of a jobs file: five fields or a macro, then the command.

As cron reads it: ``CRON_TZ=`` / ``TZ=`` lines set the zone of the lines below; comments and blank
lines are skipped; the command runs as ``/bin/sh -c "<rest of the line>"``; an unescaped ``%`` is a
problem (cron would feed the rest to stdin, leaderjob does not). A job is named by a
``# name: X`` comment on the line just before it, else ``line-N``. Pure: text in, specs and
problems out."""

from __future__ import annotations

import re

from leaderjob.jobsfile.spec import JobSpec, Problems, _Bad, _zone
from leaderjob.jobsfile.userfield import Names, system_names, user_field_problem
from leaderjob.schedule import ScheduleError, parse_schedule

_ENV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_NAME = re.compile(r"#\s*name:\s*(\S*)\s*(.*)")
_FIELDS = re.compile(r"(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?")
_EVERY = re.compile(r"(@every\s+\S+)(?:\s+(.*))?")
_MACRO = re.compile(r"(@\S+)(?:\s+(.*))?")
_UNESCAPED_PERCENT = re.compile(r"(?<!\\)%")


def _parse_crontab(
    text: str, default_timezone: str, names: Names | None = None
) -> tuple[list[JobSpec], Problems]:
    """``names``: what the system knows of users and programs (the running system's by default),
    for the rule that refuses /etc/crontab's user field."""
    names = names or system_names()
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
        spec = _cron_line(line, number, pending or f"line-{number}", zone, problems, names)
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


def _cron_line(
    line: str, number: int, name: str, zone: str, problems: Problems, names: Names
) -> JobSpec | None:
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
    user_field = user_field_problem(command, names)
    if user_field is not None:
        problems.append((number, user_field))
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
