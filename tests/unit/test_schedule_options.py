"""Schedule options that would lose slots silently are refused: exit 2, one line, nothing starts.

L3 (every slot of a stable tenure runs): a jitter of an interval or more makes a late slot hold up
the next one until that one is too late; a starting deadline under a second (or 0) skips most or
all slots as late.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_cli_inputs import BASE, COMMAND, assert_usage_error, invoke, started

__all__ = ["started"]  # the fixture, shared with the other command-line tests


@pytest.mark.parametrize(
    ("extra", "hint"),
    [
        (["--schedule", "@every 10s", "--jitter", "30s"], "--jitter"),
        (["--schedule", "@every 10s", "--jitter", "10s"], "--jitter"),
        (["--schedule", "*/5 * * * *", "--jitter", "5m"], "--jitter"),
        (["--schedule", "@every 10s", "--starting-deadline", "0s"], "--starting-deadline"),
        (["--schedule", "@every 10s", "--starting-deadline", "10ms"], "--starting-deadline"),
    ],
)
def test_options_that_lose_slots_are_refused_L3(
    started: list[Any], extra: list[str], hint: str
) -> None:
    error = assert_usage_error(invoke([*BASE, *extra, *COMMAND]), hint)
    assert "shorter" in error or "at least 1s" in error
    assert started == []


@pytest.mark.parametrize(
    "extra",
    [
        ["--schedule", "@every 10s", "--jitter", "9s"],
        ["--schedule", "@every 10s", "--starting-deadline", "1s"],
    ],
)
def test_options_within_bounds_are_accepted(started: list[Any], extra: list[str]) -> None:
    result = invoke([*BASE, *extra, *COMMAND])
    assert result.exit_code == 0, result.output
    assert started
