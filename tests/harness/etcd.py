"""Real etcd servers for tests: single members, clusters, and an ``etcdctl`` helper.

Guarantees:

* Every etcd runs on 127.0.0.1 with its own client and peer ports and its own data dir, under a
  per-cluster temp dir (on ``/dev/shm`` when it exists with room to spare, else the system temp
  dir). Its stdout and stderr go to ``<temp dir>/<name>.log`` (appended across restarts).
* Settings are tuned for speed: heartbeat 50 ms, election timeout 500 ms, ``--logger zap
  --log-level error`` (accepted by 3.4 and 3.5; 3.4 defaults to the deprecated capnslog logger,
  which ignores ``--log-level`` for raft's INFO lines), and ``--unsafe-no-fsync`` when the binary
  accepts it (3.5, and Debian's 3.4.23 too although its ``--help`` does not list it).
* Each etcd process leads its own process group and is only ever signalled through that group
  id. :meth:`EtcdCluster.close` (also on ``with`` exit) kills and reaps all members and removes
  the temp dir; an ``atexit`` hook kills whatever is still running when the interpreter exits.
* :meth:`EtcdMember.start` returns only once ``GET /health`` answers ``{"health": "true"}``.
* Ports are picked below the kernel's ephemeral range, so an outgoing connection can never take
  a stopped member's port before it is restarted.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .binaries import etcd_supports_flag, etcd_version, find_etcd, find_etcdctl
from .procs import kill_group, wait_until

__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "EtcdServer",
    "EtcdStartError",
    "EtcdctlError",
    "data_root",
    "etcdctl",
    "free_port",
]

# --------------------------------------------------------------------------------------------
# ports and directories

_PORT_LOCK = threading.Lock()
_ISSUED_PORTS: set[int] = set()
_RNG = random.SystemRandom()  # not the seeded `random`: parallel workers must not pick alike


def _ephemeral_range() -> tuple[int, int]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        lo, hi = (int(x) for x in text.split())
    except (OSError, ValueError):
        return 32768, 60999
    return lo, hi


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now and not handed out before by this process.

    Chosen at random *below* the kernel's ephemeral port range (``ip_local_port_range``), so no
    outgoing connection can grab it between this call and the bind, or while a member that owns
    it is down. Falls back to an OS-assigned port if that range is unusable.
    """
    lo, _hi = _ephemeral_range()
    with _PORT_LOCK:
        if lo > 11000:
            for _ in range(500):
                port = _RNG.randrange(10000, lo)
                if port not in _ISSUED_PORTS and _bindable(host, port):
                    _ISSUED_PORTS.add(port)
                    return port
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _ISSUED_PORTS:
                _ISSUED_PORTS.add(port)
                return port
    raise RuntimeError("no free TCP port found")


