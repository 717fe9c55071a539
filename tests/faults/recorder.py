"""The recorder: every event of a fault run, stamped on one monotonic clock.

Sources and their stamps (all ``CLOCK_MONOTONIC`` of this machine, in seconds):

* etcd: one watch per cluster member on the election's whole key space (leader keys, slot
  keys, history), opened directly on the members (not through any fault proxy). An event is
  stamped when the first of the three watches delivers it, so a killed member costs nothing;
  a stream that breaks is reopened from the revision after the last one it saw, so no revision
  is lost. The stamp is *when we learned it*, never earlier than when it happened.
* A watch stamps an event when it *learns* of it, which may be long after it happened (a slow
  stream, a loaded machine). So every deletion of a leader key is also bracketed by the
  recorder's own linearizable reads, one every 20 ms: ``present_at`` is the send time of the
  last read whose revision was below the deletion's (the key still existed then), ``gone_by``
  the answer time of the first read at or above it (it was deleted by then). The checker
  judges S6 against ``gone_by``: evidence that a job lived past it is certain, whatever the
  watch's delay.
* On every deletion of a leader key, the recorder looks at once for live processes of the jobs
  that ran under that key's token (pids from the job journal, confirmed by the token in
  ``/proc/PID/environ``): a job still alive when its key is already gone breaks S6. Every job
  process (and grandchild) is also watched through a pidfd from the moment it is journaled;
  its exit is recorded (``proc.exit``): ``alive_until``, the last 10 ms tick that found it alive
  (a lower bound of its death), and ``t``, the tick that saw it gone (an upper bound).
* Daemon logs (JSON lines): tailed every 10 ms, stamped when read.
* Faults: stamped by :meth:`Recorder.fault` in the test process when injected and healed.
* The fenced store's decisions (``mono``) and the job journal (``t``) are stamped by their own
  processes on the same clock and merged in at the end.
* :meth:`Recorder.close` does not guess how long to wait for the last events: it writes a
  sentinel key under the watched prefix and waits until a watch delivers it (etcd delivers a
  watch's events in revision order, so everything before it has arrived), and reads the logs to
  their end after the daemons have exited.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import queue
import select
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from etcd3 import etcdrpc

from leaderjob.election.etcd_wire import _prefix_end  # the adapter's own range rule
from tests.faults.checker import job_of_leader_key
from tests.harness.procs import pid_alive, process_state

_PUT, _DELETE = 0, 1
#: How often the revision is read for the deletions' lower bounds (seconds).
REVISION_POLL = 0.02


def current_revision(endpoints: Sequence[str], timeout: float = 5.0) -> int:
    """The cluster's revision now (from the first member that answers)."""
    last: Exception | None = None
    for ep in endpoints:
        channel = grpc.insecure_channel(ep)
        try:
            resp = etcdrpc.KVStub(channel).Range(
                etcdrpc.RangeRequest(key=b"\0", limit=1), timeout=timeout
            )
            return int(resp.header.revision)
        except grpc.RpcError as exc:
            last = exc
        finally:
            channel.close()
    raise RuntimeError(f"no etcd member answered: {last}")


class _MemberWatch:
    """One watch stream on one member; reopened after errors from the next revision."""

    def __init__(
        self,
        endpoint: str,
        prefix: bytes,
        start_revision: int,
        deliver: Callable[[list[Any], float], None],
    ) -> None:
        self.endpoint = endpoint
        self.prefix = prefix
        self.next_revision = start_revision
        self.deliver = deliver
        self.stopped = threading.Event()
        self._call: Any = None
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"watch-{endpoint}", daemon=True)
        self.thread.start()

    def _requests(self, q: queue.Queue[Any]) -> Iterator[Any]:
        while True:
            item = q.get()
            if item is None:
                return
            yield item

    def _run(self) -> None:
        while not self.stopped.is_set():
            q: queue.Queue[Any] = queue.Queue()
            q.put(
                etcdrpc.WatchRequest(
                    create_request=etcdrpc.WatchCreateRequest(
                        key=self.prefix,
                        range_end=_prefix_end(self.prefix),
                        start_revision=self.next_revision,
                    )
                )
            )
            channel = grpc.insecure_channel(
                self.endpoint,
                options=[
                    ("grpc.keepalive_time_ms", 10000),
                    ("grpc.keepalive_timeout_ms", 2000),
                    ("grpc.keepalive_permit_without_calls", 0),
                    ("grpc.http2.max_pings_without_data", 0),
                ],
            )
            with self._lock:
                self._channel = channel
                self._call = etcdrpc.WatchStub(channel).Watch(self._requests(q))
                call = self._call
            try:
                for resp in call:
                    now = time.monotonic()
                    if resp.compact_revision:
                        raise RuntimeError(f"watch compacted at {resp.compact_revision}")
                    if resp.events:
                        self.next_revision = max(
                            self.next_revision, resp.events[-1].kv.mod_revision + 1
                        )
                        self.deliver(list(resp.events), now)
            except grpc.RpcError:
                pass
            finally:
                q.put(None)
                channel.close()
            self.stopped.wait(0.2)

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self.thread.join(5)


