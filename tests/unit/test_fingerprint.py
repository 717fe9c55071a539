"""Job fingerprints (S3 across deployments): two deployments that share an election (same etcd,
prefix and name) but run different jobs are seen, logged and counted — and idle followers pay
no etcd request for it."""

from __future__ import annotations

from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from leaderjob.clock import FakeClock
from leaderjob.election.memory import MemoryStore
from leaderjob.election.store import StoreError
from leaderjob.ops.fingerprint import CHECK_INTERVAL, Checker, ConfigWatch, job_fingerprint
from leaderjob.ops.metrics import Metrics


class Counting:
    """A store wrapper that counts calls by operation."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if callable(attr):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attr(*args, **kwargs)

            return counted
        return attr


def _watch(store: Any, identity: str, schedule: str, metrics: Metrics | None = None) -> ConfigWatch:
    return ConfigWatch(
        store,
        "/lj",
        "e",
        identity,
        command=("./cleanup.sh",),
        mode="schedule",
        schedule=schedule,
        timezone="UTC",
        log=structlog.get_logger(),
        metrics=metrics,
    )


def _advance(clock: FakeClock, store: MemoryStore, *leases: int) -> None:
    """One check interval on, keeping the leases alive on the way."""
    steps = 6
    for _ in range(steps):
        clock.advance(CHECK_INTERVAL / steps)
        for lease in leases:
            store.keepalive(lease, timeout=1)


def _errors(exc: StoreError) -> None:
    raise AssertionError(exc)


def _conflict(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("leaderjob_config_conflict", {"election": "e"})
    assert value is not None
    return value


def test_fingerprint_covers_command_mode_schedule_and_zone() -> None:
    base = job_fingerprint(["a"], "schedule", "@hourly", "UTC")
    assert base == job_fingerprint(["a"], "schedule", "@hourly", "UTC")
    assert base != job_fingerprint(["b"], "schedule", "@hourly", "UTC")
    assert base != job_fingerprint(["a"], "service", "@hourly", "UTC")
    assert base != job_fingerprint(["a"], "schedule", "@daily", "UTC")
    assert base != job_fingerprint(["a"], "schedule", "@hourly", "Europe/Berlin")
    assert base != job_fingerprint(["a", "b"], "schedule", "@hourly", "UTC")
    assert base != job_fingerprint(["a b"], "schedule", "@hourly", "UTC")


def test_conflicting_candidates_are_flagged_on_every_check_and_cleared_after() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    m_leader = Metrics(CollectorRegistry(), "e")
    m_new = Metrics(CollectorRegistry(), "e")
    leader = _watch(store.client(), "prod-0", "@hourly", m_leader)
    newcomer = _watch(store.client(), "staging-0", "@daily", m_new)
    lease_a = store.grant(15, timeout=1).lease_id
    lease_b = store.grant(15, timeout=1).lease_id

    with structlog.testing.capture_logs() as logs:
        leader.tick(clock.monotonic(), lease_a, leading=True, timeout=1, on_error=_errors)
        assert _conflict(m_leader) == 0 and not logs
        # The newcomer publishes and reads once: it sees the conflict at once.
        newcomer.tick(clock.monotonic(), lease_b, leading=False, timeout=1, on_error=_errors)
        assert _conflict(m_new) == 1
        # The leader sees it at its next check, and says so at every check while it lasts.
        _advance(clock, store, lease_a, lease_b)
        leader.tick(clock.monotonic(), lease_a, leading=True, timeout=1, on_error=_errors)
        _advance(clock, store, lease_a, lease_b)
        leader.tick(clock.monotonic(), lease_a, leading=True, timeout=1, on_error=_errors)
    events = [e for e in logs if e["event"] == "election.config_conflict"]
    assert len(events) == 3, logs
    assert all(e["log_level"] == "warning" for e in events)
    assert any("staging-0" in " ".join(e["others"]) for e in events)
    assert _conflict(m_leader) == 1

    # The conflicting candidate goes (its lease with it): both flags clear at the next check.
    store.revoke(lease_b, timeout=1)
    _advance(clock, store, lease_a)
    with structlog.testing.capture_logs() as logs:
        leader.tick(clock.monotonic(), lease_a, leading=True, timeout=1, on_error=_errors)
    assert _conflict(m_leader) == 0
    assert [e["event"] for e in logs] == ["election.config_agreed"]


def test_a_flagged_follower_rechecks_until_the_conflict_is_gone() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    other = _watch(store.client(), "old", "@daily")
    follower_metrics = Metrics(CollectorRegistry(), "e")
    follower = _watch(store.client(), "new", "@hourly", follower_metrics)
    lease_old = store.grant(15, timeout=1).lease_id
    lease_new = store.grant(15, timeout=1).lease_id
    other.tick(clock.monotonic(), lease_old, leading=True, timeout=1, on_error=_errors)
    follower.tick(clock.monotonic(), lease_new, leading=False, timeout=1, on_error=_errors)
    assert _conflict(follower_metrics) == 1
    store.revoke(lease_old, timeout=1)
    _advance(clock, store, lease_new)
    follower.tick(clock.monotonic(), lease_new, leading=False, timeout=1, on_error=_errors)
    assert _conflict(follower_metrics) == 0


def test_idle_followers_cost_no_etcd_request_and_the_leader_one_per_interval() -> None:
    clock = FakeClock()
    server = MemoryStore(clock)
    follower_store, leader_store = Counting(server.client()), Counting(server.client())
    follower = _watch(follower_store, "f", "@hourly")
    leader = _watch(leader_store, "l", "@hourly")
    lease_f = server.grant(15, timeout=1).lease_id
    lease_l = server.grant(15, timeout=1).lease_id
    for _ in range(895):  # 89.5 s of 0.1 s cycles: three check intervals, nearly
        follower.tick(clock.monotonic(), lease_f, leading=False, timeout=1, on_error=_errors)
        leader.tick(clock.monotonic(), lease_l, leading=True, timeout=1, on_error=_errors)
        clock.advance(0.1)
    assert follower_store.calls == ["create", "get_prefix"], "publish and one read, then nothing"
    assert leader_store.calls == ["create", "get_prefix", "get_prefix", "get_prefix"]


def test_a_new_lease_publishes_again() -> None:
    checker = Checker("abc", interval=10)
    assert checker.due(0.0, 1, leading=False) == "publish"
    checker.published(1)
    checker.observe(0.0, [])
    assert checker.due(5.0, 1, leading=False) is None
    assert checker.due(5.0, 2, leading=False) == "publish"
    assert checker.due(5.0, None, leading=True) is None


def test_the_election_key_keeps_the_identity_as_its_value() -> None:
    """`etcdctl elect -l` reads the candidate keys' values: the fingerprint lives elsewhere."""
    clock = FakeClock()
    store = MemoryStore(clock)
    watch = _watch(store, "me", "@hourly")
    lease = store.grant(15, timeout=1).lease_id
    watch.tick(clock.monotonic(), lease, leading=True, timeout=1, on_error=_errors)
    keys = store.get_prefix("/lj/e/", timeout=1)
    assert [k.key for k in keys] == [f"/lj/e/fingerprints/{lease:x}"]
    assert all(k.lease_id == lease for k in keys), "bound to the candidate's lease"
    assert b"./cleanup.sh" not in keys[0].value, "the command is hashed, never stored"


