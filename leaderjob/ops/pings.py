"""Dead-man's-switch pings (``--ping-url``, the healthchecks.io convention), isolated per job.

Each job has a *lane*: its pings wait there, in the order of their events, and at most one of
them is being sent at a time. A bounded pool of worker threads (at most :data:`WORKERS`, started
when a lane has a ping ready and no worker is free, gone after :data:`WORKER_IDLE` of nothing to
do) serves the lanes. A worker holds a lane only for one request (at most :data:`PING_TIMEOUT`);
a failed ping waits out its backoff in the lane, not in a worker. So an endpoint that hangs,
answers late or refuses connections delays and drops only its own job's pings: another job's
ping leaves as soon as it is queued, unless :data:`WORKERS` requests to other endpoints hang at
that very moment.

The rules (:class:`~leaderjob.ops.ping_lanes.Lanes`, pure, driven by the caller's clock; they
are :mod:`leaderjob.ops.ping_lanes`'s, this module sends):

* a job's pings go out in the order of its events, one at a time (the next is sent only once
  the one before it was answered or given up);
* a ping that can no longer matter is dropped, not sent late: the ``/start`` of a run that has
  ended (its end was reported), and a success of a run once the next run's ``/start`` is queued.
  A ``/fail`` is never dropped that way: a failure is what the monitor is there for;
* a failed ping is retried with backoff (1 s, 2 s, 4 s … 30 s) until its window (the slot's
  interval) closes, then counted ``failed``;
* a lane holds at most :data:`LANE_CAP` pings: beyond, the oldest is dropped. Dropped pings are
  counted (``result="dropped"``), each one, and logged with the reason — at most once per
  destination (a URL's scheme and host) per :data:`~leaderjob.ops.logthrottle.INTERVAL`, with how
  many were dropped since (``dropped``): a dead endpoint would otherwise log every slot;
* on stop, every ping still queued gets one try (no backoff) within the stop's grace.

A ping URL is a secret (whoever knows it can report success): logs show its scheme and host only.
"""

from __future__ import annotations

import threading
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

from leaderjob.ops.logthrottle import Throttle
from leaderjob.ops.ping_lanes import Drop, Lanes, Ping

#: One ping request's timeout: a dead-man's-switch service answers in milliseconds.
PING_TIMEOUT = 5.0
#: Worker threads at most (requests in flight at once, one per job at a time).
WORKERS = 32
#: A worker with nothing to do for this long exits (unless a lane still needs it).
WORKER_IDLE = 5.0
#: The namespace of a run's ``rid`` when its run id is not 12 hex digits.
RID_NAMESPACE = uuid.UUID("6d1c0b55-7a4e-4c2f-9a52-6c6561646a6f")


