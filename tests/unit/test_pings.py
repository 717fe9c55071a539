"""Pings isolated per job (leaderjob.ops.pings): a slow or dead endpoint delays and drops only its
own job's pings.

What is defended:

* isolation: with endpoints that never answer, answer after 10 s and refuse connections, a
  healthy job's pings all arrive, in order, each within :data:`BOUND` of its event;
* per-job order: a job's pings leave in the order of its events, one at a time; a ping that can
  no longer matter is dropped (counted), not sent late — a ``/start`` of a run that ended, a
  success once the next run's ``/start`` is queued; a ``/fail`` is kept;
* bounded memory and threads with every endpoint dead: lanes are capped, drops counted, the
  worker count stays flat (a simulated day on a fake clock, and a few hundred runs for real);
* a graceful stop still sends what is queued, within the notification grace.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import structlog

from leaderjob.ops import pings
from leaderjob.ops.notify import Notifier, NotifySettings
from leaderjob.ops.ping_lanes import LANE_CAP, Lanes, Ping
from tests.harness.endpoint import QuietServer

#: A healthy job's ping leaves within this of its event, whatever other endpoints do.
BOUND = 1.0
#: Seconds of the simulated run with dead endpoints (2 h: every backoff and cap reached long
#: before; the bound holds from the first minute).
SIMULATED = 2 * 3600


def _ping(job: str, event: str, run: str, until: float = 100.0) -> Ping:
    return Ping(job, event, run, f"http://h/{job}/{event}/{run}", b"", until)


def _drain(lanes: Lanes, now: float) -> list[Ping]:
    """Every ping that may be sent now, each answered at once."""
    sent = []
    while True:
        ping, _ = lanes.take(now)
        if ping is None:
            return sent
        sent.append(ping)
        assert lanes.done(ping, now, None) == "ok"


# --- the rules (pure) -------------------------------------------------------------------------


def test_one_ping_in_flight_per_job_and_in_the_order_of_its_events() -> None:
    lanes = Lanes()
    for p in (_ping("a", "fail", "r0"), _ping("b", "start", "r1"), _ping("a", "start", "r1")):
        lanes.add(p)
    first, _ = lanes.take(0.0)
    second, _ = lanes.take(0.0)
    assert first is not None and second is not None
    assert {(first.job, first.event), (second.job, second.event)} == {
        ("a", "fail"),
        ("b", "start"),
    }
    assert lanes.take(0.0) == (None, []), "a's /start went out beside its /fail"
    assert lanes.done(first if first.job == "a" else second, 0.0, None) == "ok"
    nxt, _ = lanes.take(0.0)
    assert nxt is not None and (nxt.job, nxt.event, nxt.run) == ("a", "start", "r1")


def test_a_start_whose_run_ended_and_a_success_overtaken_by_the_next_start_are_dropped() -> None:
    lanes = Lanes()
    blocker = _ping("j", "fail", "r0")
    lanes.add(blocker)
    taken, _ = lanes.take(0.0)  # the endpoint hangs on r0's /fail: the rest waits behind it
    assert taken is blocker
    assert lanes.add(_ping("j", "start", "r1")) == []
    drops = lanes.add(_ping("j", "success", "r1"))
    assert [(d.ping.event, d.ping.run, d.reason) for d in drops] == [
        ("start", "r1", "superseded")
    ]
    drops = lanes.add(_ping("j", "start", "r2"))
    assert [(d.ping.event, d.ping.run) for d in drops] == [("success", "r1")]
    lanes.add(_ping("j", "fail", "r2"))  # drops r2's /start
    lanes.add(_ping("j", "start", "r3"))  # a /fail is never superseded
    lanes.ended("j", "r3")  # r3 stopped on purpose (no ping of its own): its /start is stale
    lanes.done(blocker, 1.0, None)
    assert [(p.event, p.run) for p in _drain(lanes, 1.0)] == [("fail", "r2")]


def test_a_ping_being_sent_when_it_goes_stale_is_not_retried() -> None:
    lanes = Lanes()
    start = _ping("j", "start", "r1")
    lanes.add(start)
    assert lanes.take(0.0)[0] is start
    lanes.add(_ping("j", "success", "r1"))
    assert lanes.done(start, 0.1, "unreachable: ConnectionRefusedError") == "dropped"
    assert [p.event for p in _drain(lanes, 0.1)] == ["success"]


def test_a_failed_ping_is_retried_with_backoff_within_its_window_then_failed() -> None:
    lanes = Lanes()
    ping = _ping("j", "fail", "r1", until=10.0)
    lanes.add(ping)
    now, tries = 0.0, []
    while True:
        taken, _ = lanes.take(now)
        if taken is None:
            due = lanes.next_ready()
            assert due is not None and due > now
            now = due
            continue
        tries.append(now)
        result = lanes.done(taken, now, "answered 500")
        if result is not None:
            break
    assert result == "failed"
    assert tries == [0.0, 1.0, 3.0, 7.0]  # 1 s, 2 s, 4 s; the next (8 s) would end past 10 s
    assert lanes.pending() == 0


def test_a_lane_keeps_at_most_its_cap_and_drops_the_oldest() -> None:
    lanes = Lanes(cap=3)
    blocker = _ping("j", "fail", "r0")
    lanes.add(blocker)
    lanes.take(0.0)
    drops = []
    for i in range(1, 6):
        drops += lanes.add(_ping("j", "fail", f"r{i}"))
    assert [(d.ping.run, d.reason) for d in drops] == [("r1", "queue full"), ("r2", "queue full")]
    lanes.done(blocker, 0.0, None)
    assert [p.run for p in _drain(lanes, 0.0)] == ["r3", "r4", "r5"]


def test_a_ping_whose_window_closed_before_its_turn_is_dropped_unsent() -> None:
    lanes = Lanes()
    blocker = _ping("j", "fail", "r0")
    lanes.add(blocker)
    lanes.take(0.0)
    lanes.add(_ping("j", "fail", "r1", until=5.0))
    lanes.done(blocker, 6.0, None)
    ping, expired = lanes.take(6.0)
    assert ping is None and [(d.ping.run, d.reason) for d in expired] == [
        ("r1", "its window closed before its turn")
    ]
    assert lanes.pending() == 0


def test_stopping_gives_each_queued_ping_one_try_without_backoff() -> None:
    lanes = Lanes()
    ping = _ping("j", "fail", "r1")
    lanes.add(ping)
    lanes.take(0.0)
    assert lanes.done(ping, 0.0, "answered 503") is None  # backoff: due at 1.0
    assert lanes.take(0.5)[0] is None
    lanes.stopping = True
    assert lanes.take(0.5)[0] is ping
    assert lanes.done(ping, 0.5, "answered 503") == "failed"  # no retry while stopping


def test_hours_with_every_endpoint_dead_but_one_stay_bounded_and_on_time() -> None:
    """Four jobs at ``@every 1s`` for 6 h on a fake clock: three endpoints hang each request
    for its whole timeout (5 s), one answers at once. The healthy job's pings all leave at their
    event's second, in order; the dead lanes never hold more than their cap; every dead ping
    ends counted (failed or dropped)."""
    lanes = Lanes()
    dead = ("hangs", "slow", "refuses")
    in_flight: dict[str, tuple[Ping, float]] = {}
    results: dict[str, int] = {}
    healthy: list[tuple[str, str | None]] = []
    expected: list[tuple[str, str | None]] = []
    most = 0
    for second in range(SIMULATED):
        now = float(second)
        for job, (ping, ends) in list(in_flight.items()):
            if ends <= now:
                del in_flight[job]
                result = lanes.done(ping, now, "timed out")
                if result is not None:
                    results[result] = results.get(result, 0) + 1
        run = f"r{second}"
        event = "success" if second % 3 else "fail"
        for job in (*dead, "ok"):
            for p in (_ping(job, "start", run, now + 10), _ping(job, event, run, now + 10)):
                for drop in lanes.add(p):
                    assert drop.ping.job in dead or drop.ping.event == "start"
                    if drop.ping.job in dead:
                        results["dropped"] = results.get("dropped", 0) + 1
        expected.append((event, run))
        while True:
            ping, expired = lanes.take(now)
            assert all(d.ping.job in dead for d in expired)
            results["dropped"] = results.get("dropped", 0) + len(expired)
            if ping is None:
                break
            if ping.job == "ok":
                healthy.append((ping.event, ping.run))
                assert lanes.done(ping, now, None) == "ok"
            else:
                in_flight[ping.job] = (ping, now + pings.PING_TIMEOUT)
        most = max(most, lanes.pending())
    # The healthy job: its run's /start and its end are queued together here (the run takes no
    # simulated time), so each /start is superseded: the ends all leave, at once, in order.
    assert healthy == expected
    assert most <= len(dead) * (LANE_CAP + 1) + 1
    assert "ok" not in results
    total_dead = SIMULATED * 2 * len(dead)
    assert results["failed"] + results["dropped"] + lanes.pending() == total_dead


# --- the threads, against real endpoints ----------------------------------------------------


class Endpoint:
    """A local HTTP endpoint: ``healthy`` answers 200 at once, ``slow`` after 10 s; records the
    paths it was asked for (with their arrival time)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.arrived: list[tuple[str, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.arrived.append((self.path, time.monotonic()))
                if owner.closed.wait(delay):
                    return  # the endpoint closed first: no answer to give
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.open: list[socket.socket] = []  # the connections being answered
        self.closed = threading.Event()

        class Server(QuietServer):
            def process_request(self, request: Any, client_address: Any) -> None:
                owner.open.append(request)
                super().process_request(request, client_address)

        self.httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/check"

    def close(self) -> None:
        """Stop listening and cut the connections still waiting for an answer, so that no ping
        is left in flight."""
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture(autouse=True)
def _no_ping_outlives_its_test() -> Iterator[None]:
    """After the endpoints are closed (autouse: torn down last), wait for the ping workers to
    leave. A ping left in flight would log its failure seconds later into whatever test then
    runs in this process, and into its captured output."""
    yield
    workers = lambda: [t for t in threading.enumerate() if t.name == "leaderjob-ping"]  # noqa: E731
    assert _wait(lambda: not workers(), 10), f"ping workers still running: {workers()}"


@pytest.fixture
def endpoints() -> Iterator[dict[str, str]]:
    """The four kinds of endpoint: never answers (a listening socket nobody accepts on), answers
    after 10 s, refuses connections (a port nobody listens on), healthy."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    slow, healthy = Endpoint(delay=10.0), Endpoint()
    try:
        yield {
            "hangs": f"http://127.0.0.1:{silent.getsockname()[1]}/check",
            "slow": slow.url,
            "refuses": f"http://127.0.0.1:{refused_port}/check",
            "ok": healthy.url,
            "_healthy": healthy,  # type: ignore[dict-item]
        }
    finally:
        silent.close()
        slow.close()
        healthy.close()


class Counts:
    def __init__(self) -> None:
        self.by: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def __call__(self, job: str, kind: str, result: str) -> None:
        with self.lock:
            self.by[job, result] = self.by.get((job, result), 0) + 1

    def of(self, job: str, result: str) -> int:
        with self.lock:
            return self.by.get((job, result), 0)


def test_a_dead_endpoint_delays_and_drops_only_its_own_jobs_pings(
    endpoints: dict[str, Any],
) -> None:
    """Four jobs, one per endpoint kind, 100 runs each (a compressed ``@every 1s``: a run every
    40 ms, 20 ms long, half of them failing): every ping of the healthy job that still matters
    arrives, in the order of its events, within BOUND of its event; the dead jobs' pings are all
    counted failed or dropped; the worker threads and the queued pings stay flat from the first
    third to the end."""
    healthy: Endpoint = endpoints.pop("_healthy")
    counts = Counts()
    n = Notifier(structlog.get_logger(), counts, environ={})
    settings = {job: NotifySettings(ping_url=url) for job, url in endpoints.items()}
    events: list[tuple[str, float]] = []  # the healthy job's: (path, when)
    samples: list[tuple[int, int, int]] = []  # (workers, queued pings, threads) per run
    runs = 100
    t0 = time.monotonic()
    for i in range(runs):
        run_id = f"{i:012x}"
        rid = f"rid=00000000-0000-4000-8000-{run_id}"
        for job, s in settings.items():
            n.started(s, job=job, window=10, run_id=run_id)
        events.append((f"/check/start?{rid}", time.monotonic()))
        _sleep_until(t0 + i * 0.04 + 0.02)
        outcome = "failed" if i % 2 else "succeeded"
        record = {"run_id": run_id, "outcome": outcome, "exit_code": 1 if i % 2 else 0}
        for job, s in settings.items():
            n.finished(s, record, job=job, election="g", window=10)
        events.append((f"/check{'/fail' if i % 2 else ''}?{rid}", time.monotonic()))
        samples.append((n.pinger.threads(), n.pinger.lanes.pending(), threading.active_count()))
        _sleep_until(t0 + (i + 1) * 0.04)
    stale = lambda: counts.of("ok", "dropped")  # noqa: E731
    assert _wait(lambda: len(healthy.arrived) + stale() >= len(events), 5), (
        len(healthy.arrived),
        stale(),
    )
    n.close(timeout=0.5)

    # Compressed, a run's /start and end and the next /start are 20 ms apart: on a loaded
    # machine (a dozen runnable threads per core) a ping may still be queued when the next event
    # makes it stale (a /start whose run ended, a success once the next /start is queued):
    # dropped and counted, never sent late. A lane held up by another's endpoint (5 s a request)
    # would lose nearly every ping that way, and a shared queue would deliver none: at least
    # half arrive.
    arrived = dict(healthy.arrived)
    missing = [path for path, _ in events if path not in arrived]
    assert len(missing) == stale() <= len(events) // 2, missing
    assert all("/fail" not in path for path in missing), missing
    assert events[-1][0] in arrived
    assert [path for path, _ in healthy.arrived] == [p for p, _ in events if p in arrived]
    late = [(path, round(arrived[path] - sent, 3)) for path, sent in events
            if path in arrived and arrived[path] - sent > BOUND]  # fmt: skip
    assert not late, f"healthy pings later than {BOUND} s: {late[:5]}"
    assert counts.of("ok", "ok") == 2 * runs - stale()
    for job in ("hangs", "slow", "refuses"):
        assert counts.of(job, "ok") == 0
        ended = counts.of(job, "failed") + counts.of(job, "dropped")
        # Each run's two pings end counted; at most one per job was still being sent at close.
        assert 2 * runs - 1 <= ended <= 2 * runs, (job, counts.by)
    third = samples[runs // 3 :]
    workers = max(w for w, _, _ in third)
    assert workers <= 4 + 1, f"worker threads grew to {workers}"
    assert max(q for _, q, _ in third) <= 4 * (LANE_CAP + 1)
    assert max(t for _, _, t in third) - min(t for _, _, t in third) <= 3, "threads kept growing"


def test_a_graceful_stop_still_sends_what_is_queued_within_the_grace(
    endpoints: dict[str, Any],
) -> None:
    """A run that ends as the daemon stops: its success ping goes out during close(), beside
    dead endpoints whose requests are in flight; close() returns within its grace."""
    healthy: Endpoint = endpoints.pop("_healthy")
    counts = Counts()
    n = Notifier(structlog.get_logger(), counts, environ={})
    for job in ("hangs", "slow", "refuses"):
        s = NotifySettings(ping_url=endpoints[job])
        n.finished(s, {"run_id": "0123456789ab", "outcome": "failed"}, job=job, election="g",
                   window=60)  # fmt: skip
    time.sleep(0.2)  # the dead ones are being sent (or in backoff)
    s = NotifySettings(ping_url=endpoints["ok"])
    n.finished(s, {"run_id": "0123456789ab", "outcome": "succeeded"}, job="ok", election="g",
               window=60)  # fmt: skip
    t0 = time.monotonic()
    n.close(timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert [p for p, _ in healthy.arrived] == ["/check?rid=00000000-0000-4000-8000-0123456789ab"]
    assert counts.of("ok", "ok") == 1
    assert counts.of("refuses", "failed") == 1  # its last try, on stop, without backoff


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def _wait(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True