def test_lock_mode_takes_no_part() -> None:
    """`lock` is a mutex: different commands sharing it are its normal use, not a conflict."""
    clock = FakeClock()
    store = Counting(MemoryStore(clock))
    watch = ConfigWatch(
        store, "/lj", "e", "me", command=("./a",), mode="once", schedule=None, timezone=None,
        log=structlog.get_logger(),
    )  # fmt: skip
    lease = store.grant(15, timeout=1).lease_id
    store.calls.clear()
    watch.tick(clock.monotonic(), lease, leading=True, timeout=1, on_error=_errors)
    assert store.calls == []


def test_a_failing_publish_is_retried_once_per_interval_not_every_cycle() -> None:
    """etcd refusing the fingerprint key (a narrow role, say) must not cost a request per cycle."""
    clock = FakeClock()
    server = MemoryStore(clock)
    store = Counting(server)
    watch = _watch(store, "me", "@hourly")
    lease = server.grant(15, timeout=1).lease_id
    errors: list[StoreError] = []
    server.fail_next(1000, "create")
    for _ in range(100):  # 10 s of 0.1 s cycles
        watch.tick(clock.monotonic(), lease, leading=True, timeout=1, on_error=errors.append)
        clock.advance(0.1)
    assert store.calls == ["create"] and len(errors) == 1
