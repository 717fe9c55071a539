"""Start real `leaderjob` processes for tests, and read what their jobs journaled.

Every daemon is spawned through the test's ``procs`` registry, so it is killed by process group
at teardown even when the test fails. Logs are JSON lines (``--log-format json``) in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness.procs import JsonLogProcess, ProcessGroup, wait_until

JOB = str(Path(__file__).with_name("job.py"))
#: Why a leader that lost etcd steps down: whichever of its limits comes first.
LOST_CONTACT = frozenset({"renew_deadline", "deadline_passed", "unconfirmed"})


def job(journal: Path, *args: str) -> list[str]:
    """argv of the journaling test job (see tests/harness/job.py)."""
    return [sys.executable, JOB, str(journal), *args]


def leaderjob(
    procs: ProcessGroup,
    tmp_path: Path,
    name: str,
    endpoints: str | Sequence[str],
    prefix: str,
    command: Sequence[str],
    *,
    subcommand: str = "run",
    election: str = "job",
    ttl: str = "3s",
    schedule: str | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> JsonLogProcess:
    """Start one `leaderjob run|lock` replica named ``name``."""
    eps = endpoints if isinstance(endpoints, str) else ",".join(endpoints)
    argv = [
        sys.executable,
        "-m",
        "leaderjob",
        subcommand,
        "--election",
        election,
        "--identity",
        name,
        "--endpoints",
        eps,
        "--prefix",
        prefix,
        "--ttl",
        ttl,
        "--log-format",
        "json",
        "--metrics-addr",
        "off",
    ]
    if schedule is not None:
        argv += ["--schedule", schedule]
    argv += [*extra, "--", *command]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return JsonLogProcess(procs, argv, tmp_path / f"{name}.log", env=full_env)


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def job_starts(path: Path) -> list[dict[str, Any]]:
    """The "start" records a harness job (tests/harness/job.py) wrote to its journal."""
    return [r for r in read_journal(path) if r["ev"] == "start"]


def wait_for(predicate: Any, timeout: float, interval: float = 0.01) -> float | None:
    """Like :func:`wait_until`, but return the monotonic time it became true, or None."""
    return time.monotonic() if wait_until(predicate, timeout, interval) else None


def leader_of(daemons: Sequence[JsonLogProcess], timeout: float = 10.0) -> JsonLogProcess:
    """The daemon that logged election.acquired (and has not lost it) — waits for one."""

    def current() -> JsonLogProcess | None:
        for d in daemons:
            acquired = d.events("election.acquired")
            lost = d.events("election.lost")
            if d.alive and len(acquired) > len(lost):
                return d
        return None

    found: list[JsonLogProcess] = []
    wait_for(lambda: bool((c := current()) and not found.append(c)), timeout)
    assert found, "no daemon became leader:\n" + "\n".join(d.tail(10) for d in daemons)
    return found[0]


def cli(endpoint: str, prefix: str, *args: str) -> str:
    """Run a `leaderjob` command against ``endpoint`` under ``prefix``; return its stdout."""
    return subprocess.run(
        [sys.executable, "-m", "leaderjob", *args, "--endpoints", endpoint, "--prefix", prefix],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout


class Not:
    """Matches any value but one, for ``wait_event(..., key=Not(x))``."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return other != self.value


class Above:
    """Matches integers above a bound, for ``wait_event(..., token=Above(old))``."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, bound: int) -> None:
        self.bound = bound

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and other > self.bound
