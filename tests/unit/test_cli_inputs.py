"""Bad command-line input: a clear one-line error, exit code 2, and nothing starts.

All of these fail before leaderjob connects anywhere, so no etcd is needed. To make "nothing
starts" checkable (and a missed check fail fast instead of retrying an absent etcd forever), the
daemon entry point, the etcd store and the log set-up are replaced for every test here.
Also `leaderjob next` (the schedule checker) and smoke tests of the help texts.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from leaderjob import cli
from leaderjob.config import Timing

BASE = ["run", "--election", "cleanup", "--metrics-addr", "off"]
COMMAND = ["--", "true"]


class Started(AssertionError):
    """Raised if a test got past validation into opening etcd."""


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records any attempt to start the daemon; LEADERJOB_* variables are cleared first."""
    for name in list(os.environ):
        if name.startswith("LEADERJOB_"):
            monkeypatch.delenv(name)
    calls: list[Any] = []

    def fake_serve(*args: Any, **kwargs: Any) -> int:
        calls.append(args)
        return 0

    def fake_open_store(conn: Any) -> Any:
        calls.append(conn)
        raise Started("validation passed: leaderjob tried to open etcd")

    monkeypatch.setattr("leaderjob.cli.daemon._serve", fake_serve)
    monkeypatch.setattr("leaderjob.cli.options.open_store", fake_open_store)
    monkeypatch.setattr("leaderjob.log.configure", lambda *a, **k: None)
    return calls


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli.main, args, catch_exceptions=True)


