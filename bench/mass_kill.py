"""The daemon's guardian on its own, driven as the daemon drives it: many start requests at
once (how long until the last is exec'd, and the guardian's CPU per start), many runs at one
deadline and a stop of many runs (how long after D, or after the stop, the last one is
reported dead).

Each run ignores SIGTERM (only the SIGKILL shortly before D ends it) for the deadline rows;
each run is a plain ``sleep`` for the stop rows (the SIGTERM of the stop ends it). Prints a
Markdown table.

    .venv/bin/python bench/mass_kill.py [--runs 100 300 1000]
"""

from __future__ import annotations

import argparse
import os
import time

from benchlib import table  # first: puts the repository on the path

from leaderjob.clock import Waker
from leaderjob.clock import now as clock_now
from leaderjob.guard.run import Run
from leaderjob.guard.supervisor import GuardianProcess


def _start(g: GuardianProcess, n: int, argv: list[str], deadline: float) -> list[Run]:
    env = dict(os.environ)
    runs = []
    for i in range(n):
        r = Run(argv=argv, env=env, deadline=deadline, grace=2.0, wakeup=Waker(), run_id=str(i))
        r.request(time.monotonic(), 60.0, g)
        runs.append(r)
    for r in runs:
        if not r.confirm(wait=60):
            raise SystemExit(f"run {r.run_id} did not start: {r.error}")
    return runs


def _last_end(runs: list[Run], since: float) -> float:
    """Seconds from ``since`` until the last run's end was reported."""
    last = since
    for r in runs:
        r.wait(120)
        last = max(last, clock_now())
    return last - since


def _cpu(pid: int) -> float:
    """CPU seconds of process ``pid`` so far (user + system)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def starts(n: int) -> tuple[float, float]:
    """Seconds from the first of ``n`` start requests sent at once to the last exec (as the
    guardian saw it), and the guardian's CPU seconds meanwhile."""
    g = GuardianProcess.spawn(Waker())
    try:
        assert g.pid is not None
        time.sleep(0.5)  # its own start is not counted
        c0, t0 = _cpu(g.pid), clock_now()
        runs = _start(g, n, ["sleep", "600"], clock_now() + 600)
        return max(r.exec_at or t0 for r in runs) - t0, _cpu(g.pid) - c0
    finally:
        g.close()


def at_deadline(n: int) -> float:
    g = GuardianProcess.spawn(Waker())
    try:
        deadline = clock_now() + 4.0 + n * 0.004  # after every start
        runs = _start(g, n, ["sh", "-c", "trap '' TERM; exec sleep 600"], deadline)
        return _last_end(runs, deadline)
    finally:
        g.close()


def after_stop(n: int) -> float:
    g = GuardianProcess.spawn(Waker())
    try:
        runs = _start(g, n, ["sleep", "600"], clock_now() + 600)
        t0 = clock_now()
        for r in runs:
            r.stop("bench")
        return _last_end(runs, t0)
    finally:
        g.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[100, 300, 1000])
    args = ap.parse_args()
    rows = []
    for n in args.runs:
        took, cpu = starts(n)
        rows.append(
            [
                str(n),
                f"{1000 * took:.0f} ms ({1000 * took / n:.2f} ms per start)",
                f"{1000 * cpu / n:.2f} ms",
                f"{1000 * at_deadline(n):.0f} ms",
                f"{1000 * after_stop(n):.0f} ms",
            ]
        )
    print(
        table(
            [
                "runs",
                "requested at once → last exec",
                "guardian CPU per start",
                "last reported dead after their one D",
                "last reported dead after a stop",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
