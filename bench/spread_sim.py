"""Spreading leadership, simulated: settling time and moves for a few group sizes.

    python bench/spread_sim.py [--sizes 3x6,20x20] [--pace 5] [--settle 5] [--crashes 5]

The simulation only (no etcd, no processes): the pure model of the group from
tests/unit/test_spread_sim.py (per-job queues in create-revision order, every replica calling
``Spreader.decide`` every 0.5 s; jobs run every 6 s for 2 s), which is why this script puts the
repository root on ``sys.path``. Per size M×N:

* cold start: all M replicas start at once, the first in every queue leads all N; the seconds until
  nobody leads more than ⌈N/M⌉ and nothing moves any more, and the releases it took;
* crash: the most loaded replica dies, repeatedly; the jobs that failed over at once (L1) and the
  releases that followed, per crash (mean and worst), and the seconds to settle again;
* join: a replica joins the settled group; releases and seconds to settle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.unit.test_spread_sim import Group  # noqa: E402 (needs the root on sys.path)


def _group(m: int, n: int, pace: float, settle: float) -> Group:
    g = Group(jobs=[f"job{i:02d}" for i in range(n)], pace=pace, settle=settle)
    for _ in range(m):
        g.join()
    return g


def measure(m: int, n: int, pace: float, settle: float, crashes: int) -> dict[str, str]:
    limit = 10_000.0
    g = _group(m, n, pace, settle)
    cold = g.settle_time(limit)
    cold_moves = g.releases
    failed_over, moves, times = [], [], []
    for _ in range(min(crashes, m - 1)):
        before_f, before_r = g.failovers, g.releases
        counts = g.counts()
        g.crash(max(sorted(counts), key=lambda r: counts[r]))
        times.append(g.settle_time(limit))
        failed_over.append(g.failovers - before_f)
        moves.append(g.releases - before_r)
    before_r = g.releases
    g.join()
    join_time = g.settle_time(limit)
    join_moves = g.releases - before_r

    def mean_max(xs: list[float] | list[int]) -> str:
        return f"{statistics.mean(xs):.1f} / {max(xs)}" if xs else "-"

    return {
        "M×N": f"{m}×{n}",
        "cold settle s": f"{cold:.1f}",
        "cold moves": str(cold_moves),
        "crashes": str(len(moves)),
        "failed over / crash (mean / max)": mean_max(failed_over),
        "moves / crash (mean / max)": mean_max(moves),
        "settle after crash s (mean / max)": (
            f"{statistics.mean(times):.1f} / {max(times):.1f}" if times else "-"
        ),
        "join moves": str(join_moves),
        "join settle s": f"{join_time:.1f}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="3x6,3x10,5x12,10x30,20x20,20x100")
    ap.add_argument("--pace", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--crashes", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for size in args.sizes.split(","):
        m, n = (int(x) for x in size.lower().split("x"))
        rows.append(measure(m, n, args.pace, args.settle, args.crashes))
    heads = list(rows[0])
    print(f"pace {args.pace:g} s, settle {args.settle:g} s (simulated; times in seconds)\n")
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for row in rows:
        print("| " + " | ".join(row[h] for h in heads) + " |")


if __name__ == "__main__":
    main()
