"""The command line: the only place that builds concrete adapters.

Every option can also come from a ``LEADERJOB_<NAME>`` environment variable (``--ttl`` from
``LEADERJOB_TTL``), so a Kubernetes manifest can configure the daemon without a long argv.
Usage errors exit 2 with one line that says what to change; etcd rejecting us exits 1.
"""

from __future__ import annotations

import click

from leaderjob import __version__, fenced_cli
from leaderjob.cli.audit import audit
from leaderjob.cli.control import EXIT_WAIT_TIMEOUT, WAIT_POLL, resume, suspend, trigger
from leaderjob.cli.daemon import _serve, build_timing, http_snapshot, lock, run
from leaderjob.cli.options import (
    LeaderjobGroup,
    build_connection,
    connection_options,
    open_store,
)
from leaderjob.cli.read import format_history, history, read_status, repair_schedule, status
from leaderjob.cli.tools import demo, next_, selftest
from leaderjob.jobs_cli import jobs


@click.group(
    cls=LeaderjobGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="leaderjob")
def main() -> None:
    """Run a command on a schedule exactly once across many replicas, with etcd leader election
    and a fencing token.

    \b
    Quick start (three terminals, one etcd):
      leaderjob run --election cleanup --schedule '@every 10s' -- ./cleanup.sh
      leaderjob status --election cleanup

    Every option of every command can also come from the environment as LEADERJOB_<OPTION>
    (--ttl from LEADERJOB_TTL); `leaderjob COMMAND --help` names each variable.
    """


# One line per command family; a new family (say, the fencing tools) adds its own.
for command in (run, lock):  # the daemon
    main.add_command(command)
for command in (status, history, repair_schedule, trigger, suspend, resume):  # read, control
    main.add_command(command)
main.add_command(audit)  # the slot ledger check
for command in (next_, demo, selftest):  # the tools
    main.add_command(command)
main.add_command(jobs)  # the jobs file: check
fenced_cli.register(main, connection_options, build_connection, open_store)  # fenced writes

__all__ = [
    "EXIT_WAIT_TIMEOUT",
    "WAIT_POLL",
    "_serve",
    "build_connection",
    "build_timing",
    "click",
    "format_history",
    "history",
    "http_snapshot",
    "lock",
    "main",
    "open_store",
    "read_status",
    "run",
]
