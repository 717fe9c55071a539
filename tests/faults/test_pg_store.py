"""The fault world's resource on a real PostgreSQL (``World(store="postgres")``, the soak's
``--store postgres``): the jobs write through the SQL fence, and PostgreSQL itself refuses the
stale writer. TTL 3 s, two pods; ~20 s with the module's etcd cluster up.
"""

from __future__ import annotations

import pytest

from tests.faults.test_scenarios import freeze_whole_pod_through_handover
from tests.faults.world import World
from tests.harness.postgres import postgres_or_skip

pytestmark = pytest.mark.timeout(120)


def test_whole_pod_frozen_stale_write_rejected_by_postgres_S1(make_world):
    """S1 on PostgreSQL: the whole leader pod is frozen for 2·TTL (perhaps inside its fenced
    transaction: its session is then ended by idle_in_transaction_session_timeout, so the
    successor's fence is not held up), a successor takes over and writes; on thaw the old job
    runs first and writes with its old token: PostgreSQL's fence upsert refuses it, and the
    checker finds no stale write accepted in PostgreSQL's own order of decisions."""
    postgres_or_skip()
    world: World = make_world(pods=2, store="postgres")
    pod, token = world.wait_leader(15)
    world.wait_accepted(token, 10)
    new = freeze_whole_pod_through_handover(world, pod, token)
    refused = [d for d in world.store_log() if d["token"] == token and not d["accepted"]]
    assert refused and refused[0]["high_water"] >= new  # PostgreSQL's mark, as it reported it
    pod.daemon.wait_event("election.lost", 10)
    verdict = world.finish()
    print(verdict.report())
    assert verdict.ok, verdict.report()
    assert verdict.stats["writes_rejected_stale"] >= 1
