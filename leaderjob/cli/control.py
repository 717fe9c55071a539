"""The control commands: `trigger` (a run now, optionally waiting for its outcome), `suspend`
and `resume`. Each refuses an election nobody campaigns in, unless --force."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from leaderjob.cli.options import DURATION, F, LeaderjobCommand, _env, connection_options
from leaderjob.cli.scope import (
    _etcd_failed,
    _open_data,
    election_option,
    job_option,
    json_option,
    one_job_of,
    scoped,
    targets,
)
from leaderjob.config import (
    default_identity,
    election_prefix,
)

WAIT_POLL = 1.0
#: Exit code of `trigger --wait` when --wait-timeout ran out (as timeout(1)).
EXIT_WAIT_TIMEOUT = 124


def force_option(f: F) -> F:
    return click.option(
        "--force",
        is_flag=True,
        envvar=_env("force"),
        help="Act even if no replica campaigns in the election (a typo is otherwise refused).",
    )(f)


def _require_candidates(
    store: Any, election: str, prefix: str, timeout: float, force: bool, what: str
) -> None:
    """Refuse (exit 1) to change an election nobody campaigns in, unless --force: a typo in
    --election or --prefix would otherwise "succeed" and change nothing that runs."""
    keys = store.candidates(election_prefix(prefix, election), timeout=timeout)
    if keys or force:
        return
    click.echo(
        f"leaderjob: nobody campaigns in election {election!r} under prefix {prefix!r} "
        f"(a typo in --election or --prefix?); not {what}. Use --force to {what} it anyway.",
        err=True,
    )
    sys.exit(1)


def _control(
    election: str, params: dict[str, Any], force: bool, what: str, act: Callable[[Any], Any]
) -> Any:
    from leaderjob.election.store import StoreError

    store, data, timeout = _open_data(election, params)
    try:
        _require_candidates(store, election, params["prefix"], timeout, force, what)
        return act(data)
    except StoreError as exc:
        _etcd_failed(f"{what} {election!r}", exc, params)
    finally:
        store.close()


@click.command(cls=LeaderjobCommand)
@election_option("Election to trigger.")
@job_option("With a group (`run --jobs`): the job to trigger.")
@force_option
@click.option(
    "--wait",
    is_flag=True,
    envvar=_env("wait"),
    help="Wait for the run and exit with its outcome: 0 if it succeeded, the job's exit code if "
    "it failed, 1 if it timed out, was killed or could not start.",
)
@click.option(
    "--wait-timeout",
    type=DURATION,
    envvar=_env("wait_timeout"),
    help="With --wait: give up after this long (exit 124) [default: wait for ever].",
)
@json_option
@connection_options
def trigger(
    election: str,
    force: bool,
    wait: bool,
    wait_timeout: float | None,
    as_json: bool,
    **params: Any,
) -> None:
    """Ask for one immediate run. Only the leader executes it, once, claimed and fenced like a
    slot; it waits for a running run to finish (unless --concurrency allow). Scheduled elections
    only (a service-mode command already runs)."""
    one_job_of(election, params, "trigger")
    election, params = scoped(election, params)
    timeout = params["rpc_timeout"]
    trigger_id = _control(
        election,
        params,
        force,
        "trigger",
        lambda data: data.trigger(default_identity(), timeout=timeout),
    )
    slot = f"trigger-{trigger_id}"
    if not as_json:
        click.echo(f"triggered {election}: request {trigger_id} (slot {slot})")
    elif not wait:
        click.echo(json.dumps({"election": election, "request": trigger_id, "slot": slot}))
    if wait:
        sys.exit(_wait_for_run(election, params, slot, wait_timeout, as_json))


def _wait_for_run(
    election: str,
    params: dict[str, Any],
    slot: str,
    wait_timeout: float | None,
    as_json: bool = False,
) -> int:
    """Poll the history for the run of ``slot``; its outcome becomes the exit code."""
    import time

    from leaderjob.election.store import StoreError

    give_up = None if wait_timeout is None else time.monotonic() + wait_timeout
    store, data, timeout = _open_data(election, params)
    try:
        while True:
            try:
                records = data.history(50, timeout=timeout)
            except StoreError as exc:
                click.echo(f"leaderjob: still waiting, etcd: {exc}", err=True)
                records = []
            done = [r for r in records if r.get("slot") == slot and r.get("outcome")]
            if done:
                run = done[-1]  # the oldest record of the slot: its first attempt
                outcome = str(run["outcome"])
                if as_json:
                    click.echo(json.dumps({"election": election, "slot": slot, "run": run}))
                else:
                    click.echo(f"{slot}: {outcome} ({run_summary(run)})")
                if outcome == "succeeded":
                    return 0
                code = run.get("exit_code")
                return code if isinstance(code, int) and 0 < code < 256 else 1
            if give_up is not None and time.monotonic() >= give_up:
                if as_json:
                    click.echo(json.dumps({"election": election, "slot": slot, "run": None}))
                click.echo(f"leaderjob: {slot} has not finished; gave up waiting", err=True)
                return EXIT_WAIT_TIMEOUT
            time.sleep(WAIT_POLL)
    finally:
        store.close()


def run_summary(run: dict[str, Any]) -> str:
    """How a run ended, in words: its exit code or signal (never ``exit None``), how long, by
    whom."""
    if run.get("signal"):
        ended = f"signal {run['signal']}"
    elif run.get("exit_code") is not None:
        ended = f"exit {run['exit_code']}"
    else:
        ended = "no exit code" + (f": {run['error']}" if run.get("error") else "")
    took = run.get("duration_seconds")
    secs = "" if took is None else f", {float(took):.2f}s"
    return f"{ended}{secs}, token {run.get('token')}, by {run.get('identity')}"


def operator_identity() -> str:
    """Who runs a control command, for the switch it writes: the login name (when the
    environment has one) at this machine's identity."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    return f"{user}@{default_identity()}" if user else default_identity()


