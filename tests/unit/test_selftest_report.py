"""selftest's verdict on the TTL against the measured etcd: an etcd leader election must fit in
the renew budget, or a leader loses leadership with no fault aimed at it (L4)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from leaderjob.config import DEFAULT_TTL, Timing
from leaderjob.selftest import format_report, verdict
from leaderjob.selftest.report import etcd_election_budget


def _report(ttl: float, members: int | None, p99: float = 0.002, election: float = 1.0) -> Any:
    return {
        "endpoints": ["127.0.0.1:2379"],
        "etcd_version": "3.4.23",
        "etcd_members": members,
        "etcd_election_timeout": election,
        "ttl": ttl,
        "scenarios": [
            {
                "fault": f,
                "margin_seconds": 0.4,
                "failover_seconds": ttl,
                "job_died_after": 1.0,
                "key_deleted_after": 1.4,
                "old_token": 1,
                "new_token": 2,
            }
            for f in ("freeze", "cut")
        ],
        "keepalive_rtt": {"n": 50, "p50": p99 / 2, "p90": p99, "p99": p99, "max": p99},
        "cleanup": {},
    }


def test_l4_a_ttl_too_short_for_an_etcd_election_warns_and_names_the_smallest_that_fits():
    report = _report(3, members=3)
    verdict(report, Timing.from_ttl(3))
    assert report["verdict"] == "WARN"
    (advice,) = [a for a in report["advice"] if "etcd leader election" in a]
    assert "3-member cluster" in advice and "Use --ttl 4s or more" in advice
    assert "3 members" in format_report(report)


def test_l4_the_default_budget_of_a_long_enough_ttl_absorbs_the_election():
    for ttl in (4, 5, 15):
        report = _report(ttl, members=3)
        verdict(report, Timing.from_ttl(ttl))
        assert report["verdict"] == "PASS", report["advice"]


def test_a_slower_etcd_election_timeout_needs_a_longer_ttl():
    report = _report(5, members=3, election=2.0)
    verdict(report, Timing.from_ttl(5))
    assert report["verdict"] == "WARN"
    assert any("Use --ttl 8s or more" in a for a in report["advice"])


def test_a_single_member_or_an_unknown_cluster_has_no_election_to_ride_out():
    for members in (1, None):
        report = _report(2, members=members)
        verdict(report, Timing.from_ttl(2))
        assert not [a for a in report["advice"] if "etcd leader election" in a]


def test_l4_the_default_ttl_rides_out_an_etcd_election_at_etcds_default_timing():
    """The default TTL's budget absorbs an etcd election at etcd's default election timeout
    (1 s), with 20 ms round trips: selftest would not warn about it."""
    assert etcd_election_budget(Timing.from_ttl(DEFAULT_TTL), 1.0, 0.020) < 0


def test_the_default_ttl_is_the_one_the_ttl_sweep_measured():
    """docs/data/ttl-sweep*.json (bench/ttl_sweep.py): the default is the smallest TTL with no
    spurious leadership loss on either etcd version, at it or any longer TTL."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    sys.path.insert(0, str(bench))
    try:
        import ttl_sweep
    finally:
        sys.path.remove(str(bench))
    saved = sorted((bench.parent / "docs" / "data").glob("ttl-sweep*.json"))
    runs = [ttl_sweep._load(p) for p in saved]
    cells, _ = ttl_sweep.merge(runs)
    assert {c.etcd.split(".")[1] for c in cells} >= {"4", "5"}, "measured on etcd 3.4 and 3.5"
    assert ttl_sweep.smallest_clean_ttl(cells) == DEFAULT_TTL
    text = (bench.parent / "docs/configuration.md").read_text()
    assert f"| `--ttl D` | `{DEFAULT_TTL}s` |" in text
    assert f"### Why the default TTL is {DEFAULT_TTL} s" in text


def test_one_member_is_not_written_members() -> None:
    report = _report(10, members=1)
    verdict(report, Timing.from_ttl(10))
    assert ", 1 member," in format_report(report).splitlines()[0] + ","
