"""One in-process candidate: an Elector driven by its own thread, with an optional job per tenure
run under the real guardian. The self-test runs two; ``bench/scale.py`` runs hundreds."""

from __future__ import annotations

import dataclasses
import os
import select
import threading
import time
from collections.abc import Sequence
from typing import Any

from leaderjob.clock import SystemClock
from leaderjob.config import Timing
from leaderjob.election.elector import Elector
from leaderjob.election.etcd import EtcdStore
from leaderjob.election.machine import Phase, Transition
from leaderjob.guard.run import Run

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
    under the real guardian (started on winning, extended on renewal, stopped on loss).

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
                        self.run.close()  # its guardian sees the pipe close and kills the job
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
        if not run.confirmed or run.pid is None:  # given up: the guardian cannot start it now
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
