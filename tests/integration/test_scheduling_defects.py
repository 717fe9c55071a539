"""Scheduling defects, checked against a real etcd and real daemons: the suspension switch is part
of the claim Txn, claims are pruned in bounded fenced batches, a claim made by a clock that ran
ahead is reported and repaired, and refused claims are logged (and never run).

Time budget: each daemon test runs 10–25 s; the store-level ones well under a second.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from leaderjob.history.records import SLOT_FORMAT, ElectionData
from tests.harness.daemons import cli, job, job_starts, leaderjob, wait_for


def _leader_key(store: EtcdStore, prefix: str) -> tuple[str, int, int]:
    lease = store.grant(10, timeout=5)
    key = f"{prefix}/job/leader/{lease.lease_id:x}"
    return key, store.create(key, b"a", lease.lease_id, timeout=5).create_revision, lease.lease_id


def test_a_claim_to_run_is_refused_while_suspended_in_the_same_txn(etcd, prefix):
    """The suspend key is a compare of the claim Txn: a run claim fails while it exists (and
    says why), a skip claim does not; triggers wait and are not consumed."""
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    try:
        data = ElectionData(store, prefix, "job")
        key, token, _ = _leader_key(store, prefix)
        data.suspend("ops", timeout=5)
        assert not data.claim_slot(key, token, "20260101T000000Z", {}, run=True, timeout=5)
        assert data.is_suspended(timeout=5)
        assert data.claim_slot(key, token, "20260101T000000Z", {}, run=False, timeout=5)
        trigger = data.trigger("ops", timeout=5)
        ok, _ = data.claim_trigger(key, token, data.trigger_prefix + trigger, {}, timeout=5)
        assert not ok
        assert data.control(timeout=5).triggers, "a refused trigger claim consumed the request"
        data.resume(timeout=5)
        assert data.claim_slot(key, token, "20260101T000001Z", {}, run=True, timeout=5)
        ok, _ = data.claim_trigger(key, token, data.trigger_prefix + trigger, {}, timeout=5)
        assert ok and not data.control(timeout=5).triggers
    finally:
        store.close()


def test_claims_are_pruned_by_kind_in_bounded_fenced_batches(etcd, prefix):
    """Each kind of claim by its own time, at most 64 keys per Txn, and only by the key holder."""
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    try:
        data = ElectionData(store, prefix, "job")
        key, token, lease = _leader_key(store, prefix)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for s in range(100):
            store.put(
                data.slot_key((t0 + timedelta(seconds=s)).strftime(SLOT_FORMAT)), b"{}", timeout=5
            )
        for s in range(20):
            store.put(data.slot_key(f"trigger-20260101T0000{s:02d}-{s:08x}"), b"{}", timeout=5)
        old = data.old_claims(t0 + timedelta(seconds=90), 10, triggers=False, timeout=5)
        assert len(old) == 64 and all("trigger-" not in k for k in old)
        assert old == sorted(old) and old[0].endswith("20260101T000000Z")
        triggers = data.old_claims(t0, 10, triggers=True, timeout=5)
        assert len(triggers) == 10 and all("trigger-" in k for k in triggers)
        store.revoke(lease, timeout=5)
        assert not data.delete_fenced(key, token, old, timeout=5), "a deposed leader pruned"
        key, token, _ = _leader_key(store, prefix)
        assert data.delete_fenced(key, token, old, timeout=5)
        left = data.old_claims(t0 + timedelta(seconds=90), 10, triggers=False, timeout=5)
        assert len(left) == 90 - 64
    finally:
        store.close()


def test_slot_claims_stay_bounded_while_suspended(etcd, prefix, procs, tmp_path):
    """A suspended `@every 1s` election claims every slot as skipped; the claims stay bounded
    (history-limit intervals, at least 10) instead of piling up, and nothing runs. 16 skips are
    3 more than the bound allows: without pruning, or keeping 14 or more intervals, the count
    exceeds it (as it would after 20)."""
    journal = tmp_path / "journal"
    cli(etcd.endpoint, prefix, "suspend", "--election", "job", "--force")  # before any replica
    d = leaderjob(
        procs,
        tmp_path,
        "a",
        etcd.endpoint,
        prefix,
        job(journal),
        schedule="@every 1s",
        extra=["--history-limit", "3"],
    )
    d.wait_event("election.acquired", 10)
    assert wait_for(lambda: len(d.events("slot.skipped", reason="suspended")) >= 16, 30), d.tail()
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    try:
        claims = store.get_prefix(f"{prefix}/job/slots/", timeout=5)
        assert 10 <= len(claims) <= 13, [c.key for c in claims]
    finally:
        store.close()
    assert job_starts(journal) == []


def test_a_claim_from_a_fast_clock_is_reported_and_repaired(etcd, prefix, procs, tmp_path):
    """A replica a day ahead left the newest claim: the leader logs the skew every cycle, `status`
    shows the real next slot, and `repair-schedule` lets the schedule run again (L3)."""
    journal = tmp_path / "journal"
    ahead = (datetime.now(UTC) + timedelta(days=1)).strftime(SLOT_FORMAT)
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    try:
        data = ElectionData(store, prefix, "job")
        store.put(data.last_slot_key, ahead.encode(), timeout=5)
        store.put(data.slot_key(ahead), b"{}", timeout=5)
    finally:
        store.close()
    d = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, job(journal), schedule="@every 1s")
    d.wait_event("election.acquired", 10)
    d.wait_event("schedule.clock_skew", 10)
    time.sleep(2.5)
    assert len(d.events("schedule.clock_skew")) >= 2, "logged once, not every cycle"
    assert job_starts(journal) == []
    status = json.loads(cli(etcd.endpoint, prefix, "status", "--election", "job", "--json"))
    assert status["claims_ahead_seconds"] > 86_000 and status["next_fire"] > ahead[:4]
    out = cli(etcd.endpoint, prefix, "repair-schedule", "--election", "job")
    assert "repaired job" in out
    d.wait_event("schedule.repaired", 10)
    assert wait_for(lambda: len(job_starts(journal)) >= 2, 10), d.tail()


def test_a_refused_claim_is_logged_and_never_run(etcd, prefix, procs, tmp_path):
    """S3: slots someone else claimed first are refused (`slot.claim_rejected`) and not run; the
    leader keeps leading and runs the slots after them."""
    journal = tmp_path / "journal"
    d = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, job(journal), schedule="@every 1s")
    d.wait_event("job.started", 10)
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    now = datetime.now(UTC).replace(microsecond=0)
    taken = [(now + timedelta(seconds=s)).strftime(SLOT_FORMAT) for s in (3, 4)]
    try:
        data = ElectionData(store, prefix, "job")
        for slot in taken:
            store.put(data.slot_key(slot), b'{"by": "someone else"}', timeout=5)
    finally:
        store.close()
    for slot in taken:
        d.wait_event("slot.claim_rejected", 10, slot=slot)
    assert wait_for(lambda: any(r["slot"] > taken[-1] for r in job_starts(journal)), 10)
    assert not [r for r in job_starts(journal) if r["slot"] in taken]
    assert len(d.events("election.lost")) == 0


LIBFAKETIME = next(
    (str(p) for p in sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), ""
)


@pytest.mark.skipif(not LIBFAKETIME, reason="needs libfaketime (apt-get install faketime)")
def test_a_day_forward_step_on_the_leader_changes_no_slot_L3(etcd, prefix, procs, tmp_path):
    """The fault soak's nemesis, on one real daemon: its wall clock steps +1 day for 6 s, then
    back (libfaketime; monotonic untouched). Slots keep their pace throughout, tomorrow's slot
    is never claimed, and afterwards nothing needs repairing (no claim ahead, no skew)."""
    journal = tmp_path / "journal"
    clock = tmp_path / "clock"
    clock.write_text("+0\n")
    env = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(clock),
        "FAKETIME_CACHE_DURATION": "0.5",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    d = leaderjob(
        procs,
        tmp_path,
        "a",
        etcd.endpoint,
        prefix,
        job(journal, "--duration", "0"),
        schedule="@every 2s",
        env=env,
    )
    d.wait_event("job.started", 10)
    clock.write_text("+1d\n")
    time.sleep(1)  # libfaketime re-reads the file within 0.5 s
    stepped = len(job_starts(journal))
    time.sleep(6)
    assert len(job_starts(journal)) >= stepped + 2, "slots stopped during the step"
    clock.write_text("+0\n")
    time.sleep(1.5)
    after = len(job_starts(journal))
    assert wait_for(lambda: len(job_starts(journal)) >= after + 2, 8), d.tail()
    tomorrow = (datetime.now(UTC) + timedelta(hours=12)).strftime(SLOT_FORMAT)
    slots = [r["slot"] for r in job_starts(journal)]
    assert all(s < tomorrow for s in slots), slots
    assert len(slots) == len(set(slots))
    assert not d.events("schedule.clock_skew")
    assert d.events("schedule.clock_step")
    status = json.loads(cli(etcd.endpoint, prefix, "status", "--election", "job", "--json"))
    assert status["claims_ahead_seconds"] < 3
