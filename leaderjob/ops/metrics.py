"""Prometheus metrics on an injected registry.

Names are part of the interface and documented in docs/metrics.md. Every series carries an
``election`` label: the daemon's ``--election`` (a group's name with ``--jobs``). The series of one
job carry ``job_name`` too: the job's name in a jobs file, the election's name for a daemon of one
job. (Not ``job``: Prometheus sets ``job`` on every scraped series from its scrape config, and
renames a clashing label to ``exported_job``; kube-state-metrics chose ``job_name`` for the same
clash.) Per-job series exist from :meth:`Metrics.track` until :meth:`Metrics.forget`: a job removed
by a reload leaves no series behind. Tests build ``Metrics(CollectorRegistry())``; nothing here is
a module global. The label values each counter takes are :mod:`leaderjob.ops.metric_labels`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from leaderjob.history.records import NOT_RUN_REASONS
from leaderjob.ops.metric_labels import (
    ETCD_OPERATIONS,
    KILL_REASONS,
    KILL_SIGNALS,
    OUTCOMES,
    SKIP_REASONS,
)
from leaderjob.ops.notify import KINDS, RESULTS

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

def build_labels() -> tuple[str, str, str]:
    """(version, python, etcd_client) of this process, without importing the etcd client
    (only the election/etcd*.py adapter does): the installed distribution's metadata."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import leaderjob

    client = "none"
    for dist in ("python3-etcd3", "etcd3"):
        try:
            client = f"{dist}/{version(dist)}"
            break
        except PackageNotFoundError:
            continue
    return leaderjob.__version__, platform.python_version(), client


