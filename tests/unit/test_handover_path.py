"""The successor's path after a graceful handover (L2), on the fake clock and the in-memory etcd.

Between the confirming read that makes a candidate the leader and its job's start request,
nothing else may take the daemon's time: the watch on its own key (a new stream and a thread in
etcd's client, milliseconds) is opened at the next step instead, from the read's revision, so a
deletion in between is still seen.
"""

from __future__ import annotations

import threading
from typing import Any

from structlog.testing import capture_logs

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.daemon.starts import StartRequest
from leaderjob.election.group import Group
from leaderjob.election.machine import Phase, Reason
from leaderjob.election.memory import MemoryStore
from leaderjob.guard.run import Run

TIMING = Timing.from_ttl(3)
PREFIX = "/lj/job/leader"


class Recording:
    """A client of the shared in-memory etcd that notes each of its calls in a shared list."""

    def __init__(self, store: MemoryStore, calls: list[tuple[str, str]], who: str) -> None:
        self.inner = store.client()
        self.calls = calls
        self.who = who

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def noted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((self.who, name))
            got = attr(*args, **kwargs)
            return _NotedWatch(got, self.calls, self.who) if name == "watch_deletes" else got

        return noted


class _NotedWatch:
    """A watch whose cancel is noted too."""

    def __init__(self, inner: Any, calls: list[tuple[str, str]], who: str) -> None:
        self.inner, self.calls, self.who = inner, calls, who
        self.fired = inner.fired

    def cancel(self) -> None:
        self.calls.append((self.who, "cancel"))
        self.inner.cancel()


def _pair(calls: list[tuple[str, str]]) -> tuple[FakeClock, MemoryStore, Group, Group]:
    """Replica a leads the job, replica b waits behind it (watching a's key)."""
    clock = FakeClock(start=1000.0)
    store = MemoryStore(clock)
    a, b = (
        Group(Recording(store, calls, who), TIMING, who, clock, threading.Event())  # type: ignore[arg-type]
        for who in "ab"
    )
    for g in (a, b):
        g.want("job", PREFIX)
        g.step(may_campaign=True)
    assert a.leading() == ["job"]
    assert b.phase is Phase.CAMPAIGNING
    return clock, store, a, b


def _hand_over(a: Group) -> None:
    a.resign()
    assert a.release() == []  # the key goes with the lease


def test_the_step_that_wins_opens_no_watch_the_next_one_does_l2() -> None:
    calls: list[tuple[str, str]] = []
    _, _, a, b = _pair(calls)
    _hand_over(a)
    calls.clear()
    out = b.step(may_campaign=True)
    assert [t.event for t in out.transitions] == ["election.acquired"]
    assert ("b", "watch_deletes") not in calls, "the winning step opened a stream before the start"
    assert ("b", "cancel") not in calls, "the winning step cancelled a stream before the start"
    calls.clear()
    b.step(may_campaign=True)
    assert [c for c in calls if c[1] in ("cancel", "watch_deletes")] == [
        ("b", "cancel"),
        ("b", "watch_deletes"),
    ]


def test_a_key_deleted_before_the_watch_is_opened_is_still_seen_s6() -> None:
    """The watch opened late starts from the winning read's revision: our key deleted in
    between (an operator, a compaction of the queue) ends the tenure at the next step."""
    calls: list[tuple[str, str]] = []
    _, store, a, b = _pair(calls)
    _hand_over(a)
    b.step(may_campaign=True)
    assert b.leading() == ["job"]
    store.client().delete(b.keys["job"], timeout=1.0)
    out = b.step(may_campaign=True)  # no time passes: only the watch can tell
    assert [(t.event, t.reason) for t in out.transitions] == [("election.lost", Reason.KEY_LOST)]


class _Started(Run):
    """A run the guardian confirms at once (no process)."""

    def confirm(self, wait: float = 0.0) -> bool | None:
        self.pid, self.confirmed = 4242, True
        return True


class _NotingStarter:
    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls
        self.runs: list[Run] = []

    def request(self, request: StartRequest, now: float) -> Run:
        self.calls.append(("b", "start"))
        self.runs.append(
            _Started(
                argv=request.argv,
                env=request.env,
                deadline=request.deadline,
                grace=request.grace,
                wakeup=threading.Event(),
                run_id=request.run_id,
                token=request.token,
            )
        )
        return self.runs[-1]

    def pump(self, now: float) -> None:
        pass


