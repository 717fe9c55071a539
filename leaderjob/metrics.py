"""Prometheus metrics on an injected registry.

Names are part of the interface and documented in docs/metrics.md. Every series carries an
``election`` label. Tests build ``Metrics(CollectorRegistry())``; nothing here is a module global.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(
        self, registry: CollectorRegistry, election: str, *, process_metrics: bool = False
    ) -> None:
        self.registry = registry
        if process_metrics:  # the standard process_* and python_* series
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.election = election
        e = ["election"]
        self.is_leader = Gauge(
            "leaderjob_is_leader",
            "1 while this replica leads the election, else 0",
            e,
            registry=registry,
        )
        self.fencing_token = Gauge(
            "leaderjob_fencing_token",
            "Fencing token (create revision of the leader key) while leading, else 0",
            e,
            registry=registry,
        )
        self.transitions = Counter(
            "leaderjob_leader_transitions",
            "Leadership changes of this replica, by direction (acquired, lost)",
            [*e, "direction"],
            registry=registry,
        )
        self.keepalives = Counter(
            "leaderjob_lease_keepalives",
            "Lease keepalives by result (ok, failed, expired)",
            [*e, "result"],
            registry=registry,
        )
        self.keepalive_latency = Histogram(
            "leaderjob_lease_keepalive_latency_seconds",
            "Keepalive round trip",
            e,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.deadline_remaining = Gauge(
            "leaderjob_lease_deadline_remaining_seconds",
            "Time left to the local deadline while leading, else 0",
            e,
            registry=registry,
        )
        self.job_runs = Counter(
            "leaderjob_job_runs",
            "Finished job runs by outcome",
            [*e, "outcome"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "leaderjob_job_duration_seconds",
            "Job run duration",
            e,
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.job_running = Gauge(
            "leaderjob_job_running",
            "1 while a job run is in progress",
            e,
            registry=registry,
        )
        self.last_success = Gauge(
            "leaderjob_job_last_success_timestamp_seconds",
            "Unix time of the last successful run seen by this replica",
            e,
            registry=registry,
        )
        self.schedule_lag = Histogram(
            "leaderjob_schedule_lag_seconds",
            "Fire time to job process started",
            e,
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.slots_skipped = Counter(
            "leaderjob_slots_skipped",
            "Schedule slots not run, by reason",
            [*e, "reason"],
            registry=registry,
        )
        self.clock_skew = Gauge(
            "leaderjob_schedule_clock_skew_seconds",
            "While leading: how far the newest slot claim lies ahead of this replica's clock "
            "(a replica whose clock ran fast claimed it; no slot runs until then), else 0",
            e,
            registry=registry,
        )
        self.clock_step = Gauge(
            "leaderjob_schedule_clock_step_seconds",
            "While leading: how far a wall-clock jump is held back (slots follow the monotonic "
            "clock until it is undone or has held for 10 minutes), else 0",
            e,
            registry=registry,
        )
        self.job_kills = Counter(
            "leaderjob_job_kills",
            "Signals sent to a job's process group, by signal and reason",
            [*e, "signal", "reason"],
            registry=registry,
        )
        self.config_reload_failures = Counter(
            "leaderjob_config_reload_failures",
            "Jobs file reloads refused (the file was invalid; the jobs before it keep running)",
            e,
            registry=registry,
        )
        self.etcd_errors = Counter(
            "leaderjob_etcd_errors",
            "Failed etcd calls by operation",
            [*e, "operation"],
            registry=registry,
        )
        self.healthy = Gauge(
            "leaderjob_healthy",
            "1 while the health check passes (or none is configured), else 0",
            e,
            registry=registry,
        )
        self.health_transitions = Counter(
            "leaderjob_health_transitions",
            "Health check state changes, by state entered (healthy, unhealthy)",
            [*e, "state"],
            registry=registry,
        )
        self.config_conflict = Gauge(
            "leaderjob_config_conflict",
            "1 while another candidate of this election publishes a different job "
            "fingerprint (command, mode, schedule, zone), else 0",
            e,
            registry=registry,
        )
        self.job_info = Gauge(
            "leaderjob_job_info",
            "Always 1; labels: this replica's mode (schedule, service, once) and job fingerprint",
            [*e, "mode", "fingerprint"],
            registry=registry,
        )
        self.etcd_db_size = Gauge(
            "leaderjob_etcd_db_size_bytes",
            "etcd's backend database size as its Maintenance Status reports it (polled about "
            "every 5 minutes; 0 until the first answer)",
            e,
            registry=registry,
        )
        self.etcd_db_quota = Gauge(
            "leaderjob_etcd_db_quota_bytes",
            "The etcd backend quota this replica was told (--etcd-quota); at it, etcd raises "
            "NOSPACE and refuses every write",
            e,
            registry=registry,
        )
        # Make the plain gauges and histograms exist from the start (0), so alerts and dashboards
        # see the series before the first event.
        for metric in (
            self.is_leader,
            self.fencing_token,
            self.deadline_remaining,
            self.job_running,
            self.last_success,
            self.keepalive_latency,
            self.job_duration,
            self.schedule_lag,
            self.clock_skew,
            self.clock_step,
            self.config_conflict,
        ):
            metric.labels(election)
        self.healthy.labels(election).set(1)
        for direction in ("acquired", "lost"):
            self.transitions.labels(election, direction)
        for result in ("ok", "failed", "expired"):
            self.keepalives.labels(election, result)

    def _per_job(self) -> tuple[Any, ...]:
        return (
            self.is_leader,
            self.fencing_token,
            self.deadline_remaining,
            self.job_running,
            self.last_success,
            self.job_duration,
            self.schedule_lag,
            self.clock_skew,
            self.clock_step,
        )

    def track(self, job: str) -> None:
        """A daemon running a group: the per-job series exist for ``job`` from the start (0),
        so that "no leader" alerts see a job nobody leads."""
        for metric in self._per_job():
            metric.labels(job)

    def forget(self, job: str) -> None:
        """The per-job series of ``job`` (or of the group's own name, which no job uses) go:
        a job removed from the jobs file must not look leaderless for ever."""
        for metric in self._per_job():
            with contextlib.suppress(KeyError):
                metric.remove(job)

    def set_leader(self, token: int | None, election: str | None = None) -> None:
        """Leading (with ``token``) or not; ``election``: a job of a group (its own series)."""
        e = self.election if election is None else election
        self.is_leader.labels(e).set(1 if token else 0)
        self.fencing_token.labels(e).set(token or 0)
        if not token:
            self.deadline_remaining.labels(e).set(0)
            self.clock_skew.labels(e).set(0)
            self.clock_step.labels(e).set(0)
