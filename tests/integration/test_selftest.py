"""`leaderjob selftest` against a real etcd: a positive safety margin on a healthy machine, real
failovers, a keepalive round-trip distribution, and nothing left behind in etcd."""

from __future__ import annotations

import json
import subprocess
import sys

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore

TTL = 3.0


def test_selftest_reports_positive_margin_and_cleans_up(etcd, prefix):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leaderjob",
            "selftest",
            "--endpoints",
            etcd.endpoint,
            "--prefix",
            prefix,
            "--ttl",
            "3s",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)

    assert report["verdict"] in ("PASS", "WARN"), report["advice"]
    assert [s["fault"] for s in report["scenarios"]] == ["freeze", "cut"]
    # A single member: no etcd election to ride out, so no advice about one (MemberList works).
    assert report["etcd_members"] == 1
    assert not [a for a in report["advice"] if "etcd leader election" in a]
    for s in report["scenarios"]:
        # S6: the old job died before etcd released the old leader's key.
        assert s["margin_seconds"] is not None and s["margin_seconds"] > 0, s
        assert s["job_died_after"] < s["key_deleted_after"], s
        # L1: the successor's job ran within TTL + 1.5 s (+ slack for a loaded machine).
        assert s["failover_seconds"] is not None and 0 < s["failover_seconds"] <= TTL + 2.5, s
        # S2: the successor holds a strictly larger token.
        assert s["new_token"] > s["old_token"], s
    rtt = report["keepalive_rtt"]
    assert rtt["n"] >= 50 and 0 < rtt["p50"] <= rtt["p99"] <= rtt["max"]

    cleanup = report["cleanup"]
    assert cleanup["clean"], cleanup
    assert cleanup["prefix"].startswith(prefix + "/_selftest-")
    assert cleanup["leases_created"] >= 3  # two candidates, the RTT probe, rejoins
    # Check etcd itself, not only what the report says.
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    try:
        assert store.get_prefix(prefix + "/", timeout=5) == []
        for lease_hex in cleanup["lease_ids"]:
            assert store.lease_remaining(int(lease_hex, 16), timeout=5) <= 0, lease_hex
    finally:
        store.close()


def test_selftest_plain_output_and_unreachable_etcd(tmp_path):
    """An unreachable etcd is one line on stderr and exit 1, not a traceback."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leaderjob",
            "selftest",
            "--endpoints",
            "127.0.0.1:9",
            "--rpc-timeout",
            "1s",
            "--ttl",
            "3s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "cannot reach etcd" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_selftest_rejects_an_invalid_ttl():
    proc = subprocess.run(
        [sys.executable, "-m", "leaderjob", "selftest", "--ttl", "1s"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "minimum lease TTL" in proc.stderr
