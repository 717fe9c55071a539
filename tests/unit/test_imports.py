"""A lean daemon: the command line imports a command's module only when that command runs, so an
idle `leaderjob run` carries none of the fencing tools, the jobs-file checker, the demo or the
self-test (docs/benchmarks.md: daemon RSS). Each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

#: What `leaderjob run` (without --jobs) never uses.
NOT_FOR_RUN = [
    "leaderjob.cli.fenced",
    "leaderjob.fencing",
    "leaderjob.fencestore",
    "leaderjob.cli.jobs",
    "leaderjob.jobsfile",
    "leaderjob.selftest",
    "leaderjob.demo.scenario",
    "leaderjob.inprocess",
    "leaderjob.demo.localetcd",
    "leaderjob.cli.read",
    "leaderjob.cli.run_history",
    "leaderjob.cli.control",
    "leaderjob.cli.tools",
    "tomllib",
    "importlib.metadata",
    "sqlite3",
]
#: What only the daemon itself needs, once it starts (not the parsing of its options).
DAEMON_ONLY = ["grpc", "etcd3", "prometheus_client", "structlog", "leaderjob.daemon"]


def loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_importing_the_cli_loads_no_command_module() -> None:
    mods = loaded("import leaderjob.cli")
    heavy = [m for m in NOT_FOR_RUN + DAEMON_ONLY if m in mods]
    assert not heavy, f"`import leaderjob.cli` loads {heavy}"


def test_the_run_command_loads_only_what_run_uses() -> None:
    """Resolving `run` (what `leaderjob run …` does before it starts the daemon), then importing
    everything the daemon builds, leaves the other commands' modules unloaded."""
    mods = loaded(
        "import click\n"
        "from leaderjob.cli import main\n"
        "main.get_command(click.Context(main), 'run')\n"
        "import leaderjob.daemon, leaderjob.election.etcd, leaderjob.log\n"
        "import leaderjob.ops.http, leaderjob.ops.metrics, leaderjob.ops.health"
    )
    assert "leaderjob.cli.daemon" in mods
    heavy = [m for m in NOT_FOR_RUN if m in mods]
    assert not heavy, f"`leaderjob run` loads {heavy}"


def test_a_daemon_without_a_metrics_endpoint_does_not_load_prometheus_client() -> None:
    """`--metrics-addr off`: nothing could scrape the metrics, so none are built, and the
    daemon's modules import prometheus_client (about 4 MiB) only to type-check."""
    mods = loaded(
        "import leaderjob.cli.daemon, leaderjob.daemon, leaderjob.election.etcd\n"
        "import leaderjob.ops.http, leaderjob.log, leaderjob.ops.health"
    )
    assert "prometheus_client" not in mods
    assert "urllib.request" not in mods, "only --health-url needs urllib"


def test_every_command_is_still_there() -> None:
    """Loaded on demand, each command keeps its name (`leaderjob --help` lists them all)."""
    from leaderjob import cli

    names = set(cli.main.loaded())
    assert {"run", "lock", "status", "history", "trigger", "suspend", "resume", "fenced"} <= names
    assert {"next", "demo", "selftest", "jobs", "repair-schedule"} <= names


def test_a_single_command_daemon_does_not_load_the_jobs_file_reader() -> None:
    """`run --schedule … -- CMD`: the jobs-file reader (and tomllib) load only with --jobs."""
    mods = loaded(
        "from leaderjob.cli import daemon, daemon_settings\n"
        "assert daemon_settings.jobs_of({'jobs': None}, ('true',)) == (None, [])"
    )
    assert "leaderjob.jobsfile" not in mods and "tomllib" not in mods
