"""A small web app whose background thread does periodic work only while it leads, in-process.

    python examples/webapp_leadership.py --listen 127.0.0.1:8080 --endpoints 127.0.0.1:2379
    curl -s 127.0.0.1:8080/          # {"leading": true, "token": 1234, "remaining": 12.3, ...}

Run it twice (two ports): one replica leads, the other waits; stop the leader (Ctrl-C, SIGTERM)
and the other takes over in well under a second, kill -9 it and the other takes over within the
TTL. Every replica serves HTTP all the time; only the leader's background thread works.

The work is one SQL transaction per tick (a row in ``ticks``), fenced by the leadership token as
its last statement before COMMIT (``leaderjob.fencing.sql.advance``): a replica that was paused
(GC, SIGSTOP, a frozen VM) past its deadline and resumes mid-tick is refused by the database
(StaleToken, nothing commits). PostgreSQL with ``--dsn`` (psycopg), else SQLite (``--sqlite``).
``lead.valid()`` before each tick is the cooperative check; the fence is what makes it safe.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from leaderjob import Leadership, LeadershipError
from leaderjob.fencing import StaleToken
from leaderjob.fencing.sql import advance, ddl
from leaderjob.log import configure

SCHEMA = "CREATE TABLE IF NOT EXISTS ticks (token BIGINT NOT NULL, at TEXT NOT NULL)"


class Worker:
    """The background thread: lead, tick while valid, hand over on stop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop = threading.Event()
        self.lead: Leadership | None = None
        self.ticks = 0
        self.refused = 0
        self.thread = threading.Thread(target=self.run, name="worker", daemon=True)

    def connect(self) -> tuple[Any, str]:
        if self.args.dsn:
            import psycopg  # the "postgres" extra: pip install '.[postgres]' (README: Install)

            return psycopg.connect(self.args.dsn), "%s"
        return sqlite3.connect(self.args.sqlite), "?"

    def run(self) -> None:
        conn, p = self.connect()
        cur = conn.cursor()
        cur.execute(ddl())
        cur.execute(SCHEMA)
        conn.commit()
        lead = self.lead = Leadership(
            self.args.election,
            endpoints=self.args.endpoints.split(","),
            ttl=self.args.ttl,
            prefix=self.args.prefix,
        )

        def work(lead: Leadership) -> None:  # while leading; a new tenure after each loss
            while lead.valid() and not self.stop.is_set():
                self.tick(conn, p, lead)
                self.stop.wait(self.args.every)

        try:
            # Campaign, lead, campaign again after a loss, until stop: it waits in the queue
            # (no lease churn) and notices the stop within a fraction of a second.
            lead.run_forever(work, stop=self.stop)
        except LeadershipError as exc:  # etcd refused us (credentials, TLS)
            print(f"leadership: {exc}", flush=True)
        conn.close()

    def tick(self, conn: Any, p: str, lead: Leadership) -> None:
        token = lead.token
        assert token is not None
        try:
            cur = conn.cursor()
            insert = f"INSERT INTO ticks (token, at) VALUES ({p}, {p})"  # noqa: S608
            cur.execute(insert, (token, datetime.now(UTC).isoformat()))
            advance(conn, "ticks", token)  # last statement before COMMIT: refused once deposed
            conn.commit()
            self.ticks += 1
        except StaleToken as exc:
            self.refused += 1
            print(f"refused, nothing committed: {exc}", flush=True)

    def status(self) -> dict[str, Any]:
        lead = self.lead
        leading = lead is not None and lead.valid()
        return {
            "leading": leading,
            "token": lead.token if leading and lead is not None else None,
            "remaining": round(lead.remaining(), 3) if lead is not None else 0.0,
            "ticks": self.ticks,
            "refused": self.refused,
        }


def serve(args: argparse.Namespace) -> int:
    worker = Worker(args)
    host, _, port = args.listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(worker.status()).encode()
            self.send_response(200 if self.path in ("/", "/status") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: Any) -> None:  # quiet access log
            pass

    # Signals are taken synchronously by the main thread (sigwait), never by a handler running
    # between two bytecodes of a thread that holds a lock; threads inherit the blocked mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    server = ThreadingHTTPServer((host, int(port)), Handler)
    http = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    http.start()
    worker.thread.start()
    print(f"serving on http://{host}:{server.server_port}/", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    # Stop the work first, then leave: the with block resigns and revokes (the next replica
    # leads in well under a second), then stop serving.
    worker.stop.set()
    worker.thread.join(30)
    server.shutdown()
    server.server_close()
    print(f"stopped after {worker.ticks} ticks", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--endpoints", default="127.0.0.1:2379")
    parser.add_argument("--election", default="webapp")
    parser.add_argument("--prefix", default="/leaderjob", help="etcd key prefix")
    parser.add_argument("--ttl", type=float, default=15.0)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between two ticks")
    parser.add_argument("--dsn", help="PostgreSQL DSN (else SQLite)")
    parser.add_argument("--sqlite", default="webapp.db", help="SQLite file without --dsn")
    args = parser.parse_args()
    configure()  # leaderjob's structured log lines (election.acquired, ...) on stderr
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
