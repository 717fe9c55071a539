"""`leaderjob demo --prometheus`: a real Prometheus beside the demo, scraping its replicas.

It runs the shipped ``deploy/prometheus/prometheus.yml`` (and ``alerts.yml``) from a source
checkout, with only the targets and intervals rewritten: the replicas' ``/metrics`` and
Prometheus itself, every second (the demo lasts half a minute). The shipped relabelling that turns
``host:port`` into ``instance=host`` is dropped: the demo's replicas share one host, so their
instance keeps the port. An installed package has no ``deploy/`` directory; the same scrape jobs
are then written from here, without the alert rules. The config is written as JSON, which
Prometheus reads as YAML, so the demo needs no YAML library to write it.

The server is Debian's ``prometheus`` binary (``LEADERJOB_PROMETHEUS_BIN``, else on PATH, else
``/usr/bin/prometheus``). It is started in its own session and stopped by its pid.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: The shipped monitoring config, present in a source checkout (not in an installed package).
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
INTERVAL = "1s"

#: The shipped scrape jobs, for an installed package (tests/unit/test_demo.py keeps them equal).
BUILTIN: dict[str, Any] = {
    "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
    "scrape_configs": [
        {"job_name": "leaderjob", "metrics_path": "/metrics", "static_configs": []},
        {"job_name": "prometheus", "static_configs": []},
    ],
}


def find_binary() -> str | None:
    given = os.environ.get("LEADERJOB_PROMETHEUS_BIN")
    if given:
        return given if os.access(given, os.X_OK) else None
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def demo_config(
    shipped: dict[str, Any] | None, targets: list[str], self_target: str
) -> dict[str, Any]:
    """The config the demo's Prometheus runs: ``shipped`` (parsed), or the built-in scrape jobs,
    pointed at ``targets`` and at itself, scraped and evaluated every second. Pure."""
    config = copy.deepcopy(shipped if shipped is not None else BUILTIN)
    config.setdefault("global", {})
    config["global"]["scrape_interval"] = INTERVAL
    config["global"]["evaluation_interval"] = INTERVAL
    config["global"]["external_labels"] = {"environment": "leaderjob-demo"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["leaderjob"]["static_configs"] = [{"targets": list(targets)}]
    # One host, three ports: the instance keeps the port (the shipped relabelling drops it).
    jobs["leaderjob"].pop("relabel_configs", None)
    jobs["prometheus"]["static_configs"] = [{"targets": [self_target]}]
    return config


def _shipped() -> tuple[dict[str, Any] | None, str | None]:
    """The shipped config (parsed) and alert rules (text), if this is a source checkout with a
    YAML library; else (None, None)."""
    config, rules = SHIPPED / "prometheus.yml", SHIPPED / "alerts.yml"
    if not config.is_file():
        return None, None
    try:
        import yaml  # type: ignore[import-untyped]  # a development dependency, not the demo's
    except ImportError:
        return None, None
    parsed = yaml.safe_load(config.read_text(encoding="utf-8"))
    return parsed, rules.read_text(encoding="utf-8") if rules.is_file() else None


def start_beside(
    ports: Iterable[int], home: Path, say: Callable[[str], None]
) -> DemoPrometheus | None:
    """A Prometheus scraping the replicas' ``ports``, or None (with one line saying why)."""
    from leaderjob.demo.localetcd import free_port

    binary = find_binary()
    if binary is None:
        print(
            "leaderjob demo: --prometheus: no prometheus binary (install Debian's `prometheus` "
            "package or set LEADERJOB_PROMETHEUS_BIN); the demo runs without it",
            flush=True,
        )
        return None
    home.mkdir()
    targets = [f"127.0.0.1:{port}" for port in ports]
    prom = DemoPrometheus(binary, home, targets, free_port())
    if not prom.ready(30):
        print(f"leaderjob demo: Prometheus did not start; its log ends:\n{prom.tail()}", flush=True)
        prom.stop()
        return None
    rules = "with the shipped alert rules" if prom.with_rules else "without alert rules"
    say(f"Prometheus is up at {prom.url} (pid {prom.proc.pid}), {rules}; try")
    print(f"    {prom.url}/graph?g0.expr=sum%20by%20(election)%20(leaderjob_is_leader)", flush=True)
    return prom


class DemoPrometheus:
    """A Prometheus server for the demo, in ``home``; :meth:`stop` ends it by pid."""

    def __init__(self, binary: str, home: Path, targets: list[str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        shipped, rules = _shipped()
        config = demo_config(shipped, targets, f"127.0.0.1:{port}")
        if rules is None:
            config.pop("rule_files", None)
        else:
            (home / "alerts.yml").write_text(rules, encoding="utf-8")
        self.with_rules = rules is not None
        (home / "prometheus.yml").write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.log = home / "prometheus.log"
        self.proc = spawn(binary, home, port, self.log)

    def ready(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp,  # noqa: S310
            ):
                if resp.status == 200:
                    return True
            time.sleep(0.2)
        return False

    def tail(self, n: int = 5) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        stop(self.proc)


def spawn(binary: str, home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start Prometheus on 127.0.0.1:``port`` with ``home``'s ``prometheus.yml`` and its data in
    ``home/data``, in its own session, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM by pid, then SIGKILL after ``grace`` seconds; reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
