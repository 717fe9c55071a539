"""Notifications about runs, without Alertmanager: a command run when a run fails
(``--on-failure``), and dead-man's-switch pings (``--ping-url``, the healthchecks.io convention).

What this module owns: which outcomes are failures, what a notification is told (environment,
stdin), how long it may take, and how a ping URL is shown in logs. What it must not do: block the
daemon's loop. A notification is I/O the loop never waits for — the lease is renewed while it
runs (S6, L4):

* ``--on-failure`` runs in a thread of its own per job that starts the command (plainly: no
  ``preexec_fn``, which would force ``fork()`` beside gRPC's threads), feeds it the run's output
  tail on stdin, waits at most ``--on-failure-timeout``, then kills its process group (SIGTERM,
  one second, SIGKILL). At most one is in flight per job: a failure while one still runs is
  dropped and counted, never queued without bound.
  One job's command never waits for another's: each is a thread of its own, so a command that
  hangs until its timeout holds back only its own job's next one.
* Pings go through per-job lanes served by a bounded pool of threads (leaderjob.ops.pings): a
  slow or dead endpoint delays and drops only its own job's pings; a ping that can no longer
  matter is dropped, not sent late.

Only the replica that ran the job notifies: the calls come from its runner.

A ping URL is a secret (whoever knows it can report success): logs show its scheme and host only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from leaderjob.config import job_environment
from leaderjob.ops.ping_lanes import Ping
from leaderjob.ops.pings import Pinger, Sender, ping_url, redact_url
from leaderjob.units import format_duration

__all__ = ["KINDS", "RESULTS", "Notifier", "NotifySettings", "ping_url", "redact_url"]

#: Outcomes that are not a failure: the run succeeded, or it was stopped on purpose (a graceful
#: stop or rolling update, a failing health gate, a replacement by the next slot).
NOT_FAILURES = frozenset({"succeeded", "shutdown", "unhealthy", "replaced", "lock_done"})
#: Every kind and result of ``leaderjob_notifications_total`` (the series exist from the start).
KINDS = ("on_failure", "ping")
RESULTS = ("ok", "failed", "timed_out", "dropped")
#: Output tail sent to a notification (stdin, ping body), at most.
TAIL_LIMIT = 16 * 1024
#: SIGTERM to SIGKILL for an on-failure command past its timeout.
KILL_GRACE = 1.0


def is_failure(outcome: str) -> bool:
    return outcome not in NOT_FAILURES


def output_tail(record: Mapping[str, Any]) -> bytes:
    """The run's output as the guardian reported it (``stdout_tail``/``stderr_tail``, each cut
    to its last 4 KiB when ``*_truncated``: leaderjob.guard.tail), one headed part per stream
    that has any; else nothing."""
    parts: list[str] = []
    for stream in ("stdout", "stderr"):
        value = record.get(f"{stream}_tail")
        if isinstance(value, str) and value:
            cut = " (cut: the last 4 KiB)" if record.get(f"{stream}_truncated") else ""
            parts.append(f"--- {stream}{cut} ---\n{value}")
    data = "\n".join(parts).encode("utf-8", "replace")
    return data[-TAIL_LIMIT:]


@dataclass(frozen=True)
class NotifySettings:
    """One job's notifications (``--on-failure``, ``--ping-url``; jobs file keys alike)."""

    on_failure: str | None = None  # a shell command
    on_failure_timeout: float = 30.0
    ping_url: str | None = field(default=None, repr=False)  # a secret: never logged in full

    @property
    def enabled(self) -> bool:
        return bool(self.on_failure or self.ping_url)

    def validate(self) -> list[str]:
        errors = []
        if not self.on_failure_timeout > 0:
            errors.append("--on-failure-timeout must be a positive duration, e.g. 30s")
        if self.ping_url is not None and not self.ping_url.startswith(("http://", "https://")):
            # The URL is a secret: the message does not repeat it.
            errors.append("--ping-url: give an http:// or https:// URL")
        return errors


def failure_environment(
    environ: Mapping[str, str], record: Mapping[str, Any], *, job: str, election: str
) -> dict[str, str]:
    """The on-failure command's environment: the daemon's (minus credentials) and the run's
    context from its history record."""
    env = job_environment(environ)
    context = {
        "LEADERJOB_JOB": job,
        "LEADERJOB_ELECTION": election,
        "LEADERJOB_RUN_ID": record.get("run_id"),
        "LEADERJOB_SLOT": record.get("slot"),
        "LEADERJOB_SCHEDULED_TIME": record.get("scheduled_time"),
        "LEADERJOB_OUTCOME": record.get("outcome"),
        "LEADERJOB_EXIT_CODE": record.get("exit_code"),
        "LEADERJOB_SIGNAL": record.get("signal"),
        "LEADERJOB_FENCING_TOKEN": record.get("token"),
        "LEADERJOB_IDENTITY": record.get("identity"),
        "LEADERJOB_DURATION_SECONDS": record.get("duration_seconds"),
        "LEADERJOB_ATTEMPT": record.get("attempt"),
        "LEADERJOB_ERROR": record.get("error"),
    }
    for name in context:
        env.pop(name, None)  # never a stale value inherited from the daemon's own environment
    env.update({k: str(v) for k, v in context.items() if v is not None})
    return env


