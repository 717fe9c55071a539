"""L1 when the successor's watch sits on an etcd member cut off from its peers.

The member still answers its clients (its client port is untouched) but has no raft traffic: a
watch on it never hears of a deletion the rest of the cluster commits. The successor must not
sleep for as long as that lasts: its watches carry require-leader metadata and, above all, it
re-reads its standing at least once per renew interval, which a dead member cannot answer, so
the read moves to another member. Kill the leader then: the successor leads within TTL + 1.5 s.

A 3-member cluster of its own (peer traffic through proxies, see tests/harness/peers.py);
TTL 3 s; budget about 15 s.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.daemons import job, leaderjob, read_journal, wait_for
from tests.harness.peers import IsolatableCluster
from tests.harness.procs import ProcessGroup, wait_until
from tests.harness.proxy import MultiProxy

pytestmark = pytest.mark.etcd

TTL = 3.0
#: Slack for a loaded 2-core machine on top of the documented bound.
SLACK = 1.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[IsolatableCluster]:
    with IsolatableCluster(3) as c:
        c.wait_healthy()
        yield c


def test_l1_successor_watching_an_isolated_member_leads_within_ttl_after_leader_death(
    cluster: IsolatableCluster, procs: ProcessGroup, prefix: str, tmp_path: Path
) -> None:
    lead = cluster.leader()
    others = [i for i, m in enumerate(cluster) if m is not lead]
    x = others[0]  # a follower: cutting it off moves no etcd leadership, so no lease extension
    order = [x, *(i for i in range(len(cluster)) if i != x)]
    journal = tmp_path / "journal"
    cmd = job(journal, "--duration", "300")
    a_endpoints = [cluster[i].endpoint for i in reversed(order)]  # not through member x
    a = leaderjob(procs, tmp_path, "a", a_endpoints, prefix, cmd)
    a.wait_event("job.started", 15)
    with MultiProxy([cluster[i].endpoint for i in order]) as b_proxies:
        b = leaderjob(procs, tmp_path, "b", b_proxies.endpoints, prefix, cmd)
        b.wait_event("lease.granted", 15)
        # b talks to member x only (its first endpoint): its predecessor watch is there.
        assert wait_until(lambda: b_proxies[0].connection_count > 0, 5)
        time.sleep(1.0)  # a few renewals and standing reads, all through x
        assert [p.connection_count for p in b_proxies][1:] == [0, 0], b.tail()
        assert b.events("election.acquired") == []

        cluster.isolate_from_peers(x)
        try:
            killed_at = time.monotonic()
            a.signal(signal.SIGKILL)
            took_over = wait_for(
                lambda: any(
                    r["ev"] == "start" and r["identity"] == "b" for r in read_journal(journal)
                ),
                TTL + 1.5 + SLACK + 5,
            )
            assert took_over is not None, b.tail()
            assert took_over - killed_at <= TTL + 1.5 + SLACK, b.tail()
            # The successor had to leave member x to see the leader's key go.
            assert any(p.connection_count > 0 for p in b_proxies[1:])
        finally:
            cluster.heal_peers()
    acquired = b.events("election.acquired")
    assert acquired
    assert acquired[0]["token"] > a.events("election.acquired")[0]["token"]
