"""Shared pytest fixtures: real etcd servers, per-test key prefixes and process cleanup.

* ``etcd`` (session): one single-member :class:`~tests.harness.etcd.EtcdServer`, started on
  first use and stopped at the end of the session. ``etcd.endpoint`` is ``"127.0.0.1:port"``.
* ``etcd_cluster`` (module): a 3-member :class:`~tests.harness.etcd.EtcdCluster` for fault tests.
* ``prefix``: a unique key prefix ``/ljtest/<test name>-<8 hex>``; afterwards everything under it
  is deleted from whichever of ``etcd``/``etcd_cluster`` the test used (errors ignored).
* ``procs``: a fresh :class:`~tests.harness.procs.ProcessGroup`; every process group it spawned
  is SIGKILLed at teardown, whether the test passed or not.

Each test's handlers of SIGTERM, SIGINT and SIGHUP are set back after it (a daemon served in
the test process installs its own).

These hold for the server and cluster however a test got them (argument or
``request.getfixturevalue``): after each test, any member it killed or paused is brought back, so
the shared server/cluster is healthy for the next test; ``prefix`` is deleted from each of them;
and when a test fails, the tails of their etcd logs are added to its report. Tests that take
either fixture as an argument get the ``etcd`` marker automatically (``-m "not etcd"``).

Skips hide holes. In CI (``CI=true``), a test skipped for want of something ``.ci/run``
installs (promtool, libfaketime, etcd 3.4, PostgreSQL, Chromium) fails instead. Every run prints its
per-suite durations (``tests/<suite>``, setup + call + teardown); with ``LEADERJOB_TEST_REPORT``
set to a file, the durations and every skip are appended to it, so that ``make test`` can list
them once at the very end of its passes. Under pytest-xdist (``-n``), as ``make test`` runs, the
controller alone prints and records them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
from collections import defaultdict
from collections.abc import Generator, Iterator

import pytest

from tests.harness.etcd import EtcdCluster, EtcdServer
from tests.harness.procs import ProcessGroup

_ETCD_FIXTURES = ("etcd", "etcd_cluster")

#: What .ci/run installs: in CI, a skip whose reason names one of these is a failure.
CI_INSTALLS = re.compile(
    r"promtool|prometheus|faketime|etcd[ -]?3\.4|postgres|chromium", re.IGNORECASE
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


# The etcd server/cluster fixtures currently up (session server, current module's cluster).
_LIVE: list[tuple[str, EtcdCluster]] = []


@contextlib.contextmanager
def _live(name: str, server: EtcdCluster) -> Iterator[EtcdCluster]:
    _LIVE.append((name, server))
    try:
        yield server
    finally:
        _LIVE.remove((name, server))
        server.close()


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdServer]:
    """A single-member etcd for the whole session (stopped, data removed, at the end)."""
    with _live("etcd", EtcdServer()) as server:
        assert isinstance(server, EtcdServer)
        yield server


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster shared by the tests of one module; restored after each test."""
    with _live("etcd_cluster", EtcdCluster(3)) as cluster:
        yield cluster


def _ensure_up(server: EtcdCluster) -> None:
    """Resume/restart any member a test paused or killed, and wait until healthy."""
    if any(not m.running for m in server.members):
        server.restore()


@pytest.fixture(autouse=True)
def _keep_signal_handlers() -> Iterator[None]:
    """A daemon served in the test process installs its handlers of SIGTERM, SIGINT and SIGHUP
    (a graceful stop, a reload) for a daemon that is gone once the test ends: each test's are
    set back after it, or a later test's Ctrl-C (the in-process API's ``KeyboardInterrupt``)
    would reach a dead daemon instead."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.fixture(autouse=True)
def _restore_etcd_after_test() -> Iterator[None]:
    """Bring back members that a test killed or paused (runs after the test's own teardown)."""
    yield
    for _name, server in list(_LIVE):
        _ensure_up(server)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """``/ljtest/<short test name>-<8 hex>``, unique per test; deleted (``del --prefix``) after,
    from every etcd fixture that is up, with errors ignored."""
    name = re.sub(r"^test_", "", request.node.name)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:40] or "test"
    key_prefix = f"/ljtest/{name}-{secrets.token_hex(4)}"
    yield key_prefix
    for _name, server in list(_LIVE):
        with contextlib.suppress(Exception):
            _ensure_up(server)
            server.etcdctl("del", "--prefix", key_prefix, "--command-timeout=5s", timeout=15)


@pytest.fixture
def procs() -> Iterator[ProcessGroup]:
    """A process registry whose process groups are all SIGKILLed and reaped at teardown."""
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.cleanup()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(n in names for n in _ETCD_FIXTURES):
            item.add_marker(pytest.mark.etcd)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, append the tails of the logs of the etcd fixtures that are up. In CI, a skip
    for want of something CI installs is turned into a failure."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        reason = _skip_reason(report)
        if CI_INSTALLS.search(reason):
            report.outcome = "failed"
            report.longrepr = (
                f"skipped in CI, which installs what it needs (.ci/run): {reason}\n"
                "a skip here would hide a hole: install it, or fix the lookup"
            )
    if report.failed:
        for name, server in list(_LIVE):
            with contextlib.suppress(Exception):
                report.sections.append((f"etcd logs ({name})", server.log_tails(30)))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Per-suite durations (so their growth shows), and the run's record for ``make test``.

    Under pytest-xdist only the controller, which receives every worker's reports, prints and
    records them (a worker's share would be a second, partial record); a suite's duration is
    then the sum of its tests' durations, whichever worker ran them, not wall time."""
    config = terminalreporter.config
    if hasattr(config, "workerinput"):
        return
    per_suite: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    skips: list[str] = []
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if not isinstance(rep, pytest.TestReport):
                continue
            parts = rep.nodeid.split("/")
            suite = parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]
            per_suite[suite] += rep.duration
            if rep.when == "call":
                counts[suite] += 1
            if rep.skipped and not hasattr(rep, "wasxfail"):
                skips.append(f"{rep.nodeid}: {_skip_reason(rep)}")
    if not per_suite:
        return
    etcd_bin = os.environ.get("LEADERJOB_ETCD_BIN", "")
    label = f" (LEADERJOB_ETCD_BIN={etcd_bin})" if etcd_bin else ""
    workers = getattr(config.option, "numprocesses", None)
    spread = ""
    if isinstance(workers, int) and workers > 1:
        spread = f", tests summed over {workers} workers"
    terminalreporter.section(f"per-suite durations{label}{spread}")
    lines = [
        f"{seconds:8.1f}s  tests/{suite}  ({counts[suite]} tests)"
        for suite, seconds in sorted(per_suite.items(), key=lambda kv: -kv[1])
    ]
    for line in lines:
        terminalreporter.write_line(line)
    record = os.environ.get("LEADERJOB_TEST_REPORT")
    if record:
        with open(record, "a", encoding="utf-8") as f:
            f.writelines(f"duration {line.strip()}{label}\n" for line in lines)
            f.writelines(f"skipped {s}{label}\n" for s in skips)
