"""The health gate follows its check whatever the check does: a check that cannot even run
(fork refused under a pids limit, out of memory, a broken clock) is a failed check, and the
checker's thread goes on. A checker thread that died would freeze the gate where it was: a sick
replica leading for ever, or a job held out of its queue for ever, with nothing logged."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from leaderjob.ops import health
from leaderjob.ops.health import HealthChecker, HealthSettings, run_check


def test_a_command_that_cannot_be_started_is_a_failed_check(monkeypatch: pytest.MonkeyPatch):
    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(health.subprocess, "run", refuse)
    error = run_check(HealthSettings(command="true"), timeout=1.0)
    assert error is not None and "could not run" in error, error


def test_the_checker_outlives_a_check_that_raises(monkeypatch: pytest.MonkeyPatch):
    # The first check raises, the next ones fail, then pass: the gate must close and open again.
    answers: list[object] = [RuntimeError("boom"), "exited 1", None]

    def check(settings: HealthSettings, timeout: float) -> str | None:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    monkeypatch.setattr(health, "run_check", check)
    flips = threading.Semaphore(0)
    checker = HealthChecker(HealthSettings(command="x", interval=0.01, failures=2), flips.release)
    checker.start()
    try:
        assert flips.acquire(timeout=5), "the gate never closed"  # raised + failed: 2 failures
        assert not checker.healthy
        assert flips.acquire(timeout=5), "the gate never opened again"
        assert checker.healthy
    finally:
        checker.stop()
        time.sleep(0.05)
