"""The command line: the only place that builds concrete adapters.

Every option can also come from a ``LEADERJOB_<NAME>`` environment variable (``--ttl`` from
``LEADERJOB_TTL``), so a Kubernetes manifest can configure the daemon without a long argv.
Usage errors exit 2 with one line that says what to change; etcd rejecting us exits 1.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from leaderjob.cli.options import (
    LeaderjobGroup,
    build_connection,
    connection_options,
    open_store,
)

#: Each command by name, with the module that defines it and its name there. A command's module
#: is imported only when that command runs (or for ``--help``): `leaderjob run` never loads the
#: fencing tools, the jobs-file checker, the demo or the self-test, nor what they import.
_COMMANDS = {
    # the daemon
    "run": ("leaderjob.cli.daemon", "run"),
    "lock": ("leaderjob.cli.daemon", "lock"),
    # read, control
    "status": ("leaderjob.cli.read", "status"),
    "history": ("leaderjob.cli.run_history", "history"),
    "repair-schedule": ("leaderjob.cli.read", "repair_schedule"),
    "trigger": ("leaderjob.cli.control", "trigger"),
    "suspend": ("leaderjob.cli.control", "suspend"),
    "resume": ("leaderjob.cli.control", "resume"),
    # the slot ledger check
    "audit": ("leaderjob.cli.audit", "audit"),
    # the run explorer in the browser
    "ui": ("leaderjob.cli.ui", "ui"),
    # the tools
    "next": ("leaderjob.cli.tools", "next_"),
    "demo": ("leaderjob.cli.tools", "demo"),
    "selftest": ("leaderjob.cli.tools", "selftest"),
    # the jobs file: check
    "jobs": ("leaderjob.cli.jobs", "jobs"),
    # fenced writes: built by fenced_cli.register
    "fenced": ("leaderjob.cli.fenced", ""),
}

#: Names this package re-exports, each from the module that defines it (imported on first use).
_EXPORTS = {
    "EXIT_WAIT_TIMEOUT": "leaderjob.cli.control",
    "WAIT_POLL": "leaderjob.cli.control",
    "_serve": "leaderjob.cli.daemon",
    "build_timing": "leaderjob.cli.daemon_settings",
    "http_snapshot": "leaderjob.cli.daemon",
    "lock": "leaderjob.cli.daemon",
    "run": "leaderjob.cli.daemon",
    "format_history": "leaderjob.cli.run_history",
    "history": "leaderjob.cli.run_history",
    "read_status": "leaderjob.cli.read",
}


class _LazyGroup(LeaderjobGroup):
    """The top-level group: commands are found by name and imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attr = _COMMANDS[cmd_name]
        module = importlib.import_module(module_name)
        if cmd_name == "fenced":
            module.register(self, connection_options, build_connection, open_store)
        else:
            self.add_command(getattr(module, attr), cmd_name)
        return self.commands.get(cmd_name)

    def loaded(self) -> dict[str, click.Command]:
        """Every command, imported (for tests and documentation checks)."""
        ctx = click.Context(self)
        for name in self.list_commands(ctx):
            self.get_command(ctx, name)
        return dict(self.commands)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # Looked up only when asked for: importlib.metadata is no cost of every start.
    if not value or ctx.resilient_parsing:
        return
    from leaderjob import __version__

    click.echo(f"leaderjob, version {__version__}")
    ctx.exit()


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
