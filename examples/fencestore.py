"""A tiny fenced store: the resource side of a fencing token, as an example and a test fixture
(not part of the leaderjob package: the compose demo mounts this file, the tests run it).

It keeps a durable high-water mark (HWM) per resource and accepts a write iff its token is at least
the mark, raising the mark in the same SQLite transaction (docs/safety.md §5). Every decision is
logged in order, with the machine's monotonic time, so a checker can line it up with daemon logs.

    python examples/fencestore.py serve --listen 127.0.0.1:8080 --db store.db
    python examples/fencestore.py write --url http://127.0.0.1:8080 --resource cleanup \\
        --token "$LEADERJOB_FENCING_TOKEN" --slot "$LEADERJOB_SLOT"      # exit 0, or 3 if stale
    python examples/fencestore.py seal --url ... --resource cleanup --token "$TOKEN"

HTTP: ``POST /write`` and ``POST /seal`` take JSON ``{resource, token, writer?, slot?, data?}``
and answer 200 (accepted) or 409 (stale token) with ``{accepted, high_water}``; ``GET /log``
returns the decisions as JSON lines (``?since=SEQ``); ``GET /state`` the marks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EXIT_REJECTED = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS marks (resource TEXT PRIMARY KEY, token INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    mono REAL NOT NULL, wall TEXT NOT NULL, op TEXT NOT NULL, resource TEXT NOT NULL,
    token INTEGER NOT NULL, writer TEXT, slot TEXT, data TEXT,
    accepted INTEGER NOT NULL, high_water INTEGER NOT NULL
);
"""


class FencedStore:
    """The decision logic on SQLite; thread-safe."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def apply(self, op: str, req: dict[str, Any]) -> dict[str, Any]:
        resource, token = str(req["resource"]), int(req["token"])
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT token FROM marks WHERE resource = ?", (resource,)
                ).fetchone()
                mark = row[0] if row else 0
                accepted = token >= mark
                if accepted:
                    mark = token
                    self._db.execute(
                        "INSERT INTO marks VALUES (?, ?) ON CONFLICT(resource) "
                        "DO UPDATE SET token = excluded.token",
                        (resource, token),
                    )
                cur = self._db.execute(
                    "INSERT INTO decisions (mono, wall, op, resource, token, writer, slot, data, "
                    "accepted, high_water) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.monotonic(),
                        datetime.now(UTC).isoformat(),
                        op,
                        resource,
                        token,
                        req.get("writer"),
                        req.get("slot"),
                        None if req.get("data") is None else json.dumps(req.get("data")),
                        int(accepted),
                        mark,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return {"accepted": accepted, "high_water": mark, "seq": cur.lastrowid}

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, mono, wall, op, resource, token, writer, slot, data, accepted, "
                "high_water FROM decisions WHERE seq > ? ORDER BY seq",
                (since,),
            )
            cols = [c[0] for c in cur.description]
            rows = cur.fetchall()
        out = []
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            rec["accepted"] = bool(rec["accepted"])
            out.append(rec)
        return out

    def marks(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT resource, token FROM marks").fetchall())


def make_server(store: FencedStore, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            op = self.path.strip("/")
            if op not in ("write", "seal"):
                self._send(404, {"error": "POST /write or /seal"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                req = json.loads(self.rfile.read(length) or b"{}")
                result = store.apply(op, req)
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": f"bad request: {exc}"})
                return
            self._send(200 if result["accepted"] else 409, result)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/log":
                since = int(
                    dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("since", "0")
                )
                lines = "".join(json.dumps(r) + "\n" for r in store.log(since))
                self._send(200, lines.encode(), "application/x-ndjson")
            elif path == "/state":
                self._send(200, store.marks())
            else:
                self._send(404, {"error": "GET /log or /state"})

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def request(url: str, op: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[int, Any]:
    req = urllib.request.Request(  # noqa: S310 - the user's own store URL
        url.rstrip("/") + "/" + op,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fencestore.py", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the store")
    serve.add_argument("--listen", default="127.0.0.1:8080")
    serve.add_argument("--db", default="fencestore.db")
    for name in ("write", "seal"):
        c = sub.add_parser(name, help=f"{name} with a token (exit 0 accepted, 3 stale)")
        c.add_argument("--url", required=True)
        c.add_argument("--resource", required=True)
        c.add_argument("--token", required=True, type=int)
        c.add_argument("--slot")
        c.add_argument("--writer")
        c.add_argument("--data")
    a = p.parse_args(argv)
    if a.cmd == "serve":
        host, _, port = a.listen.rpartition(":")
        server = make_server(FencedStore(a.db), host or "127.0.0.1", int(port))
        print(f"fencestore listening on {a.listen}, db {a.db}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        return 0
    body = {
        "resource": a.resource,
        "token": a.token,
        "slot": a.slot,
        "writer": a.writer,
        "data": a.data,
    }
    try:
        code, result = request(a.url, a.cmd, body)
    except OSError as exc:
        print(f"fencestore: cannot reach {a.url}: {exc}", file=sys.stderr)
        return 1
    verdict = "accepted" if code == 200 else "REJECTED (stale token)" if code == 409 else "error"
    print(f"{a.cmd} token {a.token} {verdict}; high-water mark {result.get('high_water')}")
    return 0 if code == 200 else EXIT_REJECTED if code == 409 else 1


if __name__ == "__main__":
    sys.exit(main())
