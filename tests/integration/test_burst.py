"""A hundred jobs on one fire time, end to end: one daemon, a real etcd, real processes.

One `leaderjob run --jobs FILE` daemon leads 100 jobs, all ``@every 4s`` (their slots fall on the
same instants), TTL 5 s (renew every 1.7 s; ``/healthz`` fails once the last answered keepalive
is older than 2.5 s: a pass that waited for each start, as before, failed it). Each job is
``sh`` writing its job, slot, token and lease to one journal, then ``sleep 0.2``.

Properties, for the first fire time at which the 100 jobs ran: S3 (every job ran that slot
exactly once, and no slot ran twice anywhere), each run under its own job's token (the create
revision of its own key) and the daemon's lease, each within its own ``D`` (every run succeeded:
none was refused for its deadline or killed at it), and the daemon renewed on time while the
burst was in flight (``/healthz`` answered 200 at every poll, no leadership lost): the pass that
requests the hundred starts does not wait for them.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from tests.harness import free_port
from tests.harness.daemons import leaderjob, wait_for
from tests.harness.procs import JsonLogProcess, ProcessGroup

N = 100
EVERY = 4.0
RUN = 0.2
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _jobs_file(tmp_path: Path, journal: Path) -> Path:
    script = (
        'echo "$LEADERJOB_JOB $LEADERJOB_SLOT $LEADERJOB_FENCING_TOKEN $LEADERJOB_LEASE_ID" '
        f'>> "{journal}"; exec sleep {RUN}'
    )
    lines = []
    for i in range(N):
        lines += [f"[jobs.j{i:03d}]", f'schedule = "@every {EVERY:.0f}s"',
                  f"command = {json.dumps(['sh', '-c', script])}", ""]  # fmt: skip
    path = tmp_path / "jobs.toml"
    path.write_text("\n".join(lines))
    return path


class Health:
    """Polls ``/healthz`` every 50 ms in a thread: the statuses seen, with their times."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            try:
                with _NO_PROXY.open(self.url, timeout=1.0) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                continue  # not serving yet
            self.seen.append((time.monotonic(), status))

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(2.0)
        return self.seen


def _full_slot(d: JsonLogProcess) -> str | None:
    """The first slot every job started (the burst), if any yet."""
    count = Counter(ev["slot"] for ev in d.events("job.started"))
    full = sorted(slot for slot, n in count.items() if n == N)
    return full[0] if full else None


def test_a_hundred_jobs_on_one_fire_time_each_run_once_with_its_own_token_and_d_s3_s6(
    etcd, prefix: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    jobs = _jobs_file(tmp_path, journal)
    port = free_port()
    d = leaderjob(
        procs, tmp_path, "a", etcd.endpoint, prefix, [], election="grp", ttl="5s",
        extra=["--jobs", str(jobs), "--spread", "off", "--metrics-addr", f"127.0.0.1:{port}"],
    )  # fmt: skip
    health = Health(port)
    try:
        assert wait_for(lambda: len(d.events("election.acquired")) == N, 15), d.tail()
        led_at = time.monotonic()
        assert wait_for(lambda: _full_slot(d) is not None, 2 * EVERY + 3), d.tail()
        slot = _full_slot(d)
        started = [ev for ev in d.events("job.started") if ev["slot"] == slot]
        ids = {ev["run_id"] for ev in started}

        def finished() -> list[dict]:
            return [ev for ev in d.events("job.finished") if ev.get("run_id") in ids]

        assert wait_for(lambda: len(finished()) == N, RUN + 5), d.tail()
        seen = health.stop()
        d.signal(signal.SIGTERM)
        assert d.wait(15) == 0, d.tail()
    finally:
        health.stop()

    # S3: each job ran that slot exactly once; nothing ran any slot twice.
    lines = [ln.split() for ln in journal.read_text().splitlines()]
    ran = Counter((job, s) for job, s, *_ in lines)
    assert not [k for k, n in ran.items() if n > 1], "S3: a slot ran twice"
    burst = {job: (token, lease) for job, s, token, lease in lines if s == slot}
    assert len(burst) == N
    # Each under its own job's token (its key's create revision) and the daemon's one lease.
    tokens = {ev["job"]: str(ev["token"]) for ev in d.events("election.acquired")}
    assert {job: token for job, (token, _) in burst.items()} == tokens
    assert len(set(tokens.values())) == N
    (lease,) = {ev["lease_id"] for ev in d.events("lease.granted")}
    assert {lease_id for _, lease_id in burst.values()} == {lease}
    # S6: each run within its own D (none refused for it, none killed at it).
    outcomes = Counter(ev["outcome"] for ev in finished())
    assert outcomes == {"succeeded": N}, outcomes
    # Renewed on time while the burst was in flight: /healthz never failed, nothing was lost.
    assert [s for t, s in seen if t >= led_at] and all(s == 200 for t, s in seen if t >= led_at), [
        (round(t - led_at, 2), s) for t, s in seen if s != 200
    ]
    lost = [ev for ev in d.events("election.lost") if ev.get("reason") != "resigned"]  # SIGTERM
    assert not lost and not d.events("lease.lost"), lost[:3]
    execs = sorted(ev["exec_seconds"] for ev in started)
    print(f"burst of {N}: first / last exec {execs[0]:.3f} / {execs[-1]:.3f} s after the fire time")
