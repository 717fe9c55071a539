"""Job fingerprints: candidates of one election must all run the same job.

What identifies an election is the etcd cluster + ``--prefix`` + ``--election``. Two deployments
that happen to agree on all three (staging and production on one etcd, say) share one leader and
run each other's jobs. Nothing in the election itself can tell, so every candidate publishes a
fingerprint of its job — command, mode, schedule and zone — and a candidate that sees a different
one logs ``election.config_conflict`` at every check, sets ``leaderjob_config_conflict`` to 1, and
``leaderjob status`` shows it.

Layout: ``<prefix>/<election>/fingerprints/<lease-id-hex>``, one key per candidate, bound to its
lease (it goes when the candidate goes), written once per lease. The candidate keys under
``leader/`` keep the identity as their value, so ``etcdctl elect -l`` still reads them.

`leaderjob lock` takes no part: a lock is a mutex, and different commands taking it is its
normal use.

Cost while idle: the leader compares the fingerprints once per check interval (the daemon's renew
interval; :data:`CHECK_INTERVAL` by default), as read in the confirmation of its key (one
operation in that Txn, no request of its own); a follower reads them once when it publishes (so a
newcomer sees a conflict at once), and again at every check only while it sees a conflict (so
its flag clears when the conflict does). The command is
hashed, never stored: an argv can carry secrets.

:class:`Checker` holds the rules (pure: time and readings come in, decisions go out);
:class:`ConfigWatch` drives it through the store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from leaderjob.election.store import KeyInfo, Store, StoreError

if TYPE_CHECKING:
    from leaderjob.election.confirm_read import Reading

#: How often the leader compares fingerprints (and a follower that sees a conflict, re-checks).
CHECK_INTERVAL = 30.0

Action = Literal["publish", "read"]


def job_fingerprint(
    command: Sequence[str], mode: str, schedule: str | None, timezone: str | None
) -> str:
    """A short stable hash of what a candidate would run, and when."""
    doc = json.dumps([list(command), mode, schedule, timezone if schedule else None])
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


#: What a fingerprint covers, each a field a conflict can name (the command only as a hash: an
#: argv can carry secrets).
FIELDS = ("command", "mode", "schedule", "timezone")


def job_fields(
    command: Sequence[str], mode: str, schedule: str | None, timezone: str | None
) -> dict[str, str | None]:
    """One job's published fields, for naming which one differs (a group publishes one set per
    job beside its fingerprint)."""
    digest = hashlib.sha256(json.dumps(list(command)).encode()).hexdigest()[:12]
    return {
        "command": digest,
        "mode": mode,
        "schedule": schedule,
        "timezone": timezone if schedule else None,
    }


def fingerprints_prefix(prefix: str, election: str) -> str:
    return f"{prefix.rstrip('/')}/{election}/fingerprints/"


@dataclass(frozen=True)
class Published:
    """One candidate's published job, as read back from etcd."""

    identity: str
    fingerprint: str
    mode: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    #: A group's: job name → its fields (:func:`job_fields`); None for a single job.
    jobs: dict[str, dict[str, Any]] | None = None

    def describe(self) -> str:
        when = f" schedule={self.schedule} ({self.timezone})" if self.schedule else ""
        jobs = f" jobs={','.join(sorted(self.jobs))}" if self.jobs is not None else ""
        return f"{self.identity}: {self.fingerprint} mode={self.mode or '?'}{when}{jobs}"

    def fields(self) -> Mapping[str | None, dict[str, Any]]:
        """job (None: the election itself) → the fields it published."""
        if self.jobs is not None:
            return dict(self.jobs.items())
        own = {"mode": self.mode, "schedule": self.schedule, "timezone": self.timezone}
        return {None: own}


def parse_published(keys: Sequence[KeyInfo]) -> list[Published]:
    out = []
    for info in keys:
        try:
            doc = json.loads(info.value)
        except ValueError:
            continue
        published = _published(doc)
        if published is not None:
            out.append(published)
    return out


