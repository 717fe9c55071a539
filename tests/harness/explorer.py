"""A history worth looking at, made by real daemons on a real etcd: the run explorer's browser
test and `make screenshot` both use it.

Three replicas of `leaderjob run --schedule '@every 1s'` (a job that prints a line and sleeps a
little). The first leads and runs; it is killed (`kill -9`): nobody leads for about a TTL, the
successor records the slots nobody ran as missed and leads with a new token; then the successor
gets SIGTERM and hands over at once (a graceful handover) to the third replica, with a third
token. The two survivors also serve the explorer on their metrics port (`--ui`). Every daemon is
started through the test's process registry.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from leaderjob.history.records import ElectionData
from tests.harness.daemons import Above, leader_of, leaderjob, wait_for
from tests.harness.etcd import free_port
from tests.harness.procs import JsonLogProcess, ProcessGroup

ELECTION = "nightly-report"
COMMAND = ["sh", "-c", "echo report token=$LEADERJOB_FENCING_TOKEN; echo done >&2; sleep 0.2"]


@dataclass
class Story:
    replicas: dict[str, JsonLogProcess]
    crashed: str  # the replica killed with SIGKILL
    stopped: str  # the replica stopped with SIGTERM
    last: str  # the replica that leads at the end
    tokens: list[int]  # the three leaderships' tokens, in order
    ports: dict[str, int]  # the survivors' metrics ports, which serve the explorer too


def _wait_recorded(d: JsonLogProcess, endpoint: str, prefix: str) -> None:
    """Until every run ``d`` logged as finished has its history record in etcd."""
    store = EtcdStore(Connection(endpoints=(endpoint,)))
    try:
        data = ElectionData(store, prefix, ELECTION)

        def recorded() -> bool:
            ended = {str(e["run_id"]) for e in d.events("job.finished")}
            records = data.history(100, timeout=5, runs_only=True)
            return ended <= {str(r.get("run_id")) for r in records}

        assert wait_for(recorded, 10), d.tail(10)
    finally:
        store.close()


def runs_of(d: JsonLogProcess) -> int:
    return len(d.events("job.finished"))


def crash_and_handover(
    procs: ProcessGroup,
    tmp_path: Path,
    endpoint: str,
    prefix: str,
    *,
    ttl: str = "2s",
    runs_each: int = 3,
) -> Story:
    ports = {"replica-b": free_port(), "replica-c": free_port()}

    def start(name: str) -> JsonLogProcess:
        ui = ["--metrics-addr", f"127.0.0.1:{ports[name]}", "--ui"] if name in ports else []
        return leaderjob(
            procs,
            tmp_path,
            name,
            endpoint,
            prefix,
            COMMAND,
            election=ELECTION,
            ttl=ttl,
            schedule="@every 1s",
            extra=["--catch-up", "skip", *ui],
        )

    first = start("replica-a")
    first.wait_event("election.acquired", 15)
    replicas = {"replica-a": first}
    for name in ("replica-b", "replica-c"):
        replicas[name] = start(name)
    for name in ("replica-b", "replica-c"):
        replicas[name].wait_event("lease.granted", 15)
    _wait_runs(first, runs_each)
    token_a = int(first.events("election.acquired")[-1]["token"])
    # A run's record is written a cycle after its end is logged: the kill waits for the records
    # of the runs logged so far, or the page would rightly miss one the crash never wrote.
    _wait_recorded(first, endpoint, prefix)
    first.signal_group(signal.SIGKILL)
    first.wait(10)
    second = leader_of([replicas["replica-b"], replicas["replica-c"]], timeout=20)
    token_b = int(second.wait_event("election.acquired", 5, token=Above(token_a))["token"])
    _wait_runs(second, runs_each)
    second.signal(signal.SIGTERM)
    second.wait(15)
    third = next(d for n, d in replicas.items() if d not in (first, second))
    token_c = int(third.wait_event("election.acquired", 10, token=Above(token_b))["token"])
    _wait_runs(third, runs_each)
    name_of = {d: n for n, d in replicas.items()}
    return Story(
        replicas,
        "replica-a",
        name_of[second],
        name_of[third],
        [token_a, token_b, token_c],
        ports,
    )


def _wait_runs(d: JsonLogProcess, n: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while runs_of(d) < n:
        assert d.alive and time.monotonic() < end, f"{n} runs not seen:\n{d.tail(20)}"
        time.sleep(0.05)
