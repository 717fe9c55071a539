"""Errors an operator meets, each one line that says what to change: a password with no user to
go with it, a plain-text client at a TLS port, and the Kubernetes spelling of a concurrency
policy (`Forbid`), which is accepted rather than refused."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from leaderjob import cli
from leaderjob.cli.scope import tls_hint
from leaderjob.jobsfile import parse_jobs


def test_a_password_without_a_user_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADERJOB_PASSWORD", "s3cret")
    monkeypatch.delenv("LEADERJOB_USER", raising=False)
    out = CliRunner().invoke(cli.main, ["status", "--election", "e"])
    assert out.exit_code == 2, out.output
    assert "LEADERJOB_PASSWORD is set but no etcd user: give --user" in out.output
    assert "s3cret" not in out.output


@pytest.mark.parametrize(
    ("params", "hinted"),
    [
        ({"endpoints": "etcd:2379"}, True),
        ({"endpoints": "https://etcd:2379"}, False),
        ({"endpoints": "etcd:2379", "cacert": "ca.pem"}, False),
    ],
)
def test_socket_closed_at_a_plain_endpoint_suggests_https(
    params: dict[str, str], hinted: bool
) -> None:
    hint = tls_hint("etcd unavailable: Socket closed", params)
    assert ("https://host:port" in hint) is hinted
    assert tls_hint("connection refused", {"endpoints": "etcd:2379"}) == ""


def test_the_kubernetes_spelling_of_a_concurrency_policy_is_accepted() -> None:
    text = '[jobs.a]\nschedule = "@hourly"\ncommand = ["true"]\nconcurrency = "Forbid"\n'
    assert parse_jobs(text, "jobs.toml").jobs[0].concurrency == "forbid"
    help_text = CliRunner().invoke(cli.main, ["run", "--help"]).output
    assert "--concurrency" in help_text
    out = CliRunner().invoke(
        cli.main,
        ["run", "--election", "e", "--schedule", "@hourly", "--concurrency", "Replace",
         "--ttl", "1s", "--", "true"],
    )  # fmt: skip
    # Refused for its --ttl (before any connection), not for its --concurrency.
    assert out.exit_code == 2 and "--ttl 1s" in out.output, out.output
    assert "Invalid value for '--concurrency'" not in out.output, out.output


def test_next_json_gives_each_fire_time_in_utc_and_local() -> None:
    import json

    out = CliRunner().invoke(
        cli.main,
        ["next", "30 2 * * *", "--timezone", "Europe/Berlin", "--after",
         "2026-03-28T00:00:00Z", "--count", "2", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["timezone"] == "Europe/Berlin"
    assert doc["fires"] == [
        {"utc": "2026-03-28T01:30:00Z", "local": "2026-03-28T02:30:00+01:00", "zone": "CET"},
        {"utc": "2026-03-29T01:00:00Z", "local": "2026-03-29T03:00:00+02:00", "zone": "CEST"},
    ]
