"""A test job: journals its start and end (monotonic time, token, slot, pid) to a file.

    python job.py JOURNAL [--duration S] [--ignore-term] [--grandchild] [--exit N]

Each journal line is one JSON object, appended with O_APPEND in a single write, so several jobs
may share one journal. ``--ignore-term`` ignores SIGTERM (a misbehaving job); ``--grandchild``
forks a grandchild that sleeps and journals its pid, to check that the whole group dies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

#: The grandchild ignores SIGTERM too: only SIGKILL of the whole group ends it.
GRANDCHILD = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"


def journal(path: str, **rec: object) -> None:
    rec.update(
        t=time.monotonic(),
        pid=os.getpid(),
        token=int(os.environ.get("LEADERJOB_FENCING_TOKEN", "0")),
        slot=os.environ.get("LEADERJOB_SLOT"),
        identity=os.environ.get("LEADERJOB_IDENTITY"),
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("journal")
    p.add_argument("--duration", type=float, default=0.2)
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--grandchild", action="store_true")
    p.add_argument("--exit", type=int, default=0)
    a = p.parse_args()

    def on_term(signum: int, frame: object) -> None:
        journal(a.journal, ev="term")
        if not a.ignore_term:
            journal(a.journal, ev="end", how="sigterm")
            sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    journal(
        a.journal,
        ev="start",
        argv=sys.argv[1:],
        env_keys=sorted(k for k in os.environ if k.startswith("LEADERJOB_")),
    )
    if a.grandchild:
        child = subprocess.Popen([sys.executable, "-c", GRANDCHILD])
        journal(a.journal, ev="grandchild", child=child.pid)
    end = time.monotonic() + a.duration
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
    journal(a.journal, ev="end", how="done")
    return a.exit


if __name__ == "__main__":
    sys.exit(main())