class Notifier:
    """The daemon's notifications: on-failure commands (a thread each, one per job at a time)
    and pings (per-job lanes, leaderjob.ops.pings). Every call returns at once.

    ``count(job, kind, result)`` counts a notification (the metric); ``log`` is the daemon's
    logger; ``clock`` a monotonic clock (for the pings' windows); ``send`` one ping request (a
    test's stand-in for HTTP).
    """

    def __init__(
        self,
        log: Any,
        count: Callable[[str, str, str], None] = lambda job, kind, result: None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        send: Sender | None = None,
    ) -> None:
        self.log = log
        self.count = count
        self.environ = dict(os.environ if environ is None else environ)
        self.clock = clock
        self._running: dict[str, _FailureCommand] = {}
        self._lock = threading.Lock()
        self.pinger = Pinger(log, count, clock, send)

    # -- what the runner calls -----------------------------------------------------------------

    def started(
        self, settings: NotifySettings, *, job: str, window: float, run_id: str | None = None
    ) -> None:
        """A run started: ``BASE/start``."""
        if settings.ping_url:
            self._ping(settings.ping_url, "start", job, run_id, window, b"")

    def finished(
        self,
        settings: NotifySettings,
        record: Mapping[str, Any],
        *,
        job: str,
        election: str,
        window: float,
    ) -> None:
        """A run ended (or failed to start) with ``record['outcome']``."""
        outcome = str(record.get("outcome"))
        run_id = record.get("run_id")
        run = None if run_id is None else str(run_id)
        if outcome in NOT_FAILURES and outcome != "succeeded":
            if settings.ping_url:
                self.pinger.ended(job, run)  # its /start, if still queued, is stale now
            return  # a planned stop is neither a success nor a failure
        failed = is_failure(outcome)
        tail = output_tail(record)
        if settings.ping_url:
            event = "fail" if failed else "success"
            self._ping(settings.ping_url, event, job, run, window, tail)
        if failed and settings.on_failure:
            self._on_failure(settings, record, job, election, tail)

    def close(self, timeout: float = 2.0) -> None:
        """At exit: give queued pings (one try each) and running commands ``timeout`` to
        finish, then kill the commands' process groups (nothing a daemon started outlives it
        for long)."""
        end = self.clock() + timeout
        self.pinger.close(timeout)
        with self._lock:
            running = list(self._running.values())
        for command in running:
            command.thread.join(max(0.0, end - self.clock()))
            command.kill()
            command.thread.join(0.5)  # its outcome is logged and counted before close returns

    def _ping(
        self, base: str, event: str, job: str, run: str | None, window: float, body: bytes
    ) -> None:
        url = ping_url(base, event, run)
        self.pinger.add(Ping(job, event, run, url, body, self.clock() + window))

    # -- on-failure ----------------------------------------------------------------------------

    def _on_failure(
        self,
        settings: NotifySettings,
        record: Mapping[str, Any],
        job: str,
        election: str,
        tail: bytes,
    ) -> None:
        assert settings.on_failure is not None
        with self._lock:
            busy = self._running.get(job)
            if busy is not None and busy.thread.is_alive():
                self.count(job, "on_failure", "dropped")
                dropped = self.pinger.throttle.admit(("on_failure", job))
                if dropped is not None:  # one line per job per interval, with the count
                    self.log.warning(
                        "notify.dropped",
                        kind="on_failure",
                        job=job,
                        run_id=record.get("run_id"),
                        reason="the previous on-failure command still runs",
                        dropped=dropped,
                    )
                return
            env = failure_environment(self.environ, record, job=job, election=election)
            command = _FailureCommand(self, settings, env, tail, job, record.get("run_id"))
            self._running[job] = command
        command.thread.start()


class _FailureCommand:
    """One on-failure command, driven by its own thread."""

    def __init__(
        self,
        owner: Notifier,
        settings: NotifySettings,
        env: dict[str, str],
        tail: bytes,
        job: str,
        run_id: Any,
    ) -> None:
        self.owner = owner
        self.settings = settings
        self.env = env
        self.tail = tail
        self.job = job
        self.run_id = run_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._run, name="leaderjob-on-failure", daemon=True)

    def _run(self) -> None:
        log, timeout = self.owner.log, self.settings.on_failure_timeout
        assert self.settings.on_failure is not None
        try:
            # Its own session, so that a timeout kills its children too; no preexec_fn (a fork
            # beside gRPC's threads); stdout and stderr are the daemon's, as the job's are.
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", self.settings.on_failure],
                stdin=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            log.error(
                "notify.failed", kind="on_failure", job=self.job, run_id=self.run_id, error=str(exc)
            )
            self.owner.count(self.job, "on_failure", "failed")
            return
        try:
            self.proc.communicate(self.tail, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            log.error(
                "notify.failed",
                kind="on_failure",
                job=self.job,
                run_id=self.run_id,
                error=f"still running after --on-failure-timeout {format_duration(timeout)}: "
                "killed",
            )
            self.owner.count(self.job, "on_failure", "timed_out")
            return
        code = self.proc.returncode
        if code != 0:
            log.error(
                "notify.failed", kind="on_failure", job=self.job, run_id=self.run_id, exit_code=code
            )
            self.owner.count(self.job, "on_failure", "failed")
            return
        log.info("notify.sent", kind="on_failure", job=self.job, run_id=self.run_id)
        self.owner.count(self.job, "on_failure", "ok")

    def kill(self) -> None:
        """SIGTERM its process group, then SIGKILL after a second; reap it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Descendants that outlived the leader of the group still belong to it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
