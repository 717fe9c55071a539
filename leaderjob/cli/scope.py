"""What a read or control command acts on: its ``--election`` and ``--job`` options (and
``--json``), a group's jobs, one job's election scoped inside its group, the election's records
opened, and the one-line answers when there is nothing there or etcd fails (exit 1) or a job is
not the group's (exit 2)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from leaderjob.cli import options
from leaderjob.cli.options import F, _env, _not_from_parent_job, build_connection
from leaderjob.config import join_errors, validate_election_name
from leaderjob.ops import status_doc
from leaderjob.ops.status_doc import jobs_prefix

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
    from leaderjob.history.records import ElectionData

    errors = validate_election_name(election)
    if errors:
        raise click.UsageError(join_errors(errors))
    conn = build_connection(params)
    store = options.open_store(conn)  # looked up at the call: tests replace it
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
