"""The fault suite's job: writes to the fenced store with its token until it is killed.

    python writer_job.py JOURNAL [--writes N] [--interval S] [--ignore-term] [--grandchild]
                         [--escape]

By default (``--writes 0``) it writes every ``--interval`` seconds for as long as it lives, so
a job that outlived its leadership shows as writes attempted after its key was deleted, and an
overlap as accepted or rejected writes after the successor's first; ``--writes N`` ends the run
after N writes (for scenarios about slots, which need runs that end).

The store URL comes from ``LJ_STORE_URL`` (each pod gets its own proxy to the store, so a test
can delay one pod's writes); with ``LJ_STORE_DSN`` instead, each write is a PostgreSQL
transaction through the SQL fence (:mod:`tests.faults.pgstore`: ``advance``, then the write,
then ``COMMIT``; a stale token is rejected by PostgreSQL). The resource comes from
``LJ_RESOURCE``, else ``fault/<job>`` under a jobs
file (``LEADERJOB_JOB``: fencing is per job), else ``fault``. Every write
is journaled twice, as an ``attempt`` before it is sent and an ``answer`` after, with
``time.monotonic()``; the journal also gets ``start``, ``end``, ``term`` and ``grandchild``
records. ``--escape`` also starts a grandchild in a session of its own (``setsid``, as a
daemonizing script does): it has left the job's process group, so only a supervisor that tracks
every descendant can stop it. A write the store rejects as stale ends the run (exit 3): a fenced
job that learns it was deposed stops.

Sleeps use ``select``, not ``time.sleep``: under libfaketime with FAKETIME_DONT_FAKE_MONOTONIC=1
(the clock-step scenario), ``clock_nanosleep`` fails with EINVAL (libfaketime 0.9.10).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_REPO, "examples"))  # the fenced store's client: an example

from fencestore import request  # noqa: E402

#: A grandchild that ignores SIGTERM and writes nothing: only SIGKILL of the group ends it.
GRANDCHILD = (
    "import signal, select; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "select.select([], [], [], 300)"
)

TOKEN = int(os.environ.get("LEADERJOB_FENCING_TOKEN", "0"))
SLOT = os.environ.get("LEADERJOB_SLOT")
IDENTITY = os.environ.get("LEADERJOB_IDENTITY")
RUN_ID = os.environ.get("LEADERJOB_RUN_ID")
JOB = os.environ.get("LEADERJOB_JOB")


def journal(path: str, **rec: object) -> None:
    rec.update(
        t=time.monotonic(), pid=os.getpid(), token=TOKEN, slot=SLOT, identity=IDENTITY, run=RUN_ID
    )
    if JOB is not None:
        rec["job"] = JOB
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)


def pause(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        select.select([], [], [], left)  # PEP 475: retried after a signal


#: A job frozen inside its fenced transaction loses its session after this long (docs/fencing.md):
#: it holds the fence row's lock, which the successor's fenced write waits for.
IDLE_IN_TRANSACTION = "2s"


class PgWriter:
    """Writes through the SQL fence on one PostgreSQL session, reconnecting after an error."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    def write(self, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        """200 with ``accepted`` and the mark, or 409 when PostgreSQL refused the token; raises
        OSError when the outcome is unknown (the session broke, a commit unanswered)."""
        import psycopg

        from leaderjob.fencing import StaleToken
        from leaderjob.fencing.sql import advance

        resource, token = str(body["resource"]), int(str(body["token"]))
        row = (body.get("writer"), body.get("slot"), json.dumps(body.get("data")))
        try:
            if self.conn is None:
                self.conn = psycopg.connect(self.dsn)
                self.conn.execute(
                    f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"
                )
                self.conn.commit()
            conn = self.conn
            try:
                with conn.transaction():
                    advance(conn, resource, token)
                    conn.execute(
                        "INSERT INTO soak_decisions (mono, wall, op, resource, token, writer, "
                        "slot, data, accepted, high_water) VALUES "
                        "(%s, now()::text, 'write', %s, %s, %s, %s, %s, true, %s)",
                        (time.monotonic(), resource, token, *row, token),
                    )
            except StaleToken as exc:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO soak_decisions (mono, wall, op, resource, token, writer, "
                        "slot, data, accepted, high_water) VALUES "
                        "(%s, now()::text, 'write', %s, %s, %s, %s, %s, false, %s)",
                        (time.monotonic(), resource, token, *row, exc.high_water),
                    )
                return 409, {"accepted": False, "high_water": exc.high_water}
            return 200, {"accepted": True, "high_water": token}
        except psycopg.Error as exc:
            conn_, self.conn = self.conn, None
            with contextlib.suppress(Exception):
                conn_.close()
            raise OSError(f"postgres: {exc}".strip()) from None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("journal")
    p.add_argument("--writes", type=int, default=0, help="0: until killed")
    p.add_argument("--interval", type=float, default=0.25)
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--grandchild", action="store_true")
    p.add_argument("--escape", action="store_true", help="a grandchild that leaves the group")
    a = p.parse_args()
    dsn = os.environ.get("LJ_STORE_DSN")
    pg = PgWriter(dsn) if dsn else None
    url = "" if dsn else os.environ["LJ_STORE_URL"]
    resource = os.environ.get("LJ_RESOURCE") or (f"fault/{JOB}" if JOB else "fault")

    def on_term(signum: int, frame: object) -> None:
        journal(a.journal, ev="term")
        if not a.ignore_term:
            journal(a.journal, ev="end", how="sigterm")
            os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    journal(a.journal, ev="start", pgid=os.getpgrp(), ppid=os.getppid())
    if a.grandchild:
        child = subprocess.Popen([sys.executable, "-c", GRANDCHILD])
        journal(a.journal, ev="grandchild", child=child.pid)
    if a.escape:
        escaped = subprocess.Popen([sys.executable, "-c", GRANDCHILD], start_new_session=True)
        journal(a.journal, ev="grandchild", child=escaped.pid, escaped=True)
    for seq in range(a.writes) if a.writes > 0 else itertools.count():
        if seq:
            pause(a.interval)
        body = {
            "resource": resource,
            "token": TOKEN,
            "writer": IDENTITY,
            "slot": SLOT,
            "data": {"run": RUN_ID, "seq": seq},
        }
        journal(a.journal, ev="attempt", seq=seq)
        try:
            if pg is not None:
                code, answer = pg.write(body)
            else:
                code, answer = request(url, "write", body, timeout=30)
        except OSError as exc:
            journal(a.journal, ev="answer", seq=seq, status=None, error=str(exc))
            continue
        journal(
            a.journal,
            ev="answer",
            seq=seq,
            status=code,
            accepted=bool(answer.get("accepted")),
            high_water=answer.get("high_water"),
        )
        if code == 409:
            journal(a.journal, ev="end", how="stale")
            return 3
    journal(a.journal, ev="end", how="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