def _published(doc: Any) -> Published | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("fingerprint"), str):
        return None
    return Published(
        identity=str(doc.get("identity", "?")),
        fingerprint=doc["fingerprint"],
        mode=doc.get("mode"),
        schedule=doc.get("schedule"),
        timezone=doc.get("timezone"),
        jobs=doc["jobs"] if isinstance(doc.get("jobs"), dict) else None,
    )


def differences(published: Sequence[Published]) -> list[dict[str, Any]]:
    """What differs between candidates, named: one entry per job (None: a single-job election)
    and field, with each value and the identities that publish it. A job that only some
    candidates run is the field ``present``; a single job whose fingerprints differ while its
    mode, schedule and zone agree differs in its ``command``. Pure."""
    out: list[dict[str, Any]] = []
    if len({p.fingerprint for p in published}) < 2:
        return out
    per_job: dict[str | None, dict[str, dict[str, Any]]] = {}
    for p in published:
        for job, fields in p.fields().items():
            per_job.setdefault(job, {})[p.identity] = fields
    everyone = sorted({p.identity for p in published})
    for job in sorted(per_job, key=lambda j: j or ""):
        seen = per_job[job]
        if job is not None and len(seen) < len(everyone):
            missing = [i for i in everyone if i not in seen]
            out.append(
                {"job": job, "field": "present", "values": {"yes": sorted(seen), "no": missing}}
            )
            continue
        for name in FIELDS:
            values: dict[str, list[str]] = {}
            for identity, fields in sorted(seen.items()):
                if name in fields:
                    values.setdefault(str(fields[name]), []).append(identity)
            if len(values) > 1:
                out.append({"job": job, "field": name, "values": values})
    if not out and None in per_job:
        by_fp = {fp: sorted(ids) for fp, ids in distinct(published).items()}
        out.append({"job": None, "field": "command", "values": by_fp})
    return out


def describe_difference(diff: dict[str, Any]) -> str:
    """One difference in words: ``job backup: schedule '@daily' (a-0) vs '@hourly' (b-0)``."""
    where = f"job {diff['job']}: " if diff["job"] is not None else ""
    if diff["field"] == "present":
        v = diff["values"]
        return f"{where}in the jobs of {', '.join(v['yes'])}, not of {', '.join(v['no'])}"
    sides = " vs ".join(
        f"{value!r} ({', '.join(ids)})" for value, ids in sorted(diff["values"].items())
    )
    return f"{where}{diff['field']} {sides}"


def distinct(published: Sequence[Published]) -> dict[str, list[str]]:
    """fingerprint → identities publishing it."""
    groups: dict[str, list[str]] = {}
    for p in published:
        groups.setdefault(p.fingerprint, []).append(p.identity)
    return groups


class Checker:
    """When to publish and when to read; whether what was read is a conflict. Pure."""

    def __init__(self, fingerprint: str, interval: float = CHECK_INTERVAL) -> None:
        self.fingerprint = fingerprint
        self.interval = interval
        self.published_lease: int | None = None
        self.conflict: list[Published] = []
        self.next_read = 0.0
        self.retry_at = 0.0

    def due(self, now: float, lease_id: int | None, *, leading: bool) -> Action | None:
        if lease_id is None or now < self.retry_at:
            return None
        if lease_id != self.published_lease:
            return "publish"
        if (leading or self.conflict) and now >= self.next_read:
            return "read"
        return None

    def published(self, lease_id: int) -> None:
        self.published_lease = lease_id
        self.next_read = 0.0  # read at once: a newcomer sees an existing conflict now

    def failed(self, now: float) -> None:
        """A publish or read failed: try again one interval later, never in every cycle (a role
        that may not write the fingerprints must not turn into a request per cycle)."""
        self.retry_at = now + self.interval

    def observe(self, now: float, published: Sequence[Published]) -> list[Published]:
        """Record one reading; returns the candidates whose fingerprint differs from ours."""
        self.next_read = now + self.interval
        self.conflict = [p for p in published if p.fingerprint != self.fingerprint]
        return self.conflict


