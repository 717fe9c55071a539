"""A world to break: a 3-member etcd cluster, a fenced store, N leaderjob daemons ("pods").

Each pod is one ``leaderjob run`` process behind its own :class:`MultiProxy` (one fault proxy
per etcd member) and its own :class:`FaultProxy` to the fenced store, running
:mod:`tests.faults.writer_job` on a schedule; by default (``writes=0``) a run writes until it is
killed, so a leader's job is always running when a fault hits it. A pod's job and the job's
watchdog are the daemon's descendants; :meth:`Pod.freeze` stops all of them ("the whole pod"),
or only the daemon. Every fault goes through :class:`World`, which records it on the
recorder's clock.

With ``jobs=N`` every pod runs ``leaderjob run --jobs FILE`` instead: N jobs ``j0`` ..
``j<N-1>``, each the same writer on the same schedule, each writing to a resource of its own
(``fault/<job>``), so fencing, slots and leadership are judged per job by the checker.

With ``store="postgres"`` the resource is a real PostgreSQL server instead of the toy store:
the jobs write through the SQL fence (:mod:`tests.faults.pgstore`), each pod through its own
fault proxy to PostgreSQL, and PostgreSQL's decisions feed the checker as the toy store's do.

Usable from pytest (give it the ``procs`` registry and the module's ``etcd_cluster``) and from
a script (``bench/soak.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults import pgstore
from tests.faults.checker import Verdict, check
from tests.faults.features import Features
from tests.faults.recorder import Recorder, _has_token, read_jsonl
from tests.harness.daemons import leaderjob
from tests.harness.etcd import EtcdCluster, free_port
from tests.harness.procs import (
    JsonLogProcess,
    ProcessGroup,
    pid_alive,
    stop_when_idle,
    wait_until,
)
from tests.harness.proxy import FaultProxy, MultiProxy

WRITER = str(Path(__file__).with_name("writer_job.py"))
#: The fenced resource the writers write to (an example, not part of the package).
FENCESTORE = Path(__file__).resolve().parents[2] / "examples" / "fencestore.py"
#: Debian's `faketime` package (any architecture's multiarch directory), or
#: LEADERJOB_LIBFAKETIME.
LIBFAKETIME = os.environ.get("LEADERJOB_LIBFAKETIME") or next(
    (str(p) for p in sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
)


def faketime_available() -> bool:
    return Path(LIBFAKETIME).exists()


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


@dataclass
class Pod:
    world: World
    name: str
    proxies: MultiProxy
    store_proxy: FaultProxy
    job_args: list[str]
    env: dict[str, str]
    daemon: JsonLogProcess | None = None
    clock_file: Path | None = None
    status_port: int | None = None  # --metrics-addr, for GET /status
    frozen: list[int] = field(default_factory=list)
    #: The job's misbehaviour flags (``--ignore-term`` ...), none on a well-behaved pod.
    flags: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.world.tmp / f"{self.name}.log"

    @property
    def jobs_file_path(self) -> Path:
        return self.world.tmp / f"{self.name}-jobs.toml"

    def jobs_file(self) -> Path:
        """This pod's jobs file: the world's jobs, each running this pod's writer."""
        w = self.world
        path = self.jobs_file_path
        if w.features is not None:  # the file as the last reload left it
            if not path.exists():
                path.write_text(w.features.render(self.name, self.flags))
            return path
        cmd = json.dumps([sys.executable, WRITER, str(w.journal), *self.job_args])
        path.write_text(
            "".join(
                f'[jobs.{job}]\nschedule = "{w.schedule}"\ncommand = {cmd}\n\n' for job in w.jobs
            )
        )
        return path

    def start(self) -> None:
        w = self.world
        cmd = [sys.executable, WRITER, str(w.journal), *self.job_args]
        if w.jobs:
            cmd, schedule, jobs = [], None, ["--jobs", str(self.jobs_file())]
        else:
            schedule, jobs = w.schedule, []
        self.daemon = leaderjob(
            w.procs,
            w.tmp,
            self.name,
            self.proxies.endpoints,
            w.prefix,
            cmd,
            election=w.election,
            ttl=f"{w.ttl}s",
            schedule=schedule,
            extra=[
                *jobs,
                *w.extra,
                *(w.features.daemon_args(self.name) if w.features is not None else []),
                *(["--metrics-addr", f"127.0.0.1:{self.status_port}"] if self.status_port else []),
            ],
            env=self.env,
        )
        w.recorder.add("pod.started", pod=self.name, pid=self.daemon.pid)

    @property
    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive

    def status(self) -> dict[str, Any]:
        """The daemon's ``GET /status`` (start the world with ``status=True``)."""
        import json
        import urllib.request

        assert self.status_port, "start the world with status=True"
        url = f"http://127.0.0.1:{self.status_port}/status"
        with urllib.request.urlopen(url, timeout=2) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
        return doc

    def watchdogs(self) -> list[int]:
        return _children(self.daemon.pid) if self.daemon is not None else []

    def jobs(self) -> list[int]:
        return [c for wd in self.watchdogs() for c in _children(wd)]

    def freeze(self, *, whole_pod: bool, idle: bool = False) -> None:
        """SIGSTOP the daemon; with ``whole_pod`` also every watchdog and job process group.
        With ``idle``, only at a moment the daemon idles between two cycles of its loop (so
        that its first act on SIGCONT is a fresh cycle; see :func:`stop_when_idle`)."""
        assert self.daemon is not None
        self.frozen = [self.daemon.pid]
        if idle:
            assert stop_when_idle(self.daemon.pid), f"{self.name}: never caught idle"
        else:
            os.kill(self.daemon.pid, signal.SIGSTOP)
        if whole_pod:
            for wd in self.watchdogs():
                os.kill(wd, signal.SIGSTOP)
                self.frozen.append(wd)
                for job in _children(wd):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job, signal.SIGSTOP)
                    self.frozen.append(-job)

    def thaw_jobs(self) -> None:
        """SIGCONT only the job process groups (the worst order: the job runs first)."""
        for pid in self.frozen:
            if pid < 0:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(-pid, signal.SIGCONT)

    def thaw(self) -> None:
        self.thaw_jobs()
        for pid in reversed(self.frozen):
            if pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def set_clock(self, offset: str) -> None:
        """Step this pod's wall clock (libfaketime reads the file at most 0.5 s later)."""
        assert self.clock_file is not None, "start the world with faketime=True"
        self.clock_file.write_text(offset + "\n")