class Recorder:
    """Collects the history of one run. Thread-safe; :meth:`close` before :meth:`history`."""

    def __init__(
        self,
        *,
        endpoints: Sequence[str],
        base: str,
        leader_prefix: str,
        journal: Path,
        meta: dict[str, Any],
    ) -> None:
        self.endpoints = list(endpoints)
        self.base = base.rstrip("/") + "/"
        self.leader_prefix = leader_prefix.rstrip("/") + "/"
        self.journal = journal
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, str, int], float] = {}
        self._logs: dict[str, tuple[Path, int, bytes]] = {}
        self._stop = threading.Event()
        self._key_tokens: dict[str, int] = {}
        self._journal_offset = 0
        self._journal_rest = b""
        self._job_pids: dict[int, list[tuple[int, str]]] = {}
        #: pid -> (pidfd, token, ev, seen alive at) of job processes not yet seen to exit.
        self._pidfds: dict[int, tuple[int, int, str, float]] = {}
        #: (send time, answer time, revision) of linearizable reads, oldest first.
        self._revisions: list[tuple[float, float, int]] = []
        self._tick = time.monotonic()  # the last tick that looked at the pidfds
        self._sentinel_seen = threading.Event()
        self._journal_lock = threading.Lock()  # the journal index is read from several threads
        self.sentinel = f"{self.base}recorder-sentinel".encode()
        #: pod -> token while its latest election event is ``election.acquired``, else None.
        self.leading: dict[str, int | None] = {}
        #: (pod, job) -> token, the same per job of a jobs file (job "" without one).
        self.leading_jobs: dict[tuple[str, str], int] = {}
        self.add("meta", **meta, base=base, leader_prefix=leader_prefix)
        rev = current_revision(self.endpoints)
        self._watches = [
            _MemberWatch(ep, self.base.encode(), rev + 1, self._on_events) for ep in endpoints
        ]
        self._tailer = threading.Thread(target=self._tail, name="log-tailer", daemon=True)
        self._tailer.start()
        self._poller = threading.Thread(target=self._poll_revision, name="rev-poller", daemon=True)
        self._poller.start()

    # -- events ----------------------------------------------------------------------------

    def add(self, kind: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
        rec = {"t": time.monotonic() if t is None else t, "kind": kind, **fields}
        with self._lock:
            self._events.append(rec)
            if kind == "daemon":
                event = fields.get("event")
                pod, job = str(fields["pod"]), str(fields.get("job") or "")
                if event == "election.acquired":
                    self.leading[pod] = int(fields.get("token", 0))
                    self.leading_jobs[(pod, job)] = int(fields.get("token", 0))
                elif event == "election.lost":
                    self.leading[pod] = None
                    self.leading_jobs.pop((pod, job), None)
                elif event in ("daemon.started", "daemon.stopped"):
                    self.leading[pod] = None
                    for held in [k for k in self.leading_jobs if k[0] == pod]:
                        del self.leading_jobs[held]
            elif kind == "key.put":
                self._key_tokens[str(fields["key"])] = int(fields["create_revision"])
        return rec

    @contextlib.contextmanager
    def fault(self, name: str, target: str | None = None, **fields: Any) -> Iterator[None]:
        """Record ``fault.start`` before the body injects the fault, ``fault.end`` after it
        healed it (the body must heal before returning)."""
        fid = f"{name}-{time.monotonic():.3f}"
        self.add("fault", phase="start", fault=name, target=target, id=fid, **fields)
        try:
            yield
        finally:
            self.add("fault", phase="end", fault=name, target=target, id=fid)

    def fault_start(self, name: str, target: str | None = None, **fields: Any) -> str:
        fid = f"{name}-{time.monotonic():.3f}"
        self.add("fault", phase="start", fault=name, target=target, id=fid, **fields)
        return fid

    def fault_end(self, fid: str, name: str, target: str | None = None) -> None:
        self.add("fault", phase="end", fault=name, target=target, id=fid)

    def _on_events(self, events: list[Any], now: float) -> None:
        for ev in events:
            key = ev.kv.key.decode(errors="replace")
            ident = (ev.kv.mod_revision, key, ev.type)
            with self._lock:
                if ident in self._seen:
                    continue
                self._seen[ident] = now
            if ev.kv.key == self.sentinel:
                self._sentinel_seen.set()
                continue
            if ev.type == _DELETE:
                rec: dict[str, Any] = {"key": key, "revision": ev.kv.mod_revision}
                if self._is_leader_key(key):
                    rec["alive_jobs"] = self._alive_jobs_of_key(key)
                self.add("key.delete", t=now, **rec)
            else:
                value = bytes(ev.kv.value)
                try:
                    doc: Any = json.loads(value)
                except ValueError:
                    doc = value.decode(errors="replace")
                self.add(
                    "key.put",
                    t=now,
                    key=key,
                    create_revision=ev.kv.create_revision,
                    mod_revision=ev.kv.mod_revision,
                    version=ev.kv.version,
                    lease=ev.kv.lease,
                    value=doc,
                )

    def _is_leader_key(self, key: str) -> bool:
        """A leader key of the election, or of any job of a jobs file."""
        return job_of_leader_key(self.base, self.leader_prefix, key) is not None

    def _read_journal(self) -> None:
        """Index the job journal's new lines: token -> [(pid, "start" | "grandchild")]."""
        try:
            with self.journal.open("rb") as f:
                f.seek(self._journal_offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self._journal_offset += len(chunk)
        *lines, self._journal_rest = (self._journal_rest + chunk).split(b"\n")
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("ev") in ("start", "grandchild"):
                pid = int(rec["child"] if rec["ev"] == "grandchild" else rec["pid"])
                token = int(rec["token"])
                self._job_pids.setdefault(token, []).append((pid, rec["ev"]))
                self._watch_exit(pid, token, str(rec["ev"]))

    def _watch_exit(self, pid: int, token: int, ev: str) -> None:
        """Watch ``pid`` (journaled with ``token``) for its exit through a pidfd."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = -1  # already gone and reaped
        if fd < 0 or not _has_token(pid, token):  # gone, or the pid is another process now
            if fd >= 0:
                os.close(fd)
            # It died at some time before now; the journal line says it was alive at its start.
            self.add("proc.exit", pid=pid, token=token, ev=ev, alive_until=None)
            return
        alive_at = time.monotonic()  # its environ was readable: alive, not a zombie
        with self._lock:
            self._pidfds[pid] = (fd, token, ev, alive_at)

    def _reap_exits(self) -> None:
        """Record the exit of every watched job process that ended since the last tick."""
        with self._lock:
            watched = dict(self._pidfds)
        before = self._tick  # every process still watched was alive then (not yet ready)
        self._tick = now = time.monotonic()
        if not watched:
            return
        fds = {fd: pid for pid, (fd, _, _, _) in watched.items()}
        poller = select.poll()  # not select(): a long soak's descriptors pass 1024
        for fd in fds:
            poller.register(fd, select.POLLIN)
        ready = [fd for fd, _ in poller.poll(0)]
        for fd in ready:  # each exited after it was last seen alive, and by now
            pid = fds[fd]
            _, token, ev, since = watched[pid]
            with self._lock:
                self._pidfds.pop(pid, None)
            os.close(fd)
            alive_until = max(before, since)
            self.add("proc.exit", t=now, pid=pid, token=token, ev=ev, alive_until=alive_until)

    def _alive_jobs_of_key(self, key: str) -> list[dict[str, Any]]:
        """Processes (jobs and their grandchildren) of the token of ``key`` still alive now."""
        with self._lock:
            token = self._key_tokens.get(key)
        if token is None:
            return []
        with self._journal_lock:
            self._read_journal()
            pids = list(self._job_pids.get(token, []))
        alive = []
        for pid, ev in pids:
            if pid_alive(pid) and _has_token(pid, token):
                alive.append({"pid": pid, "state": process_state(pid), "ev": ev})
        return alive

    # -- daemon logs -------------------------------------------------------------------------

    def tail_log(self, pod: str, path: Path) -> None:
        """Start tailing a daemon's JSON log (from its current end)."""
        with self._lock:
            size = path.stat().st_size if path.exists() else 0
            self._logs[pod] = (path, size, b"")

    def _tail(self) -> None:
        while not self._stop.is_set():
            self._poll_logs()
            with self._journal_lock:
                self._read_journal()
            self._reap_exits()
            self._stop.wait(0.01)
        self._poll_logs()
        with self._journal_lock:
            self._read_journal()
        self._reap_exits()

    # -- revisions, for lower bounds of deletions -----------------------------------------------

    def _poll_revision(self) -> None:
        """A linearizable read every REVISION_POLL seconds: (send time, revision)."""
        channels = [grpc.insecure_channel(ep) for ep in self.endpoints]
        stubs = [etcdrpc.KVStub(c) for c in channels]
        i = 0
        try:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    resp = stubs[i % len(stubs)].Range(
                        etcdrpc.RangeRequest(key=self.sentinel, limit=1), timeout=1
                    )
                except grpc.RpcError:
                    i += 1  # that member is down or cut: ask the next one
                    continue
                answered = time.monotonic()
                with self._lock:
                    self._revisions.append((sent, answered, int(resp.header.revision)))
                self._stop.wait(REVISION_POLL)
        finally:
            for c in channels:
                c.close()

    def _bracket_deletions(self) -> None:
        """Give each leader-key deletion its bracket from the linearizable reads: a read is
        served at a moment between its send and its answer, at its header's revision."""
        with self._lock:
            reads = list(self._revisions)
            deletions = [
                r
                for r in self._events
                if r["kind"] == "key.delete" and self._is_leader_key(str(r["key"]))
            ]
        # Sorted by revision: the newest send below a revision, the earliest answer at or above.
        reads.sort(key=lambda r: r[2])
        revs = [r for _, _, r in reads]
        latest_sent = list(itertools.accumulate((sent for sent, _, _ in reads), max))
        answers = [ans for _, ans, _ in reads]
        earliest_answer = list(itertools.accumulate(reversed(answers), min))
        earliest_answer.reverse()
        for rec in deletions:
            i = bisect.bisect_left(revs, int(rec["revision"]))
            rec["present_at"] = latest_sent[i - 1] if i > 0 else None
            rec["gone_by"] = earliest_answer[i] if i < len(reads) else None

    def _poll_logs(self) -> None:
        with self._lock:
            logs = dict(self._logs)
        for pod, (path, offset, rest) in logs.items():
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                continue
            if not chunk:
                continue
            now = time.monotonic()
            *lines, tail = (rest + chunk).split(b"\n")
            for line in lines:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if isinstance(doc, dict) and "event" in doc:
                    self.add("daemon", t=now, pod=pod, **doc)
            with self._lock:
                self._logs[pod] = (path, offset + len(chunk), tail)

    # -- the end -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop watching and tailing (idempotent)."""
        self._stop.set()
        self._tailer.join(5)
        self._poller.join(5)
        for w in self._watches:
            w.stop()
        with self._lock:
            fds = [fd for fd, _, _, _ in self._pidfds.values()]
            self._pidfds.clear()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self, store_url: str | None = None, timeout: float = 10.0) -> None:
        """Wait until the watches have delivered everything written so far (a sentinel key,
        written now, has arrived), stop watching and tailing, and merge the store's decisions
        and the job journal. A sentinel that never arrives is recorded as an anomaly."""
        self._sentinel_seen.clear()
        arrived = False
        for ep in self.endpoints:  # the first member that takes the write
            channel = grpc.insecure_channel(ep)
            try:
                etcdrpc.KVStub(channel).Put(
                    etcdrpc.PutRequest(key=self.sentinel, value=b"end"), timeout=timeout / 2
                )
            except grpc.RpcError:
                continue
            finally:
                channel.close()
            arrived = self._sentinel_seen.wait(timeout)
            break
        if not arrived:
            self.add("anomaly", pod=None, what="recorder: the watches lag: history incomplete")
        self.stop()
        self._bracket_deletions()
        if store_url is not None:
            with urllib.request.urlopen(store_url.rstrip("/") + "/log", timeout=10) as resp:
                for line in resp.read().decode().splitlines():
                    d = json.loads(line)
                    data = json.loads(d["data"]) if d.get("data") else None
                    self.add(
                        "store",
                        t=float(d["mono"]),
                        seq=d["seq"],
                        op=d["op"],
                        resource=d.get("resource"),
                        token=d["token"],
                        accepted=d["accepted"],
                        high_water=d["high_water"],
                        writer=d["writer"],
                        slot=d["slot"],
                        data=data,
                    )
        for rec in read_jsonl(self.journal):
            self.add("job", **rec)

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self._events, key=lambda r: r["t"])

    def dump(self, path: Path) -> None:
        with path.open("w") as f:
            for rec in self.history():
                f.write(json.dumps(rec, default=str) + "\n")


def _has_token(pid: int, token: int) -> bool:
    """Whether ``pid`` runs with LEADERJOB_FENCING_TOKEN=token (guards against pid reuse)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"LEADERJOB_FENCING_TOKEN={token}".encode() in environ.split(b"\0")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def load_history(path: Path) -> list[dict[str, Any]]:
    return sorted(read_jsonl(path), key=lambda r: r["t"])
