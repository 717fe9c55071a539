"""A real PostgreSQL server for tests, in a temp dir, stopped by pid.

* Binaries: ``initdb`` and ``postgres`` from ``$LEADERJOB_PG_BIN`` if set (only there), else
  the newest ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package), else ``PATH``.
* PostgreSQL refuses to run as root: under root the server runs as the ``postgres`` system user
  (created by the package), with the temp dir chowned to it. Python's ``subprocess`` switches the
  user itself, so the pid we hold is the postmaster's own, and we stop it by that pid.
* The cluster listens on a free loopback port (and a unix socket in its temp dir), trust auth,
  fsync off (a test server: speed, not durability). :meth:`PostgresServer.start` returns once a
  connection succeeds. :meth:`PostgresServer.close` (also on ``with`` exit, and at interpreter
  exit) stops the postmaster by pid — SIGQUIT, then SIGKILL — and removes the temp dir.
* :func:`postgres_or_skip` is what fixtures call: without a PostgreSQL binary (or psycopg) the
  test skips with a line that says how to get one; under ``CI=true`` that is a failure instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from .etcd import data_root, free_port

__all__ = ["PostgresServer", "find_pg_bin", "postgres_or_skip"]

HOW_TO_GET = (
    "no PostgreSQL server binary (initdb, postgres): install Debian's package "
    "(apt-get install postgresql; .ci/run does) or set LEADERJOB_PG_BIN to its bin directory; "
    "and psycopg: pip install -e '.[dev]'"
)

_LIVE: list[PostgresServer] = []


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None."""
    env = os.environ.get("LEADERJOB_PG_BIN")
    if env:  # authoritative when set: a wrong directory is not silently replaced
        d = Path(env)
        return d if (d / "initdb").is_file() and (d / "postgres").is_file() else None
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


def postgres_or_skip() -> Path:
    """The bin directory, or skip the test (fail it under ``CI=true``) saying how to get one."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        bin_dir = None
    else:
        bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires the PostgreSQL tests to run: {HOW_TO_GET}")
        pytest.skip(HOW_TO_GET)
    return bin_dir


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; ``dsn`` connects as the superuser ``postgres``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="ljpg-", dir=data_root()))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root and there is no 'postgres' user to run PostgreSQL as "
                    "(Debian's postgresql package creates it)"
                ) from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=5"

    def _run(self, *argv: str) -> None:
        subprocess.run(
            argv, check=True, capture_output=True, cwd=self.dir, timeout=120, **self._user
        )

    def start(self, timeout: float = 60.0) -> PostgresServer:
        import psycopg

        self._run(
            str(self.bin_dir / "initdb"),
            "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--locale=C",
        )  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115  # owned by the server process
        try:
            argv = [
                str(self.bin_dir / "postgres"),
                "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(self.dir), "-c", "fsync=off", "-c", "full_page_writes=off",
                "-c", "synchronous_commit=off", "-c", "max_connections=50",
            ]  # fmt: skip
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                **self._user,
            )
        finally:
            log.close()
        _LIVE.append(self)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            try:
                psycopg.connect(self.dsn).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # SIGQUIT: immediate shutdown (the postmaster stops its own children); by pid only.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: our children only
                proc.wait(timeout=10)
        if self in _LIVE:
            _LIVE.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()
