"""`leaderjob selftest`: measure the real safety margin against the user's own etcd.

Two candidates run in this process, each an :class:`~leaderjob.election.elector.Elector` with its
own :class:`~leaderjob.election.etcd.EtcdStore`, each reaching etcd through a small in-process TCP
proxy (:class:`CutProxy`) so that one of them can be cut off. The leader runs a probe job under
the real per-run watchdog (:class:`leaderjob.supervisor.Run`); the probe ignores SIGTERM, like the
worst job a user could write, so it dies only by the watchdog's SIGKILL just before the local
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

import asyncio
import contextlib
import dataclasses
import os
import secrets
import select
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from leaderjob.clock import SystemClock
from leaderjob.config import Connection, Timing
from leaderjob.election.elector import Elector
from leaderjob.election.etcd import EtcdStore
from leaderjob.election.machine import Phase, Transition
from leaderjob.election.store import Grant, StoreError
from leaderjob.supervisor import Run

#: The probe job: ignores SIGTERM (the worst case), so only the watchdog's SIGKILL ends it.
PROBE = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(86400)\n"


class SelftestError(RuntimeError):
    """The self-test could not run (etcd unreachable, refused, or a step never happened)."""


# -- a cuttable TCP proxy --------------------------------------------------------------------


class CutProxy:
    """``127.0.0.1:<port>`` → ``target``; :meth:`cut` holds every byte both ways (and new
    connections) until :meth:`heal`, like a network partition that loses nothing."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target_host, self.target_port = host.strip("[]"), int(port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="leaderjob-selftest-proxy", daemon=True
        )
        self._thread.start()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = self._call(self._listen())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # a cut network holds the connection attempt too
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_w)
        await asyncio.gather(
            self._pump(reader, up_w), self._pump(up_r, writer), return_exceptions=True
        )
        for w in (writer, up_w):
            w.close()
            self._writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            await self._flowing.wait()  # held while cut: the reader stops, TCP backs up
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    async def _set(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def cut(self) -> None:
        self._call(self._set(False))

    def heal(self) -> None:
        self._call(self._set(True))

    async def _close(self) -> None:
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._flowing.set()
        await asyncio.sleep(0.01)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


# -- a store that remembers what it created --------------------------------------------------


class TrackingStore(EtcdStore):
    """An :class:`EtcdStore` that records every lease it was granted (for the cleanup) and
    counts its calls by operation (for ``bench/scale.py``)."""

    def __init__(self, conn: Connection, granted: list[int] | None = None) -> None:
        super().__init__(conn)
        self.granted = granted if granted is not None else []
        self.calls: dict[str, int] = {}
        self._count_lock = threading.Lock()

    def _count(self, op: str) -> None:
        with self._count_lock:
            self.calls[op] = self.calls.get(op, 0) + 1

    def grant(self, ttl: int, *, timeout: float) -> Grant:
        self._count("grant")
        g = super().grant(ttl, timeout=timeout)
        self.granted.append(g.lease_id)
        return g

    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        self._count("keepalive")
        return super().keepalive(lease_id, timeout=timeout)

    def standing(
        self, prefix: str, key: str, create_revision: int, *, timeout: float, **kw: Any
    ) -> Any:
        self._count("standing")
        return super().standing(prefix, key, create_revision, timeout=timeout, **kw)

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> Any:
        self._count("watch")
        return super().watch_deletes(keys, start_revision, on_fire, timeout=timeout)


# -- one in-process candidate ------------------------------------------------------------------


def _death_time(pid: int) -> float:
    """Block until ``pid`` exits; return the monotonic time it did (pidfd where available)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.monotonic()
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            select.select([fd], [], [])
            return time.monotonic()
        finally:
            os.close(fd)
    while True:  # no pidfd: poll /proc for the zombie or the end
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return time.monotonic()
        if state in ("Z", "X"):
            return time.monotonic()
        time.sleep(0.002)


@dataclasses.dataclass
class JobRecord:
    token: int
    pid: int
    started_at: float
    died_at: float | None = None


class Candidate:
    """One candidate: an Elector driven by its own thread, with an optional job per tenure run
    under the real watchdog (started on winning, extended on renewal, stopped on loss).

    Faults: :meth:`freeze`/:meth:`thaw` stop and resume the loop (no keepalives meanwhile, like
    SIGSTOP); :meth:`crash` ends the loop without resigning (the lease expires on its own).
    :meth:`stop` leaves like a daemon on SIGTERM: stop the job, resign, revoke.
    """

    def __init__(
        self,
        name: str,
        store: EtcdStore,
        timing: Timing,
        prefix: str,
        *,
        job: Sequence[str] | None = None,
        rpc_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.store = store
        self.timing = timing
        self.job = list(job) if job is not None else None
        self.wakeup = threading.Event()
        self.clock = SystemClock()
        self.elector = Elector(store, timing, prefix, name, self.clock, self.wakeup, rpc_timeout)
        self.run: Run | None = None
        self.jobs: list[JobRecord] = []
        self.keepalive_rtts: list[float] = []
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.errors = 0
        self._lock = threading.Lock()
        self._thawed = threading.Event()
        self._thawed.set()
        self._stopping = False
        self._crashed = False
        self._thread = threading.Thread(target=self._loop, name=f"candidate-{name}", daemon=True)

    # -- control --------------------------------------------------------------------------

    def start(self) -> Candidate:
        self._thread.start()
        return self

    def freeze(self) -> None:
        self._thawed.clear()
        self.wakeup.set()

    def thaw(self) -> None:
        self._thawed.set()

    def crash(self) -> None:
        """Die like ``kill -9``: no resign, no revoke; the job dies with us (pipe closed)."""
        self._crashed = True
        self._thawed.set()
        self.wakeup.set()
        self._thread.join(30)

    def stop(self, timeout: float = 30.0) -> None:
        """Leave gracefully: stop the job (still renewing), resign, revoke, end the loop."""
        self._stopping = True
        self._thawed.set()
        self.wakeup.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- queries --------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self.elector.phase is Phase.LEADING

    def first(self, name: str, after: float = 0.0) -> tuple[float, dict[str, Any]] | None:
        with self._lock:
            for t, n, detail in self.events:
                if n == name and t >= after:
                    return t, detail
        return None

    def _event(self, name: str, **detail: Any) -> None:
        with self._lock:
            self.events.append((self.clock.monotonic(), name, detail))

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                self._thawed.wait()
                self.wakeup.clear()
                if self._crashed:
                    if self.run is not None:
                        self.run.close()  # the watchdog sees the pipe close and kills the job
                    self.elector.close()
                    return
                now = self.clock.monotonic()
                self._transition(self.elector.check(now))
                self._reap()
                if self._stopping and self._leave():
                    return
                out = self.elector.step(may_campaign=self.run is None and not self._stopping)
                self.errors += len(out.errors)
                if out.keepalive_latency is not None:
                    self.keepalive_rtts.append(out.keepalive_latency)
                for t in out.transitions:
                    self._transition(t)
                deadline = self.elector.machine.deadline
                if self.leading and deadline is not None:
                    if self.run is None and self.job is not None and not self._stopping:
                        self._start_job(deadline)
                    elif self.run is not None:
                        self.run.extend(deadline)
                if not self.leading and self.run is None and self.elector.to_revoke:
                    self.elector.release()
                now = self.clock.monotonic()
                until = self.elector.next_wakeup(now, self.run is None and not self._stopping)
                if self._stopping or (self.run is not None and not self.leading):
                    until = min(until, now + 0.05)
                self.clock.wait(self.wakeup, max(0.0, until - now))
        except Exception as exc:  # a crash here must not hang the caller
            self._event("loop.crashed", error=repr(exc))
            if self.run is not None:
                self.run.close()

    def _leave(self) -> bool:
        """One step of a graceful exit; True once done."""
        if self.run is not None:
            self.run.stop("shutdown")
            if not self.run.done:
                self.elector.step(may_campaign=False)  # keep renewing while the job stops
                return False
            self._reap()
        self._transition(self.elector.resign())
        self.elector.release()
        self.elector.close()
        self._event("stopped")
        return True

    def _transition(self, t: Transition | None) -> None:
        if t is None:
            return
        self._event(t.event, token=t.token, reason=t.reason.value if t.reason else None)
        if t.event == "election.lost" and self.run is not None:
            self.run.stop("leadership_lost")

    def _start_job(self, deadline: float) -> None:
        assert self.job is not None
        token = self.elector.token or 0
        env = dict(os.environ, LEADERJOB_FENCING_TOKEN=str(token), LEADERJOB_IDENTITY=self.name)
        run = Run(
            argv=self.job,
            env=env,
            deadline=deadline,
            grace=self.timing.grace,
            wakeup=self.wakeup,
            token=token,
        )
        now = self.clock.monotonic()
        run.start(now, wait=deadline - self.timing.grace - now)
        if not run.confirmed or run.pid is None:  # given up: the watchdog cannot start it now
            self._event("job.failed_to_start", error=run.error)
            return
        self.run = run
        record = JobRecord(token=token, pid=run.pid, started_at=self.clock.monotonic())
        self.jobs.append(record)
        self._event("job.started", pid=run.pid, token=token)

        def watch_death() -> None:
            record.died_at = _death_time(record.pid)

        threading.Thread(target=watch_death, name="selftest-pidfd", daemon=True).start()

    def _reap(self) -> None:
        if self.run is not None and self.run.done:
            self._event("job.finished", outcome=self.run.outcome)
            self.run = None


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
        self, conn: Connection, ttl: float, prefix: str, progress: Callable[[str], None]
    ) -> None:
        self.conn = conn
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
        report: dict[str, Any] = {
            "endpoints": list(self.conn.endpoints),
            "etcd_version": version,
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


def verdict(report: dict[str, Any], timing: Timing) -> None:
    """Add ``verdict`` (PASS, WARN, FAIL) and ``advice`` to a report."""
    advice: list[str] = []
    scenarios = report["scenarios"]
    margins = [s["margin_seconds"] for s in scenarios]
    failed = [s for s in scenarios if s["margin_seconds"] is None or s.get("error")]
    ttl = timing.ttl
    rtt = report.get("keepalive_rtt") or {}
    p99 = rtt.get("p99") or 0.0
    if failed or any(m is not None and m <= 0 for m in margins):
        level = "FAIL"
        for s in scenarios:
            m = s["margin_seconds"]
            if m is not None and m <= 0:
                advice.append(
                    f"{s['fault']}: the old job was still alive {-m:.3f}s after etcd released "
                    f"its key. Raise --margin (now {timing.margin:g}s) or --ttl, and look for "
                    "CPU throttling or a slow machine (the watchdog could not kill in time)."
                )
            elif s.get("error") or m is None:
                why = s.get("error") or "no key deletion or job end seen"
                advice.append(f"{s['fault']}: not measured ({why})")
    else:
        level = "PASS"
        thin = max(0.1, 3 * p99)
        least = min(margins) if margins else 0.0
        if least < thin:
            level = "WARN"
            advice.append(
                f"the margin ({least:.3f}s) is thin next to the keepalive round trip (p99 "
                f"{p99 * 1000:.1f} ms): raise --margin (now {timing.margin:g}s) or --ttl."
            )
        slow = [s for s in scenarios if (s["failover_seconds"] or 0) > ttl + 1.5]
        if slow:
            times = ", ".join(f"{s['failover_seconds']:.2f}s" for s in slow)
            advice.append(
                f"failover took longer than TTL + 1.5 s ({times}): etcd swept the expired "
                "lease late (a busy etcd?) or the successor was slow to start its job."
            )
        if p99 > timing.renew_interval / 4:
            level = "WARN"
            advice.append(
                f"keepalive p99 {p99 * 1000:.0f} ms is over a quarter of the renew interval "
                f"({timing.renew_interval:g}s): etcd or the network is slow for TTL {ttl:g}s; "
                "raise --ttl or look at etcd's disk latency."
            )
    cleanup = report.get("cleanup") or {}
    if cleanup and not cleanup.get("clean"):
        advice.append(
            f"cleanup left keys {cleanup.get('keys_left')} / leases {cleanup.get('leases_left')}"
        )
    report["verdict"] = level
    report["advice"] = advice


def run_selftest(
    conn: Connection,
    ttl: float,
    prefix: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the self-test; returns the report (see :func:`format_report`)."""
    return _Selftest(conn, ttl, prefix, progress or (lambda _msg: None)).run()


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f} s"


