"""`make soak DURATION=30m`: the randomised fault mix (tests/faults/nemesis.py) against a
3-member etcd cluster and three daemons (with --jobs N, each running a jobs file of N jobs,
judged per job), then the history checker's verdict and the failover
distribution. Exit status 1 if any safety property (S1-S6) was violated.

    python bench/soak.py --duration 30m [--seed N] [--out DIR] [--jobs N] [--store postgres]

--store postgres: the jobs write through the SQL fence to a real PostgreSQL server (started in a
temp dir; Debian's postgresql package and psycopg), so stale writes are refused by PostgreSQL
itself, not only by the toy fenced store (the default, --store http).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.nemesis import parse_duration, run_soak


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", default="5m", help="how long to inject faults (e.g. 90s, 30m)")
    p.add_argument("--seed", type=int, default=None, help="random seed (printed; to replay)")
    p.add_argument("--out", default=None, help="where to keep logs and the history")
    p.add_argument(
        "--jobs", type=int, default=0, help="jobs per daemon (a jobs file); 0: one --schedule job"
    )
    p.add_argument(
        "--store",
        choices=("http", "postgres"),
        default="http",
        help="the fenced resource: the toy HTTP store, or the SQL fence on a real PostgreSQL",
    )
    a = p.parse_args()
    if a.store == "postgres":
        from tests.faults.pgstore import MissingPostgres, require

        try:
            require()
        except MissingPostgres as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 2
    out = Path(a.out or tempfile.mkdtemp(prefix="leaderjob-soak-"))
    jobs = f", {a.jobs} jobs per daemon" if a.jobs else ""
    jobs += ", writing to PostgreSQL" if a.store == "postgres" else ""
    print(f"soak: {a.duration} of faults{jobs}, output in {out}", flush=True)
    t0 = time.time()
    verdict, info = run_soak(
        parse_duration(a.duration), out, seed=a.seed, jobs=a.jobs, store=a.store
    )
    print(verdict.report())
    print(
        json.dumps(
            {
                **info,
                "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t0)),
                "machine": f"{platform.node()} {platform.machine()} "
                f"{platform.system()} {platform.release()}",
            },
            indent=2,
        )
    )
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