class Metrics:
    def __init__(
        self, registry: CollectorRegistry, election: str, *, process_metrics: bool = False
    ) -> None:
        self.registry = registry
        if process_metrics:  # the standard process_* and python_* series
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.election = election
        e = ["election"]  # the daemon's series
        j = [*e, "job_name"]  # one job's series (see the module doc)
        self.is_leader = Gauge(
            "leaderjob_is_leader",
            "1 while this replica leads the election, else 0",
            j,
            registry=registry,
        )
        self.fencing_token = Gauge(
            "leaderjob_fencing_token",
            "Fencing token (create revision of the leader key) while leading, else 0",
            j,
            registry=registry,
        )
        self.transitions = Counter(
            "leaderjob_leader_transitions",
            "Leadership changes of this replica, by direction (acquired, lost)",
            [*j, "direction"],
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
            j,
            registry=registry,
        )
        self.job_runs = Counter(
            "leaderjob_job_runs",
            "Finished job runs by outcome",
            [*j, "outcome"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "leaderjob_job_duration_seconds",
            "Job run duration",
            j,
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.job_running = Gauge(
            "leaderjob_job_running",
            "1 while a job run is in progress",
            j,
            registry=registry,
        )
        self.last_success = Gauge(
            "leaderjob_job_last_success_timestamp_seconds",
            "Unix time of the last successful run seen by this replica",
            j,
            registry=registry,
        )
        self.job_due = Gauge(
            "leaderjob_job_due_timestamp_seconds",
            "Scheduled jobs: the fire time before the newest one (a run should have succeeded "
            "since); 0 until this replica has seen two fire times, and for other modes",
            j,
            registry=registry,
        )
        self.job_suspended = Gauge(
            "leaderjob_job_suspended_timestamp_seconds",
            "Unix time this replica last saw the job suspended (now while it is; the leader reads "
            "`leaderjob suspend`, every replica its jobs file's suspend); 0 if never",
            j,
            registry=registry,
        )
        self.schedule_lag = Histogram(
            "leaderjob_schedule_lag_seconds",
            "Fire time to job process started",
            j,
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.slots_skipped = Counter(
            "leaderjob_slots_skipped",
            "Schedule slots not run, by reason",
            [*j, "reason"],
            registry=registry,
        )
        self.slots_not_run = Counter(
            "leaderjob_slots_not_run",
            "Schedule slots that did not run, by reason (skipped, missed, suspended, late, "
            "failed_to_start); each also has a history record",
            [*j, "reason"],
            registry=registry,
        )
        self.clock_skew = Gauge(
            "leaderjob_schedule_clock_skew_seconds",
            "While leading: how far the newest slot claim lies ahead of this replica's clock "
            "(a replica whose clock ran fast claimed it; no slot runs until then), else 0",
            j,
            registry=registry,
        )
        self.clock_step = Gauge(
            "leaderjob_schedule_clock_step_seconds",
            "While leading: how far a wall-clock jump is held back (slots follow the monotonic "
            "clock until it is undone or has held for 10 minutes), else 0",
            j,
            registry=registry,
        )
        self.job_kills = Counter(
            "leaderjob_job_kills",
            "Signals sent to a job's process group, by signal and reason",
            [*j, "signal", "reason"],
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
            [*j, "mode", "fingerprint"],
            registry=registry,
        )
        self.build_info = Gauge(
            "leaderjob_build_info",
            "Always 1; labels: leaderjob's version, Python's, and the etcd client library's",
            [*e, "version", "python", "etcd_client"],
            registry=registry,
        )
        self.build_info.labels(election, *build_labels()).set(1)
        self.notifications = Counter(
            "leaderjob_notifications",
            "Notifications by kind (on_failure, ping) and result (ok, failed, timed_out, dropped)",
            [*j, "kind", "result"],
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
        # Make the daemon's plain gauges and histograms exist from the start (0), so alerts and
        # dashboards see the series before the first event; a job's come with track().
        for metric in (self.keepalive_latency, self.config_conflict):
            metric.labels(election)
        self.healthy.labels(election).set(1)
        for result in ("ok", "failed", "expired"):
            self.keepalives.labels(election, result)
        for state in ("healthy", "unhealthy"):
            self.health_transitions.labels(election, state)
        for operation in ETCD_OPERATIONS:
            self.etcd_errors.labels(election, operation)
        self.config_reload_failures.labels(election)
        #: job → the label values of its leaderjob_job_info series (replaced when it changes).
        self._info: dict[str, tuple[str, ...]] = {}

    def _per_job(self) -> tuple[Any, ...]:
        return (
            self.is_leader,
            self.fencing_token,
            self.transitions,
            self.deadline_remaining,
            self.job_runs,
            self.job_duration,
            self.job_running,
            self.last_success,
            self.job_due,
            self.job_suspended,
            self.schedule_lag,
            self.slots_skipped,
            self.slots_not_run,
            self.clock_skew,
            self.clock_step,
            self.job_kills,
            self.job_info,
            self.notifications,
        )

    def _job_counters(self) -> list[tuple[Counter, tuple[tuple[str, ...], ...]]]:
        """The counters of one job, each with every label value it takes."""
        return [
            (self.transitions, (("acquired",), ("lost",))),
            (self.job_runs, tuple((o,) for o in OUTCOMES)),
            (self.slots_skipped, tuple((r,) for r in SKIP_REASONS)),
            (self.slots_not_run, tuple((r,) for r in NOT_RUN_REASONS)),
            (self.job_kills, tuple((s, r) for s in KILL_SIGNALS for r in KILL_REASONS)),
            (self.notifications, tuple((k, r) for k in KINDS for r in RESULTS)),
        ]

    def count_notification(self, job: str, kind: str, result: str) -> None:
        """One notification about a run of ``job`` ended with ``result``."""
        self.notifications.labels(self.election, job, kind, result).inc()

    def track(
        self,
        job: str,
        *,
        mode: str,
        fingerprint: str,
        election: str | None = None,
        due: Callable[[], float] | None = None,
        suspended: Callable[[], float] | None = None,
    ) -> None:
        """``job``'s series exist from now on (0), so that "no leader" alerts see a job nobody
        leads; ``leaderjob_job_info`` says what it runs (called again when that changes).
        ``election``: another election sharing this registry (in-process leadership). ``due``
        and ``suspended``: read at each scrape, ``leaderjob_job_due_timestamp_seconds`` (a
        scheduled job's) and ``leaderjob_job_suspended_timestamp_seconds``."""
        e = self.election if election is None else election
        for gauge, read in ((self.job_due, due), (self.job_suspended, suspended)):
            if read is not None:
                gauge.labels(e, job).set_function(read)
            else:
                gauge.labels(e, job).set(0)
        for metric in (
            self.is_leader,
            self.fencing_token,
            self.deadline_remaining,
            self.job_running,
            self.last_success,
            self.job_duration,
            self.schedule_lag,
            self.clock_skew,
            self.clock_step,
        ):
            metric.labels(e, job)
        for counter, values in self._job_counters():
            for labels in values:
                counter.labels(e, job, *labels)
        info = (e, job, mode, fingerprint)
        old = self._info.get(job)
        if old is not None and old != info:
            self.job_info.remove(*old)
        self.job_info.labels(*info).set(1)
        self._info[job] = info

    def forget(self, job: str) -> None:
        """Every series of ``job`` goes: a job removed from the jobs file must not look
        leaderless, or keep its last outcome, for ever."""
        self._info.pop(job, None)
        for metric in self._per_job():
            for values in _label_sets(metric, {"election": self.election, "job_name": job}):
                with contextlib.suppress(KeyError):
                    metric.remove(*values)

    def set_leader(
        self, token: int | None, job: str | None = None, *, election: str | None = None
    ) -> None:
        """``job`` (default: the daemon's one job, named like the election) is led with
        ``token``, or not led. ``election``: another election sharing this registry."""
        e = self.election if election is None else election
        labels = (e, e if job is None else job)
        self.is_leader.labels(*labels).set(1 if token else 0)
        self.fencing_token.labels(*labels).set(token or 0)
        if not token:
            self.deadline_remaining.labels(*labels).set(0)
            self.clock_skew.labels(*labels).set(0)
            self.clock_step.labels(*labels).set(0)


def _label_sets(metric: Any, match: dict[str, str]) -> set[tuple[str, ...]]:
    """The label values (in the metric's label order) of its series that carry ``match``.

    ``_labelnames`` is where prometheus_client keeps a metric's label names; its own
    ``remove_by_labels`` does this too, but only from 0.22 on, and 0.19 is still supported."""
    found: set[tuple[str, ...]] = set()
    for family in metric.collect():
        for sample in family.samples:
            labels = sample.labels
            if all(labels.get(k) == v for k, v in match.items()):
                found.add(tuple(labels[name] for name in metric._labelnames))
    return found
