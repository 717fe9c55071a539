"""A model of the whole daemon: Hypothesis drives several replicas of a group (the real
``Daemon`` objects, one in-memory etcd, the fake clock, fake runs and fake health checks) through
what happens to them in production, interleaved in orders nobody would write by hand.

Rules: time passes; the jobs file is edited (a job added, removed or changed — a service among
them) and reloaded by every replica, one, or none yet (SIGHUP); a job's health gate flips on one
replica; a replica's own health check (``--health-cmd``) starts or stops failing; an operator
triggers, suspends or resumes a job; one etcd call of a replica fails or loses its reply; a
replica freezes; a run's watchdog dies; a replica gets SIGTERM (once or twice), is killed -9, or
a new one starts. Spreading is on (short pace), so jobs move between replicas as well.

Invariants after every step:

* S3: no (job, slot) runs twice, across every replica.
* A slot claimed to run by a replica that met no fault since ran, or has a history record, or
  was given back: a replica that hands a job over on purpose (reload, a job's gate, its own
  gate, spreading, shutdown) loses no slot.
* The replica's own health gate, handed to the daemon after it is built (as the CLI does) and
  started with its process: a replica whose check fails hands over from the cycle that sees it
  (every run of it stopped, no campaign), leads no job once its runs have ended, and has
  withdrawn its keys (one that met a fault: within TTL + a renew interval more); healthy again,
  it campaigns again. A replica that exits has stopped its checker.

And whenever the faults stop (a rule, and at the end of every example):

* L1: each job of the file is led by exactly one live replica within TTL + a renew interval.
* Every run a replica tracks and has stopped ends.
* A removed job leaves nothing behind: no runner, no health checker running, no metric series;
  a current job's checker runs; ``/status`` shows exactly the file's jobs.
* L3: every fire time of a stable tenure ran or has a not-run record.

``make test`` runs a few seeded examples (seconds); ``make model`` searches longer
(``LEADERJOB_MODEL_EXAMPLES``, ``LEADERJOB_MODEL_STEPS``), and ``LEADERJOB_HYPOTHESIS_RANDOM=1``
makes it search examples the seeded run never tries.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

import structlog
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from prometheus_client import CollectorRegistry

import leaderjob.daemon.gates as gates_mod
import leaderjob.daemon.starts as runner_mod
from leaderjob.config import Timing
from leaderjob.daemon import Daemon, Settings
from leaderjob.daemon.model import ActiveRun
from leaderjob.daemon.spread import Spreader
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from leaderjob.ops.health import HealthSettings
from leaderjob.ops.metrics import Metrics
from leaderjob.schedule import parse_schedule, slot_id
from tests.unit.test_daemon_reload import FakeChecker
from tests.unit.test_daemon_schedule import Clock, FakeRun, Job

TIMING = Timing.from_ttl(3)
PREFIX = "/lj"
GROUP = "shop"
JOBS_PREFIX = f"{PREFIX}/{GROUP}/jobs"
TICK = 0.1
#: The shortest sleep between two cycles of one replica (its loop never spins).
MIN_GAP = 0.005
#: L1 once the faults stop: a crashed leader's lease expires within the TTL, and the next in
#: line confirms within a renew interval (one tick of the loop on top: it polls).
LIVENESS = TIMING.ttl + TIMING.renew_interval + TICK
MAX_REPLICAS = 3
#: The jobs a file may hold: (schedule or None for a service, its health check or None).
POOL: dict[str, tuple[str | None, str | None]] = {
    "a": ("@every 1s", None),
    "b": ("@every 2s", "check-b"),
    "c": ("@every 1s", "check-c"),
    "svc": (None, "check-svc"),
}
OPS = ("keepalive", "standings", "create", "guarded_put", "get_prefix", "delete", "get")


class ModelRun(FakeRun):
    """A scheduled run lasts 0.3 s; a service's runs until stopped."""

    started: ClassVar[list[FakeRun]]  # type: ignore[misc]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        service = self.env.get("LEADERJOB_SLOT") == "service"
        self.spec = Job(duration=None if service else 0.3)


#: A job's health check without a thread: the model flips it (``set``).
ModelChecker = FakeChecker

#: From a replica's check failing to its handover done: its runs stop (a scheduled run's ends
#: within its term delay), then it resigns; a cycle of the loop on top.
HANDOVER = TIMING.grace + 2 * TICK


