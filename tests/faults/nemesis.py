"""The nemesis: a randomised mix of every fault of the suite, for as long as asked (``make
soak``). One fault at a time, mostly aimed at the current leader, each healed before the next
after a quiet spell; everything recorded, and the checker's verdict and the failover
distribution printed at the end.

    python bench/soak.py --duration 30m [--seed N] [--out DIR] [--jobs N] [--features]

With ``jobs`` every pod runs a jobs file of that many jobs (each run: three writes 0.2 s apart,
so jobs also move between runs as they spread); the fault mix is the same, aimed at a pod that
leads some jobs, and the checker judges every job on its own. With ``features`` (a jobs file
only) the mix also reloads the jobs file and flips health gates (:mod:`tests.faults.features`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.faults.checker import Verdict
from tests.faults.world import Pod, World, faketime_available
from tests.harness.peers import IsolatableCluster
from tests.harness.procs import ProcessGroup, wait_until

TTL = 3


class Nemesis:
    def __init__(self, world: World, rng: random.Random, log: Callable[[str], None]) -> None:
        self.w = world
        self.rng = rng
        self.log = log
        self.counts: dict[str, int] = {}
        self.faults: list[tuple[str, Callable[[Pod], None], bool]] = [
            # (name, action, needs a live daemon on the target)
            ("kill9", self.kill9, True),
            ("sigterm", self.sigterm, True),
            ("daemon_freeze_short", lambda p: self.daemon_freeze(p, TTL / 2), True),
            ("daemon_freeze_long", lambda p: self.daemon_freeze(p, 2 * TTL), True),
            ("pod_freeze", self.pod_freeze, True),
            ("cut_off", self.cut_off, False),
            ("responses_blackholed", self.responses_blackholed, False),
            ("responses_delayed", self.responses_delayed, False),
            ("etcd_leader_killed", lambda p: self.member_killed(leader=True), False),
            ("etcd_follower_killed", lambda p: self.member_killed(leader=False), False),
            ("quorum_lost", lambda p: self.quorum_lost(), False),
        ]
        if isinstance(world.cluster, IsolatableCluster):
            self.faults.append(("member_isolated", lambda p: self.member_isolated(), False))
        if world.pods[0].clock_file is not None:
            self.faults.append(("clock_step", self.clock_step, False))
        if world.features is not None:  # reloads and health flips, on the same random source
            world.features.w_rng = rng
            self.faults.extend(world.features.steps())

    # -- choosing ------------------------------------------------------------------------------

    def target(self) -> Pod:
        leading = self.w.leading()
        if leading and self.rng.random() < 0.75:
            if self.w.jobs:  # several pods lead some jobs: any of them
                return self.w.pod(self.rng.choice(sorted(leading)))
            return self.w.pod(next(iter(leading)))
        return self.rng.choice(self.w.pods)

    def step(self) -> None:
        name, action, needs_daemon = self.rng.choice(self.faults)
        pod = self.target()
        if needs_daemon and not pod.alive:
            self.w.restart(pod)
            return
        self.counts[name] = self.counts.get(name, 0) + 1
        self.log(f"fault {name} on {pod.name} (leading: {self.w.leading()})")
        try:
            action(pod)
        except Exception as exc:  # the run goes on; the history says what went wrong
            self.log(f"  fault {name} failed: {exc!r}")
            self.w.recorder.add("anomaly", pod=pod.name, what=f"{name} failed: {exc!r}"[:500])
        self.w.heal_all()
        for p in self.w.pods:  # bring back what the fault killed, after a while
            if not p.alive:
                time.sleep(self.rng.uniform(0.5, 3))
                self.w.restart(p)

    # -- the faults ----------------------------------------------------------------------------

    def kill9(self, pod: Pod) -> None:
        self.w.kill9(pod)
        time.sleep(TTL + 2)

    def sigterm(self, pod: Pod) -> None:
        self.w.sigterm(pod)
        time.sleep(2)

    def daemon_freeze(self, pod: Pod, seconds: float) -> None:
        with self.w.fault("daemon_freeze", pod.name, seconds=seconds):
            pod.freeze(whole_pod=False)
            time.sleep(seconds)
            pod.thaw()

    def pod_freeze(self, pod: Pod) -> None:
        """The whole pod for 2·TTL; on thaw the jobs run first (the worst order)."""
        with self.w.fault("pod_freeze", pod.name, seconds=2 * TTL):
            pod.freeze(whole_pod=True)
            time.sleep(2 * TTL)
            pod.thaw_jobs()
            time.sleep(0.5)
            pod.thaw()

    def cut_off(self, pod: Pod) -> None:
        seconds = self.rng.uniform(0.3, 2.5) * TTL
        with self.w.fault("cut_off", pod.name, seconds=round(seconds, 2)):
            pod.proxies.blackhole()
            time.sleep(seconds)
            pod.proxies.heal()

    def responses_blackholed(self, pod: Pod) -> None:
        seconds = self.rng.uniform(0.3, 2) * TTL
        with self.w.fault("responses_blackholed", pod.name, seconds=round(seconds, 2)):
            pod.proxies.blackhole_responses()
            time.sleep(seconds)
            pod.proxies.heal()

    def responses_delayed(self, pod: Pod) -> None:
        """etcd answers 0.5·TTL late for 2·TTL; the pod's writes to the store are held as
        long (the network of the whole pod is slow)."""
        with self.w.fault("responses_delayed", pod.name, seconds=2 * TTL):
            pod.proxies.delay_responses(TTL / 2)
            pod.store_proxy.blackhole_requests()
            time.sleep(2 * TTL)
            pod.store_proxy.heal()
            pod.proxies.heal()

    def member_killed(self, *, leader: bool) -> None:
        cluster = self.w.cluster
        try:
            etcd_leader = cluster.leader(timeout=5)
        except AssertionError:
            return
        victim = next(i for i, m in enumerate(cluster.members) if (m is etcd_leader) == leader)
        name = "etcd_leader_killed" if leader else "etcd_follower_killed"
        with self.w.fault(name, f"m{victim}"):
            cluster.kill_member(victim)
            time.sleep(self.rng.uniform(1, 2) * TTL)
            cluster.restore()

    def quorum_lost(self) -> None:
        with self.w.fault("quorum_lost", "etcd", seconds=3 * TTL):
            self.w.cluster.stop_quorum()
            time.sleep(3 * TTL)
            self.w.cluster.restore()

    def member_isolated(self) -> None:
        """One member cut off from its peers while its clients still reach it (a member without a
        leader): watches and reads through it must not leave a successor waiting (L1)."""
        cluster = self.w.cluster
        assert isinstance(cluster, IsolatableCluster)
        victim = self.rng.randrange(len(cluster.members))
        seconds = self.rng.uniform(1, 3) * TTL
        with self.w.fault("member_isolated", f"m{victim}", seconds=round(seconds, 2)):
            cluster.isolate_from_peers(victim)
            time.sleep(seconds)
            cluster.heal_peers()

    def clock_step(self, pod: Pod) -> None:
        # A day ahead is a replica whose clock runs fast (a wrong RTC, a VM restored with a
        # future time): slots keep their pace while it lasts, and no slot runs twice after.
        offset = self.rng.choice(["+1h", "-1h", "+1d"])
        with self.w.fault("clock_step", pod.name, offset=offset):
            pod.set_clock(offset)
            time.sleep(2 * TTL)
            pod.set_clock("+0")
            time.sleep(1)


def parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip()
    if text[-1:] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def run_soak(
    duration: float,
    out: Path,
    *,
    seed: int | None = None,
    pods: int = 3,
    jobs: int = 0,
    store: str = "http",
    features: bool = False,
    etcd_args: Sequence[str] = (),
    on_cluster: Callable[[IsolatableCluster], None] | None = None,
) -> tuple[Verdict, dict[str, Any]]:
    """``etcd_args``: extra flags for every member (e.g. a small quota and auto-compaction);
    ``on_cluster`` is called once the cluster is up (e.g. to sample its database size)."""
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    logf = (out / "nemesis.log").open("a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        logf.write(line + "\n")
        logf.flush()

    started = time.monotonic()
    procs = ProcessGroup()
    cluster = IsolatableCluster(3, extra_args=etcd_args)
    if on_cluster is not None:
        on_cluster(cluster)
    world: World | None = None
    try:
        world = World(
            cluster,
            procs,
            out,
            f"/soak/{seed}",
            pods=pods,
            misbehaving=(pods - 1,),
            faketime=faketime_available(),
            store=store,
            features=features,
            **({"jobs": jobs, "writes": 3, "interval": 0.2} if jobs else {}),
        ).start()
        world.wait_leader(20)
        nemesis = Nemesis(world, rng, log)
        log(f"seed {seed}; faults: {[f[0] for f in nemesis.faults]}")
        while time.monotonic() - started < duration:
            time.sleep(rng.uniform(1, 4))
            nemesis.step()
        # A calm end: everyone back, one leader that runs jobs.
        world.heal_all()
        for p in world.pods:
            world.restart(p)
        _, token = world.wait_leader(6 * TTL)
        if jobs:
            world.wait_all_led(6 * TTL)
            tokens = [tok for _, tok in world.leaders().values()]
        else:
            tokens = [token]
        for tok in tokens:
            wait_until(lambda t=tok: world.journal_records("answer", token=t, accepted=True), 10)
        verdict = world.finish()
    finally:
        if world is not None:
            world.close()
        procs.cleanup()
        cluster.close()
        logf.close()
    info = {
        "seed": seed,
        "jobs": jobs or 1,
        "store": store,
        "features": features,
        "duration_s": round(time.monotonic() - started, 1),
        "etcd_version": ".".join(map(str, cluster.version)),
        "faults_injected": nemesis.counts,
        "history": str(out / "history.jsonl"),
    }
    (out / "verdict.json").write_text(
        json.dumps(
            {
                "ok": verdict.ok,
                "info": info,
                "stats": verdict.stats,
                "violations": [str(v) for v in verdict.violations],
                "liveness": [str(m) for m in verdict.liveness],
                "warnings": verdict.warnings,
            },
            indent=2,
            default=str,
        )
    )
    return verdict, info
