"""A deliberately broken runner, for the positive control of the recorder and the checker.

It does what a leaderjob daemon does to start a run -- a lease, an election key created under
it (its ``create_revision`` is the token), a slot claim guarded on that key, the
``election.acquired`` and ``job.started`` log lines, the job started as ``sh -c`` in its own
session with the documented environment -- and then nothing: no keepalive, no deadline, no
watchdog. The lease expires after one TTL, etcd deletes the key, and the job writes on. A
recorder and checker that cannot report S6 for this cannot be trusted to report it for leaderjob.

Test-only; it talks to etcd with the raw gRPC stubs, like the recorder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
from etcd3 import etcdrpc

from tests.faults.world import WRITER, World


class NoWatchdogRunner:
    """Runs one writer job for ``world`` as pod ``name``, and never stops it."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.log_path = world.tmp / f"{name}.log"
        self.log_path.touch()
        world.recorder.tail_log(name, self.log_path)
        self.job: subprocess.Popen[bytes] | None = None
        self.token = 0
        self.key = ""

    def _log(self, event: str, **fields: Any) -> None:
        line = {
            "event": event,
            "identity": self.name,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **fields,
        }
        with self.log_path.open("a") as f:
            f.write(json.dumps(line) + "\n")

    def start(self, ttl: int) -> int:
        """Take the lead for one TTL and start the job; returns the token."""
        channel = grpc.insecure_channel(self.world.cluster.endpoints[0])
        try:
            lease = etcdrpc.LeaseStub(channel).LeaseGrant(
                etcdrpc.LeaseGrantRequest(TTL=ttl), timeout=5
            )
            self.key = f"{self.world.leader_prefix}/{lease.ID:x}"
            kv = etcdrpc.KVStub(channel)
            put = kv.Put(
                etcdrpc.PutRequest(key=self.key.encode(), value=self.name.encode(), lease=lease.ID),
                timeout=5,
            )
            self.token = int(put.header.revision)  # a new key: create_revision == this revision
            self._log("election.acquired", token=self.token, lease_id=lease.ID)
            slot = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            claim = {"slot": slot, "token": self.token, "identity": self.name, "status": "running"}
            key = f"{self.world.base}/slots/{slot}".encode()
            ok = kv.Txn(
                etcdrpc.TxnRequest(
                    compare=[
                        etcdrpc.Compare(
                            key=self.key.encode(),
                            result=etcdrpc.Compare.EQUAL,
                            target=etcdrpc.Compare.CREATE,
                            create_revision=self.token,
                        )
                    ],
                    success=[
                        etcdrpc.RequestOp(
                            request_put=etcdrpc.PutRequest(
                                key=key, value=json.dumps(claim).encode()
                            )
                        )
                    ],
                ),
                timeout=5,
            ).succeeded
            assert ok, "the slot claim failed"
        finally:
            channel.close()
        run_id = uuid.uuid4().hex[:12]
        env = {
            **os.environ,
            "LJ_STORE_URL": self.world.store_url,
            "LJ_RESOURCE": "fault",
            "LEADERJOB_FENCING_TOKEN": str(self.token),
            "LEADERJOB_SLOT": slot,
            "LEADERJOB_IDENTITY": self.name,
            "LEADERJOB_RUN_ID": run_id,
        }
        cmd = shlex.join([sys.executable, WRITER, str(self.world.journal)])
        self.job = self.world.procs.spawn(["sh", "-c", cmd], env=env)
        self._log("job.started", token=self.token, run_id=run_id, slot=slot, pid=self.job.pid)
        return self.token

    def stop_job(self) -> None:
        """SIGKILL the job's whole process group (what the runner never does)."""
        if self.job is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.job.pid, signal.SIGKILL)
            self.job.wait(10)


def wait_key_gone(world: World, key: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if world.events("key.delete", key=key):
            return True
        time.sleep(0.02)
    return False