def data_root() -> Path:
    """Where etcd temp dirs go: ``/dev/shm`` if it is a writable dir with >= 1 GiB free (each
    member preallocates a 64 MiB WAL segment), else :func:`tempfile.gettempdir`."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK):
            st = os.statvfs(shm)
            if st.f_bavail * st.f_frsize >= 1 << 30:
                return shm
    except OSError:
        pass
    return Path(tempfile.gettempdir())


# --------------------------------------------------------------------------------------------
# etcdctl


class EtcdctlError(subprocess.CalledProcessError):
    """``etcdctl`` exited non-zero; ``str()`` shows the command, status and stderr."""

    def __str__(self) -> str:
        return (
            f"etcdctl failed (rc={self.returncode}): {' '.join(map(str, self.cmd))}\n"
            f"stderr: {(self.stderr or '').strip()}\nstdout: {(self.stdout or '').strip()}"
        )


def _endpoints_arg(endpoints: str | Sequence[str]) -> str:
    return endpoints if isinstance(endpoints, str) else ",".join(endpoints)


def etcdctl(
    endpoints: str | Sequence[str],
    *args: str,
    timeout: float = 30.0,
    check: bool = True,
    input: str | None = None,
    binary: str | None = None,
) -> str:
    """Run ``etcdctl --endpoints=<endpoints> *args`` with ``ETCDCTL_API=3`` and return stdout.

    ``endpoints`` is ``"host:port"``, a comma-joined list, or a list. Other ``ETCDCTL_*``
    variables of the caller's environment are dropped so they cannot redirect the command. With
    ``check`` (default) a non-zero exit raises :class:`EtcdctlError` (stderr included); the
    process is killed after ``timeout`` s (``subprocess.TimeoutExpired``). Use etcdctl's own
    ``--command-timeout=1s`` / ``--dial-timeout=1s`` to bound an operation against a faulty server.
    """
    cmd = [binary or find_etcdctl(), f"--endpoints={_endpoints_arg(endpoints)}", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    proc = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise EtcdctlError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc.stdout


# --------------------------------------------------------------------------------------------
# members

# Every etcd still running, by pid: killed (by process group) at interpreter exit, as a last
# resort for scripts that forget close(). Tests rely on fixtures, not on this.
_RUNNING: dict[int, subprocess.Popen[bytes]] = {}
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _kill_leftovers() -> None:
    with _RUNNING_LOCK:
        procs = list(_RUNNING.values())
        _RUNNING.clear()
    for proc in procs:
        kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _all_threads_stopped(pid: int) -> bool:
    """True if every thread of ``pid`` is in state ``T`` (stopped by a signal)."""
    try:
        tids = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return False
    states = []
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        states.append(stat[stat.rfind(")") + 2 :].split()[0])
    return bool(states) and all(st == "T" for st in states)


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EtcdStartError(RuntimeError):
    """An etcd member did not become healthy; the message carries the tail of its log."""


class EtcdMember:
    """One etcd process: fixed name, ports and data dir, so it can be killed and restarted.

    Normally created by :class:`EtcdCluster`. ``initial_cluster`` is the full
    ``name=peer_url,...`` string of the cluster it belongs to. The first start bootstraps with
    ``--initial-cluster-state new``; once the data dir holds a ``member/`` dir, starts use
    ``existing`` (etcd then recovers from the data dir and ignores the bootstrap flags).
    """

    def __init__(
        self,
        name: str,
        *,
        client_port: int,
        peer_port: int,
        data_dir: Path,
        log_path: Path,
        initial_cluster: str,
        cluster_token: str,
        binary: str | None = None,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.initial_cluster = initial_cluster
        self.cluster_token = cluster_token
        self.binary = binary or find_etcd()
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_args = list(extra_args)
        self.member_id: int | None = None  # learnt from `endpoint status`; stable across restarts
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # ---- addresses and state

    @property
    def client_url(self) -> str:
        """``http://127.0.0.1:<client port>``."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """``http://127.0.0.1:<peer port>``."""
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:<client port>`` (the form etcd3 clients and ``--endpoints`` take)."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """The etcd process id (= its process-group id) while it runs, else None."""
        return self._proc.pid if self.alive and self._proc else None

    @property
    def alive(self) -> bool:
        """True while the process exists (running or paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (or the process's end)."""
        return self._paused and self.alive

    @property
    def running(self) -> bool:
        """Alive and not paused: expected to answer requests."""
        return self.alive and not self._paused

    def command(self) -> list[str]:
        """The full etcd command line for the next start."""
        state = "existing" if (self.data_dir / "member").exists() else "new"
        cmd = [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.cluster_token,
            "--initial-cluster-state", state,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--logger", "zap",
            "--log-level", "error",
        ]  # fmt: skip
        if etcd_supports_flag("--unsafe-no-fsync", self.binary):
            cmd.append("--unsafe-no-fsync")
        return cmd + self.extra_args

    # ---- lifecycle

    def launch(self) -> None:
        """Start the process without waiting for readiness (cluster members must start together
        before any can be healthy). No-op if it is already alive."""
        if self.alive:
            return
        self._reap()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"---- {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._paused = False
        with _RUNNING_LOCK:
            _RUNNING[self._proc.pid] = self._proc

    def healthy(self, timeout: float = 1.0) -> bool:
        """One ``GET /health`` probe: True iff it answers ``{"health": "true"}``."""
        try:
            with _NO_PROXY_OPENER.open(f"{self.client_url}/health", timeout=timeout) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError, http.client.HTTPException):
            return False
        return isinstance(body, dict) and body.get("health") == "true"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``/health`` until healthy. Raises :class:`EtcdStartError` (with the log tail) on
        timeout or as soon as the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                rc = self._proc.returncode if self._proc else None
                raise EtcdStartError(
                    f"etcd {self.name} exited (rc={rc}) before becoming healthy\n" + self.log_tail()
                )
            if self.healthy(timeout=1.0):
                return
            if time.monotonic() >= deadline:
                raise EtcdStartError(
                    f"etcd {self.name} not healthy at {self.client_url} after {timeout}s\n"
                    + self.log_tail()
                )
            time.sleep(0.05)

    def start(self, timeout: float = 30.0) -> None:
        """:meth:`launch` then :meth:`wait_ready`."""
        self.launch()
        self.wait_ready(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the member's process group. For SIGKILL, also reap it (returns once it
        is gone). No-op if it is not alive."""
        if not self.alive or self._proc is None:
            return
        kill_group(self._proc.pid, sig)
        if sig == signal.SIGKILL:
            self._reap()

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP the process group and return once every thread of etcd is stopped (signal
        delivery to a multi-threaded process is not instantaneous). Sockets stay open; nothing is
        answered, like a hung host."""
        if not self.alive or self._proc is None:
            return
        self.kill(signal.SIGSTOP)
        self._paused = True
        pid = self._proc.pid
        if not wait_until(lambda: _all_threads_stopped(pid) or not self.alive, timeout):
            raise RuntimeError(f"etcd {self.name} (pid {pid}) did not stop after SIGSTOP")

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.alive:
            self.kill(signal.SIGCONT)
        self._paused = False

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: SIGTERM (plus SIGCONT if paused), wait up to ``timeout`` s, then
        SIGKILL. Returns once the process is reaped."""
        if not self.alive or self._proc is None:
            self._reap()
            return
        kill_group(self._proc.pid, signal.SIGTERM)
        kill_group(self._proc.pid, signal.SIGCONT)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self._proc.pid, signal.SIGKILL)
        self._reap()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop if alive, then start again on the same ports and data dir
        (``--initial-cluster-state existing``) and wait until healthy. In a cluster the member
        is healthy only while a quorum is up."""
        self.stop()
        self.start(timeout)

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        with _RUNNING_LOCK:
            _RUNNING.pop(proc.pid, None)
        self._paused = False

    # ---- inspection

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of this member's log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.log_path} (last {lines} lines) ---\n{tail}"

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """``etcdctl endpoint status -w json`` against this member alone: the ``Status`` dict
        (``header.member_id``, ``leader``, ``raft_term``...; ids are ints). Raises
        :class:`EtcdctlError` if it does not answer within ``timeout``."""
        secs = f"{max(timeout, 0.1):.1f}s"
        out = etcdctl(
            self.endpoint,
            "endpoint", "status", "-w", "json",
            f"--command-timeout={secs}", f"--dial-timeout={secs}",
            timeout=timeout + 10,
        )  # fmt: skip
        status: dict[str, Any] = json.loads(out)[0]["Status"]
        self.member_id = int(status["header"]["member_id"])
        return status

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.alive else "down"
        return f"<EtcdMember {self.name} {self.endpoint} pid={self.pid} {state}>"


# --------------------------------------------------------------------------------------------
# clusters


class EtcdCluster:
    """``size`` etcd members on 127.0.0.1, bootstrapped together with one ``--initial-cluster``.

    Construction starts them and returns once every member is healthy (``start=False`` to defer;
    call :meth:`start`). Bootstrap is retried with fresh ports if a port was taken meanwhile.
    Always :meth:`close` it (or use ``with``): that kills every member's process group, reaps
    them and deletes the temp dir (``keep_data=True`` keeps it, e.g. to read the logs).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        binary: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        extra_args: Sequence[str] = (),
        start: bool = True,
        timeout: float = 30.0,
        keep_data: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.binary = binary or find_etcd()
        self.version = etcd_version(self.binary)
        self.base_dir = Path(
            tempfile.mkdtemp(prefix="ljetcd-", dir=base_dir if base_dir else data_root())
        )
        self.keep_data = keep_data
        self._member_kwargs: dict[str, Any] = {
            "binary": self.binary,
            "heartbeat_ms": heartbeat_ms,
            "election_ms": election_ms,
            "extra_args": list(extra_args),
        }
        self.members: list[EtcdMember] = []
        self._closed = False
        self._make_members()
        if start:
            try:
                self.start(timeout)
            except BaseException:
                self.close()
                raise

    def _make_members(self) -> None:
        token = f"ljtest-{uuid.uuid4().hex[:12]}"
        names = [f"m{i}" for i in range(self.size)]
        ports = [(free_port(), free_port()) for _ in names]
        initial = ",".join(
            f"{n}=http://127.0.0.1:{peer}" for n, (_c, peer) in zip(names, ports, strict=True)
        )
        self.members = [
            EtcdMember(
                name,
                client_port=client,
                peer_port=peer,
                data_dir=self.base_dir / f"{name}.etcd",
                log_path=self.base_dir / f"{name}.log",
                initial_cluster=initial,
                cluster_token=token,
                **self._member_kwargs,
            )
            for name, (client, peer) in zip(names, ports, strict=True)
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Bootstrap all members together and wait until each is healthy (up to 3 attempts,
        new ports each time, if a member fails with "address already in use")."""
        for attempt in range(3):
            for m in self.members:
                m.launch()
            try:
                for m in self.members:
                    m.wait_ready(timeout)
            except EtcdStartError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                for m in self.members:
                    m.kill()
                for m in self.members:
                    shutil.rmtree(m.data_dir, ignore_errors=True)
                self._make_members()
            else:
                return

    # ---- addresses

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> EtcdMember:
        return self.members[i]

    def __iter__(self) -> Iterator[EtcdMember]:
        return iter(self.members)

    @property
    def endpoints(self) -> list[str]:
        """Every member's ``"127.0.0.1:port"``, in member order (whether up or not)."""
        return [m.endpoint for m in self.members]

    @property
    def client_urls(self) -> list[str]:
        """Every member's ``http://127.0.0.1:port``."""
        return [m.client_url for m in self.members]

    def running_members(self) -> list[EtcdMember]:
        """Members that are alive and not paused."""
        return [m for m in self.members if m.running]

    def etcdctl(self, *args: str, **kwargs: Any) -> str:
        """:func:`etcdctl` against the running members' endpoints."""
        eps = [m.endpoint for m in self.running_members()] or self.endpoints
        return etcdctl(eps, *args, **kwargs)

    # ---- health and leadership

    def wait_healthy(self, timeout: float = 30.0) -> EtcdCluster:
        """Wait until every running member answers ``/health`` true (which needs a leader and a
        quorum) and a leader is known. Raises :class:`EtcdStartError` with log tails otherwise."""
        deadline = time.monotonic() + timeout
        running = self.running_members()
        if not running:
            raise EtcdStartError("no etcd member is running")
        for m in running:
            m.wait_ready(max(0.1, deadline - time.monotonic()))
        self.leader(timeout=max(0.5, deadline - time.monotonic()))
        return self

    def leader(self, timeout: float = 10.0) -> EtcdMember:
        """The current raft leader, per ``etcdctl endpoint status -w json``.

        Asks each running member; among the answers with the highest raft term, the leader is
        the member whose own status names itself (so a stale, just-resumed leader is not
        picked). Polls until one is found; raises ``AssertionError`` after ``timeout`` s.
        """
        found: list[EtcdMember] = []
        last: list[str] = []

        def probe() -> bool:
            answers: list[tuple[int, EtcdMember, int]] = []
            last.clear()
            for m in self.running_members():
                try:
                    st = m.status(timeout=1.0)
                except (EtcdctlError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
                    last.append(f"{m.name}: {str(exc).splitlines()[0]}")
                    continue
                answers.append((int(st["header"]["raft_term"]), m, int(st.get("leader", 0))))
                last.append(f"{m.name}: term={answers[-1][0]} leader={answers[-1][2]:x}")
            if not answers:
                return False
            top = max(term for term, _, _ in answers)
            for term, m, lead in answers:
                if term == top and lead and lead == m.member_id:
                    found.append(m)
                    return True
            return False

        if not wait_until(probe, timeout, interval=0.05):
            raise AssertionError(f"no etcd leader after {timeout}s: {last}")
        return found[0]

    # ---- faults

    def kill_member(self, i: int, sig: int = signal.SIGKILL) -> EtcdMember:
        """Send ``sig`` (default SIGKILL, reaped) to member ``i``; return it."""
        m = self.members[i]
        m.kill(sig)
        return m

    def pause_member(self, i: int) -> EtcdMember:
        """SIGSTOP member ``i``; return it."""
        m = self.members[i]
        m.pause()
        return m

    def resume_member(self, i: int) -> EtcdMember:
        """SIGCONT member ``i``; return it."""
        m = self.members[i]
        m.resume()
        return m

    def stop_quorum(self) -> list[EtcdMember]:
        """SIGKILL enough members to lose quorum (``members[size//2:]``: two of three) and
        return them. The survivors stay up but can no longer commit writes."""
        victims = self.members[self.size // 2 :]
        for m in victims:
            m.kill()
        return victims

    def restore(self, timeout: float = 30.0) -> EtcdCluster:
        """Resume paused members, restart dead ones (same ports and data), and wait until the
        whole cluster is healthy with a leader."""
        for m in self.members:
            if m.paused:
                m.resume()
            elif not m.alive:
                m.launch()
        return self.wait_healthy(timeout)

    def log_tails(self, lines: int = 40) -> str:
        """The log tails of all members, one after another."""
        return "\n".join(m.log_tail(lines) for m in self.members)

    # ---- teardown

    def close(self) -> None:
        """SIGKILL and reap every member, then delete the temp dir (unless ``keep_data``).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        for m in self.members:
            m.kill()
        if not self.keep_data:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        v = ".".join(map(str, self.version))
        return f"<{type(self).__name__} etcd {v} {self.members}>"


class EtcdServer(EtcdCluster):
    """A single-member cluster, with the member's API on the server itself."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(1, **kwargs)

    @property
    def member(self) -> EtcdMember:
        """The one member."""
        return self.members[0]

    @property
    def endpoint(self) -> str:
        """``"127.0.0.1:port"``."""
        return self.member.endpoint

    @property
    def client_url(self) -> str:
        """``"http://127.0.0.1:port"``."""
        return self.member.client_url

    @property
    def pid(self) -> int | None:
        """The etcd pid while it runs."""
        return self.member.pid

    @property
    def alive(self) -> bool:
        """True while the etcd process exists."""
        return self.member.alive

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """See :meth:`EtcdMember.kill`."""
        self.member.kill(sig)

    def pause(self) -> None:
        """See :meth:`EtcdMember.pause`."""
        self.member.pause()

    def resume(self) -> None:
        """See :meth:`EtcdMember.resume`."""
        self.member.resume()

    def stop(self, timeout: float = 10.0) -> None:
        """See :meth:`EtcdMember.stop`."""
        self.member.stop(timeout)

    def restart(self, timeout: float = 30.0) -> None:
        """See :meth:`EtcdMember.restart`."""
        self.member.restart(timeout)