def test_the_successor_requests_its_start_before_it_opens_its_watch_l2() -> None:
    """The daemon's loop: the cycle that wins `leaderjob lock` requests the command's start
    before any stream is opened; the watch on its key follows in a later cycle."""
    calls: list[tuple[str, str]] = []
    clock = FakeClock(start=1000.0)
    store = MemoryStore(clock)
    a = Group(Recording(store, calls, "a"), TIMING, "a", clock, threading.Event())  # type: ignore[arg-type]
    a.want("default", PREFIX)
    a.step(may_campaign=True)
    settings = Settings(
        election="job", prefix="/lj", identity="b", timing=TIMING, command=("true",), mode="once"
    )
    d = Daemon(
        settings, Recording(store, calls, "b"), clock=clock, environ={},  # type: ignore[arg-type]
        starter=_NotingStarter(calls),
    )  # fmt: skip
    d.cycle()
    assert d.elector.phase is Phase.CAMPAIGNING
    _hand_over(a)
    calls.clear()
    clock.advance(0.01)
    d.cycle()
    assert d.elector.phase is Phase.LEADING
    ours = [c for c in calls if c[0] == "b"]
    assert ("b", "start") in ours
    assert ("b", "watch_deletes") not in ours, f"a stream was opened before the start: {ours}"
    clock.advance(0.01)
    d.cycle()
    assert ("b", "watch_deletes") in calls


class _RevokeLogged(MemoryStore):
    """Notes its revokes among the captured log events."""

    logs: list[dict[str, Any]]

    def revoke(self, lease_id: int, *, timeout: float) -> None:
        self.logs.append({"event": "(revoke)"})
        super().revoke(lease_id, timeout=timeout)


def test_a_stopped_leader_revokes_before_it_logs_and_publishes_the_lost_tenure_l2() -> None:
    """On SIGTERM, once the job is dead (S1) the revoke is the first thing: the successor waits
    for our key to go, not for our log line and snapshot."""
    calls: list[tuple[str, str]] = []
    clock = FakeClock(start=1000.0)
    store = _RevokeLogged(clock)
    settings = Settings(
        election="job", prefix="/lj", identity="b", timing=TIMING, command=("true",), mode="once"
    )
    starter = _NotingStarter(calls)
    with capture_logs() as logs:
        d = Daemon(settings, store, clock=clock, environ={}, starter=starter)
        store.logs = logs
        d.cycle()
        assert len(starter.runs) == 1
        d.request_stop("SIGTERM")
        clock.advance(0.01)
        assert d.cycle().action == "stopping_job"
        run = starter.runs[0]
        run.returncode = -15
        run._done.set()  # the guardian reports the job dead
        clock.advance(0.01)
        assert d.cycle().action == "exited"
    events = [e["event"] for e in logs]
    assert events.index("job.finished") < events.index("(revoke)") < events.index("election.lost")


def test_a_win_that_leaves_a_job_waiting_watches_its_predecessor_at_once_l2() -> None:
    """Only a watch of our own keys waits for the next step: with a job of ours still behind
    another replica's key, that key's deletion is another takeover, watched at once."""
    calls: list[tuple[str, str]] = []
    clock = FakeClock(start=1000.0)
    store = MemoryStore(clock)
    a, b = (
        Group(Recording(store, calls, who), TIMING, who, clock, threading.Event())  # type: ignore[arg-type]
        for who in "ab"
    )
    for g in (a, b):
        for job in ("x", "y"):
            g.want(job, f"/lj/{job}/leader")
        g.step(may_campaign=True)
    assert sorted(a.leading()) == ["x", "y"]
    a.withdraw("x")
    a.step(may_campaign=True)  # its key of x is deleted
    calls.clear()
    out = b.step(may_campaign=True)
    assert [(t.event, t.job) for t in out.transitions] == [("election.acquired", "x")]
    assert ("b", "watch_deletes") in calls, "a predecessor's key went unwatched"
