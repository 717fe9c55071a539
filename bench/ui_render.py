"""The run explorer's server time on a week of a per-minute job (about 10 000 runs).

    python bench/ui_render.py [--days 7] [--doc docs/benchmarks.md]

A throwaway etcd gets the history a `*/1 * * * *` job leaves in ``--days`` days (one record per
minute, each with its output tails; a leadership change every day; a stretch of missed slots as
one range record), written through the daemon's own history writer. Then the explorer's app
(the same object `leaderjob ui` and `run --ui` serve) answers each request a few times, in this
process, and the table gives the median server time of each, split into etcd reads, the view
model and the markup. The page must render in under a second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import write_section

from leaderjob.explorer import model, svg
from leaderjob.explorer.data import Job, Source
from leaderjob.explorer.server import App
from leaderjob.history.records import ElectionData, iso, not_run_record
from leaderjob.schedule import slot_id
from tests.harness.etcd import EtcdServer

BEGIN = "<!-- ui_render.py: begin -->"
END = "<!-- ui_render.py: end -->"
JOB = "every-minute"
REPEAT = 5
T = TypeVar("T")


def fill(data: ElectionData, days: int, now: datetime) -> int:
    """A per-minute job's history of ``days`` days up to ``now``: the number of records."""
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    written = 0
    t = start
    gap = (start + timedelta(days=days / 2), start + timedelta(days=days / 2, minutes=30))
    while t < now - timedelta(minutes=1):
        day = int((t - start).total_seconds() // 86400)
        who, token = f"replica-{day % 3 + 1}", 100 + day
        if gap[0] <= t < gap[1]:
            t = gap[1]
            rec = not_run_record(slot_id(t - timedelta(minutes=1)), t - timedelta(minutes=1),
                                 "missed", outcome="missed", token=token, identity=who,
                                 first_slot=slot_id(gap[0]), count=30)  # fmt: skip
            data.record(rec, t, timeout=10)
            written += 1
            continue
        started = t + timedelta(milliseconds=40)
        ended = started + timedelta(seconds=12)
        rec = {"run_id": f"{written:012x}", "slot": slot_id(t), "scheduled_time": iso(t),
               "started_at": iso(started), "finished_at": iso(ended), "duration_seconds": 12.0,
               "identity": who, "token": token, "attempt": 0, "outcome": "succeeded",
               "exit_code": 0}  # fmt: skip
        output = {"stdout_tail": f"processed batch {written}\n" * 4, "stderr_tail": ""}
        data.record(rec, ended, timeout=10, output=output)
        written += 1
        t += timedelta(minutes=1)
    return written


def timed(fn: Callable[[], T], repeat: int = REPEAT) -> tuple[float, T]:
    """The median wall time of ``fn()`` and its result."""
    wall, _, result = timed_cpu(fn, repeat)
    return wall, result


def timed_cpu(fn: Callable[[], T], repeat: int = REPEAT) -> tuple[float, float, T]:
    """The median wall and CPU time (this process's) of ``fn()``, and its result."""
    walls: list[float] = []
    cpus: list[float] = []
    result = fn()
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def measure(app: App, job: Job, window: str, *, days: int) -> tuple[Any, ...]:
    """One window: (window, runs drawn; CPU of the etcd read, the view model, the SVG; the
    page's wall and CPU time, the JSON API's; the page's size in MB)."""
    secs = 6 * 3600 if window == "6h" else days * 86400
    until = time.time()
    since_t, until_t = datetime.fromtimestamp(until - secs, UTC), datetime.fromtimestamp(until, UTC)
    _, read, records = timed_cpu(lambda: job.data.window(since_t, until_t, timeout=10))
    _, built, timeline = timed_cpu(lambda: model.build(JOB, until - secs, until, records))
    _, drawn, _ = timed_cpu(lambda: svg.render(timeline, "/r/{name}"))
    page, cpu, response = timed_cpu(lambda: app.route(f"/jobs/{JOB}?window={window}"))
    api_wall, api, _ = timed_cpu(lambda: app.route(f"/api/jobs/{JOB}/timeline?window={window}"))
    assert response[0] == 200
    size = len(response[2]) / 1e6
    return (window, len(timeline.bars), read, built, drawn, page, cpu, api_wall, api, size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--doc", type=Path, help="put the table into this Markdown file")
    args = parser.parse_args()
    from leaderjob.election.etcd import EtcdStore
    from leaderjob.inprocess.leadership_options import build_connection

    etcd = EtcdServer()
    try:
        store = EtcdStore(build_connection(etcd.endpoint))
        data = ElectionData(store, "/bench", JOB)
        store.put(data.schedule_key, b'{"expr": "*/1 * * * *", "timezone": "Europe/Berlin"}',
                  timeout=10)  # fmt: skip
        now = datetime.now(UTC)
        t0 = time.monotonic()
        count = fill(data, args.days, now)
        print(f"wrote {count} records in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        source = Source(store, "/bench", JOB, 10.0)
        app = App(source)
        job = source.job(JOB)
        assert job is not None
        rows = [measure(app, job, window, days=args.days) for window in ("6h", f"{args.days}d")]
        store.close()
    finally:
        etcd.close()
    head = ("window", "runs drawn", "etcd read", "view model", "SVG", "page: CPU",
            "page: wall", "JSON API: CPU", "wall", "page size")  # fmt: skip
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *(
            f"| {w} | {n} | {r * 1000:.0f} ms | {b * 1000:.0f} ms | {d * 1000:.0f} ms | "
            f"**{c * 1000:.0f} ms** | {p * 1000:.0f} ms | {ac * 1000:.0f} ms | "
            f"{aw * 1000:.0f} ms | {size:.1f} MB |"
            for w, n, r, b, d, p, c, aw, ac, size in rows
        ),
    ]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    table = (
        "\n".join(lines)
        + f"\n\nLoad average while measured (1/5/15 min): {load} on {os.cpu_count()} CPUs."
    )
    print(table)
    if args.doc:
        text = (
            f"{BEGIN}\n## The run explorer: a week of a per-minute job\n\n"
            f"`python bench/ui_render.py --doc docs/benchmarks.md`: {count} records of a "
            "`*/1 * * * *` job (each with its output tails; a leadership change a day, 30 missed "
            "slots as one range record) in a throwaway etcd, written by the daemon's history "
            f"writer; the median of {REPEAT} requests to the explorer's app in one process "
            "(server time: etcd reads, the timeline's view model, the SVG, the whole page with "
            "the status, the slot ledger check and the upcoming fire times). A page must "
            "render in under a second of server time. The parts and the pages are given as CPU "
            "time of this process (etcd's own work is in its process), the pages also as wall "
            "time: on a shared machine the wall time includes waiting for a CPU, and the load "
            "average says how much.\n\n"
            f"{table}\n\n{END}"
        )
        write_section(args.doc, text, BEGIN, END)
    return 0 if all(row[6] < 1.0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
