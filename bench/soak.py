"""`make soak DURATION=30m`: the randomised fault mix (tests/faults/nemesis.py) against a
3-member etcd cluster and three daemons (with --jobs N, each running a jobs file of N jobs,
judged per job), then the history checker's verdict and the failover
distribution. Exit status 1 if any safety property (S1-S6) was violated.

    python bench/soak.py --duration 30m [--seed N] [--out DIR] [--jobs N [--features]]
                         [--store postgres]
                         [--quota-backend-bytes 16MiB [--compaction-retention 1m]]

--features (with --jobs): the nemesis also reloads the jobs file (SIGHUP after adding a job,
removing one, changing a schedule, changing the service job) and flips per-job and per-replica
health gates (tests/faults/features.py); the checker judges what each must do.

--store postgres: the jobs write through the SQL fence to a real PostgreSQL server (started in a
temp dir; Debian's postgresql package and psycopg), so stale writes are refused by PostgreSQL
itself, not only by the toy fenced store (the default, --store http).

With --quota-backend-bytes every member runs with that quota and periodic auto-compaction; the
soak samples each member's database size every few seconds and the alarm list, and fails if
etcd ever raised NOSPACE (nothing leaderjob writes may fill the quota when etcd compacts).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leaderjob.units import parse_size
from tests.faults.nemesis import parse_duration, run_soak
from tests.harness.etcd import EtcdCluster
from tests.harness.procs import exit_on_sigterm


class QuotaWatch:
    """Samples every running member's database size (``endpoint status``) and the alarm list
    every ``interval`` seconds, from a thread, until :meth:`stop`."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.samples: list[tuple[float, str, int, int]] = []  # (t, member, dbSize, dbSizeInUse)
        self.alarms: set[str] = set()
        self._stop = threading.Event()
        self._t0 = time.monotonic()

    def start(self, cluster: EtcdCluster) -> None:
        threading.Thread(target=self._run, args=(cluster,), daemon=True).start()

    def _run(self, cluster: EtcdCluster) -> None:
        while not self._stop.wait(self.interval):
            for m in cluster.running_members():
                try:
                    st = m.status(timeout=2.0)
                except Exception:  # a member the nemesis paused or killed: skip this sample
                    continue
                t = time.monotonic() - self._t0
                self.samples.append(
                    (t, m.name, int(st.get("dbSize", 0)), int(st.get("dbSizeInUse", 0)))
                )
            try:
                out = cluster.etcdctl("alarm", "list", timeout=5)
            except Exception:  # no quorum right now: the next sample asks again
                continue
            self.alarms |= {line.strip() for line in out.splitlines() if line.strip()}

    def stop(self) -> None:
        self._stop.set()

    def report(self, quota: int) -> dict[str, Any]:
        sizes = [s[2] for s in self.samples]
        in_use = [s[3] for s in self.samples]
        return {
            "quota_bytes": quota,
            "samples": len(self.samples),
            "db_size_max_bytes": max(sizes, default=0),
            "db_size_last_bytes": sizes[-1] if sizes else 0,
            "db_in_use_max_bytes": max(in_use, default=0),
            "max_fraction_of_quota": round(max(sizes, default=0) / quota, 4),
            "alarms": sorted(self.alarms),
        }


def main() -> int:
    exit_on_sigterm()  # stopped with kill: the cluster and the daemons are stopped first
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", default="5m", help="how long to inject faults (e.g. 90s, 30m)")
    p.add_argument("--seed", type=int, default=None, help="random seed (printed; to replay)")
    p.add_argument("--out", default=None, help="where to keep logs and the history")
    p.add_argument(
        "--jobs", type=int, default=0, help="jobs per daemon (a jobs file); 0: one --schedule job"
    )
    p.add_argument(
        "--features",
        action="store_true",
        help="with --jobs: also reload the jobs file and flip per-job and per-replica health gates",
    )
    p.add_argument(
        "--store",
        choices=("http", "postgres"),
        default="http",
        help="the fenced resource: the toy HTTP store, or the SQL fence on a real PostgreSQL",
    )
    p.add_argument(
        "--quota-backend-bytes",
        default=None,
        help="run etcd with this quota (e.g. 16MiB) and periodic auto-compaction; fail on NOSPACE",
    )
    p.add_argument(
        "--compaction-retention",
        default="1m",
        help="with --quota-backend-bytes: etcd's --auto-compaction-retention (periodic)",
    )
    a = p.parse_args()
    if a.features and not a.jobs:
        print("soak: --features needs a jobs file: give --jobs N", file=sys.stderr)
        return 2
    if a.store == "postgres":
        from tests.faults.pgstore import MissingPostgres, require

        try:
            require()
        except MissingPostgres as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 2
    quota = parse_size(a.quota_backend_bytes) if a.quota_backend_bytes else 0
    etcd_args: list[str] = []
    watch = QuotaWatch()
    if quota:
        etcd_args = [
            f"--quota-backend-bytes={quota}",
            "--auto-compaction-mode=periodic",
            f"--auto-compaction-retention={a.compaction_retention}",
        ]
    out = Path(a.out or tempfile.mkdtemp(prefix="leaderjob-soak-"))
    jobs = f", {a.jobs} jobs per daemon" if a.jobs else ""
    jobs += ", with reloads and health flips" if a.features else ""
    jobs += ", writing to PostgreSQL" if a.store == "postgres" else ""
    print(f"soak: {a.duration} of faults{jobs}, output in {out}", flush=True)
    t0 = time.time()
    verdict, info = run_soak(
        parse_duration(a.duration),
        out,
        seed=a.seed,
        jobs=a.jobs,
        store=a.store,
        features=a.features,
        etcd_args=etcd_args,
        on_cluster=watch.start if quota else None,
    )
    watch.stop()
    if quota:
        info["etcd_quota"] = watch.report(quota)
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
    nospace = quota and any("NOSPACE" in x for x in watch.alarms)
    if nospace:
        print(f"etcd raised NOSPACE: {sorted(watch.alarms)}")
    return 0 if verdict.ok and not nospace else 1


if __name__ == "__main__":
    sys.exit(main())
