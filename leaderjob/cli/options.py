"""Shared by every command: the duration type, the environment variable of each option, the
grouped ``--help``, the etcd connection options and building a connection (the only place that
builds the concrete store). The ``--election`` and ``--job`` options of the read and control
commands, and what they act on, are :mod:`leaderjob.cli.scope`'s."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from leaderjob.config import (
    DEFAULT_PREFIX,
    Connection,
)
from leaderjob.units import DurationError, check_duration, parse_duration

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.5
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            if isinstance(value, int | float):
                return check_duration(float(value), value)
            return parse_duration(str(value))
        except DurationError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def _env(name: str) -> str:
    return f"LEADERJOB_{name.upper().replace('-', '_')}"


#: `--help` sections, in order: option name → section. Options not listed go under "Options".
HELP_SECTIONS: dict[str, tuple[str, ...]] = {
    "Election": ("election", "job", "identity", "force"),
    "Timing": (
        "ttl",
        "renew_interval",
        "renew_deadline",
        "grace",
        "margin",
    ),
    "Schedule": (
        "jobs",
        "spread",
        "spread_pace",
        "schedule",
        "timezone",
        "jitter",
        "catch_up",
        "starting_deadline",
        "concurrency",
        "timeout",
        "retries",
        "history_limit",
    ),
    "Health": ("health_cmd", "health_url", "health_interval", "health_failures"),
    "Notifications": ("on_failure", "on_failure_timeout", "ping_url"),
    "etcd connection": (
        "endpoints",
        "prefix",
        "cacert",
        "cert",
        "key",
        "tls_server_name",
        "user",
        "password_file",
        "rpc_timeout",
    ),
    "Output": (
        "log_format",
        "log_level",
        "metrics_addr",
        "etcd_quota",
        "as_json",
        "limit",
        "wait",
        "wait_timeout",
    ),
}


class LeaderjobCommand(click.Command):
    """A command whose --help groups the options by topic and shows each one's environment
    variable (every option can come from the environment)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option):
                if not param.envvar:
                    long = max(param.opts, key=len).lstrip("-")
                    param.envvar = _env(long)  # --count → LEADERJOB_COUNT, as documented
                param.show_envvar = True

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {}
        section_of = {name: title for title, names in HELP_SECTIONS.items() for name in names}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue  # arguments are in the usage line and the text
            record = param.get_help_record(ctx)
            if record is not None:
                rows.setdefault(section_of.get(str(param.name), "Options"), []).append(record)
        for title in (*HELP_SECTIONS, "Options"):
            if rows.get(title):
                with formatter.section(title):
                    formatter.write_dl(rows[title])


#: Set in every job's environment; its presence means this leaderjob runs inside a job.
RUN_ID_VAR = "LEADERJOB_RUN_ID"


def _not_from_parent_job(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A leaderjob started inside a job inherits the job's context variables, and two of them
    (LEADERJOB_ELECTION, LEADERJOB_IDENTITY) are also option variables: taken as options, a
    nested `lock` would join its own parent's election and wait behind it for ever. Inside a
    job, these two must be given on the command line."""
    if (
        value is not None
        and os.environ.get(RUN_ID_VAR)
        and ctx.get_parameter_source(str(param.name)) is ParameterSource.ENVIRONMENT
    ):
        flag = param.opts[0] if isinstance(param, click.Option) else str(param.name)
        raise click.BadParameter(
            f"{_env(str(param.name))} is the parent job's (this runs inside a leaderjob job: "
            f"{RUN_ID_VAR} is set); give {flag} explicitly",
            ctx,
            param,
        )
    return value


class LeaderjobGroup(click.Group):
    command_class = LeaderjobCommand


def connection_options(f: F) -> F:
    """etcd connection options, shared by every command that talks to etcd."""
    options = [
        click.option(
            "--endpoints",
            envvar=_env("endpoints"),
            default="127.0.0.1:2379",
            show_default=True,
            help="etcd endpoints, comma-separated host:port, http://host:port (plain) or "
            "https://host:port (TLS, verified against --cacert or the system CA bundle). With "
            "several, a dead member is skipped and the next one used.",
        ),
        click.option(
            "--prefix",
            envvar=_env("prefix"),
            default=DEFAULT_PREFIX,
            show_default=True,
            help="etcd key prefix under which every election lives.",
        ),
        click.option(
            "--cacert",
            envvar=_env("cacert"),
            type=click.Path(dir_okay=False),
            help="CA bundle file to verify etcd (enables TLS) [default with https://: the "
            "system CA bundle].",
        ),
        click.option(
            "--cert",
            envvar=_env("cert"),
            type=click.Path(dir_okay=False),
            help="Client certificate file for etcd (with --key).",
        ),
        click.option(
            "--key",
            envvar=_env("key"),
            type=click.Path(dir_okay=False),
            help="Client private key file for etcd (with --cert).",
        ),
        click.option(
            "--tls-server-name",
            envvar=_env("tls_server_name"),
            help="Name to verify in etcd's certificate, if it differs from the endpoint host.",
        ),
        click.option(
            "--user",
            envvar=_env("user"),
            help="etcd user name (password from LEADERJOB_PASSWORD or --password-file).",
        ),
        click.option(
            "--password-file",
            envvar=_env("password_file"),
            type=click.Path(dir_okay=False),
            help="File holding the etcd password (never pass a password on the command line).",
        ),
        click.option(
            "--rpc-timeout",
            envvar=_env("rpc_timeout"),
            type=DURATION,
            default="5s",
            show_default=True,
            help="Timeout for etcd calls not bound by a tighter deadline.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_connection(params: dict[str, Any]) -> Connection:
    password = os.environ.get("LEADERJOB_PASSWORD")
    pwfile = params.get("password_file")
    if pwfile:
        try:
            with open(pwfile, encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as exc:
            raise click.UsageError(
                f"--password-file {pwfile}: cannot read it ({exc.strerror})"
            ) from None
    from leaderjob.inprocess.leadership_options import build_connection as connection

    user = params.get("user")
    if user is None and password is not None and not pwfile:
        raise click.UsageError(
            "LEADERJOB_PASSWORD is set but no etcd user: give --user (LEADERJOB_USER), or unset "
            "LEADERJOB_PASSWORD"
        )
    _check_key_pair(params.get("cert"), params.get("key"))
    try:
        conn = connection(
            str(params["endpoints"]),
            cacert=params.get("cacert"),
            cert=params.get("cert"),
            key=params.get("key"),
            user=user,
            password=password if user else None,
            tls_server_name=params.get("tls_server_name"),
            rpc_timeout=params["rpc_timeout"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if user is None and password is not None and pwfile:
        raise click.UsageError("--password-file given without --user")
    return conn


def _check_key_pair(cert: str | None, key: str | None) -> None:
    """A client key that does not match its certificate, said in one line before gRPC's TLS
    layer prints its own lines about it."""
    if not cert or not key:
        return
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise click.UsageError(
                f"--key {key} does not belong to --cert {cert}: give the key the certificate "
                "was issued for"
            ) from None
        raise click.UsageError(
            f"--cert {cert} / --key {key}: not a PEM certificate and its key ({exc.reason})"
        ) from None
    except OSError as exc:
        raise click.UsageError(
            f"--cert {cert} / --key {key}: cannot read ({exc.strerror})"
        ) from None


def open_store(conn: Connection) -> Any:
    from leaderjob.election.etcd import EtcdStore

    return EtcdStore(conn)
