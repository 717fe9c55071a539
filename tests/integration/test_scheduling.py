"""Scheduling that survives failover, end to end: slots, catch-up, overlap policy, retries,
triggers, suspension and history — with real etcd, real daemons and real signals."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from leaderjob.history.records import ElectionData, parse_slot_id
from leaderjob.schedule import slot_id
from tests.harness.daemons import cli, job, leader_of, leaderjob, read_journal, wait_for
from tests.harness.procs import JsonLogProcess, ProcessGroup


def starts(journal: Path) -> list[dict[str, Any]]:
    return [r for r in read_journal(journal) if r["ev"] == "start"]


def test_repeated_failover_never_runs_a_slot_twice_and_follows_catch_up(
    etcd, prefix, procs, tmp_path
):
    """S3 + L3: three daemons on `@every 1s`; the leader is killed (-9) and stopped (SIGTERM) in
    turn for half a minute. No slot ever runs twice; inside each tenure every slot runs; across a
    failover at most one missed slot is caught up (policy `once`), never a burst. TTL 2 s
    (etcd's minimum): each failover after kill -9 waits out the lease, still more than one slot."""
    journal = tmp_path / "journal"
    cmd = job(journal, "--duration", "0.1")
    names = iter(f"r{i}" for i in range(100))

    def start() -> JsonLogProcess:
        return leaderjob(
            procs, tmp_path, next(names), etcd.endpoint, prefix, cmd, schedule="@every 1s", ttl="2s"
        )

    daemons = [start() for _ in range(3)]
    all_daemons = list(daemons)
    for fault in [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM]:
        leader = leader_of(daemons, timeout=15)
        leader.wait_event("job.finished", 10)
        time.sleep(2.5)  # a stable tenure of a few slots
        leader.signal(fault)
        leader.wait(10)
        daemons = [d for d in daemons if d.alive] + [start()]
        all_daemons.append(daemons[-1])
    leader_of(daemons, timeout=15).wait_event("job.finished", 10)

    runs = starts(journal)
    slots = Counter(r["slot"] for r in runs)
    assert slots and max(slots.values()) == 1, f"slots run twice: {slots.most_common(3)}"
    # Inside one tenure (one token) every slot runs, unless the overlap policy skipped it (a
    # caught-up slot can still be running when the next one fires): never silently missed.
    skipped = {ev["slot"] for d in all_daemons for ev in d.events("slot.skipped")}
    by_token: dict[int, list[str]] = {}
    for r in runs:
        by_token.setdefault(r["token"], []).append(r["slot"])
    for token, tenure_slots in by_token.items():
        times = sorted(t for t in map(parse_slot_id, tenure_slots) if t is not None)
        for a, b in itertools.pairwise(times):
            t = a + timedelta(seconds=1)
            while t < b:
                assert slot_id(t) in skipped, (token, slot_id(t), tenure_slots)
                t += timedelta(seconds=1)
    assert len(by_token) >= 5, "every failover must produce a new tenure with a larger token"
    # Catch-up (policy `once`), on every daemon that ever led, killed ones too: each tenure that
    # found missed slots ran the newest of them (or declared it expired), once, with its own
    # token, and ran no other slot that fired before it took over: never a burst.
    slots_of = {tok: Counter(ss) for tok, ss in by_token.items()}
    caught_up = 0
    for d in all_daemons:
        token = None
        acquired_at: dict[int, datetime] = {}
        for ev in d.events():
            if ev.get("event") == "election.acquired":
                token = ev["token"]
                acquired_at[token] = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
            elif ev.get("event") == "schedule.catch_up":
                assert token is not None, ev
                assert ev["run"] is not None or ev["expired"] is not None, ev  # never dropped
                if ev["run"] is not None:
                    caught_up += 1
                    assert slots_of.get(token, Counter())[ev["run"]] == 1, (token, ev, by_token)
        for tok, at in acquired_at.items():
            before = [s for s in by_token.get(tok, []) if (parse_slot_id(s) or at) < at]
            assert len(before) <= 1, f"tenure {tok} ran {len(before)} missed slots: {before}"
    # Two kill -9 failovers leave ~TTL without a leader: slots were missed, and caught up.
    assert caught_up >= 2, f"only {caught_up} catch-up runs after two kill -9 failovers"


def test_deposed_leaders_claim_fails(etcd, prefix):
    """S3: a slot claim is a Txn guarded on the claimant's own election key; once that key is
    gone (lease revoked, expired or superseded), the claim fails and no run may start."""
    store = EtcdStore(Connection(endpoints=(etcd.endpoint,)))
    try:
        data = ElectionData(store, prefix, "job")
        lease = store.grant(5, timeout=5)
        key = f"{prefix}/job/leader/{lease.lease_id:x}"
        token = store.create(key, b"a", lease.lease_id, timeout=5).create_revision
        assert data.claim_slot(key, token, "20260101T000000Z", {"token": token}, timeout=5)
        assert not data.claim_slot(key, token, "20260101T000000Z", {}, timeout=5), "claimed twice"
        store.revoke(lease.lease_id, timeout=5)
        assert not data.claim_slot(key, token, "20260101T000001Z", {}, timeout=5)
        # Re-creating the key gives a new, larger revision: the old token stays useless (S2).
        lease2 = store.grant(5, timeout=5)
        new_token = store.create(key, b"a", lease2.lease_id, timeout=5).create_revision
        assert new_token > token
        assert not data.claim_slot(key, token, "20260101T000001Z", {}, timeout=5)
        assert data.claim_slot(key, new_token, "20260101T000001Z", {}, timeout=5)
        assert data.last_slot(timeout=5) is not None
    finally:
        store.close()


def _one(
    procs: ProcessGroup, tmp_path: Path, etcd: Any, prefix: str, args: list[str], cmd: list[str]
) -> JsonLogProcess:
    d = leaderjob(
        procs, tmp_path, "a", etcd.endpoint, prefix, cmd, schedule="@every 1s", extra=args
    )
    d.wait_event("election.acquired", 10)
    return d


def _depth(journal: Path) -> int:
    depth = peak = 0
    for r in sorted(read_journal(journal), key=lambda r: r["t"]):
        if r["ev"] == "start":
            depth += 1
        elif r["ev"] == "end":
            depth -= 1
        peak = max(peak, depth)
    return peak


def test_concurrency_forbid_skips_overlapping_slots(etcd, prefix, procs, tmp_path):
    journal = tmp_path / "journal"
    d = _one(procs, tmp_path, etcd, prefix, [], job(journal, "--duration", "2.5"))
    d.wait_event("slot.skipped", 10, reason="overlap")
    d.wait_event("job.finished", 10)
    assert _depth(journal) == 1
    history = json.loads(
        cli(etcd.endpoint, prefix, "history", "--election", "job", "--all", "--json")
    )
    assert any(r["outcome"] == "skipped_overlap" for r in history)


def test_concurrency_replace_stops_the_old_run(etcd, prefix, procs, tmp_path):
    journal = tmp_path / "journal"
    d = _one(
        procs,
        tmp_path,
        etcd,
        prefix,
        ["--concurrency", "replace", "--grace", "0.25s"],
        job(journal, "--duration", "30"),
    )
    finished = d.wait_event("job.finished", 10)
    assert finished["outcome"] == "replaced"
    assert wait_for(lambda: len(starts(journal)) >= 2, 5)
    assert _depth(journal) == 1, "the replacement started before the old run ended"


def test_concurrency_allow_runs_side_by_side(etcd, prefix, procs, tmp_path):
    journal = tmp_path / "journal"
    _one(
        procs, tmp_path, etcd, prefix, ["--concurrency", "allow"], job(journal, "--duration", "2.5")
    )
    assert wait_for(lambda: _depth(journal) >= 2, 10)


def test_timeout_stops_a_long_run(etcd, prefix, procs, tmp_path):
    journal = tmp_path / "journal"
    d = _one(
        procs,
        tmp_path,
        etcd,
        prefix,
        ["--timeout", "0.5s", "--grace", "0.25s"],
        job(journal, "--duration", "30"),
    )
    finished = d.wait_event("job.finished", 10)
    assert finished["outcome"] == "timed_out"
    assert finished["duration_seconds"] < 2


def test_retries_rerun_a_failed_slot_with_backoff(etcd, prefix, procs, tmp_path):
    """--retries N: a failed run is retried within the same slot, with backoff, while leading."""
    journal = tmp_path / "journal"
    d = leaderjob(
        procs,
        tmp_path,
        "a",
        etcd.endpoint,
        prefix,
        job(journal, "--duration", "0", "--exit", "1"),
        schedule="@every 1h",
        extra=["--retries", "2"],
    )
    d.wait_event("election.acquired", 10)
    cli(etcd.endpoint, prefix, "trigger", "--election", "job")
    assert wait_for(lambda: len(starts(journal)) >= 3, 15), d.tail()
    runs = starts(journal)
    assert len({r["slot"] for r in runs}) == 1
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps  # 1 s, then 2 s
    # A third retry would come 4 s after the third run: watch past that, with slack.
    time.sleep(max(0.0, runs[2]["t"] + 4.0 + 1.0 - time.monotonic()))
    assert len(starts(journal)) == 3, "retried more than --retries"
    assert [e["attempt"] for e in d.events("job.retry_scheduled")] == [1, 2]


def test_trigger_runs_exactly_once_across_a_leader_change(etcd, prefix, procs, tmp_path):
    """A trigger is claimed and fenced like a slot: requested, then the leader is replaced at
    once — the command runs exactly once, by whoever claimed it."""
    journal = tmp_path / "journal"
    cmd = job(journal, "--duration", "0.2")
    daemons = [
        leaderjob(procs, tmp_path, n, etcd.endpoint, prefix, cmd, schedule="@every 1h")
        for n in ("a", "b")
    ]
    leader = leader_of(daemons)
    cli(etcd.endpoint, prefix, "trigger", "--election", "job")
    leader.signal(signal.SIGTERM)
    leader.wait(10)
    assert wait_for(lambda: any(r["slot"].startswith("trigger-") for r in starts(journal)), 10)
    time.sleep(2)
    triggered = [r for r in starts(journal) if r["slot"].startswith("trigger-")]
    assert len(triggered) == 1


def test_suspend_resume_history_status_and_next(etcd, prefix, procs, tmp_path):
    journal = tmp_path / "journal"
    d = _one(procs, tmp_path, etcd, prefix, [], job(journal, "--duration", "0.1"))
    d.wait_event("job.finished", 10)
    assert "suspended" in cli(etcd.endpoint, prefix, "suspend", "--election", "job")
    d.wait_event("slot.skipped", 10, reason="suspended")
    status = json.loads(cli(etcd.endpoint, prefix, "status", "--election", "job", "--json"))
    assert status["suspended"] is True
    assert status["leader"]["identity"] == "a"
    assert status["schedule"]["expr"] == "@every 1s"
    assert status["next_fire"]
    assert status["last_run"]["outcome"] in ("succeeded", "skipped_suspended")
    count = len(starts(journal))
    time.sleep(1.5)
    assert len(starts(journal)) == count, "a run started while suspended"
    assert "resumed" in cli(etcd.endpoint, prefix, "resume", "--election", "job")
    assert wait_for(lambda: len(starts(journal)) > count, 5)
    history = json.loads(
        cli(etcd.endpoint, prefix, "history", "--election", "job", "--all", "--json", "--limit",
            "100")
    )  # fmt: skip
    outcomes = Counter(r["outcome"] for r in history)
    assert outcomes["succeeded"] >= 1 and outcomes["skipped_suspended"] >= 1
    table = cli(etcd.endpoint, prefix, "history", "--election", "job")
    assert "OUTCOME" in table and "succeeded" in table


def test_history_is_bounded(etcd, prefix, procs, tmp_path):
    d = _one(procs, tmp_path, etcd, prefix, ["--history-limit", "3"], job(tmp_path / "j"))
    assert wait_for(lambda: len(d.events("job.finished")) >= 5, 15)
    history = json.loads(
        cli(etcd.endpoint, prefix, "history", "--election", "job", "--json", "--limit", "100")
    )
    assert len(history) == 3
