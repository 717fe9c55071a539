"""etcd's database size against its quota, end to end: the Status call on a real etcd, and a
daemon that publishes both on /metrics (the alert LeaderjobEtcdDbNearQuota reads them, so that
nobody fills etcd's quota: at NOSPACE every write fails, keepalives included, and L1 with them).
Time budget: a few seconds."""

from __future__ import annotations

import json

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from tests.harness.daemons import job, leaderjob, wait_for
from tests.harness.etcd import free_port
from tests.integration.test_observability import scrape, value


def test_db_size_is_what_etcd_status_reports(etcd):
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    try:
        size = store.db_size(timeout=2.0)
        sized, quota = store.db_status(timeout=2.0)
    finally:
        store.close()
    status = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json"))[0]["Status"]
    assert size > 0
    assert size == int(status["dbSize"])
    # etcd's own quota where it reports it (3.6 on: dbSizeQuota); None from 3.4 and 3.5.
    assert abs(sized - size) < 1024**2
    assert quota == (int(status["dbSizeQuota"]) if "dbSizeQuota" in status else None)


def test_daemon_publishes_db_size_and_quota(etcd, prefix, procs, tmp_path):
    port = free_port()
    leaderjob(
        procs,
        tmp_path,
        "q0",
        etcd.endpoint,
        prefix,
        job(tmp_path / "journal"),
        schedule="@every 1h",
        extra=["--metrics-addr", f"127.0.0.1:{port}", "--etcd-quota", "64MiB"],
    )

    def size() -> float:
        try:
            return value(scrape(port), "leaderjob_etcd_db_size_bytes", election="job")
        except OSError:
            return 0.0

    assert wait_for(lambda: size() > 0, 15)
    assert value(scrape(port), "leaderjob_etcd_db_quota_bytes", election="job") == 64 * 1024**2