def assert_usage_error(result: Result, *hints: str) -> str:
    """Exit 2, no traceback, and exactly one logical "Error: ..." line naming one of ``hints``."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert lines[-1] == errors[0], f"the error must be the last, whole line:\n{result.output}"
    error = errors[0]
    assert any(h in error for h in hints), f"none of {hints} in {error!r}"
    return error


# --- run: one bad input each ----------------------------------------------------------------------

RUN_CASES = [
    pytest.param(["--schedule", "61 * * * *", *COMMAND], ("minute",), id="cron-minute-61"),
    pytest.param(
        ["--schedule", "@hourly", "--timezone", "Mars/Base", *COMMAND],
        ("Mars/Base",),
        id="unknown-zone",
    ),
    pytest.param(
        ["--schedule", "CRON_TZ=Mars/Base 0 3 * * *", *COMMAND],
        ("Mars/Base",),
        id="unknown-zone-prefix",
    ),
    pytest.param(["--ttl", "1s", *COMMAND], ("--ttl",), id="ttl-below-etcd-minimum"),
    pytest.param(["--ttl", "2.5s", *COMMAND], ("--ttl",), id="ttl-not-whole-seconds"),
    pytest.param(["--ttl", "3x", *COMMAND], ("--ttl",), id="ttl-bad-duration"),
    pytest.param(["--cacert", "/nonexistent", *COMMAND], ("--cacert",), id="cacert-missing"),
    pytest.param(["--endpoints", "nohostport", *COMMAND], ("--endpoints",), id="endpoint"),
    pytest.param(
        ["--endpoints", "127.0.0.1:2379,host:99999", *COMMAND], ("--endpoints",), id="port"
    ),
    pytest.param([], ("command", "--"), id="missing-command"),
    pytest.param(["--"], ("command", "--"), id="empty-command"),
    pytest.param(["--metrics-addr", "nonsense", *COMMAND], ("--metrics-addr",), id="metrics"),
    pytest.param(["--health-url", "ftp://x", *COMMAND], ("--health-url",), id="health-url"),
    pytest.param(["--user", "root", *COMMAND], ("--user",), id="user-without-password"),
    pytest.param(
        ["--password-file", "/nonexistent", *COMMAND], ("--password-file",), id="password-file"
    ),
    pytest.param(["--catch-up", "all", *COMMAND], ("--catch-up",), id="catch-up-choice"),
    pytest.param(["--jitter", "-1s", *COMMAND], ("--jitter",), id="jitter-negative"),
]


@pytest.mark.parametrize(("extra", "hints"), RUN_CASES)
def test_run_rejects_bad_input(started: list[Any], extra: list[str], hints: tuple[str]) -> None:
    assert_usage_error(invoke([*BASE, *extra]), *hints)
    assert started == []


def test_cron_error_names_the_field_and_the_allowed_values(started: list[Any]) -> None:
    error = assert_usage_error(invoke([*BASE, "--schedule", "61 * * * *", *COMMAND]), "minute")
    assert "--schedule" in error
    assert "0-59" in error


def test_bad_election_name(started: list[Any]) -> None:
    result = invoke(["run", "--election", "a/b", "--metrics-addr", "off", *COMMAND])
    assert_usage_error(result, "--election")
    assert started == []


def test_missing_election(started: list[Any]) -> None:
    result = invoke(["run", "--metrics-addr", "off", *COMMAND])
    assert_usage_error(result, "--election")
    assert started == []


def test_cert_without_key(started: list[Any], tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not really a certificate\n")
    error = assert_usage_error(invoke([*BASE, "--cert", str(cert), *COMMAND]), "--key")
    assert "--cert" in error
    assert started == []


def test_password_file_without_user(started: list[Any], tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    error = assert_usage_error(invoke([*BASE, "--password-file", str(pw), *COMMAND]), "--user")
    assert "secret" not in error
    assert started == []


def test_several_errors_are_reported_together_on_one_line(started: list[Any]) -> None:
    """Every problem at once, so a manifest needs one fix round, not five."""
    args = [
        "run", "--election", "a/b", "--metrics-addr", "nonsense",
        "--ttl", "1s", "--schedule", "61 * * * *", "--health-url", "ftp://x",
    ]  # fmt: skip
    error = assert_usage_error(invoke(args), "--election")
    for flag in ("--election", "no command", "--ttl", "minute", "--health-url", "--metrics-addr"):
        assert flag in error
    assert started == []


def test_env_var_input_is_validated_like_the_flag(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADERJOB_TTL", "2.5s")
    assert_usage_error(invoke([*BASE, *COMMAND]), "--ttl")
    assert started == []


def test_good_input_gets_past_validation(started: list[Any]) -> None:
    """Guard for the cases above: valid input really does reach the daemon (here: a fake)."""
    result = invoke([*BASE, "--schedule", "@every 10s", "--ttl", "3s", *COMMAND])
    assert result.exit_code == 0, result.output
    assert len(started) == 1


def test_grace_too_long_for_ttl_names_grace_or_ttl(started: list[Any]) -> None:
    """The budget error blames the flags the user gave (--grace, --ttl), not a derived default."""
    error = assert_usage_error(
        invoke([*BASE, "--grace", "10s", "--ttl", "3s", *COMMAND]), "--grace", "--ttl"
    )
    assert "--renew-deadline must be a positive" not in error
    assert started == []


def test_renew_interval_leaving_no_room_to_retry_is_refused(started: list[Any]) -> None:
    result = invoke([*BASE, "--renew-interval", "2s", "--ttl", "3s", *COMMAND])
    assert_usage_error(result, "--renew-interval", "--ttl")
    assert started == []


def test_renew_interval_not_shorter_than_renew_deadline_is_refused(started: list[Any]) -> None:
    args = [*BASE, "--renew-interval", "3s", "--renew-deadline", "2s", "--ttl", "5s", *COMMAND]
    error = assert_usage_error(invoke(args), "--renew-interval")
    assert "--renew-deadline" in error
    assert started == []


# --- lock and the etcd commands share the checks --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "hints"),
    [
        (["lock", "--election", "x", "--metrics-addr", "off", "--ttl", "1s", "--", "true"],
         ("--ttl",)),
        (["lock", "--election", "x", "--metrics-addr", "off"], ("command",)),
        (["status", "--election", "a/b"], ("--election",)),
        (["history", "--election", "x", "--endpoints", "nohostport"], ("--endpoints",)),
        (["history", "--election", "x", "--limit", "0"], ("--limit",)),
        (["trigger", "--election", "x", "--cacert", "/nonexistent"], ("--cacert",)),
        (["suspend", "--election", "x", "--user", "root"], ("--user",)),
        (["resume", "--election", "x", "--rpc-timeout", "soon"], ("--rpc-timeout",)),
    ],
)  # fmt: skip
def test_other_commands_reject_bad_input(
    started: list[Any], args: list[str], hints: tuple[str]
) -> None:
    assert_usage_error(invoke(args), *hints)
    assert started == []


# --- next -----------------------------------------------------------------------------------------


def test_next_every_15m() -> None:
    result = invoke(["next", "@every 15m", "--after", "2026-01-01T00:00:07Z", "--count", "3"])
    assert result.exit_code == 0, result.output
    firsts = [line.split()[0] for line in result.output.splitlines()]
    assert firsts == ["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"]
    assert all(line.endswith("UTC") for line in result.output.splitlines())


def test_next_shows_the_spring_forward_firing_at_the_end_of_the_gap() -> None:
    """02:30 does not exist in Berlin on 2026-03-29: it fires once, at 03:00 CEST (01:00Z)."""
    args = ["next", "30 2 * * *", "--timezone", "Europe/Berlin"]
    result = invoke([*args, "--after", "2026-03-28T12:00:00Z", "--count", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [
        "2026-03-29T01:00:00Z  2026-03-29T03:00:00+02:00 CEST",
        "2026-03-30T00:30:00Z  2026-03-30T02:30:00+02:00 CEST",
    ]


def test_next_reads_an_offset_after_and_defaults_naive_to_utc() -> None:
    offset = "2026-01-01T00:30:00+01:00"
    with_offset = invoke(["next", "@hourly", "--after", offset, "--count", "1"])
    naive = invoke(["next", "@hourly", "--after", "2025-12-31T23:30:00", "--count", "1"])
    assert with_offset.exit_code == naive.exit_code == 0
    assert with_offset.output.split()[0] == naive.output.split()[0] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("args", "hints"),
    [
        (["next", "61 * * * *"], ("minute",)),
        (["next", "0 0 * * 8"], ("day-of-week",)),
        (["next", "* * *"], ("5",)),
        (["next", "@hourly", "--timezone", "Mars/Base"], ("Mars/Base",)),
        (["next", "@hourly", "--after", "yesterday"], ("--after",)),
        (["next", "@hourly", "--after", "2026-13-01T00:00:00Z"], ("--after",)),
        (["next", "@hourly", "--count", "0"], ("--count",)),
    ],
)
def test_next_rejects_bad_input(args: list[str], hints: tuple[str]) -> None:
    assert_usage_error(invoke(args), *hints)


# --- help texts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("run", ["--election", "--schedule", "--ttl", "--catch-up", "--starting-deadline",
                 "--jitter", "--endpoints", "--metrics-addr"]),
        ("lock", ["--election", "--ttl", "--grace", "--endpoints"]),
        ("status", ["--election", "--json", "--endpoints"]),
        ("history", ["--election", "--limit", "--json", "--endpoints"]),
    ],
)  # fmt: skip
def test_help_names_the_key_flags_and_the_environment(command: str, flags: list[str]) -> None:
    result = invoke([command, "--help"])
    assert result.exit_code == 0, result.output
    for flag in flags:
        assert flag in result.output
    assert "LEADERJOB_" in result.output


def test_top_level_help_lists_the_commands() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for name in ("run", "lock", "status", "history", "trigger", "suspend", "resume", "next"):
        assert re.search(rf"^\s+{name}\b", result.output, re.MULTILINE), name


def _help_default(text: str, flag: str) -> str:
    flat = " ".join(text.split())
    m = re.search(rf"{flag} DURATION ([^\[]*)\[default: ([^\]]*)\]", flat)
    assert m is not None, f"no default for {flag} in the help"
    return m.group(2)


def test_help_defaults_match_the_timing_defaults() -> None:
    """The defaults the help promises are the ones Timing.from_ttl uses."""
    text = invoke(["run", "--help"]).output
    t = Timing.from_ttl(15)
    for flag, actual in (
        ("--grace", t.grace),
        ("--margin", t.margin),
        ("--renew-interval", t.renew_interval),
    ):
        stated = _help_default(text, flag)
        m = re.fullmatch(r"TTL/(\d+)", stated)
        assert m is not None and 15 / int(m.group(1)) == pytest.approx(actual), (flag, stated)
    assert "0.85" in _help_default(text, "--renew-deadline")
    assert t.renew_deadline == pytest.approx(0.85 * 15, rel=0.01)


# --- endpoints: the scheme decides TLS ------------------------------------------------------------


def _conn(started: list[Any]) -> Any:
    assert len(started) == 1, started
    return started[0][1]


def test_https_endpoint_means_tls_with_the_system_ca_bundle(
    started: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """https:// without --cacert still verifies etcd, against the system bundle ($SSL_CERT_FILE
    here), instead of talking plain text to it."""
    bundle = tmp_path / "system-ca.pem"
    bundle.write_text("stand-in for the system bundle\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    result = invoke([*BASE, "--endpoints", "https://etcd-0:2379,https://etcd-1:2379/", *COMMAND])
    assert result.exit_code == 0, result.output
    conn = _conn(started)
    assert conn.endpoints == ("etcd-0:2379", "etcd-1:2379")
    assert conn.cacert == str(bundle)


def test_https_endpoint_with_cacert_uses_that_ca(started: list[Any], tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("ca\n")
    result = invoke([*BASE, "--endpoints", "https://e:2379", "--cacert", str(ca), *COMMAND])
    assert result.exit_code == 0, result.output
    assert _conn(started).cacert == str(ca)


def test_http_endpoint_stays_plain(started: list[Any]) -> None:
    result = invoke([*BASE, "--endpoints", "http://e:2379", *COMMAND])
    assert result.exit_code == 0, result.output
    conn = _conn(started)
    assert conn.endpoints == ("e:2379",) and conn.cacert is None and conn.cert is None


@pytest.mark.parametrize(
    "endpoints",
    ["https://a:2379,http://b:2379", "https://a:2379,b:2379", "unix://a:2379", "grpc://a:2379"],
)
def test_mixed_or_unknown_endpoint_schemes_are_refused(started: list[Any], endpoints: str) -> None:
    assert_usage_error(invoke([*BASE, "--endpoints", endpoints, *COMMAND]), "--endpoints")
    assert started == []


def test_http_endpoint_with_cacert_is_a_contradiction(started: list[Any], tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("ca\n")
    args = [*BASE, "--endpoints", "http://e:2379", "--cacert", str(ca), *COMMAND]
    assert_usage_error(invoke(args), "http://")
    assert started == []


# --- a leaderjob inside a job ---------------------------------------------------------------------


@pytest.mark.parametrize("var", ["LEADERJOB_ELECTION", "LEADERJOB_IDENTITY"])
@pytest.mark.parametrize("command", ["lock", "run"])
def test_nested_leaderjob_does_not_inherit_the_parents_election(
    started: list[Any], monkeypatch: pytest.MonkeyPatch, var: str, command: str
) -> None:
    """Inside a job (LEADERJOB_RUN_ID set), LEADERJOB_ELECTION/IDENTITY are the parent's: a
    nested `lock` taking them would wait behind its own parent for ever (L1 for the child)."""
    monkeypatch.setenv("LEADERJOB_RUN_ID", "abc123")
    monkeypatch.setenv("LEADERJOB_ELECTION", "parent")
    monkeypatch.setenv("LEADERJOB_IDENTITY", "parent-replica")
    args = [command, "--metrics-addr", "off"]
    if var == "LEADERJOB_IDENTITY":
        args += ["--election", "child"]
    flag = "--election" if var == "LEADERJOB_ELECTION" else "--identity"
    error = assert_usage_error(invoke([*args, *COMMAND]), flag)
    assert var in error and "LEADERJOB_RUN_ID" in error
    assert started == []


def test_nested_leaderjob_with_explicit_flags_starts(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADERJOB_RUN_ID", "abc123")
    monkeypatch.setenv("LEADERJOB_ELECTION", "parent")
    monkeypatch.setenv("LEADERJOB_IDENTITY", "parent-replica")
    args = ["lock", "--election", "child", "--identity", "me", *COMMAND]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    settings = started[0][0]
    assert (settings.election, settings.identity) == ("child", "me")


def test_election_from_the_environment_outside_a_job_still_works(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADERJOB_ELECTION", "cleanup")
    result = invoke(["lock", *COMMAND])
    assert result.exit_code == 0, result.output
    assert started[0][0].election == "cleanup"


def test_nested_status_does_not_read_the_parents_election(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADERJOB_RUN_ID", "abc123")
    monkeypatch.setenv("LEADERJOB_ELECTION", "parent")
    assert_usage_error(invoke(["trigger"]), "--election")
    assert started == []


# --- lock does not listen unless asked ------------------------------------------------------------


def test_lock_serves_no_metrics_by_default(started: list[Any]) -> None:
    """Two `lock` commands on one host must not collide on :9102."""
    result = invoke(["lock", "--election", "x", *COMMAND])
    assert result.exit_code == 0, result.output
    addr, text = started[0][3], started[0][4]
    assert addr is None and text == "off"


def test_lock_serves_metrics_when_asked(started: list[Any]) -> None:
    result = invoke(["lock", "--election", "x", "--metrics-addr", "127.0.0.1:9200", *COMMAND])
    assert result.exit_code == 0, result.output
    assert started[0][3] == ("127.0.0.1", 9200)


def test_run_keeps_its_metrics_listener_by_default(started: list[Any]) -> None:
    result = invoke(["run", "--election", "x", *COMMAND])
    assert result.exit_code == 0, result.output
    assert started[0][3] == ("0.0.0.0", 9102)


@pytest.mark.parametrize(
    ("addr", "parsed"),
    [("[::]:9102", ("::", 9102)), ("[::1]:0", ("::1", 0)), (":9102", ("0.0.0.0", 9102))],
)
def test_metrics_addr_accepts_ipv6(started: list[Any], addr: str, parsed: Any) -> None:
    result = invoke(["run", "--election", "x", "--metrics-addr", addr, *COMMAND])
    assert result.exit_code == 0, result.output
    assert started[0][3] == parsed


@pytest.mark.parametrize("addr", ["::1:9102", "[::1:9102", "host:port"])
def test_metrics_addr_rejects_ambiguous_ipv6(started: list[Any], addr: str) -> None:
    assert_usage_error(invoke([*BASE[:3], "--metrics-addr", addr, *COMMAND]), "--metrics-addr")


# --- history table --------------------------------------------------------------------------------


def test_history_table_shows_seconds_and_fits_long_slots() -> None:
    records = [
        {
            "started_at": "2026-11-30T02:48:54.123456Z",
            "slot": "trigger-20261130T024854-1a2b3c4d",
            "outcome": "succeeded",
            "exit_code": 0,
            "duration_seconds": 0.25,
            "token": 1234567,
            "identity": "my-app-7d9f-abcde",
        },
        {
            "scheduled_time": "2026-11-30T02:45:00Z",
            "slot": "20261130T024500Z",
            "outcome": "skipped_overlap",
            "token": 1234567,
            "identity": "my-app-7d9f-abcde",
        },
    ]
    lines = cli.format_history(records).splitlines()
    header = ["STARTED", "RUN", "SLOT", "OUTCOME", "EXIT", "SECS", "TOKEN", "BY"]
    assert lines[0].split() == header
    assert lines[1].split()[:3] == ["2026-11-30T02:48:54Z", "-", "trigger-20261130T024854-1a2b3c4d"]
    assert lines[2].split()[:4] == [
        "2026-11-30T02:45:00Z",
        "-",
        "20261130T024500Z",
        "skipped_overlap",
    ]
    # Columns line up: every row's OUTCOME starts where the header's does.
    col = lines[0].index("OUTCOME")
    assert lines[1][col:].startswith("succeeded") and lines[2][col:].startswith("skipped")
    assert lines[1].endswith("my-app-7d9f-abcde")


# --- status shows a configuration conflict ------------------------------------------------


def test_status_shows_candidates_running_different_jobs(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from leaderjob.clock import FakeClock
    from leaderjob.election.memory import MemoryStore
    from leaderjob.ops.fingerprint import ConfigWatch

    store = MemoryStore(FakeClock())
    for identity, schedule in (("prod-0", "@hourly"), ("staging-0", "@daily")):
        lease = store.grant(15, timeout=1).lease_id
        store.create(f"/leaderjob/e/leader/{lease:x}", identity.encode(), lease, timeout=1)
        watch = ConfigWatch(
            store, "/leaderjob", "e", identity, command=("job",), mode="schedule",
            schedule=schedule, timezone="UTC", log=cli_log(),
        )  # fmt: skip
        watch.tick(0.0, lease, leading=False, timeout=1, on_error=lambda exc: None)
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: store)
    result = invoke(["status", "--election", "e"])
    assert result.exit_code == 0, result.output
    assert "CONFIG CONFLICT" in result.output and "staging-0" in result.output
    doc = json.loads(invoke(["status", "--election", "e", "--json"]).output)
    assert doc["config_conflict"] is True and len(doc["fingerprints"]) == 2


def cli_log() -> Any:
    import structlog

    return structlog.get_logger()


# --- trigger / suspend / resume on an election nobody campaigns in -------------------------------


@pytest.fixture
def memory_etcd(started: list[Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    from leaderjob.clock import FakeClock
    from leaderjob.election.memory import MemoryStore

    store = MemoryStore(FakeClock())
    monkeypatch.setattr("leaderjob.cli.options.open_store", lambda conn: store)
    return store


def _campaign(store: Any, election: str, identity: str = "replica-0") -> None:
    lease = store.grant(15, timeout=1).lease_id
    store.create(f"/leaderjob/{election}/leader/{lease:x}", identity.encode(), lease, timeout=1)


@pytest.mark.parametrize("command", ["trigger", "suspend", "resume"])
def test_control_of_an_election_nobody_campaigns_in_is_refused(
    memory_etcd: Any, command: str
) -> None:
    _campaign(memory_etcd, "cleanup")
    result = invoke([command, "--election", "cleanpu"])
    assert result.exit_code == 1, result.output
    assert "nobody campaigns" in result.output and "--force" in result.output
    assert memory_etcd.get_prefix("/leaderjob/cleanpu/", timeout=1) == []


@pytest.mark.parametrize("command", ["trigger", "suspend"])
def test_control_with_force_or_with_candidates_goes_ahead(memory_etcd: Any, command: str) -> None:
    forced = invoke([command, "--election", "later", "--force"])
    assert forced.exit_code == 0, forced.output
    assert memory_etcd.get_prefix("/leaderjob/later/control/", timeout=1)
    _campaign(memory_etcd, "cleanup")
    result = invoke([command, "--election", "cleanup"])
    assert result.exit_code == 0, result.output
    assert memory_etcd.get_prefix("/leaderjob/cleanup/control/", timeout=1)


def _leader_answers(store: Any, outcome: str, exit_code: int | None) -> Any:
    """A stand-in leader: consumes the trigger and records its run, as the daemon does."""
    import threading
    import time

    from leaderjob.history.records import ElectionData

    data = ElectionData(store, "/leaderjob", "cleanup")

    def serve() -> None:
        for _ in range(500):
            control = data.control(timeout=1)
            if control.triggers:
                key, _ = control.triggers[0]
                slot = "trigger-" + key.rsplit("/", 1)[-1]
                store.delete(key, timeout=1)
                data.record(
                    {"run_id": "r1", "slot": slot, "outcome": outcome, "exit_code": exit_code,
                     "started_at": "2026-11-30T02:48:54.5Z", "token": 7, "identity": "replica-0"},
                    datetime.now(UTC), timeout=1,
                )  # fmt: skip
                return
            time.sleep(0.01)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("outcome", "exit_code", "expected"),
    [("succeeded", 0, 0), ("failed", 3, 3), ("timed_out", None, 1)],
)
def test_trigger_wait_exits_with_the_runs_outcome(
    memory_etcd: Any,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
    exit_code: int | None,
    expected: int,
) -> None:
    monkeypatch.setattr("leaderjob.cli.control.WAIT_POLL", 0.01)
    _campaign(memory_etcd, "cleanup")
    leader = _leader_answers(memory_etcd, outcome, exit_code)
    result = invoke(["trigger", "--election", "cleanup", "--wait", "--wait-timeout", "20s"])
    leader.join(5)
    assert result.exit_code == expected, result.output
    assert outcome in result.output


def test_trigger_wait_gives_up_after_its_timeout(
    memory_etcd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("leaderjob.cli.control.WAIT_POLL", 0.01)
    _campaign(memory_etcd, "cleanup")
    result = invoke(["trigger", "--election", "cleanup", "--wait", "--wait-timeout", "200ms"])
    assert result.exit_code == cli.EXIT_WAIT_TIMEOUT, result.output


# --- help and the errors it leads to -------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "lock"])
def test_usage_shows_the_required_command_after_double_dash(command: str) -> None:
    text = invoke([command, "--help"]).output
    assert f" {command} [OPTIONS] -- COMMAND [ARGS]...\n" in text
    assert "[COMMAND]..." not in text
    assert "COMMAND is required" in text


def test_run_help_groups_its_options() -> None:
    text = invoke(["run", "--help"]).output
    sections = ["Election:", "Timing:", "Schedule:", "Health:", "etcd connection:", "Output:"]
    positions = [text.index(f"\n{s}\n") for s in sections]
    assert positions == sorted(positions), "sections in order"
    section_of = {}
    current = None
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = line[:-1]
        m = re.match(r"\s+(--[a-z-]+)", line)
        if m and current:
            section_of.setdefault(m.group(1), current)
    expected = {
        "--election": "Election", "--ttl": "Timing", "--grace": "Timing",
        "--schedule": "Schedule", "--health-cmd": "Health", "--endpoints": "etcd connection",
        "--cacert": "etcd connection", "--log-format": "Output", "--metrics-addr": "Output",
    }  # fmt: skip
    for flag, section in expected.items():
        assert section_of.get(flag) == section, (flag, section_of.get(flag))


def test_every_option_of_every_command_has_its_environment_variable() -> None:
    """ "Every option can also come from the environment" holds for every command, and --help
    names the variable."""
    for name, command in cli.main.loaded().items():
        for param in command.params:
            if not isinstance(param, cli.click.Option):
                continue
            long = max(param.opts, key=len).lstrip("-")
            expected = "LEADERJOB_" + long.upper().replace("-", "_")
            assert param.envvar == expected, (name, param.opts, param.envvar)
        text = invoke([name, "--help"]).output
        for param in command.params:
            if isinstance(param, cli.click.Option):
                assert str(param.envvar) in " ".join(text.split()).replace("- ", "-"), (
                    name,
                    param.envvar,
                )


def test_an_option_from_the_environment_works_for_other_commands(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADERJOB_LIMIT", "0")
    assert_usage_error(invoke(["history", "--election", "x"]), "--limit")


@pytest.mark.parametrize("flag", ["--cacert", "--cert", "--key", "--password-file"])
def test_certificate_options_are_shown_as_files(flag: str) -> None:
    text = invoke(["run", "--help"]).output
    assert re.search(rf"{flag} FILE\b", text), flag


def test_limit_has_help_text() -> None:
    param = next(p for p in cli.history.params if p.name == "limit")
    assert isinstance(param, cli.click.Option) and param.help


def test_ttl_zero_is_one_error_about_ttl(started: list[Any]) -> None:
    error = assert_usage_error(invoke([*BASE, "--ttl", "0", *COMMAND]), "--ttl")
    for derived in ("--renew-interval", "--renew-deadline", "--grace", "--margin"):
        assert derived not in error, error
    assert started == []


@pytest.mark.parametrize("ttl", [2, 3, 5, 15, 60])
@pytest.mark.parametrize("factor", [0.5, 0.95, 3])
def test_grace_hint_names_a_value_that_is_accepted(
    started: list[Any], ttl: int, factor: float
) -> None:
    grace = f"{ttl * factor:g}s"
    error = assert_usage_error(
        invoke([*BASE, "--ttl", f"{ttl}s", "--grace", grace, *COMMAND]), "--grace"
    )
    m = re.search(r"use --grace (\S+) or less", error)
    assert m, error
    result = invoke([*BASE, "--ttl", f"{ttl}s", "--grace", m.group(1), *COMMAND])
    assert result.exit_code == 0, (m.group(1), result.output)


def test_run_of_one_command_is_a_jobs_file_of_one_job(started: list[Any]) -> None:
    """`run --schedule … -- CMD` goes the way of a jobs file: a JobSpec of one job, named like
    the election, made into settings by the function that makes each job of a file - with the
    flags' values, the election's own keys, and the daemon's mode."""
    from dataclasses import replace

    from leaderjob.cli.daemon_settings import job_settings
    from leaderjob.jobsfile import single_job
    from leaderjob.schedule import parse_schedule

    flags = ["--catch-up", "skip", "--jitter", "10s", "--starting-deadline", "30s"]
    flags += ["--concurrency", "replace", "--timeout", "1m", "--retries", "2"]
    flags += ["--history-limit", "7", "--timezone", "Europe/Berlin"]
    args = ["run", "--election", "cleanup", "--schedule", "*/5 * * * *", *flags, *COMMAND]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    settings = started[0][0]
    schedule = parse_schedule("*/5 * * * *", "Europe/Berlin")
    (spec,) = single_job(
        "cleanup",
        ("true",),
        schedule,
        catch_up="skip",
        jitter=10.0,
        starting_deadline=30.0,
        concurrency="replace",
        timeout=60.0,
        retries=2,
        history_limit=7,
    ).jobs
    daemon = replace(
        settings,
        schedule=None,
        catch_up="once",
        starting_deadline=None,
        jitter=0.0,
        concurrency="forbid",
        timeout=None,
        retries=0,
        history_limit=50,
    )
    assert settings == job_settings(daemon, spec, None, group=False)
    assert (settings.election, settings.prefix, settings.mode) == (
        "cleanup",
        "/leaderjob",
        "schedule",
    )
    assert (settings.jitter, settings.retries, settings.history_limit) == (10.0, 2, 7)

    started.clear()
    assert invoke(["lock", "--election", "cleanup", *COMMAND]).exit_code == 0
    assert (started[0][0].mode, started[0][0].schedule) == ("once", None)
    started.clear()
    assert invoke(["run", "--election", "cleanup", *COMMAND]).exit_code == 0
    assert (started[0][0].mode, started[0][0].schedule) == ("service", None)
