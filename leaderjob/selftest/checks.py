"""The self-test's measurements: two candidates, a freeze and a cut of the leader, the keepalive
round trip, and what etcd itself says about its cluster. The verdict is :mod:`.report`'s."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from leaderjob.config import Connection, Timing
from leaderjob.election.store import StoreError
from leaderjob.selftest.candidate import Candidate
from leaderjob.selftest.proxy import CutProxy, SelftestError, TrackingStore
from leaderjob.selftest.report import verdict

#: etcd's default ``--election-timeout`` (1 s). A member without word from its leader for a
#: randomised 1-2 election timeouts starts an election.
ETCD_ELECTION_TIMEOUT = 1.0

#: The probe job: ignores SIGTERM (the worst case), so only the watchdog's SIGKILL ends it.
PROBE = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(86400)\n"


# -- the self-test ---------------------------------------------------------------------------


def _percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 6),
        "p90": round(pct(0.90), 6),
        "p99": round(pct(0.99), 6),
        "max": round(ordered[-1], 6),
    }


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return False
        time.sleep(interval)
    return True


class _Selftest:
    def __init__(
        self,
        conn: Connection,
        ttl: float,
        prefix: str,
        progress: Callable[[str], None],
        election_timeout: float = ETCD_ELECTION_TIMEOUT,
    ) -> None:
        self.conn = conn
        self.election_timeout = election_timeout
        self.timing = Timing.from_ttl(ttl)
        self.ttl = ttl
        self.progress = progress
        self.root = f"{prefix.rstrip('/')}/_selftest-{secrets.token_hex(4)}"
        self.election_prefix = f"{self.root}/leader"
        self.granted: list[int] = []
        self.observer = TrackingStore(conn, self.granted)
        self.proxies: dict[str, list[CutProxy]] = {}
        self.candidates: list[Candidate] = []

    def rpc(self) -> float:
        return min(self.conn.rpc_timeout, 5.0)

    def candidate(self, name: str) -> Candidate:
        proxies = [CutProxy(ep) for ep in self.conn.endpoints]
        self.proxies[name] = proxies
        server_name = self.conn.server_name
        if server_name is None and (self.conn.cacert or self.conn.cert):
            server_name = self.conn.endpoints[0].rpartition(":")[0].strip("[]")
        conn = dataclasses.replace(
            self.conn,
            endpoints=tuple(p.endpoint for p in proxies),
            server_name=server_name,
        )
        store = TrackingStore(conn, self.granted)
        c = Candidate(
            name,
            store,
            self.timing,
            self.election_prefix,
            job=[sys.executable, "-S", "-c", PROBE],
            rpc_timeout=self.rpc(),
        )
        self.candidates.append(c)
        return c.start()

    def leader(self, timeout: float) -> Candidate:
        found: list[Candidate] = []

        def check() -> bool:
            for c in self.candidates:
                if c.leading and c.run is not None and c.alive:
                    found.append(c)
                    return True
            return False

        if not _wait(check, timeout):
            raise SelftestError(f"no candidate led and ran its probe job within {timeout:.0f}s")
        return found[0]

    def rtt_probe(self, count: int = 50) -> list[float]:
        """Keepalives on a lease of our own, back to back with a short pause: the round trip."""
        grant = self.observer.grant(int(self.ttl), timeout=self.rpc())
        rtts: list[float] = []
        try:
            for _ in range(count):
                sent = time.monotonic()
                self.observer.keepalive(grant.lease_id, timeout=self.rpc())
                rtts.append(time.monotonic() - sent)
                time.sleep(0.02)
        finally:
            with contextlib.suppress(StoreError):
                self.observer.revoke(grant.lease_id, timeout=self.rpc())
        return rtts

    def scenario(self, kind: str) -> dict[str, Any]:
        ttl = self.ttl
        old = self.leader(2 * ttl + 10)
        successor = next(c for c in self.candidates if c is not old)
        if not _wait(lambda: successor.elector.lease_id is not None, ttl + 5):
            raise SelftestError(f"{successor.name} did not get a lease to wait with")
        key = old.elector.key
        revision = old.elector.create_revision
        job = old.jobs[-1]
        if key is None:
            raise SelftestError("the leader has no key")
        deleted: list[float] = []
        watch = self.observer.watch_deletes(
            [key], revision, lambda: deleted.append(time.monotonic())
        )
        try:
            start = time.monotonic()
            if kind == "freeze":
                old.freeze()
            else:
                for p in self.proxies[old.name]:
                    p.cut()
            limit = 2 * ttl + 10
            took_over = _wait(lambda: successor.first("job.started", start) is not None, limit)
            _wait(lambda: job.died_at is not None and bool(deleted), 2.0)
        finally:
            if kind == "freeze":
                old.thaw()
            else:
                for p in self.proxies[old.name]:
                    p.heal()
            watch.cancel()
        ended = time.monotonic()
        acquired = successor.first("election.acquired", start)
        started = successor.first("job.started", start)
        result: dict[str, Any] = {
            "fault": kind,
            "fault_seconds": round(ended - start, 3),
            "job_died_after": None if job.died_at is None else round(job.died_at - start, 4),
            "key_deleted_after": round(deleted[0] - start, 4) if deleted else None,
            "margin_seconds": None,
            "failover_seconds": None if started is None else round(started[0] - start, 4),
            "acquired_after": None if acquired is None else round(acquired[0] - start, 4),
            "old_token": job.token,
            "new_token": None if started is None else started[1].get("token"),
        }
        if job.died_at is not None and deleted:
            result["margin_seconds"] = round(deleted[0] - job.died_at, 4)
        if not took_over:
            result["error"] = f"no successor within {limit:.0f}s"
        # Back to a healthy pair: the old leader steps down and waits again on a new lease.
        _wait(lambda: old.elector.lease_id is not None and not old.leading, ttl + 10)
        return result

    def cleanup(self) -> dict[str, Any]:
        for c in self.candidates:
            c.stop()
        for proxies in self.proxies.values():
            for p in proxies:
                p.close()
        revoked = 0
        for lease_id in set(self.granted):
            with contextlib.suppress(StoreError):
                if self.observer.lease_remaining(lease_id, timeout=self.rpc()) > 0:
                    revoked += 1
                self.observer.revoke(lease_id, timeout=self.rpc())
        keys, left_keys = 0, []
        # A role that may not touch the prefix (etcd refused the test itself): nothing to clean.
        with contextlib.suppress(StoreError):
            keys = self.observer.delete(self.root + "/", timeout=self.rpc(), prefix=True)
            left_keys = self.observer.get_prefix(self.root + "/", timeout=self.rpc())
        left_leases = [
            f"{lease:x}"
            for lease in set(self.granted)
            if self.observer.lease_remaining(lease, timeout=self.rpc()) > 0
        ]
        for c in self.candidates:
            c.store.close()
        self.observer.close()
        return {
            "prefix": self.root + "/",
            "leases_created": len(set(self.granted)),
            "leases_revoked_at_end": revoked,
            "keys_deleted_at_end": keys,
            "keys_left": [k.key for k in left_keys],
            "leases_left": left_leases,
            "lease_ids": [f"{lease:x}" for lease in sorted(set(self.granted))],
            "clean": not left_keys and not left_leases,
        }

    def run(self) -> dict[str, Any]:
        try:
            version = self.observer.server_version(timeout=self.rpc())
        except StoreError as exc:
            where = ",".join(self.conn.endpoints)
            raise SelftestError(f"cannot reach etcd at {where}: {exc}") from None
        self.progress(
            f"etcd {version} at {','.join(self.conn.endpoints)}; TTL {self.ttl:g}s; "
            f"keys under {self.root}/"
        )
        # May we write here at all? A role that does not cover the prefix is refused now, in
        # one line (StoreRejected reaches the caller), not after a campaign that never leads.
        self.observer.put(f"{self.root}/access", b"", timeout=self.rpc())
        self.observer.delete(f"{self.root}/access", timeout=self.rpc())
        try:
            members: int | None = self.observer.member_count(timeout=self.rpc())
        except StoreError:
            members = None  # a user without the cluster permission: the check is skipped
        report: dict[str, Any] = {
            "endpoints": list(self.conn.endpoints),
            "etcd_version": version,
            "etcd_members": members,
            "etcd_election_timeout": self.election_timeout,
            "ttl": self.ttl,
            "timing": dataclasses.asdict(self.timing),
            "scenarios": [],
        }
        try:
            self.candidate("selftest-a")
            self.leader(2 * self.ttl + 10)
            self.candidate("selftest-b")
            self.progress("measuring the keepalive round trip …")
            probe_rtts = self.rtt_probe()
            for kind in ("freeze", "cut"):
                self.progress(f"{kind} of the leader …")
                report["scenarios"].append(self.scenario(kind))
            rtts = probe_rtts + [r for c in self.candidates for r in c.keepalive_rtts]
            report["keepalive_rtt"] = _percentiles(rtts)
        finally:
            self.progress("cleaning up …")
            report["cleanup"] = self.cleanup()
        verdict(report, self.timing)
        return report


def run_selftest(
    conn: Connection,
    ttl: float,
    prefix: str,
    progress: Callable[[str], None] | None = None,
    election_timeout: float = ETCD_ELECTION_TIMEOUT,
) -> dict[str, Any]:
    """Run the self-test; returns the report (see :func:`format_report`). ``election_timeout``
    is etcd's ``--election-timeout``: no client call reveals it."""
    return _Selftest(conn, ttl, prefix, progress or (lambda _msg: None), election_timeout).run()
