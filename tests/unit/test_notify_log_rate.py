"""Dropped notifications are logged at a bounded rate, counted exactly.

A dead endpoint with a job every second drops pings continuously (a superseded success, a full
lane): one ``notify.dropped`` warning each was about two a second, for as long as the endpoint
stayed dead. Now each destination (a ping URL's scheme and host; a job's on-failure command)
logs at most one ``notify.dropped`` per :data:`leaderjob.ops.logthrottle.INTERVAL`, carrying
how many were dropped since its last line; the metric (``result="dropped"``) still counts every one.
"""

from __future__ import annotations

from typing import Any

from leaderjob.ops.logthrottle import INTERVAL, Throttle
from leaderjob.ops.ping_lanes import Ping
from leaderjob.ops.pings import Pinger


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    info = error = warning

    def dropped(self) -> list[dict[str, Any]]:
        return [f for e, f in self.events if e == "notify.dropped"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_admits_one_line_per_key_per_interval_with_the_count() -> None:
    clock = Clock()
    t = Throttle(clock, interval=10.0)
    assert t.admit("a") == 1  # the first of a key: logged at once
    assert t.admit("a") is None and t.admit("a") is None  # held back, counted
    assert t.admit("b") == 1  # another key is not held back by "a"
    clock.now = 9.9
    assert t.admit("a") is None
    clock.now = 10.0
    assert t.admit("a") == 4  # itself and the three held back


def test_a_dead_endpoint_logs_its_drops_at_a_bounded_rate_and_counts_every_one() -> None:
    """Pinger (its caller): a ping added every 0.5 s for a minute to a lane of 1 that nothing
    sends drops one ping each time; the metric counts each, the log says it once per interval
    per destination, and the counts in the lines add up to the drops logged so far."""
    clock, log = Clock(), Log()
    counted: list[tuple[str, str, str]] = []
    pinger = Pinger(log, lambda *c: counted.append(c), clock, send=lambda u, b, t: None)
    pinger.lanes.cap = 1
    pinger._staff = lambda: None  # type: ignore[method-assign]  # no worker: nothing is sent
    adds = 120
    for i in range(adds):
        clock.now = i * 0.5
        pinger.add(Ping("job", "fail", f"r{i}", "http://dead.example/secret", b"", 1e9))
    drops = adds - 1
    assert counted.count(("job", "ping", "dropped")) == drops  # the metric: exact
    lines = log.dropped()
    assert len(lines) <= 60 / INTERVAL + 1, f"{len(lines)} lines for {drops} drops"
    assert lines[0]["dropped"] == 1 and "secret" not in str(lines)
    logged = sum(line["dropped"] for line in lines)
    assert drops - logged < INTERVAL / 0.5  # only those since the last line wait for the next


def test_each_destination_has_its_own_budget() -> None:
    clock, log = Clock(), Log()
    pinger = Pinger(log, lambda *c: None, clock, send=lambda u, b, t: None)
    pinger.lanes.cap = 1
    pinger._staff = lambda: None  # type: ignore[method-assign]
    for i in range(3):
        for host in ("a.example", "b.example"):
            pinger.add(Ping(host, "fail", f"r{i}", f"http://{host}/x", b"", 1e9))
    assert sorted(line["url"] for line in log.dropped()) == [
        "http://a.example/…",
        "http://b.example/…",
    ]