class World:
    def __init__(
        self,
        cluster: EtcdCluster,
        procs: ProcessGroup,
        tmp: Path,
        prefix: str,
        *,
        pods: int = 3,
        ttl: int = 3,
        schedule: str = "@every 1s",
        writes: int = 0,
        interval: float = 0.25,
        misbehaving: Sequence[int] = (),
        faketime: bool = False,
        status: bool = False,
        extra: Sequence[str] = (),
        election: str = "job",
        jobs: int = 0,
        store: str = "http",
        features: bool = False,
    ) -> None:
        self.cluster = cluster
        self.procs = procs
        self.tmp = tmp
        self.prefix = prefix
        self.ttl = ttl
        self.schedule = schedule
        self.extra = list(extra)
        self.election = election
        self._jobs = [f"j{i}" for i in range(jobs)]
        self.journal = tmp / "journal.jsonl"
        tmp.mkdir(parents=True, exist_ok=True)
        if features and not jobs:
            raise ValueError("reloads and health flips need a jobs file: give jobs")
        #: Reloads and health flips (:mod:`tests.faults.features`), or None.
        self.features = Features(self, jobs) if features else None
        self.history_path = tmp / "history.jsonl"
        self.base = f"{prefix.rstrip('/')}/{election}"
        self.leader_prefix = f"{self.base}/leader"
        if store not in ("http", "postgres"):
            raise ValueError(f"store {store!r}: use http or postgres")
        #: The PostgreSQL server behind the resource (``store="postgres"``), else None.
        self.pg: Any = pgstore.start(tmp) if store == "postgres" else None
        self.store: Any = None
        self.store_url: str | None = None
        if self.pg is not None:
            self.store_port = int(self.pg.port)
        else:
            self.store_port = free_port()
            self.store_url = f"http://127.0.0.1:{self.store_port}"
            with open(tmp / "fencestore.log", "ab") as store_log:
                self.store = procs.spawn(
                    [
                        sys.executable,
                        str(FENCESTORE),
                        "serve",
                        "--listen",
                        f"127.0.0.1:{self.store_port}",
                        "--db",
                        str(tmp / "fence.db"),
                    ],
                    stderr=store_log,
                )
            self._wait_store()
        self.recorder = Recorder(
            endpoints=cluster.endpoints,
            base=self.base,
            leader_prefix=self.leader_prefix,
            journal=self.journal,
            meta={"ttl": ttl, "schedule": schedule, "pods": pods, "jobs": self.jobs},
        )
        self.pods: list[Pod] = []
        for i in range(pods):
            name = f"p{i}"
            proxies = MultiProxy(cluster.endpoints)
            store_proxy = FaultProxy(f"127.0.0.1:{self.store_port}").start()
            job_args = ["--writes", str(writes), "--interval", str(interval)]
            # Ignores SIGTERM, forks a grandchild, and one that escapes the group (setsid).
            flags = ["--ignore-term", "--grandchild", "--escape"] if i in misbehaving else []
            job_args += flags
            env = {"PYTHONFAULTHANDLER": "1"}  # SIGABRT dumps every thread's stack into the log
            if self.pg is not None:
                env["LJ_STORE_DSN"] = pgstore.dsn_via(store_proxy.port)
            else:
                env["LJ_STORE_URL"] = f"http://{store_proxy.endpoint}"
            if not jobs:
                env["LJ_RESOURCE"] = "fault"  # else fault/<job>: a resource per job
            pod = Pod(self, name, proxies, store_proxy, job_args, env, flags=flags)
            if status:
                pod.status_port = free_port()
            if faketime:
                pod.clock_file = tmp / f"{name}.faketime"
                pod.clock_file.write_text("+0\n")
                env.update(
                    LD_PRELOAD=LIBFAKETIME,
                    FAKETIME_TIMESTAMP_FILE=str(pod.clock_file),
                    FAKETIME_CACHE_DURATION="0.5",
                    FAKETIME_DONT_FAKE_MONOTONIC="1",
                )
            self.pods.append(pod)
            self.recorder.tail_log(name, pod.log_path)
        self.closed = False

    def _wait_store(self) -> None:
        import urllib.request

        def up() -> bool:
            try:
                with urllib.request.urlopen(self.store_url + "/state", timeout=1):
                    return True
            except OSError:
                return False

        if not wait_until(up, 15, 0.05):
            raise RuntimeError("the fenced store did not start")

    def start(self) -> World:
        for pod in self.pods:
            pod.start()
        return self

    @property
    def jobs(self) -> list[str]:
        """The jobs of the jobs file every pod runs (none: the single-job ``--schedule`` form);
        with reloads, the jobs of the file as it is now."""
        return sorted(self.features.spec) if self.features is not None else self._jobs

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    # -- what the recorder has seen ----------------------------------------------------------

    def events(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.recorder.history()
            if (kind is None or r["kind"] == kind) and all(r.get(k) == v for k, v in match.items())
        ]

    def daemon_events(self, event: str, pod: str | None = None, since: float = 0.0) -> list[dict]:
        return [
            r
            for r in self.events("daemon", event=event)
            if r["t"] >= since and (pod is None or r["pod"] == pod)
        ]

    def leading(self) -> dict[str, int]:
        """pod -> token, for pods whose latest election event is ``election.acquired`` and
        whose daemon is alive (as far as the logs tell)."""
        if self.jobs:  # the largest token of the jobs it leads
            out: dict[str, int] = {}
            for (pod, _), tok in self.leading_jobs_tokens().items():
                out[pod] = max(out.get(pod, 0), tok)
            return out
        state = dict(self.recorder.leading)
        return {p: tok for p, tok in state.items() if tok is not None and self.pod(p).alive}

    def leading_jobs_tokens(self) -> dict[tuple[str, str], int]:
        """(pod, job) -> token, for every job a live pod leads (as far as the logs tell)."""
        state = dict(self.recorder.leading_jobs)
        return {k: tok for k, tok in state.items() if self.pod(k[0]).alive}

    def leaders(self) -> dict[str, tuple[str, int]]:
        """job -> (pod, token) of its leader (the latest acquisition if two claim it)."""
        out: dict[str, tuple[str, int]] = {}
        for (pod, job), tok in self.leading_jobs_tokens().items():
            if job not in out or tok > out[job][1]:
                out[job] = (pod, tok)
        return out

    def wait_all_led(self, timeout: float, *, exclude: str | None = None) -> dict[str, Pod]:
        """Wait until every job of the jobs file has a leader other than ``exclude``."""
        found: dict[str, Pod] = {}

        def probe() -> bool:
            found.clear()
            found.update({j: self.pod(p) for j, (p, _) in self.leaders().items() if p != exclude})
            return set(found) == set(self.jobs)

        if not wait_until(probe, timeout, 0.02):
            raise AssertionError(
                f"jobs without a leader (exclude={exclude}) within {timeout}s: "
                f"{sorted(set(self.jobs) - set(found))}"
            )
        return dict(found)

    def wait_leader(
        self, timeout: float, *, exclude: str | None = None, above: int = 0
    ) -> tuple[Pod, int]:
        found: list[tuple[Pod, int]] = []

        def probe() -> bool:
            for name, tok in self.leading().items():
                if name != exclude and tok > above:
                    found.append((self.pod(name), tok))
                    return True
            return False

        if not wait_until(probe, timeout, 0.02):
            raise AssertionError(
                f"no leader (exclude={exclude}, token>{above}) within {timeout}s:\n"
                + "\n".join(
                    f"--- {p.name}\n" + (p.daemon.tail(15) if p.daemon else "") for p in self.pods
                )
            )
        return found[0]

    def journal_records(self, ev: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in read_jsonl(self.journal)
            if (ev is None or r.get("ev") == ev) and all(r.get(k) == v for k, v in match.items())
        ]

    def wait_accepted(self, token: int, timeout: float, count: int = 1) -> float:
        """Wait until jobs with ``token`` got ``count`` writes accepted; returns the time."""
        ok = wait_until(
            lambda: len(self.journal_records("answer", token=token, accepted=True)) >= count,
            timeout,
            0.02,
        )
        assert ok, f"no accepted write with token {token} within {timeout}s"
        return time.monotonic()

    def running_job(self, pod: Pod, timeout: float) -> int:
        """Wait until ``pod`` runs a job; return the job's pid."""
        found: list[int] = []
        wait_until(lambda: bool(found.extend(pod.jobs()) or found), timeout, 0.02)
        assert found, f"{pod.name} runs no job"
        return found[0]

    def store_log(self) -> list[dict[str, Any]]:
        """The fenced store's decisions so far (``GET /log``, or PostgreSQL's table)."""
        import json
        import urllib.request

        if self.pg is not None:
            return pgstore.decisions(self.pg.dsn)
        assert self.store_url is not None
        with urllib.request.urlopen(self.store_url + "/log", timeout=10) as resp:
            return [json.loads(line) for line in resp.read().decode().splitlines() if line]

    # -- faults --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def fault(self, name: str, target: str | None = None, **fields: Any) -> Iterator[None]:
        leading = self.leading()
        etcd_wide = target is None or target.startswith(("m", "etcd"))
        # Failover is attributed to a fault only if some daemon led when it began: the one hit,
        # or, for faults of etcd itself, any.
        on_leader = bool(leading) if etcd_wide else target in leading
        if self.jobs:  # which jobs the fault hits: per job, for the failover statistics
            fields["leading_jobs"] = sorted(
                j for (p, j) in self.leading_jobs_tokens() if etcd_wide or p == target
            )
        with self.recorder.fault(name, target, on_leader=on_leader, **fields):
            yield

    def kill9(self, pod: Pod) -> None:
        with self.fault("kill9", pod.name):
            assert pod.daemon is not None
            pod.daemon.signal(signal.SIGKILL)
            pod.daemon.wait(10)

    def sigterm(self, pod: Pod, timeout: float = 15.0) -> int:
        """SIGTERM; a daemon still there after ``timeout`` is an anomaly: its Python stacks are
        dumped into its log (SIGABRT with PYTHONFAULTHANDLER) and it is killed."""
        with self.fault("sigterm", pod.name):
            assert pod.daemon is not None
            pod.daemon.signal(signal.SIGTERM)
            try:
                return pod.daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                self.recorder.add(
                    "anomaly",
                    pod=pod.name,
                    what=f"still running {timeout:.0f}s after SIGTERM",
                    fault="sigterm",
                )
                pod.daemon.signal(signal.SIGABRT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    pod.daemon.wait(5)
                pod.daemon.signal(signal.SIGKILL)
                return pod.daemon.wait(10)

    def restart(self, pod: Pod) -> None:
        if pod.alive:
            return
        pod.start()

    def heal_all(self) -> None:
        for pod in self.pods:
            if pod.frozen:
                pod.thaw()
            pod.proxies.heal()
            pod.store_proxy.heal()
            if pod.clock_file is not None:
                pod.set_clock("+0")
        if self.features is not None:
            self.features.heal()
        if any(not m.running for m in self.cluster.members):
            self.cluster.restore()

    # -- the end -------------------------------------------------------------------------------

    def finish(self, *, graceful: bool = True) -> Verdict:
        """Heal, stop the daemons (SIGTERM), merge all sources, and check the history."""
        if self.closed:
            raise RuntimeError("finished twice")
        self.closed = True
        with contextlib.suppress(Exception):
            self.heal_all()
        for pod in self.pods:
            if graceful and pod.alive:
                assert pod.daemon is not None
                pod.daemon.signal(signal.SIGTERM)
        for pod in self.pods:
            if pod.daemon is not None and pod.alive:
                try:
                    pod.daemon.wait(15)
                except subprocess.TimeoutExpired:
                    self.recorder.add(
                        "anomaly", pod=pod.name, what="still running 15s after SIGTERM"
                    )
                    pod.daemon.signal(signal.SIGABRT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        pod.daemon.wait(5)
                    pod.daemon.signal(signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(r["pid"]) for r in self.journal_records("start")), 5)
        for pid, token, ev in self._leftover_jobs():  # every daemon is gone: nothing may live
            self.recorder.add("orphan", pid=pid, token=token, ev=ev)
        self._kill_leftover_jobs()
        self.recorder.close(self.store_url)
        if self.pg is not None:  # PostgreSQL's decisions, as the recorder reads the toy store's
            for d in pgstore.decisions(self.pg.dsn):
                self.recorder.add(
                    "store",
                    t=float(d["mono"]),
                    seq=d["seq"],
                    op=d["op"],
                    resource=d["resource"],
                    token=d["token"],
                    accepted=d["accepted"],
                    high_water=d["high_water"],
                    writer=d["writer"],
                    slot=d["slot"],
                    data=json.loads(d["data"]) if d.get("data") else None,
                )
        self.recorder.dump(self.history_path)
        for pod in self.pods:
            pod.proxies.close()
            pod.store_proxy.close()
        with contextlib.suppress(Exception):
            self.store.kill()
            self.store.wait(5)
        if self.pg is not None:
            self.pg.close()
        if self.features is not None:
            self.features.close()
        return check(self.recorder.history())

    def close(self) -> None:
        """Teardown without checking (after a failure)."""
        if not self.closed:
            self.closed = True
            self.recorder.stop()
            for pod in self.pods:
                if pod.frozen:
                    pod.thaw()
                pod.proxies.close()
                pod.store_proxy.close()
            self._kill_leftover_jobs()
            if self.pg is not None:
                self.pg.close()
            if self.features is not None:
                self.features.close()

    def _leftover_jobs(self) -> list[tuple[int, int, str]]:
        """(pid, token, ev) of every job process the journal names that is still alive with
        its token."""
        out = []
        for rec in self.journal_records():
            if rec.get("ev") not in ("start", "grandchild"):
                continue
            pid = int(rec["child"] if rec["ev"] == "grandchild" else rec["pid"])
            if pid_alive(pid) and _has_token(pid, int(rec["token"])):
                out.append((pid, int(rec["token"]), str(rec["ev"])))
        return out

    def _kill_leftover_jobs(self) -> None:
        """Kill, by pid, every job process the journal names that is still alive with its token
        (a job or grandchild that escaped its daemon — what a failing test is about)."""
        for pid, _, _ in self._leftover_jobs():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
