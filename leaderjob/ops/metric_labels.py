"""The label values of leaderjob's counters: every outcome, skip reason, kill signal and reason,
and etcd operation a series may carry besides ``election`` and ``job_name``
(:class:`~leaderjob.ops.metrics.Metrics` creates each series from these). Data only.
"""

from __future__ import annotations

#: Every label value a counter carries besides ``election`` (and ``job_name``): each series exists
#: at zero from the start (a job's from track()), so that ``increase()`` and ``rate()`` see the
#: first event (a series born at 1 has no increase). docs/metrics.md lists the same values.
OUTCOMES = (
    "succeeded",
    "failed",
    "timed_out",
    "replaced",
    "killed_on_leadership_loss",
    "killed_at_deadline",
    "shutdown",
    "unhealthy",
    "failed_to_start",
    "watchdog_failed",
)
SKIP_REASONS = (
    "overlap",
    "suspended",
    "catch_up_skip",
    "deadline",
    "superseded",
    "claim_rejected",
)
KILL_SIGNALS = ("SIGTERM", "SIGKILL")
KILL_REASONS = (
    "deadline",
    "grace",
    "daemon_gone",
    "guardian_failed",
    "failed_to_start",
    "killed_on_leadership_loss",
    "shutdown",
    "timed_out",
    "replaced",
    "unhealthy",
)
ETCD_OPERATIONS = (
    "grant",
    "keepalive",
    "revoke",
    "create",
    "standing",
    "guarded_put",
    "get",
    "get_prefix",
    "put",
    "delete",
    "status",
)
