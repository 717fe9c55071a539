"""Health-gated leadership: a replica leads only while its application is healthy.

A :class:`HealthChecker` runs the user's check (a shell command, an HTTP URL, or both) every
``interval`` in its own thread, so a slow check never delays a lease renewal. After ``failures``
consecutive failures it reports unhealthy; one success makes it healthy again. A check that
cannot even run (fork refused, out of memory) counts as a failure: the thread never ends before
:meth:`HealthChecker.stop`, or the gate would stay where it was for ever. The daemon reads
:attr:`HealthChecker.healthy` each cycle and is woken when it flips.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class HealthSettings:
    command: str | None = None
    url: str | None = None
    interval: float = 5.0
    failures: int = 3

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.url)

    def validate(self) -> list[str]:
        errors = []
        if self.interval <= 0:
            errors.append("--health-interval must be positive")
        if self.failures < 1:
            errors.append("--health-failures must be at least 1")
        if self.url and not self.url.startswith(("http://", "https://")):
            errors.append(f"--health-url {self.url!r}: give an http:// or https:// URL")
        return errors


def run_check(settings: HealthSettings, timeout: float) -> str | None:
    """Run the configured checks once; None if healthy, else why not."""
    if settings.command:
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", settings.command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"command timed out after {timeout:g}s"
        except OSError as exc:  # fork refused (a pids limit, no memory): the check failed
            return f"command could not run: {exc}"
        if proc.returncode != 0:
            return f"command exited {proc.returncode}"
    if settings.url:
        import urllib.error  # only a daemon with --health-url needs it
        import urllib.request

        try:
            with urllib.request.urlopen(settings.url, timeout=timeout) as resp:  # noqa: S310
                if not 200 <= resp.status < 300:
                    return f"url answered {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"url answered {exc.code}"
        except (OSError, ValueError) as exc:
            return f"url unreachable: {exc}"
    return None


class HealthChecker:
    def __init__(self, settings: HealthSettings, on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.healthy = True
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="leaderjob-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def observe(self, error: str | None) -> bool:
        """Record one check result; True if the healthy/unhealthy state flipped."""
        if error is None:
            self.consecutive_failures = 0
            self.last_error = None
            flipped = not self.healthy
            self.healthy = True
            return flipped
        self.consecutive_failures += 1
        self.last_error = error
        if self.healthy and self.consecutive_failures >= self.settings.failures:
            self.healthy = False
            return True
        return False

    def _loop(self) -> None:
        timeout = max(0.5, min(self.settings.interval, 10.0))
        while not self._stop.is_set():
            try:
                error = run_check(self.settings, timeout)
            except Exception as exc:  # a check that cannot run failed; the gate goes on
                error = f"check failed to run: {exc!r}"
            if self.observe(error):
                self.on_change()
            self._stop.wait(self.settings.interval)