class ReplicaChecker:
    """A replica's own health check (``--health-cmd``) without a thread. The model sets what the
    command answers; like the real checker, it only sees the answer while started (by the
    daemon's process) and not yet stopped, and then wakes the daemon's loop."""

    def __init__(self, settings: HealthSettings, on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.healthy = True
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.started = False
        self.stopped = False
        self.answer = True

    def start(self) -> None:
        self.started = True
        self._observe()

    def stop(self) -> None:
        self.stopped = True

    def answers(self, ok: bool) -> None:
        self.answer = ok
        self._observe()

    def _observe(self) -> None:
        if not self.started or self.stopped or self.healthy == self.answer:
            return
        self.healthy = self.answer
        self.consecutive_failures = 0 if self.answer else self.settings.failures
        self.last_error = None if self.answer else "command exited 1"
        self.on_change()


def runs_of(d: Daemon) -> Callable[[], list[ActiveRun]]:
    return lambda: d.runs


def _no_guardian(now: float) -> str | None:
    """The runs are fake: no guardian process to start."""
    del now
    return None


class DaemonModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        self._patched = [
            (runner_mod, "Run", runner_mod.Run),
            (gates_mod, "HealthChecker", gates_mod.HealthChecker),
        ]
        runner_mod.Run = ModelRun  # type: ignore[misc]
        gates_mod.HealthChecker = ModelChecker  # type: ignore[misc,assignment]
        ModelRun.clock, ModelRun.job, ModelRun.started = self.clock, Job(), []
        ModelChecker.made = []
        self._logs = structlog.testing.capture_logs()
        self._logs.__enter__()
        #: The jobs file: job → version (a change bumps it: a new command).
        self.file: dict[str, int] = {"a": 0, "c": 0, "svc": 0}
        self.daemons: dict[str, Daemon] = {}
        self.clients: dict[str, MemoryStore] = {}
        self.metrics: dict[str, Metrics] = {}
        self.live: list[str] = []
        #: Told to stop (SIGTERM): live until they exit.
        self.stopping: set[str] = set()
        self.frozen_until: dict[str, float] = {}
        #: When each replica's loop wakes next (Daemon.next_wakeup).
        self.due: dict[str, float] = {}
        #: Replicas that met a fault (their claims may be lost: that is a crash's price).
        self.faulted: set[str] = set()
        #: Replicas whose own health check fails → since when (monotonic).
        self.sick: dict[str, float] = {}
        #: Jobs each sick replica led when its check began to fail.
        self.led_when_sick: dict[str, set[str]] = {}
        #: Replicas whose check passes again → since when.
        self.recovered: dict[str, float] = {}
        #: Replicas that exited gracefully (their process was torn down).
        self.exited: list[str] = []
        self._ids = 0
        for _ in range(2):
            self._start()
        self._run(2.0)

    # -- the world ------------------------------------------------------------------------------

    def specs(self, identity: str) -> list[Settings]:
        out = []
        for name, version in sorted(self.file.items()):
            expr, health = POOL[name]
            if name == "b" and version % 2:
                expr = "@every 3s"
            out.append(
                Settings(
                    election=name,
                    prefix=JOBS_PREFIX,
                    identity=identity,
                    timing=TIMING,
                    command=("job", name, f"v{version}"),
                    mode="schedule" if expr is not None else "service",
                    schedule=parse_schedule(expr, "UTC") if expr is not None else None,
                    rpc_timeout=1.0,
                    health=HealthSettings(command=health) if health else None,
                )
            )
        return out

    def _start(self) -> str:
        identity = f"r{self._ids}"
        self._ids += 1
        client = self.store.client()
        metrics = Metrics(CollectorRegistry(), GROUP)
        d = Daemon(
            Settings(
                election=GROUP,
                prefix=PREFIX,
                identity=identity,
                timing=TIMING,
                command=(),
                rpc_timeout=1.0,
            ),
            client,
            clock=self.clock,
            environ={},
            metrics=metrics,
            jobs=self.specs(identity),
            reload=lambda: self.specs(identity),
            spreader=Spreader(enabled=True, pace=1.0, settle=1.0),
        )
        # As the CLI does: the replica's own checker wakes the daemon's loop, so it is handed
        # over once the daemon exists; then the process starts as Daemon.serve starts it.
        d.health = ReplicaChecker(  # type: ignore[assignment]
            HealthSettings(command="check-replica"), d.wakeup.set
        )
        d.guardian.ensure = _no_guardian  # type: ignore[method-assign]
        d.process.start(d.s, self.clock.monotonic())
        self.daemons[identity], self.clients[identity] = d, client
        self.metrics[identity] = metrics
        self.live.append(identity)
        return identity

    def _checker(self, identity: str) -> ReplicaChecker:
        checker = self.daemons[identity].health
        assert isinstance(checker, ReplicaChecker)
        return checker

    def _run(self, seconds: float) -> None:
        """Each live replica cycles when its loop would: at the wake-up it asks for, or when
        something wakes it (a run's report, a signal, a gate), as in ``Daemon.serve``."""
        end = self.clock.monotonic() + seconds
        idle = _Never()
        while True:
            now = self.clock.monotonic()
            for name in list(self.live):
                d = self.daemons[name]
                if self.frozen_until.get(name, 0.0) > now:
                    continue
                if not d.wakeup.is_set() and self.due.get(name, now) > now:
                    continue
                if d.cycle().action == "exited":
                    self.live.remove(name)
                    d.process.stop(runs_of(d))  # as Daemon.serve, once its loop ends
                    self.exited.append(name)
                    continue
                self.due[name] = max(now + MIN_GAP, d.next_wakeup(self.clock.monotonic()))
            if now >= end:
                return
            until = end
            for n in self.live:
                frozen = self.frozen_until.get(n, 0.0)
                until = min(until, frozen if frozen > now else self.due.get(n, now))
            self.clock.wait(idle, max(MIN_GAP, until - now))
            if any(self.daemons[n].wakeup.is_set() for n in self.live):
                continue  # a run ended (an alarm): its replica cycles now

    def _pick(self, i: int) -> str:
        return self.live[i % len(self.live)]

    def _staying(self) -> list[str]:
        """Live replicas not told to stop."""
        return [name for name in self.live if name not in self.stopping]

    def _reload(self, identity: str) -> None:
        reloader = self.daemons[identity].reloader
        assert reloader is not None
        reloader.request()

    # -- rules ----------------------------------------------------------------------------------

    @rule(seconds=st.floats(0.1, 2.5))
    def time_passes(self, seconds: float) -> None:
        self._run(seconds)

    @rule(
        name=st.sampled_from(sorted(POOL)),
        reload=st.sampled_from(["all", "one", "none"]),
        i=st.integers(0, MAX_REPLICAS - 1),
    )
    def edit_the_jobs_file(self, name: str, reload: str, i: int) -> None:
        """Add ``name`` if absent, else change it, or remove it (every other edit)."""
        if name not in self.file:
            self.file[name] = 0
        elif self.file[name] % 2 == 1 and len(self.file) > 1:
            del self.file[name]
        else:
            self.file[name] += 1
        targets = {"all": list(self.live), "one": [self._pick(i)], "none": []}[reload]
        for identity in targets:
            self._reload(identity)
        self._run(TICK)

    @rule(i=st.integers(0, MAX_REPLICAS - 1))
    def sighup(self, i: int) -> None:
        self._reload(self._pick(i))
        self._run(TICK)

    @rule(offset=st.sampled_from([-0.04, -0.02, -0.01, 0.0, 0.01]))
    def time_passes_to_just_before_a_slot(self, offset: float) -> None:
        """To a whole second (every schedule's fire times) + ``offset``: the next rule acts
        while a slot is claimed ahead, or as it starts."""
        wall = self.clock.wall()
        to_next = 1.0 - (wall.microsecond / 1e6) + offset
        self._run(to_next if to_next > 0.001 else to_next + 1.0)

    @rule(
        i=st.integers(0, MAX_REPLICAS - 1),
        name=st.sampled_from(sorted(POOL)),
        ok=st.booleans(),
        on_leader=st.booleans(),
    )
    def a_job_gate_flips(self, i: int, name: str, ok: bool, on_leader: bool) -> None:
        identity = self._pick(i)
        if on_leader:
            identity = next(iter(self._leaders().get(name, [identity])))
        checker = self.daemons[identity].checkers.get(name)
        if isinstance(checker, ModelChecker):
            checker.set(ok)
        self._run(TICK)

    @rule(i=st.integers(0, MAX_REPLICAS - 1), ok=st.booleans(), on_leader=st.booleans())
    def a_replica_check_flips(self, i: int, ok: bool, on_leader: bool) -> None:
        """The replica's own check (``--health-cmd``) starts failing, or passes again."""
        identity = self._pick(i)
        if on_leader:
            identity = next(
                iter(sorted({n for ns in self._leaders().values() for n in ns})), identity
            )
        self._replica_check(identity, ok)
        self._run(TICK)

    def _replica_check(self, identity: str, ok: bool) -> None:
        now = self.clock.monotonic()
        if not ok and identity not in self.sick:
            self.sick[identity] = now
            self.led_when_sick[identity] = {
                name for name, r in self.daemons[identity].runners.items() if r.seat.leading
            }
            self.recovered.pop(identity, None)
        elif ok and identity in self.sick:
            del self.sick[identity]
            self.recovered[identity] = now
        self._checker(identity).answers(ok)

    @rule(
        name=st.sampled_from(sorted(POOL)),
        what=st.sampled_from(["trigger", "suspend", "resume"]),
    )
    def operator(self, name: str, what: str) -> None:
        data = ElectionData(self.store, JOBS_PREFIX, name)
        if what == "trigger":
            data.trigger("model", timeout=1)
        elif what == "suspend":
            data.suspend("model", timeout=1)
        else:
            data.resume(timeout=1)

    @rule(
        i=st.integers(0, MAX_REPLICAS - 1),
        operation=st.sampled_from(OPS),
        applied=st.booleans(),
    )
    def an_etcd_call_fails(self, i: int, operation: str, applied: bool) -> None:
        identity = self._pick(i)
        client = self.clients[identity]
        if applied:
            client.lose_reply_next(1, operation)
        else:
            client.fail_next(1, operation)
        self.faulted.add(identity)

    @rule(i=st.integers(0, MAX_REPLICAS - 1), seconds=st.floats(0.2, 2 * TIMING.ttl))
    def a_replica_freezes(self, i: int, seconds: float) -> None:
        identity = self._pick(i)
        self.frozen_until[identity] = self.clock.monotonic() + seconds
        self.faulted.add(identity)

    @rule(i=st.integers(0, 20))
    def a_watchdog_dies(self, i: int) -> None:
        live = [r for r in ModelRun.started if not r.done]
        if live:
            live[i % len(live)].kill("watchdog_died")

    @precondition(lambda self: len(self._staying()) > 1)
    @rule(i=st.integers(0, MAX_REPLICAS - 1), twice=st.booleans())
    def sigterm(self, i: int, twice: bool) -> None:
        staying = self._staying()
        identity = staying[i % len(staying)]
        self.stopping.add(identity)
        d = self.daemons[identity]
        d.request_stop("SIGTERM")
        if twice:
            d.request_stop("SIGTERM")
        self._run(TICK)

    @precondition(lambda self: len(self._staying()) > 1)
    @rule(i=st.integers(0, MAX_REPLICAS - 1))
    def kill_9(self, i: int) -> None:
        staying = self._staying()
        identity = staying[i % len(staying)]
        self.live.remove(identity)
        self.faulted.add(identity)
        self.sick.pop(identity, None)
        self.recovered.pop(identity, None)
        for r in ModelRun.started:  # its watchdogs kill their jobs when the daemon is gone
            if r.env["LEADERJOB_IDENTITY"] == identity:
                r.kill("daemon_exit")

    @precondition(lambda self: len(self.live) < MAX_REPLICAS)
    @rule()
    def a_replica_starts(self) -> None:
        self._start()

    @rule()
    def faults_stop(self) -> None:
        self._faults_stop_and_check()

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def no_slot_runs_twice_s3(self) -> None:
        runs = Counter(
            (r.env["LEADERJOB_JOB"], r.env["LEADERJOB_SLOT"])
            for r in ModelRun.started
            if r.env["LEADERJOB_SLOT"] != "service"
        )
        twice = [k for k, n in runs.items() if n > 1]
        assert not twice, f"S3: ran twice: {twice}"

    @invariant()
    def a_slot_claimed_without_a_fault_runs_or_is_recorded(self) -> None:
        ran = {(r.env["LEADERJOB_JOB"], r.env["LEADERJOB_SLOT"]) for r in ModelRun.started}
        before = self.clock.wall() - timedelta(seconds=2)
        for name in POOL:
            data = ElectionData(self.store, JOBS_PREFIX, name)
            claims = data.claims(timeout=1)
            recorded: set[str] | None = None
            for doc in claims.values():
                slot = str(doc.get("slot"))
                if doc.get("status") not in ("running", "replacing"):
                    continue
                if doc.get("identity") in self.faulted or (name, slot) in ran:
                    continue
                fire = data.fire_time(data.slot_key(slot))
                if fire is None or fire > before:
                    continue  # not due yet, or its record may still be on its way
                if recorded is None:
                    recorded = {str(h.get("slot")) for h in data.history(1000, timeout=1)}
                assert slot in recorded, (
                    f"{name} slot {slot} claimed by {doc.get('identity')} (no fault): "
                    "neither run, recorded nor given back"
                )

    @invariant()
    def an_unhealthy_replica_hands_over_and_does_not_campaign(self) -> None:
        now = self.clock.monotonic()
        for identity, since in self.sick.items():
            if identity not in self.live or self.frozen_until.get(identity, 0.0) > now:
                continue  # gone, or its loop has not run since
            d = self.daemons[identity]
            assert self._checker(identity).started, f"{identity}: its health check never started"
            assert d.leaving is not None, f"{identity}: its check fails, it stays ({d.leaving})"
            assert not d._may_campaign(), f"{identity}: campaigns while unhealthy"
            runs = [a.run for a in d.runs if not a.run.done]
            assert all(r.stop_reason is not None for r in runs), f"{identity}: runs on, unhealthy"
            led = {name for name, r in d.runners.items() if r.seat.leading}
            gained = led - self.led_when_sick.get(identity, set())
            assert not gained, f"{identity}: took {gained} while unhealthy"
            # A replica that met a fault may first have to retry a call, or wait out a freeze.
            settled = since + HANDOVER
            if identity in self.faulted:
                settled = max(settled, self.frozen_until.get(identity, 0.0)) + LIVENESS
            if now < settled or runs:
                continue
            event("own check failing: handover done and keys withdrawn checked")
            assert not led, f"{identity}: still leads {led}, {now - since:.2f} s unhealthy"
            keys = self._keys_of(identity)
            assert not keys, f"{identity}: keys left {keys}, {now - since:.2f} s unhealthy"

    @invariant()
    def a_healthy_again_replica_campaigns_again(self) -> None:
        now = self.clock.monotonic()
        for identity, since in self.recovered.items():
            d = self.daemons[identity]
            if identity not in self.live or d.runs or d.departure.stop_reason is not None:
                continue  # gone, or a run of its is still ending, or told to stop
            settled = since + HANDOVER
            if identity in self.faulted:
                settled = max(settled, self.frozen_until.get(identity, 0.0)) + LIVENESS
            if now < settled:
                continue
            event("own check passing again: campaigning checked")
            assert d.leaving is None, f"{identity}: healthy again, still leaving ({d.leaving})"
            assert self._keys_of(identity), f"{identity}: healthy again, does not campaign"

    @invariant()
    def an_exited_replica_stopped_its_check(self) -> None:
        for identity in self.exited:
            checker = self._checker(identity)
            assert checker.started and checker.stopped, f"{identity}: its health check runs on"

    def _keys_of(self, identity: str) -> list[str]:
        """The election keys of ``identity``'s leases under the jobs (one per job it campaigns
        for)."""
        return [
            info.key
            for info in self.store.get_prefix(JOBS_PREFIX + "/", timeout=1)
            if "/leader/" in info.key and info.value == identity.encode()
        ]

    # -- when the faults stop -------------------------------------------------------------------

    def _faults_stop_and_check(self) -> None:
        for identity in self.live:
            self.clients[identity].clear_failures()
            self.frozen_until.pop(identity, None)
            self._replica_check(identity, True)
            d = self.daemons[identity]
            for name in list(d.checkers.by_job):
                checker = d.checkers.get(name)
                if isinstance(checker, ModelChecker) and not checker.healthy:
                    checker.set(True)
            self._reload(identity)
        stopped_at = self.clock.monotonic()
        while True:
            led = self._leaders()
            if all(len(led.get(name, [])) == 1 for name in self.file):
                break
            waited = self.clock.monotonic() - stopped_at
            assert waited <= LIVENESS, f"L1: after {waited:.1f} s, leaders {led}"
            self._run(TICK)
        self._run(2.0)  # every retirement and restart settles
        now = self.clock.monotonic()
        for identity in self.live:
            self._check_replica(identity, now)
        self._stable_tenure()

    def _leaders(self) -> dict[str, list[str]]:
        led: dict[str, list[str]] = {}
        for identity in self.live:
            for name, r in self.daemons[identity].runners.items():
                if r.seat.leading:
                    led.setdefault(name, []).append(identity)
        return led

    def _check_replica(self, identity: str, now: float) -> None:
        d = self.daemons[identity]
        assert set(d.runners) == set(self.file), f"{identity} runs {set(d.runners)}"
        for r in d.runners.values():
            for active in r.runs:
                run = active.run
                assert run.stop_reason is None or (
                    isinstance(run, FakeRun)
                    and run.stopped_at is not None
                    and now - run.stopped_at < 1.0
                ), f"{identity}: a stopped run never ended: {run.env}"
        mine = [c for c in ModelChecker.made if c.on_change == d.wakeup.set]
        current = set(map(id, d.checkers.by_job.values()))
        assert set(d.checkers.by_job) <= set(self.file), f"{identity}: checkers of removed jobs"
        for c in mine:
            if id(c) in current:
                assert c.started and not c.stopped, f"{identity}: a current gate is off"
            else:
                assert c.stopped, f"{identity}: the checker {c.settings.command} still runs"
        gated = {n for n in self.file if POOL[n][1] is not None}
        assert set(d.checkers.by_job) == gated, f"{identity}: gates {set(d.checkers.by_job)}"
        series = {
            s.labels.get("job_name")
            for family in self.metrics[identity].registry.collect()
            for s in family.samples
        }
        left = {j for j in series if j is not None and j not in self.file and j in POOL}
        assert not left, f"{identity}: series of removed jobs {left}"
        d._publish("model")
        assert set(d.snapshot["jobs"]) == set(self.file), f"{identity}: /status {d.snapshot}"

    def _stable_tenure(self) -> None:
        """L3: while nothing moves, every fire time runs or has a not-run record."""
        tokens = self._tokens()
        start = self.clock.wall()
        self._run(4.0)
        end = self.clock.wall() - timedelta(seconds=1.5)
        after = self._tokens()
        ran = {(r.env["LEADERJOB_JOB"], r.env["LEADERJOB_SLOT"]) for r in ModelRun.started}
        for name, token in tokens.items():
            if after.get(name) != token or POOL[name][0] is None:
                continue  # moved (spreading): not one stable tenure
            d = self.daemons[token[0]]
            schedule = d.runners[name].s.schedule
            assert schedule is not None
            data = ElectionData(self.store, JOBS_PREFIX, name)
            recorded = {str(h.get("slot")) for h in data.history(1000, timeout=1)}
            t = schedule.next_after(start + timedelta(seconds=0.5))
            while t <= end:
                slot = slot_id(t)
                assert (name, slot) in ran or slot in recorded, f"L3: {name} {slot} lost"
                t = schedule.next_after(t)

    def _tokens(self) -> dict[str, tuple[str, int | None]]:
        out = {}
        for identity in self.live:
            for name, r in self.daemons[identity].runners.items():
                if r.seat.leading:
                    out[name] = (identity, r.seat.token)
        return out

    def teardown(self) -> None:
        try:
            if self.live:
                self._faults_stop_and_check()
        finally:
            self._logs.__exit__(None, None, None)
            for module, name, value in self._patched:
                setattr(module, name, value)


class _Never:
    """A wake-up nobody sets: the world's clock only moves by its alarms and its ticks."""

    def is_set(self) -> bool:
        return False


DaemonModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("LEADERJOB_MODEL_EXAMPLES", "6")),
    stateful_step_count=int(os.environ.get("LEADERJOB_MODEL_STEPS", "12")),
    derandomize=os.environ.get("LEADERJOB_HYPOTHESIS_RANDOM") is None,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain: it traces every line
)
test_daemon_model = DaemonModel.TestCase