def format_report(report: dict[str, Any]) -> str:
    rtt = report.get("keepalive_rtt") or {}
    lines = [
        f"leaderjob selftest: etcd {report['etcd_version']} at {','.join(report['endpoints'])}, "
        f"TTL {report['ttl']:g}s",
        f"  keepalive round trip: p50 {_ms(rtt.get('p50'))}, p90 {_ms(rtt.get('p90'))}, "
        f"p99 {_ms(rtt.get('p99'))}, max {_ms(rtt.get('max'))} (n={rtt.get('n', 0)})",
    ]
    for s in report["scenarios"]:
        what = "frozen (no keepalives)" if s["fault"] == "freeze" else "cut from etcd (blackhole)"
        lines.append(
            f"  leader {what}: its job was killed {_s(s['job_died_after'])} after the fault, "
            f"etcd released its key after {_s(s['key_deleted_after'])}: "
            f"safety margin {_s(s['margin_seconds'])}; failover {_s(s['failover_seconds'])} "
            f"(token {s['old_token']} → {s['new_token']})"
        )
    c = report.get("cleanup") or {}
    if c:
        state = "nothing left" if c.get("clean") else "LEFT OVER: see advice"
        lines.append(
            f"  cleanup: {c['leases_created']} leases revoked, {c['keys_deleted_at_end']} keys "
            f"deleted under {c['prefix']}: {state}"
        )
    margins = [s["margin_seconds"] for s in report["scenarios"] if s["margin_seconds"] is not None]
    least = f"{min(margins):.3f}s" if margins else "n/a"
    summary = {
        "PASS": f"the old job was always dead before etcd released its key (least margin {least})",
        "WARN": f"safe in this run (least margin {least}), but see the advice",
        "FAIL": "the safety margin was not positive or could not be measured",
    }[report["verdict"]]
    lines.append(f"verdict: {report['verdict']}: {summary}")
    lines += [f"  advice: {a}" for a in report["advice"]]
    return "\n".join(lines)
