"""Shared by every command: the duration type, the environment variable of each option, the
grouped ``--help``, the etcd connection options and building a connection (the only place that
builds the concrete store), and the ``--election`` option of the read and control commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from leaderjob import status_doc
from leaderjob.config import (
    DEFAULT_PREFIX,
    Connection,
    join_errors,
    validate_election_name,
)
from leaderjob.status_doc import jobs_prefix
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
    from leaderjob.leadership_options import build_connection as connection

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


#: ``--json`` of the read commands (status, history, audit).
json_option = click.option(
    "--json", "as_json", is_flag=True, envvar=_env("json"), help="Print JSON for scripts."
)


def election_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--election",
        envvar=_env("election"),
        required=True,
        callback=_not_from_parent_job,
        help=help_text,
    )


def _open_data(election: str, params: dict[str, Any]) -> tuple[Any, Any, float]:
    from leaderjob.records import ElectionData

    errors = validate_election_name(election)
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)
    store = open_store(conn)
    return store, ElectionData(store, params["prefix"], election), conn.rpc_timeout


def _etcd_failed(what: str, exc: Exception, params: dict[str, Any] | None = None) -> NoReturn:
    click.echo(f"leaderjob: cannot {what}: {exc}{tls_hint(str(exc), params)}", err=True)
    sys.exit(1)


def tls_hint(error: str, params: dict[str, Any] | None) -> str:
    """A plain-text connection to a TLS port ends in "Socket closed": suggest https://."""
    if "socket closed" not in error.lower():
        return ""
    endpoints = str((params or {}).get("endpoints") or os.environ.get(_env("endpoints")) or "")
    if (params or {}).get("cacert") or "https://" in endpoints:
        return ""
    return (
        " (a plain-text client at a TLS port? write the endpoints as https://host:port, with "
        "--cacert if etcd's CA is not in the system bundle)"
    )


def job_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--job",
        envvar=_env("job"),
        callback=_not_from_parent_job,  # inside a job, LEADERJOB_JOB is the parent's
        help=help_text,
    )


def scoped(election: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """With ``--job NAME``: the job's own election inside the group ``election`` (its keys under
    ``<prefix>/<group>/jobs/<job>/``). Without, the election as given."""
    job = params.get("job")
    if not job:
        return election, params
    errors = validate_election_name(election)
    if errors:
        raise click.UsageError(join_errors(errors))
    return job, {**params, "prefix": jobs_prefix(params["prefix"], election), "job": None}


def group_jobs(store: Any, election: str, params: dict[str, Any], timeout: float) -> list[str]:
    """The jobs that have keys under the group ``election`` (empty: not a group)."""
    return status_doc.group_jobs(store, params["prefix"], election, timeout)


def where(params: dict[str, Any]) -> str:
    """Where a command looked, for its hints: the prefix and the endpoints."""
    return f"under prefix {params['prefix']!r} at {params['endpoints']}"


def nobody_there(election: str, params: dict[str, Any]) -> NoReturn:
    """An election with no candidate and no record: nothing to show is never an answer (exit 1),
    and the usual causes are a name, a prefix or endpoints other than the daemons'."""
    click.echo(
        f"leaderjob: election {election}: nobody campaigns in it {where(params)} and it has no "
        "records; check --election, --prefix (LEADERJOB_PREFIX) and --endpoints "
        "(LEADERJOB_ENDPOINTS) against the daemons' own",
        err=True,
    )
    sys.exit(1)


def one_job_of(election: str, params: dict[str, Any], what: str) -> None:
    """A command that acts on one job (trigger, repair-schedule) given a group's name without
    --job, or a --job the group does not have: a usage error that names the group's jobs
    (exit 2)."""
    names = _jobs_checked(election, params)
    if names:
        raise click.UsageError(
            f"election {election!r} is a group of jobs ({', '.join(names)}): give --job to "
            f"{what} one of them"
        )


def _jobs_checked(election: str, params: dict[str, Any]) -> list[str]:
    """The group's job names when no --job is given (empty for a single-job election); a --job
    the group does not have is a usage error that names its jobs (exit 2)."""
    from leaderjob.election.store import StoreError

    store, _, timeout = _open_data(election, params)
    try:
        wrong = unknown_job(election, params, timeout, store)
        names = [] if params.get("job") else group_jobs(store, election, params, timeout)
    except StoreError as exc:
        _etcd_failed(f"read election {election!r} from etcd", exc, params)
    finally:
        store.close()
    if wrong is not None:
        raise click.UsageError(wrong)
    return names


def unknown_job(election: str, params: dict[str, Any], timeout: float, store: Any) -> str | None:
    """With --job: a message naming the group's jobs when the job is not one of them (None when
    it is, or when the group has none at all)."""
    job = params.get("job")
    if not job:
        return None
    names = group_jobs(store, election, params, timeout)
    if not names or job in names:
        return None
    return f"election {election!r} has no job {job!r}; its jobs: {', '.join(names)}"


def targets(election: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What a command that acts per job acts on (audit, suspend, resume): the --job, else every
    job of a group, else the election — each as :func:`scoped` gives it."""
    names = _jobs_checked(election, params)
    if params.get("job"):
        return [scoped(election, params)]
    if not names:
        return [(election, params)]
    return [scoped(election, {**params, "job": name}) for name in names]
