"""The daemon's run bookkeeping on the fake clock: Daemon + MemoryStore + FakeClock, stepped by
hand, with the watchdog replaced by :class:`FakeRun` (it confirms, or is slow, as told).

Timing: ttl 3 s (D − grace ≈ 2.57 s after the last answered keepalive). What is defended:

* S1/S6: a start the watchdog did not confirm in time is tracked until its watchdog exits — no
  second copy under the same token, no campaign, no revoke while a process may exist;
* the wait for the watchdog is bounded by the lease budget (the time left before D − grace);
* `leaderjob lock` never idles for ever: a start skipped for the deadline campaigns again and
  runs the command;
* a watchdog that cannot be started (EAGAIN) is a failed start — logged, counted, retried — not a
  crash of the daemon.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from leaderjob.clock import FakeClock
from leaderjob.config import Timing
from leaderjob.daemon import SERVICE_RESTART_DELAY, Daemon, Mode, Report, Settings
from leaderjob.daemon import starts as daemon_module
from leaderjob.election.machine import Phase
from leaderjob.election.memory import MemoryStore
from leaderjob.guard import supervisor
from leaderjob.guard.run import Run
from leaderjob.ops.metrics import Metrics

TIMING = Timing.from_ttl(3)


class FakeRun(Run):
    """A run whose watchdog is a puppet: ``behaviour`` says what request() does."""

    behaviour: ClassVar[str] = "confirm"  # confirm | slow (never confirms; the clock runs out)
    made: ClassVar[list[FakeRun]] = []
    clock: ClassVar[FakeClock]
    daemon: ClassVar[Daemon]

    def request(self, started_at: float, wait: float, guardian: Any = None) -> None:
        self.started_at = started_at
        self.waited = wait
        self.term_at_seen = FakeRun.daemon.elector.machine.term_at
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        FakeRun.made.append(self)
        if FakeRun.behaviour == "confirm":
            self.pid, self.confirmed = 40000 + len(FakeRun.made), True
        else:  # the watchdog is slow to start: the whole budget passes without a word
            FakeRun.clock.advance(wait)
            self.error = "the watchdog did not confirm the start in time"

    def confirm(self, wait: float = 0.0) -> bool | None:
        """Answered at once: confirmed, or (slow) the limit passed while the request waited."""
        return self.confirmed

    def _send(self, msg: dict[str, Any]) -> None:
        if not self.closed:
            self.sent.append(msg)

    def close(self) -> None:
        self.closed = True

    def finish(self, returncode: int) -> None:
        """The watchdog reports the end (of the job, or of itself for an unconfirmed run)."""
        self.returncode = returncode
        self._done.set()


class CountingStore(MemoryStore):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.grants = 0
        self.revokes = 0

    def grant(self, ttl: int, *, timeout: float) -> Any:
        self.grants += 1
        return super().grant(ttl, timeout=timeout)

    def revoke(self, lease_id: int, *, timeout: float) -> None:
        self.revokes += 1
        super().revoke(lease_id, timeout=timeout)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    return CountingStore(clock)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> type[FakeRun]:
    monkeypatch.setattr(daemon_module, "Run", FakeRun)
    FakeRun.made = []
    FakeRun.behaviour = "confirm"
    FakeRun.clock = clock
    return FakeRun


def _daemon(mode: Mode, store: MemoryStore, clock: FakeClock) -> Daemon:
    settings = Settings(
        election="job",
        prefix="/lj",
        identity="a",
        timing=TIMING,
        command=("true",),
        mode=mode,
    )
    d = Daemon(
        settings, store, clock=clock, metrics=Metrics(CollectorRegistry(), "job"), environ={}
    )
    FakeRun.daemon = d
    return d


def _step(d: Daemon) -> Report:
    """One cycle and its wait; a cycle takes at least 10 ms, as a real one does (and a zero wait
    must not freeze the fake clock)."""
    before = d.clock.monotonic()
    report = d.cycle()
    if report.action != "exited":
        d._wait()
    if d.clock.monotonic() < before + 0.01:
        d.clock.advance(before + 0.01 - d.clock.monotonic())  # type: ignore[attr-defined]
    return report


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def _runs_total(d: Daemon, outcome: str) -> float:
    assert d.metrics is not None
    value = d.metrics.registry.get_sample_value(
        "leaderjob_job_runs_total", {"election": "job", "job_name": "job", "outcome": outcome}
    )
    return value or 0.0


def test_lock_whose_start_was_skipped_campaigns_again_and_runs_the_command(
    clock, store, logs, fake_runs
):
    """L1/L3 for `leaderjob lock`: a pause between winning and starting makes the start skip
    for the deadline (job.skipped) and leadership lapse. The daemon must campaign again and run
    the command — never idle for ever without running it or exiting."""
    d = _daemon("once", store, clock)
    real_step = d.elector.step
    paused = []

    def step_then_pause(**kwargs: Any) -> Any:
        out = real_step(**kwargs)
        if not paused and d.elector.phase is Phase.LEADING:
            paused.append(clock.monotonic())
            clock.advance(TIMING.ttl)  # a GC pause right after winning, before the start
        return out

    d.elector.step = step_then_pause  # type: ignore[method-assign]
    for _ in range(2000):
        report = _step(d)
        if report.action == "exited":
            break
        for run in fake_runs.made:
            if not run.done:
                run.finish(0)
    else:
        pytest.fail(f"`lock` never exited; runs started: {len(fake_runs.made)}")
    assert paused, "the pause was never injected"
    skipped = _events(logs, "job.skipped")
    assert [e["reason"] for e in skipped] == ["deadline"]
    assert len(fake_runs.made) == 1
    assert d.exit_code == 0
    assert store.grants == 2  # the second campaign ran the command


def test_unconfirmed_start_is_tracked_no_second_copy_no_campaign_no_revoke_s1_s6(
    clock, store, logs, fake_runs
):
    """S1/S6: the watchdog does not confirm within the lease budget. The run is given up (its
    control pipe closed: the watchdog can no longer start it) but kept in ``runs`` until its
    watchdog exits: meanwhile no second copy starts under the same token, the daemon does not
    campaign again and does not revoke its old lease. Once it is gone, all of that resumes."""
    d = _daemon("service", store, clock)
    fake_runs.behaviour = "slow"
    for _ in range(200):
        _step(d)
        if fake_runs.made:
            break
    [first] = fake_runs.made
    # The wait was the lease budget: up to D − grace, not a fixed time.
    assert first.term_at_seen is not None
    assert first.started_at + first.waited == pytest.approx(first.term_at_seen)
    assert first.closed, "an unconfirmed run must have its control pipe closed"
    assert any(a.run is first for a in d.runs)
    [failed] = _events(logs, "job.failed_to_start")
    assert failed["error"] == first.error
    assert _runs_total(d, "failed_to_start") == 1

    grants = store.grants
    end = clock.monotonic() + 10 * TIMING.ttl
    while clock.monotonic() < end:
        _step(d)
    assert d.elector.phase is Phase.IDLE  # the tenure ended at D − grace
    assert len(fake_runs.made) == 1, "a second copy started while the first may exist"
    assert store.grants == grants, "campaigned while an unconfirmed run may exist"
    assert store.revokes == 0, "revoked the lease while an unconfirmed run may exist"

    first.finish(-9)  # its watchdog exits
    fake_runs.behaviour = "confirm"
    for _ in range(200):
        _step(d)
        if len(fake_runs.made) == 2:
            break
    assert [e["run_id"] for e in _events(logs, "job.unconfirmed_ended")] == [first.run_id]
    assert store.grants == grants + 1
    assert len(fake_runs.made) == 2 and fake_runs.made[1].confirmed


def test_lock_with_an_unconfirmed_start_exits_127_only_after_it_ended_s6(
    clock, store, logs, fake_runs
):
    """S6: `lock` gives up a start that was not confirmed (exit code 127), but releases the
    lease and exits only once the run's watchdog is gone."""
    d = _daemon("once", store, clock)
    fake_runs.behaviour = "slow"
    for _ in range(200):
        report = _step(d)
        if fake_runs.made:
            break
    [run] = fake_runs.made
    for _ in range(50):
        report = _step(d)
        assert report.action != "exited"
    assert store.revokes == 0
    run.finish(-9)
    for _ in range(50):
        report = _step(d)
        if report.action == "exited":
            break
    assert report.action == "exited"
    assert d.exit_code == 127
    assert _events(logs, "job.unconfirmed_ended")


