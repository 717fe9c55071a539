"""`leaderjob selftest`: measure the real safety margin against the user's own etcd.

Two candidates run in this process, each an :class:`~leaderjob.election.elector.Elector` with its
own :class:`~leaderjob.election.etcd.EtcdStore`, each reaching etcd through a small in-process TCP
proxy (:class:`CutProxy`) so that one of them can be cut off. The leader runs a probe job under
the real guardian (:class:`leaderjob.guard.run.Run`); the probe ignores SIGTERM, like the
worst job a user could write, so it dies only by the guardian's SIGKILL just before the local
deadline ``D``. Then:

1. **freeze**: the leader's loop stops (no keepalives, no extensions, as under SIGSTOP or a long
   GC pause) until the successor's job runs;
2. **cut**: the new leader's proxies hold every byte both ways (a blackhole) until the successor's
   job runs.

For each, a third client watches the old leader's key and notes when etcd deleted it, and a
pidfd notes when the old job died. The **safety margin** is ``key deleted − job dead``: it must be
positive (docs/safety.md S6). The report also gives failover times (fault → successor's job
started) and the keepalive round-trip distribution, a verdict and advice. Every key goes under a
fresh ``<prefix>/_selftest-<hex>/`` and every lease granted is revoked at the end; the report says
what was removed and checks that nothing is left.

:class:`Candidate` (an Elector plus an optional job, driven by one thread) is reused by
``bench/scale.py`` for hundreds of in-process candidates.
"""

from __future__ import annotations

from leaderjob.selftest.candidate import Candidate, JobRecord
from leaderjob.selftest.checks import PROBE, run_selftest
from leaderjob.selftest.proxy import CutProxy, SelftestError, TrackingStore
from leaderjob.selftest.report import format_report, verdict

__all__ = [
    "PROBE",
    "Candidate",
    "CutProxy",
    "JobRecord",
    "SelftestError",
    "TrackingStore",
    "format_report",
    "run_selftest",
    "verdict",
]
