"""The application side of the sidecar pattern (deploy/kubernetes/examples/http-endpoint).

    python examples/http_app.py --listen 127.0.0.1:8080            # marks in memory
    python examples/http_app.py --listen 127.0.0.1:8080 --sqlite fence.db

The scheduled job POSTs to /internal/jobs/cleanup with ``Leaderjob-Fencing-Token``;
``WsgiFencing`` answers 409 to a token below the high-water mark before the handler runs. With
several replicas, keep the marks in the database all of them share (``SqlMarks``), not in memory.
Standard library only (wsgiref), for the example; any WSGI server works.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import make_server

from leaderjob.fencing.http import REQUEST_KEY, Marks, MemoryMarks, WsgiFencing, trusted
from leaderjob.fencing.sql import SqlMarks, ddl


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/internal/jobs/cleanup" and environ.get("REQUEST_METHOD") == "POST":
        token = environ.get(REQUEST_KEY)  # checked by the middleware: at least the mark
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"cleanup done with token {token}\n".encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def build(sqlite_path: str | None) -> WsgiFencing:
    marks: Marks = MemoryMarks()
    if sqlite_path:
        with sqlite3.connect(sqlite_path) as conn:
            conn.executescript(ddl())
        marks = SqlMarks(lambda: sqlite3.connect(sqlite_path))
    # Only the job's calls are fenced (/healthz is not). `trusted`: in this example the endpoint
    # is reached only over the pod's loopback; elsewhere check tokens against etcd
    # (leaderjob.fencing.etcd.LeaderTokens) or authenticate callers in front.
    return WsgiFencing(
        app,
        marks,
        resource=lambda path: "cleanup" if path.startswith("/internal/jobs/") else None,
        verify=trusted,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--sqlite", help="keep the marks in this SQLite file")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    with make_server(host, int(port), build(args.sqlite)) as server:
        print(f"listening on {host}:{server.server_port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
