"""`leaderjob ui`: the read-only run explorer (:mod:`leaderjob.explorer`) on a local port, read
from etcd with the operator's own connection settings."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from leaderjob.cli.options import LeaderjobCommand, _env, connection_options
from leaderjob.cli.scope import _open_data, election_option


@click.command(cls=LeaderjobCommand)
@election_option("Election (or group of jobs) to show.")
@click.option(
    "--listen",
    envvar=_env("listen"),
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT to serve the page on. Keep it on loopback (a laptop, or `kubectl "
    "port-forward`): run output may hold secrets (docs/security.md).",
)
@connection_options
def ui(election: str, listen: str, **params: Any) -> None:
    """Serve a read-only web page of an election's jobs: who leads, a timeline of runs per
    replica with the leadership changes and the slots that did not run, each run's detail and
    output tail, the next fire times; and the same as JSON under /api."""
    from leaderjob.explorer.data import Source
    from leaderjob.explorer.server import App, serve
    from leaderjob.ops.http import parse_addr

    try:
        addr = parse_addr(listen)
    except ValueError as exc:
        raise click.UsageError(str(exc).replace("--metrics-addr", "--listen")) from None
    if addr is None:
        raise click.UsageError("--listen: give HOST:PORT, e.g. 127.0.0.1:8080")
    store, _, timeout = _open_data(election, params)
    app = App(Source(store, params["prefix"], election, timeout))
    try:
        httpd = serve(app, addr)
    except OSError as exc:
        store.close()
        raise click.UsageError(f"--listen {listen}: cannot listen ({exc.strerror})") from None
    host, port = httpd.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    click.echo(f"leaderjob ui: http://{shown}:{port}/ (election {election}; Ctrl-C stops)")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.shutdown()
        store.close()
