"""The docs say what the code does: the timing budget, CRON_TZ and Kubernetes, the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leaderjob.config import Timing

ROOT = Path(__file__).resolve().parents[2]
BUDGET_DOCS = [
    ROOT / "docs" / "configuration.md",
    ROOT / "docs" / "deploy.md",
    ROOT / "docs" / "safety.md",
]


def test_the_code_requires_twice_the_renew_interval_to_fit() -> None:
    """The rule the docs state, at its boundary."""
    assert Timing.from_ttl(15, renew_interval=4, renew_deadline=8).validate() == []
    assert Timing.from_ttl(15, renew_interval=4, renew_deadline=7.9).validate() != []


@pytest.mark.parametrize("path", BUDGET_DOCS, ids=lambda p: p.name)
def test_budget_docs_state_twice_the_interval(path: Path) -> None:
    text = path.read_text()
    assert re.search(r"2 × renew[-_]interval ≤ renew[-_]deadline", text), path.name
    assert not re.search(r"(?<!× )renew[-_]interval < renew[-_]deadline", text), path.name


def test_cron_tz_is_not_called_kubernetes_compatible() -> None:
    text = (ROOT / "docs" / "scheduling.md").read_text()
    line = next(line for line in text.splitlines() if "CRON_TZ=" in line)
    assert "as Kubernetes CronJob accepts" not in line
    assert "not** Kubernetes-compatible" in line


@pytest.mark.parametrize("path", [ROOT / "README.md", ROOT / "docs" / "configuration.md"])
def test_environment_claim_covers_every_command(path: Path) -> None:
    assert "Every option of every command" in path.read_text()