@click.command(cls=LeaderjobCommand)
@election_option("Election to suspend.")
@job_option("With a group (`run --jobs`): suspend this job only [default: every job].")
@click.option(
    "--reason",
    envvar=_env("reason"),
    help="Why, for whoever reads `leaderjob status` next (kept with who and when).",
)
@force_option
@json_option
@connection_options
def suspend(election: str, reason: str | None, force: bool, as_json: bool, **params: Any) -> None:
    """Suspend an election cluster-wide: it keeps its leader but starts no runs. For a group of
    jobs, every job (or the one --job names). `status` shows who suspended it, when and why."""
    timeout = params["rpc_timeout"]
    done = []
    for name, scope in targets(election, params):
        body = _control(
            name,
            scope,
            force,
            "suspend",
            lambda data: data.suspend(operator_identity(), timeout=timeout, reason=reason),
        )
        done.append({"election": name, "suspended": True, **body})
        if not as_json:
            click.echo(f"suspended {name}: slots are skipped until `leaderjob resume`")
    if as_json:
        click.echo(json.dumps(done, indent=2))


@click.command(cls=LeaderjobCommand)
@election_option("Election to resume.")
@job_option("With a group (`run --jobs`): resume this job only [default: every job].")
@force_option
@json_option
@connection_options
def resume(election: str, force: bool, as_json: bool, **params: Any) -> None:
    """Resume a suspended election (for a group of jobs, every job or the one --job names)."""
    timeout = params["rpc_timeout"]
    done = []
    for name, scope in targets(election, params):
        was = _control(name, scope, force, "resume", lambda data: data.resume(timeout=timeout))
        done.append({"election": name, "resumed": bool(was)})
        if not as_json:
            click.echo(f"resumed {name}" if was else f"{name} was not suspended")
    if as_json:
        click.echo(json.dumps(done, indent=2))