class ConfigWatch:
    """Publishes this candidate's fingerprint and compares it with the others', through the
    store. ``tick`` is called once per daemon cycle and does I/O only when the checker says so."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        election: str,
        identity: str,
        *,
        command: Sequence[str],
        mode: str,
        schedule: str | None,
        timezone: str | None,
        log: Any,
        metrics: Any = None,
        interval: float = CHECK_INTERVAL,
        jobs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self.prefix = fingerprints_prefix(prefix, election)
        self.log = log
        self.metrics = metrics
        # `lock` is a mutex: different commands sharing one lock is its normal use, not a
        # conflict. Only `run` (schedule and service mode) publishes and compares.
        self.enabled = mode != "once"
        fp = job_fingerprint(command, mode, schedule, timezone)
        self.checker = Checker(fp, interval)
        self._read_at = float("-inf")  # send time of the newest reading compared
        self.doc: dict[str, Any] = {
            "identity": identity,
            "fingerprint": fp,
            "mode": mode,
            "schedule": schedule,
            "timezone": timezone if schedule else None,
        }
        if jobs is not None:
            self.doc["jobs"] = jobs  # a group's: each job's fields, to name what differs
        if metrics is not None:
            metrics.config_conflict.labels(metrics.election).set(0)

    @property
    def fingerprint(self) -> str:
        return self.checker.fingerprint

    def tick(
        self,
        now: float,
        lease_id: int | None,
        *,
        leading: bool,
        timeout: float,
        on_error: Callable[[StoreError], None],
        reading: Reading | None = None,
    ) -> None:
        """``reading``: the fingerprints as the leader's confirmation read them (a
        :class:`~leaderjob.election.confirm_read.Reading`: ``sent_at``, ``keys``); a leader
        compares those (waiting for the next one if it has seen this one) and reads nothing
        itself."""
        if not self.enabled:
            return
        action = self.checker.due(now, lease_id, leading=leading)
        if action is None or lease_id is None:
            return
        if action == "read" and leading and reading is not None:
            if reading.sent_at > self._read_at:
                self._read_at = reading.sent_at
                was = bool(self.checker.conflict)
                self._report(was, self.checker.observe(now, parse_published(reading.keys)))
            return
        try:
            if action == "publish":
                key = f"{self.prefix}{lease_id:x}"
                value = json.dumps(self.doc, sort_keys=True, separators=(",", ":")).encode()
                found = self.store.create(key, value, lease_id, timeout=timeout)
                if found.value != value and found.lease_id == lease_id:
                    # Ours, from before a reload: replaced, else the others compare against
                    # what we no longer run (and we against ourselves).
                    self.store.delete(key, timeout=timeout)
                    self.store.create(key, value, lease_id, timeout=timeout)
                self.checker.published(lease_id)  # then the one read every newcomer makes
            keys = self.store.get_prefix(self.prefix, timeout=timeout)
        except StoreError as exc:
            self.checker.failed(now)
            on_error(exc)
            return
        was = bool(self.checker.conflict)
        others = self.checker.observe(now, parse_published(keys))
        self._report(was, others)

    def _report(self, was: bool, others: list[Published]) -> None:
        if others:
            ours = [p for p in [_published(self.doc)] if p is not None]
            self.log.warning(
                "election.config_conflict",
                fingerprint=self.fingerprint,
                others=[p.describe() for p in others],
                differences=[describe_difference(d) for d in differences([*ours, *others])],
            )
        elif was:
            self.log.info("election.config_agreed", fingerprint=self.fingerprint)
        if self.metrics is not None:
            self.metrics.config_conflict.labels(self.metrics.election).set(1 if others else 0)
