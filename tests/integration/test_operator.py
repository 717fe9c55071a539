"""What an operator meets, end to end on a real etcd: two deployments that share an election by
mistake are detected; a graceful stop is logged as routine; `trigger` on a typo is refused."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.harness.daemons import leader_of, leaderjob, wait_for
from tests.harness.procs import ProcessGroup

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


def _cli(endpoint: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leaderjob", *args, "--endpoints", endpoint, "--prefix", prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_two_deployments_sharing_an_election_are_flagged(
    etcd, prefix: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    """S3 across deployments: "prod" and "staging" on one etcd, one prefix, one election name,
    different schedules. The newcomer sees the conflict when it joins, the leader at its next
    check; `status` names both; the election keys still carry the bare identity."""
    prod = leaderjob(procs, tmp_path, "prod-0", etcd.endpoint, prefix, SLEEP, schedule="@hourly")
    leader_of([prod], timeout=15)
    staging = leaderjob(
        procs, tmp_path, "staging-0", etcd.endpoint, prefix, SLEEP, schedule="@daily"
    )
    assert wait_for(lambda: staging.events("election.config_conflict"), 20), staging.tail()
    conflict = staging.events("election.config_conflict")[0]
    assert conflict["level"] == "warning"
    assert any(o.startswith("prod-0: ") and "@hourly" in o for o in conflict["others"])
    # The leader compares every 30 s.
    assert wait_for(lambda: prod.events("election.config_conflict"), 45), prod.tail()

    status = _cli(etcd.endpoint, prefix, "status", "--election", "job")
    assert status.returncode == 0, status.stderr
    assert "CONFIG CONFLICT" in status.stdout
    assert "prod-0" in status.stdout and "staging-0" in status.stdout

    # `etcdctl elect -l` reads the candidate key's value: still the identity alone.
    from tests.harness.etcd import etcdctl

    out = etcdctl(etcd.endpoint, "get", "--prefix", f"{prefix}/job/leader/", "--print-value-only")
    assert sorted(line for line in str(out).splitlines() if line) == ["prod-0", "staging-0"]

    # A graceful stop of the leader is a planned handover: election.lost at info (L2).
    prod.signal(signal.SIGTERM)
    assert prod.wait(20) == 0
    lost = prod.events("election.lost")
    assert lost and all(e["level"] == "info" for e in lost), lost


def test_trigger_waits_for_the_run_and_refuses_a_typo(
    etcd, prefix: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    """`trigger --wait` returns the run's outcome (here the job's exit code 3); a trigger of an
    election nobody campaigns in is refused (exit 1) and writes nothing."""
    exit3 = [sys.executable, "-c", "import sys; sys.exit(3)"]
    leader = leaderjob(procs, tmp_path, "a", etcd.endpoint, prefix, exit3, schedule="@yearly")
    leader_of([leader], timeout=15)
    waited = _cli(
        etcd.endpoint, prefix, "trigger", "--election", "job", "--wait", "--wait-timeout", "30s"
    )
    assert waited.returncode == 3, (waited.stdout, waited.stderr, leader.tail())
    assert "failed" in waited.stdout

    typo = _cli(etcd.endpoint, prefix, "trigger", "--election", "jbo")
    assert typo.returncode == 1 and "nobody campaigns" in typo.stderr, typo
    from tests.harness.etcd import etcdctl

    assert etcdctl(etcd.endpoint, "get", "--prefix", f"{prefix}/jbo/", "--keys-only").strip() == ""
