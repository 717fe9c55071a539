"""The docs keep up with the code: every option, metric and log event is documented."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from leaderjob import cli
from leaderjob.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_every_run_and_lock_option_is_in_configuration_md():
    text = (DOCS / "configuration.md").read_text()
    for command in (cli.run, cli.lock):
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert f"`{opt}" in text, f"{command.name} {opt} is not documented"


def test_every_metric_is_in_metrics_md():
    text = (DOCS / "metrics.md").read_text()
    metrics = Metrics(CollectorRegistry(), "e")
    for collector in vars(metrics).values():
        name = getattr(collector, "_name", None)
        if isinstance(name, str) and name.startswith("leaderjob_"):
            kind = getattr(collector, "_type", "")
            documented = f"{name}_total" if kind == "counter" else name
            assert f"`{documented}`" in text, f"{documented} is not documented"


def test_every_log_event_is_in_metrics_md():
    text = (DOCS / "metrics.md").read_text()
    events: set[str] = set()
    for path in (ROOT / "leaderjob").rglob("*.py"):
        events |= set(
            re.findall(r"log\.(?:info|warning|error)\(\s*\"([a-z_]+\.[a-z_]+)\"", path.read_text())
        )
    assert events, "found no log events: the pattern is out of date"
    missing = sorted(e for e in events if f"`{e}`" not in text)
    assert not missing, f"log events not documented in docs/metrics.md: {missing}"


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```", 2)[1]
    assert "make demo" in first_block and "make test" in first_block


def test_the_architecture_map_names_every_module_and_no_module_that_is_gone():
    """docs/architecture.md's map follows the package: each module is named in it (by its path,
    or by its file name inside its package's row), and each path it names exists."""
    text = (DOCS / "architecture.md").read_text()
    package = ROOT / "leaderjob"
    unnamed = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if path.name == "__main__.py" or (path.name == "__init__.py" and len(rel.parts) > 1):
            continue
        if f"`{rel}`" not in text and f"`{path.name}`" not in text:
            unnamed.append(str(rel))
    assert not unnamed, f"modules docs/architecture.md does not name: {unnamed}"
    gone = [
        name
        for name in re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", text)
        if not (package / name).exists() and not (ROOT / name).exists()
    ]
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