def test_a_watchdog_that_cannot_be_started_is_a_failed_run_retried_not_a_crash(
    clock, store, logs, monkeypatch
):
    """A failed fork of the watchdog (EAGAIN at the process limit) must not crash the daemon
    (its lease would stay unrevoked): it is logged, counted, and retried per policy (service
    mode: again after the restart delay)."""

    def no_fork(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(supervisor.subprocess, "Popen", no_fork)
    d = _daemon("service", store, clock)
    failed_at: list[float] = []
    for _ in range(200):
        report = _step(d)
        if report.action == "job_failed_to_start":
            failed_at.append(clock.monotonic())
            if len(failed_at) == 2:
                break
    assert len(failed_at) == 2
    assert failed_at[1] - failed_at[0] >= SERVICE_RESTART_DELAY
    errors = [e["error"] for e in _events(logs, "job.failed_to_start")]
    assert errors and all(os.strerror(errno.EAGAIN) in e for e in errors)
    assert _runs_total(d, "failed_to_start") == 2
    assert d.elector.phase is Phase.LEADING and not d.runs


def test_a_crash_of_the_loop_kills_the_runs_and_closes_their_pipes_s6(
    clock, store, logs, fake_runs, monkeypatch
):
    """S6: if the loop itself fails, the guardian is told to kill every run and its control
    pipe is closed (it kills everything on EOF too); the lease is left to expire, never revoked
    under a live job."""
    d = _daemon("service", store, clock)
    monkeypatch.setattr(d, "_install_signal_handlers", lambda: None)
    real_cycle = d.cycle

    def cycle() -> Report:
        if fake_runs.made:
            raise RuntimeError("a bug")
        return real_cycle()

    monkeypatch.setattr(d, "cycle", cycle)
    monkeypatch.setattr(daemon_module.Run, "wait", lambda self, timeout=None: True)
    closed: list[bool] = []
    monkeypatch.setattr(d.guardian, "ensure", lambda now: None)  # no process in this test
    monkeypatch.setattr(d.guardian, "close", lambda: closed.append(True))
    with pytest.raises(RuntimeError):
        d.serve()
    [run] = fake_runs.made
    assert {"kill": "daemon_exit"} in run.sent
    assert closed
    assert store.revokes == 0


class RecordingNotifier:
    """Stands in for the daemon's Notifier: what the runner told it, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.run_ids: list[str | None] = []  # of each call, in order

    def started(self, settings: Any, *, job: str, window: float, run_id: str | None) -> None:
        self.calls.append(("started", None))
        self.run_ids.append(run_id)

    def finished(
        self, settings: Any, record: Any, *, job: str, election: str, window: float
    ) -> None:
        self.calls.append(("finished", record["outcome"]))
        self.run_ids.append(record["run_id"])

    def close(self, timeout: float = 2.0) -> None:
        pass


def test_the_runner_tells_the_notifier_each_start_and_each_outcome(clock, store, fake_runs):
    """--on-failure and --ping-url hear of every run: its start, and its outcome — a failure
    and a start that was never confirmed (failed_to_start) included."""
    from dataclasses import replace

    from leaderjob.ops.notify import NotifySettings

    d = _daemon("service", store, clock)
    recorder = RecordingNotifier()
    for r in d.runners.values():
        r.history.notifier = recorder  # type: ignore[assignment]
        r.s = replace(r.s, notify=NotifySettings(on_failure="true"))
    for _ in range(200):
        _step(d)
        if fake_runs.made:
            break
    fake_runs.made[0].finish(1)
    fake_runs.behaviour = "slow"
    for _ in range(400):
        _step(d)
        if len(fake_runs.made) == 2:
            break
    assert recorder.calls == [
        ("started", None),
        ("finished", "failed"),
        ("finished", "failed_to_start"),
    ]
    # The start and the end of one run carry its id (the ping's rid pairs them), each run its own.
    started, ended, unstarted = recorder.run_ids
    assert started is not None and started == ended and unstarted not in (None, started)


def test_every_run_starts_through_the_starter_the_daemon_is_handed_S6(
    clock: FakeClock, store: CountingStore
) -> None:
    """S6: the start port is the one way a run starts, and it is handed the lease's D and, as
    the time to wait for the confirmation, what is left before D - grace. A daemon handed a
    starter of its own (no guardian, no process) starts its runs through it and tracks them."""
    from leaderjob.clock import Waker
    from leaderjob.daemon.starts import StartRequest

    class Recording:
        def __init__(self) -> None:
            self.requests: list[tuple[StartRequest, float]] = []

        def request(self, request: StartRequest, now: float) -> Run:
            self.requests.append((request, now))
            run = Run(request.argv, request.env, request.deadline, request.grace, Waker())
            run.pid, run.confirmed, run._answer = 4242, True, True  # answered at once
            return run

        def pump(self, now: float) -> None:
            pass

    starter = Recording()
    settings = Settings(
        election="job", prefix="/lj", identity="a", timing=TIMING, command=("true",), mode="service"
    )
    d = Daemon(settings, store, clock=clock, environ={}, starter=starter)
    for _ in range(200):
        _step(d)
        if starter.requests:
            break
    (request, now), machine = starter.requests[0], d.elector.machine
    assert machine.deadline is not None and machine.term_at is not None
    assert request.deadline == machine.deadline
    assert request.wait == machine.term_at - now > 0
    assert request.env["LEADERJOB_FENCING_TOKEN"] == str(d.runner.seat.token)
    assert [a.run.pid for a in d.runs] == [4242]
