"""Reloads and health flips for the soak (``bench/soak.py --features``): the daemon's features
interleaved with the faults of :mod:`tests.faults.nemesis`.

Every pod runs the same jobs file, rewritten here and followed by a SIGHUP to each live pod (a
few hundred milliseconds apart, as a ConfigMap reaches pods one by one):

* ``reload_add`` adds a job (a new name, or one removed earlier: added back under its name);
* ``reload_remove`` removes one (the service too: a removed service is stopped and resigns);
* ``reload_schedule`` changes one scheduled job's schedule (``@every 1s`` <-> ``@every 2s``);
* ``reload_service`` changes the service job (``svc``, no schedule, a writer that runs until
  it is stopped): its write interval, so it is stopped and started again with the new one.

And health gates, flipped by a small HTTP server of the soak that each gate's ``health-url``
asks (``/<pod>`` for the replica, ``/<pod>.<job>`` for one job: 503 while flipped, else 200;
checked every second, one failure closes the gate; a URL, not a command, because the pods run
under libfaketime, where a sleeping ``subprocess.run(timeout=...)`` fails):

* ``health_job`` closes one gated job's gate (``health-cmd`` in the jobs file) on one pod for
  1-3·TTL: that job alone must be handed over, the pod's other jobs carry on;
* ``health_replica`` closes the daemon's own gate (``--health-cmd``) for 1-3·TTL: the pod leads
  nothing until it opens.

The checker (:mod:`tests.faults.checker_features`) judges what these must do.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.harness.endpoint import QuietServer

if TYPE_CHECKING:
    from tests.faults.world import Pod, World

WRITER = str(Path(__file__).with_name("writer_job.py"))
SCHEDULES = ("@every 1s", "@every 2s")
SERVICE = "svc"
#: How often every health check runs, and after how many failures a gate closes.
HEALTH_INTERVAL = "1s"


@dataclass(frozen=True)
class JobSpec:
    schedule: str | None  # None: a service
    writes: int  # 0: until stopped
    interval: float
    gated: bool  # a health-cmd of its own


class Features:
    """The jobs file every pod runs, and the steps that change it or flip health gates."""

    def __init__(self, world: World, jobs: int) -> None:
        self.w = world
        self.sick = world.tmp / "sick"
        self.sick.mkdir(parents=True, exist_ok=True)
        self.spec: dict[str, JobSpec] = {
            f"j{i}": JobSpec(SCHEDULES[0], 3, 0.2, gated=i < 2) for i in range(jobs)
        }
        self.spec[SERVICE] = JobSpec(None, 0, 0.25, gated=False)
        self.removed: dict[str, JobSpec] = {}
        self.added = 0
        self.server = _HealthServer(self.sick)

    def close(self) -> None:
        self.server.close()

    # -- what a pod runs ------------------------------------------------------------------------

    def daemon_args(self, pod_name: str) -> list[str]:
        return [
            "--health-url",
            self.server.url(pod_name),
            "--health-interval",
            HEALTH_INTERVAL,
            "--health-failures",
            "1",
        ]

    def render(self, pod_name: str, flags: list[str]) -> str:
        """The jobs file (the same on every pod but for its gates' URLs and the misbehaving
        pod's job ``flags``)."""
        out = []
        for name, s in sorted(self.spec.items()):
            cmd = [sys.executable, WRITER, str(self.w.journal)]
            cmd += ["--writes", str(s.writes), "--interval", str(s.interval), *flags]
            out.append(f"[jobs.{name}]\n")
            if s.schedule is not None:
                out.append(f'schedule = "{s.schedule}"\n')
            out.append(f"command = {json.dumps(cmd)}\n")
            if s.gated:
                url = self.server.url(f"{pod_name}.{name}")
                out.append(f"health-url = {json.dumps(url)}\n")
            out.append("\n")
        return "".join(out)

    def write_files(self) -> None:
        """Every pod's jobs file, replaced whole (a rename: a daemon never reads half)."""
        for pod in self.w.pods:
            path = pod.jobs_file_path
            tmp = path.with_suffix(".tmp")
            tmp.write_text(self.render(pod.name, pod.flags))
            os.replace(tmp, path)

    def heal(self) -> None:
        for f in self.sick.iterdir():
            with contextlib.suppress(FileNotFoundError):
                f.unlink()

    # -- the steps ------------------------------------------------------------------------------

    def steps(self) -> list[tuple[str, Callable[[Pod], None], bool]]:
        return [
            ("reload_add", lambda p: self.reload("reload_add"), False),
            ("reload_remove", lambda p: self.reload("reload_remove"), False),
            ("reload_schedule", lambda p: self.reload("reload_schedule"), False),
            ("reload_service", lambda p: self.reload("reload_service"), False),
            ("health_job", self.health_job, False),
            ("health_replica", self.health_replica, False),
        ]

    def _change(self, kind: str, rng: random.Random) -> dict[str, Any]:
        """Change the spec for ``kind``; returns what changed (for the record)."""
        if kind == "reload_remove" and len(self.spec) > 2:
            name = rng.choice(sorted(self.spec))
            self.removed[name] = self.spec.pop(name)
            return {"job": name, "change": "removed"}
        if kind == "reload_service" and SERVICE in self.spec:
            s = self.spec[SERVICE]
            self.spec[SERVICE] = replace(s, interval=0.3 if s.interval == 0.25 else 0.25)
            return {"job": SERVICE, "change": f"interval {self.spec[SERVICE].interval}"}
        if kind == "reload_schedule":
            name = rng.choice(sorted(n for n, s in self.spec.items() if s.schedule))
            s = self.spec[name]
            new = SCHEDULES[1] if s.schedule == SCHEDULES[0] else SCHEDULES[0]
            self.spec[name] = replace(s, schedule=new)
            return {"job": name, "change": f"schedule {new}"}
        # reload_add, and the fallbacks: a service or a job removed before comes back under
        # its name, else a new job.
        if self.removed and (kind != "reload_add" or rng.random() < 0.5 or SERVICE in self.removed):
            name = SERVICE if SERVICE in self.removed else rng.choice(sorted(self.removed))
            self.spec[name] = self.removed.pop(name)
            return {"job": name, "change": "added back"}
        self.added += 1
        name = f"x{self.added}"
        self.spec[name] = JobSpec(SCHEDULES[0], 3, 0.2, gated=rng.random() < 0.5)
        return {"job": name, "change": "added"}

    def reload(self, kind: str) -> None:
        rng = self.w_rng
        change = self._change(kind, rng)
        with self.w.fault(kind, None, **change):
            self.write_files()
            for pod in rng.sample(self.w.pods, len(self.w.pods)):
                if pod.alive and pod.daemon is not None:
                    with contextlib.suppress(ProcessLookupError):
                        pod.daemon.signal(signal.SIGHUP)
                time.sleep(rng.uniform(0, 0.5))
        time.sleep(2)

    def health_job(self, pod: Pod) -> None:
        gated = sorted(n for n, s in self.spec.items() if s.gated)
        if not gated:
            return
        led = [j for (p, j) in self.w.leading_jobs_tokens() if p == pod.name and j in gated]
        job = self.w_rng.choice(led or gated)
        self._sick(f"{pod.name}.{job}", "health_job", pod, job=job)

    def health_replica(self, pod: Pod) -> None:
        self._sick(pod.name, "health_replica", pod)

    def _sick(self, flag: str, name: str, pod: Pod, **fields: Any) -> None:
        seconds = self.w_rng.uniform(1, 3) * self.w.ttl
        path = self.sick / flag
        with self.w.fault(name, pod.name, seconds=round(seconds, 2), **fields):
            path.touch()
            time.sleep(seconds)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        time.sleep(1)

    #: The nemesis's random source (set by the nemesis: one seed replays the whole run).
    w_rng: random.Random = random.Random(0)


class _HealthServer:
    """Answers ``GET /<flag>``: 503 while the file ``<sick>/<flag>`` exists, else 200."""

    def __init__(self, sick: Path) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                flag = self.path.strip("/")
                ill = "/" in flag or (sick / flag).exists()
                self.send_response(503 if ill else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, name="health-server", daemon=True).start()

    def url(self, flag: str) -> str:
        return f"http://127.0.0.1:{self.port}/{flag}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