def redact_url(url: str) -> str:
    """A URL as logs may show it: scheme and host only (path, query and user info may hold the
    secret, as a healthchecks.io check's UUID does)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/…" if parts.scheme else "<invalid url>"


def run_uuid(run_id: str) -> str:
    """The healthchecks.io ``rid`` of a run: a UUID whose last 12 digits are the run id (so the
    monitor's event log shows which run it was), or one derived from it when it has another
    form."""
    if len(run_id) == 12 and all(c in "0123456789abcdef" for c in run_id):
        return f"00000000-0000-4000-8000-{run_id}"
    return str(uuid.uuid5(RID_NAMESPACE, run_id))


def ping_url(base: str, event: str, run_id: str | None = None) -> str:
    """``start`` → ``BASE/start``, ``success`` → ``BASE``, ``fail`` → ``BASE/fail``; a query
    string stays at the end, with ``rid=`` the run's UUID added when the run is known (the
    monitor pairs a run's start and its end by it, even when runs overlap)."""
    parts = urllib.parse.urlsplit(base)
    if event != "success":
        parts = parts._replace(path=f"{parts.path.rstrip('/')}/{event}")
    if run_id is not None:
        rid = urllib.parse.urlencode({"rid": run_uuid(run_id)})
        parts = parts._replace(query=f"{parts.query}&{rid}" if parts.query else rid)
    return urllib.parse.urlunsplit(parts)


Sender = Callable[[str, bytes, float], "str | None"]


class Pinger:
    """The threads that send the lanes' pings. :meth:`add` returns at once.

    ``count(job, "ping", result)`` counts each ping's end; ``send(url, body, timeout)`` is one
    request (None when answered 2xx, else what went wrong, without the URL).
    """

    def __init__(
        self,
        log: Any,
        count: Callable[[str, str, str], None],
        clock: Callable[[], float],
        send: Sender | None = None,
    ) -> None:
        self.log = log
        self.count = count
        self.clock = clock
        self.send: Sender = send or _request
        self.lanes = Lanes()
        self.throttle = Throttle(clock)  # notify.dropped lines, per destination
        self._cond = threading.Condition()
        self._workers: set[threading.Thread] = set()
        self._free = 0  # workers not sending (waiting, or started and not yet looking)
        self._stop_at: float | None = None  # the end of the stop's grace
        self._closed = False

    def add(self, ping: Ping) -> None:
        with self._cond:
            if self._closed:
                drops = [Drop(ping, "stopping")]
            else:
                drops = self.lanes.add(ping)
                self._staff()
        for drop in drops:
            self._dropped(drop)

    def ended(self, job: str, run: str | None) -> None:
        with self._cond:
            drops = self.lanes.ended(job, run)
        for drop in drops:
            self._dropped(drop)

    def threads(self) -> int:
        with self._cond:
            return len(self._workers)

    def close(self, timeout: float) -> None:
        """Give every queued ping one try within ``timeout``; what is left then is dropped."""
        with self._cond:
            self._stop_at = self.clock() + timeout
            self.lanes.stopping = True
            self._staff()
            self._cond.notify_all()
            while self.lanes.pending() and self.clock() < self._stop_at:
                self._cond.wait(max(0.0, self._stop_at - self.clock()))
            self._closed = True
            drops = self.lanes.clear()
            self._cond.notify_all()  # idle workers leave
        for drop in drops:
            self._dropped(drop)

    # -- the workers ---------------------------------------------------------------------------

    def _staff(self) -> None:
        """(Lock held.) Start workers for the lanes ready now that no free worker will take."""
        need = self.lanes.ready(self.clock()) - self._free
        while need > 0 and len(self._workers) < WORKERS:
            worker = threading.Thread(target=self._work, name="leaderjob-ping", daemon=True)
            self._workers.add(worker)
            self._free += 1
            worker.start()
            need -= 1
        if self._free:
            self._cond.notify_all()

    def _work(self) -> None:
        me = threading.current_thread()
        idle_since = self.clock()
        with self._cond:
            try:
                while True:
                    now = self.clock()
                    ping, expired = self.lanes.take(now)
                    if expired:
                        self._cond.release()
                        try:
                            for drop in expired:
                                self._dropped(drop)
                        finally:
                            self._cond.acquire()
                    if ping is not None:
                        self._attempt(ping)
                        idle_since = self.clock()
                        continue
                    if self._closed:
                        return
                    if now - idle_since >= WORKER_IDLE and (
                        self._free > self.lanes.waiting_lanes()
                    ):
                        return  # more workers than lanes that will need one
                    due = self.lanes.next_ready()
                    wait = WORKER_IDLE if due is None else min(WORKER_IDLE, due - now)
                    self._cond.wait(max(0.01, wait))
            finally:
                self._workers.discard(me)
                self._free -= 1

    def _attempt(self, ping: Ping) -> None:
        """(Lock held; released while sending.) One try of ``ping``."""
        self._free -= 1
        now = self.clock()
        timeout = min(PING_TIMEOUT, max(0.5, ping.until - now))
        if self._stop_at is not None:
            timeout = min(timeout, max(0.1, self._stop_at - now))
        self._cond.release()
        try:
            error = self.send(ping.url, ping.body, timeout)
        except Exception as exc:  # a worker must outlive any one request
            error = f"unreachable: {type(exc).__name__}"
        finally:
            self._cond.acquire()
            self._free += 1
        result = self.lanes.done(ping, self.clock(), error)
        self._cond.notify_all()  # close() waits for the lanes to drain; retries may be due
        if result is None:
            return
        self._cond.release()
        try:
            if result == "dropped":
                self._dropped(Drop(ping, "superseded"))
            else:
                if result == "failed":
                    self.log.warning(
                        "notify.failed",
                        kind="ping",
                        job=ping.job,
                        ping=ping.event,
                        run_id=ping.run,
                        url=redact_url(ping.url),
                        attempts=ping.attempts,
                        error=error,
                    )
                self.count(ping.job, "ping", result)
        finally:
            self._cond.acquire()

    def _dropped(self, drop: Drop) -> None:
        ping = drop.ping
        self.count(ping.job, "ping", "dropped")
        url = redact_url(ping.url)
        dropped = self.throttle.admit(("ping", url))
        if dropped is not None:
            self.log.warning(
                "notify.dropped",
                kind="ping",
                job=ping.job,
                ping=ping.event,
                run_id=ping.run,
                url=url,
                reason=drop.reason,
                dropped=dropped,
            )


def _request(url: str, body: bytes, timeout: float) -> str | None:
    """One ping; None on a 2xx answer, else what went wrong (without the URL: it is secret)."""
    import urllib.error  # with the first ping: a daemon without --ping-url never loads them
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the scheme is checked at start-up
        url,
        data=body or None,
        method="POST" if body else "GET",
        headers={"User-Agent": "leaderjob"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return None if 200 <= resp.status < 300 else f"answered {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"answered {exc.code}"
    except urllib.error.URLError as exc:
        return f"unreachable: {type(exc.reason).__name__}"
    except (OSError, ValueError) as exc:
        return f"unreachable: {type(exc).__name__}"
