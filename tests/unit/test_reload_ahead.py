"""A reload × a slot claimed ahead (S3): the jobs file changes a job in the ~50 ms between the
claim of its next slot and that slot's start.

Found by the 30-minute soak with reloads: the reconfigure gave the claim back (deleted it and
moved ``state/last_slot`` back), then the job's new plan caught the slot up and claimed it a
second time, with the same token, and ran it once. S3 is one claim per slot. The slot claimed
under the old settings now runs under them, once, on its one claim; the new settings take
effect after it (a reconfigure waits for the job to be between runs, and a slot claimed ahead
counts as a run on its way).

In-memory etcd, fake clock, fake runs.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from leaderjob.daemon.decisions import Reconfigure
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from leaderjob.schedule import parse_schedule
from tests.unit.test_daemon_jobs import GROUP, PREFIX, fake_runs, group_daemon
from tests.unit.test_daemon_schedule import run_for


@pytest.mark.parametrize("schedule", ["@every 2s", "@every 3s"])
def test_a_reload_between_a_claim_ahead_and_its_start_claims_the_slot_once_s3(
    monkeypatch: pytest.MonkeyPatch, schedule: str
) -> None:
    with fake_runs(monkeypatch) as (clock, started):
        store = MemoryStore(clock)
        d = group_daemon(store, clock, "a", jobs=("j",))
        run_for(d, 2.0)
        r = d.runners["j"]
        for _ in range(10_000):  # up to the cycle that claims the next slot ahead
            d.cycle()
            if r.tenure is not None and r.tenure.ahead is not None:
                break
            d._wait()
        assert r.tenure is not None and r.tenure.ahead is not None
        slot = r.tenure.ahead.id
        data = ElectionData(store.client(), f"{PREFIX}/{GROUP}/jobs", "j")
        claim = data.store.get(data.slot_key(slot), timeout=1)
        assert claim is not None
        new = replace(r.s, schedule=parse_schedule(schedule, "UTC"))
        d.applier.apply([Reconfigure("j", new)])
        d._wait()
        run_for(d, 7.0)
        again = data.store.get(data.slot_key(slot), timeout=1)
        ran = [x for x in started if x.env["LEADERJOB_SLOT"] == slot]
    assert again is not None and again.create_revision == claim.create_revision, (
        "the slot's claim was deleted and made again"
    )
    assert len(ran) == 1, f"slot {slot} ran {len(ran)} times"
    assert r.s.schedule is not None and r.s.schedule == new.schedule, "the reload never applied"
