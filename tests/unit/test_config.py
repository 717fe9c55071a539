"""The timing budget (docs/safety.md §2) and connection settings: every error names its flag."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest

from leaderjob import config
from leaderjob.config import (
    CLOCK_DRIFT,
    MIN_STARTING_DEADLINE,
    Connection,
    Endpoints,
    Timing,
    default_identity,
    election_prefix,
    job_environment,
    join_errors,
    system_ca_bundle,
    validate_election_name,
    validate_slot_timing,
)


@pytest.mark.parametrize("ttl", [2, 3, 15, 60])
def test_from_ttl_defaults_are_valid(ttl: int) -> None:
    assert Timing.from_ttl(ttl).validate() == []


@pytest.mark.parametrize("ttl", [2, 3, 15, 60])
def test_from_ttl_default_fractions(ttl: int) -> None:
    t = Timing.from_ttl(ttl)
    assert t.renew_interval == pytest.approx(ttl / 3)
    assert t.grace == pytest.approx(ttl / 10)
    assert t.margin == pytest.approx(ttl / 25)
    room = ttl * (1 - 2 * CLOCK_DRIFT) - t.grace - t.margin - ttl / 100
    assert t.renew_deadline == pytest.approx(min(0.85 * ttl, room))
    assert t.renew_deadline <= 0.85 * ttl


@pytest.mark.parametrize("ttl", [2, 3, 15, 60])
def test_l4_defaults_leave_room_for_a_half_ttl_fault_in_the_worst_phase(ttl: int) -> None:
    # A fault starting just before the keepalive due at ttl/3 after the last answered one and
    # lasting ttl/2 ends before the leader gives up and before its job is told to stop.
    t = Timing.from_ttl(ttl)
    fault_ends = t.renew_interval + ttl / 2
    assert fault_ends < t.renew_deadline
    assert fault_ends < t.deadline_after(0.0) - t.grace


def test_from_ttl_keeps_explicit_values() -> None:
    t = Timing.from_ttl(15, renew_interval=2, renew_deadline=5, grace=3, margin=1)
    assert (t.ttl, t.renew_interval, t.renew_deadline, t.grace, t.margin) == (15, 2, 5, 3, 1)


def test_explicit_grace_or_margin_shrinks_the_default_renew_deadline() -> None:
    default = Timing.from_ttl(15)
    for t in (Timing.from_ttl(15, grace=3), Timing.from_ttl(15, margin=2)):
        assert t.renew_deadline < default.renew_deadline
        assert t.renew_deadline + t.grace + t.margin < t.usable_ttl
        assert t.validate() == []


def test_deadline_is_send_time_plus_drift_corrected_ttl_minus_margin() -> None:
    t = Timing.from_ttl(10)  # margin ttl/25 = 0.4 s
    assert t.deadline_after(100.0) == pytest.approx(100 + 10 * (1 - 2e-3) - 0.4)


def only(errors: list[str]) -> str:
    assert len(errors) == 1, errors
    return errors[0]


def test_ttl_must_be_whole_seconds() -> None:
    assert "--ttl 2.5s" in only(Timing.from_ttl(2.5).validate())


def test_ttl_below_etcd_minimum() -> None:
    error = only(Timing.from_ttl(1).validate())
    assert "--ttl 1s" in error
    assert "minimum" in error


@pytest.mark.parametrize("flag", ["renew_interval", "renew_deadline", "grace", "margin"])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_timings_must_be_positive(flag: str, value: float) -> None:
    error = only(Timing.from_ttl(3, **{flag: value}).validate())
    assert f"--{flag.replace('_', '-')} must be a positive duration" in error


@pytest.mark.parametrize("flag", ["ttl", "renew_interval", "renew_deadline", "grace", "margin"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_timings_are_refused_naming_the_flag(flag: str, value: float) -> None:
    t = Timing.from_ttl(value) if flag == "ttl" else Timing.from_ttl(3, **{flag: value})
    errors = t.validate()  # an error, never an exception (int(inf) raises OverflowError)
    assert any(f"--{flag.replace('_', '-')} must be a positive duration" in e for e in errors)


def test_renew_interval_must_be_shorter_than_renew_deadline() -> None:
    error = only(Timing.from_ttl(15, renew_interval=5, renew_deadline=5).validate())
    assert "--renew-interval 5s" in error
    assert "--renew-deadline 5s" in error


def test_grace_too_long_for_ttl_says_lower_grace() -> None:
    # With an explicit renew deadline, the budget check names the grace that would fit.
    error = only(Timing.from_ttl(3, renew_deadline=2.0, grace=1.5).validate())
    assert "lower --grace to under" in error
    assert "raise --ttl" in error
    # With the default renew deadline, the grace squeezes it below the renew interval.
    error = only(Timing.from_ttl(3, grace=2).validate())
    assert "--grace" in error
    assert "raise --ttl" in error


@pytest.mark.parametrize(
    ("ttl", "grace"),
    [
        (3, 2.0),
        (15, 10.0),
        (60, 45.0),
        (3, 2.9),
    ],
)
def test_explicit_grace_that_does_not_fit_names_grace(ttl: int, grace: float) -> None:
    errors = Timing.from_ttl(ttl, grace=grace).validate()
    assert errors != []
    assert any("--grace" in e for e in errors), errors


def test_ttl_15_with_grace_10_is_invalid() -> None:
    errors = Timing.from_ttl(15, grace=10).validate()
    assert errors != []
    assert any("--grace" in e or "--ttl" in e for e in errors), errors


def test_grace_exactly_filling_the_budget_is_refused() -> None:
    t = Timing.from_ttl(3)
    rd = t.renew_deadline  # pinned: a default renew deadline would shrink to fit the grace
    exact = t.usable_ttl - rd - t.margin
    assert Timing.from_ttl(3, renew_deadline=rd, grace=exact).validate() != []
    assert Timing.from_ttl(3, renew_deadline=rd, grace=exact * 0.99).validate() == []


def test_renew_deadline_eating_the_budget_says_lower_renew_deadline() -> None:
    # 2.9 s + margin 0.12 s already exceeds the usable 2.994 s: no grace would fit.
    error = only(Timing.from_ttl(3, renew_deadline=2.9).validate())
    assert "lower --renew-deadline" in error


def test_validate_returns_all_errors_at_once() -> None:
    ttl_errors = Timing.from_ttl(1.5).validate()
    assert len(ttl_errors) == 2  # not whole seconds, and below the minimum
    relational = Timing.from_ttl(3, renew_interval=2, renew_deadline=1.9, grace=1).validate()
    assert len(relational) == 2  # interval >= deadline, and the budget
    assert len(Timing.from_ttl(3, grace=0, margin=-1).validate()) == 2


def test_a_ttl_error_does_not_hide_a_budget_error() -> None:
    errors = Timing.from_ttl(2.5, renew_interval=2, renew_deadline=1).validate()
    assert any("--ttl 2.5s" in e for e in errors)
    assert any("--renew-interval" in e for e in errors)
    errors = Timing.from_ttl(2.5, renew_deadline=2.4).validate()
    assert any("--ttl 2.5s" in e for e in errors)
    assert any("renew deadline + grace + margin" in e for e in errors)


def test_nan_grace_is_refused() -> None:
    errors = Timing.from_ttl(3, grace=float("nan")).validate()
    assert any("--grace must be a positive duration" in e for e in errors)


def test_infinite_ttl_is_an_error_not_a_crash() -> None:
    errors = Timing.from_ttl(float("inf")).validate()
    assert any("--ttl must be a positive duration" in e for e in errors)


# --- Connection -------------------------------------------------------------------------------


def test_default_connection_is_valid() -> None:
    assert Connection().validate() == []


@pytest.mark.parametrize("endpoint", ["127.0.0.1:2379", "etcd-0.etcd:2379", "[::1]:2379"])
def test_good_endpoints(endpoint: str) -> None:
    assert Connection(endpoints=(endpoint,)).validate() == []


@pytest.mark.parametrize(
    "endpoint", ["localhost", ":2379", "host:", "host:abc", "host:0", "host:65536", "host:-1"]
)
def test_bad_endpoint_names_the_flag(endpoint: str) -> None:
    assert "--endpoints" in only(Connection(endpoints=(endpoint,)).validate())


def test_no_endpoints() -> None:
    assert "--endpoints is empty" in only(Connection(endpoints=()).validate())


def test_cert_without_key(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    assert "--cert and --key" in only(Connection(cert=str(cert)).validate())
    assert "--cert and --key" in only(Connection(key=str(cert)).validate())


@pytest.mark.parametrize("flag", ["cacert", "cert", "key"])
def test_missing_file(tmp_path: Path, flag: str) -> None:
    present = tmp_path / "present.pem"
    present.write_text("x")
    missing = str(tmp_path / "missing.pem")
    files = {"cacert": None, "cert": str(present), "key": str(present), flag: missing}
    conn = Connection(cacert=files["cacert"], cert=files["cert"], key=files["key"])
    error = only(conn.validate())
    assert f"--{flag} {missing}: file is missing or unreadable" == error


def test_user_and_password_go_together() -> None:
    assert "--user" in only(Connection(user="root").validate())
    assert "--user" in only(Connection(password="secret").validate())
    assert Connection(user="root", password="secret").validate() == []


def test_connection_validate_returns_all_errors_at_once() -> None:
    errors = Connection(endpoints=("nope",), cert="/nonexistent", user="u").validate()
    assert len(errors) == 4  # endpoint, cert without key, missing file, user without password


def test_password_never_in_repr() -> None:
    assert "hunter2" not in repr(Connection(user="root", password="hunter2"))


# --- edges found by mutation testing --------------------------------------------------------------
# Config errors are the user's only guide: whole messages are pinned, and each boundary of a rule
# is checked on both sides.


def test_ttl_below_minimum_whole_message() -> None:
    assert Timing.from_ttl(1).validate() == [
        "--ttl 1s is below etcd's minimum lease TTL of 2s (etcd would silently raise it); "
        "use --ttl 2s or more"
    ]


def test_renew_interval_without_room_to_retry_whole_message() -> None:
    assert Timing.from_ttl(15, renew_interval=5, renew_deadline=5).validate() == [
        "--renew-interval 5s must be at most half of --renew-deadline 5s: a leader needs room to "
        "retry a failed keepalive before it gives up (an explicit --grace or --margin shortens "
        "the default renew deadline: lower them, or raise --ttl)"
    ]


def test_budget_error_whole_message_and_its_hint() -> None:
    assert Timing.from_ttl(3, renew_deadline=2.9).validate() == [
        "renew deadline + grace + margin = 3.32s must be less than --ttl 3s (less clock drift, "
        "2.994s): the job must be dead before another replica can take the lease; lower "
        "--renew-deadline, or raise --ttl"
    ]


def test_no_room_for_any_grace_says_lower_renew_deadline_s6() -> None:
    """S6: when renew deadline + margin use up the whole usable TTL, no grace fits: the hint is
    to lower the renew deadline, never "lower --grace to under 0s"."""
    usable = Timing.from_ttl(3).usable_ttl
    t = Timing(ttl=3, renew_interval=1, renew_deadline=usable - 0.25, grace=0.3, margin=0.25)
    assert t.usable_ttl - t.renew_deadline - t.margin == 0.0
    assert "; lower --renew-deadline, or raise --ttl" in only(t.validate())


def test_grace_leaving_no_room_keeps_the_default_renew_deadline_and_blames_grace_s6() -> None:
    """S6: an explicit grace that leaves less room than one renew interval does not shrink the
    renew deadline below it (which would blame --renew-interval); the budget error names the
    grace that would fit."""
    t = Timing.from_ttl(10, grace=6.5)
    assert t.renew_deadline == 0.85 * 10
    assert t.validate() == [
        "renew deadline + grace + margin = 15.4s must be less than --ttl 10s (less clock drift, "
        "9.98s): the job must be dead before another replica can take the lease; lower --grace "
        "to under 1.08s, or raise --ttl"
    ]


def test_default_renew_deadline_needs_more_room_than_the_explicit_renew_interval() -> None:
    """The budget's room is weighed against the renew interval actually used: an explicit one
    that the room does not exceed (here: equals) keeps the renew deadline at 0.85·ttl."""
    ttl = 3.0
    room = ttl * (1 - 2 * CLOCK_DRIFT) - ttl / 10 - ttl / 25 - ttl / 100
    assert Timing.from_ttl(ttl, renew_interval=room).renew_deadline == 0.85 * ttl
    assert Timing.from_ttl(15, renew_interval=13).renew_deadline == 0.85 * 15


def test_connection_whole_messages() -> None:
    assert Connection(endpoints=()).validate() == [
        "--endpoints is empty; give at least one host:port"
    ]
    assert Connection(cert="/nonexistent").validate()[0] == (
        "--cert and --key go together: give both for client-certificate auth"
    )
    assert Connection(user="root").validate() == [
        "--user needs a password (LEADERJOB_PASSWORD or --password-file), and a password "
        "needs --user"
    ]


@pytest.mark.parametrize("port", ["1", "65535"])
def test_every_tcp_port_is_a_good_endpoint(port: str) -> None:
    assert Connection(endpoints=(f"etcd:{port}",)).validate() == []


def test_identity_is_the_pod_name_else_host_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "leaderjob-0")
    assert default_identity() == "leaderjob-0"
    monkeypatch.delenv("POD_NAME")
    assert default_identity() == f"{socket.gethostname()}-{os.getpid()}"


@pytest.mark.parametrize(
    ("prefix", "keys"),
    [
        ("/leaderjob", "/leaderjob/cleanup/leader"),
        ("/leaderjob/", "/leaderjob/cleanup/leader"),
        ("/leaderjob//", "/leaderjob/cleanup/leader"),
        ("/team/X", "/team/X/cleanup/leader"),
    ],
)
def test_election_prefix_ignores_only_trailing_slashes(prefix: str, keys: str) -> None:
    """The key prefix `etcdctl elect -l` observes is the same however the prefix is written."""
    assert election_prefix(prefix, "cleanup") == keys


def test_election_name_whole_messages() -> None:
    assert validate_election_name("") == [
        "--election is required: name the job's election, e.g. --election cleanup"
    ]
    assert validate_election_name("a/b c/") == [
        "--election 'a/b c/': use letters, digits, '-', '_' and '.' only (found ' /')"
    ]
    assert validate_election_name("Nightly-report_v2.eu") == []


def test_jitter_as_long_as_the_interval_is_refused_L3() -> None:
    """L3: a slot jittered by a whole interval would hold up the next one until it is late."""
    assert validate_slot_timing(10, 10, None) == [
        "--jitter 10s must be shorter than the schedule's interval (10s): a slot delayed past "
        "the next one holds it up until it is too late to run"
    ]
    assert validate_slot_timing(10, 9.99, None) == []


def test_starting_deadline_of_at_least_one_second_is_accepted_L3() -> None:
    """L3: below 1 s most slots would be skipped as late; 1 s itself is allowed."""
    assert validate_slot_timing(60, 0, MIN_STARTING_DEADLINE) == []
    assert validate_slot_timing(60, 0, 0.5) == [
        "--starting-deadline 500ms is too short: give at least 1s (starting a slot takes tens "
        "of milliseconds; a shorter deadline skips most slots as late)"
    ]


def test_errors_are_joined_on_one_line() -> None:
    assert join_errors(["--ttl: a", "--grace: b"]) == "--ttl: a; --grace: b"


def test_job_environment_drops_only_the_credentials() -> None:
    environ = {"PATH": "/bin", "LEADERJOB_ELECTION": "cleanup", "LEADERJOB_PASSWORD": "x"}
    assert job_environment(environ) == {"PATH": "/bin", "LEADERJOB_ELECTION": "cleanup"}


def test_system_ca_bundle_is_the_first_that_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A CA path the ssl module names but that is not there is passed over, never handed to TLS."""
    present = tmp_path / "ca-certificates.crt"
    present.write_text("ca\n")
    missing = str(tmp_path / "cert.pem")
    paths = ssl.DefaultVerifyPaths(None, None, "SSL_CERT_FILE", missing, "SSL_CERT_DIR", None)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: paths)
    monkeypatch.setattr(config, "SYSTEM_CA_BUNDLES", (str(tmp_path / "none.crt"), str(present)))
    assert system_ca_bundle() == str(present)
    monkeypatch.setattr(config, "SYSTEM_CA_BUNDLES", ())
    assert system_ca_bundle() is None


def test_endpoints_skip_empty_entries_and_trailing_slashes() -> None:
    assert Endpoints.parse("a:1,, b:2 ,") == Endpoints(("a:1", "b:2"), None)
    assert Endpoints.parse("http://X/,http://y:2//") == Endpoints(("X", "y:2"), False)
    assert Endpoints.parse("HTTPS://a:1") == Endpoints(("a:1",), True)


def test_endpoints_mixing_tls_and_plain_whole_message() -> None:
    assert Endpoints.parse("https://a:1,b:2").errors == (
        "--endpoints mixes https:// with plain endpoints: one cluster speaks TLS or not; "
        "write https:// for every member, or for none",
    )


@pytest.mark.parametrize("endpoint", ["https://http://a:2379", "http://https://a:2379"])
def test_endpoint_with_two_schemes_is_refused(endpoint: str) -> None:
    """A second scheme is not part of a host name: `https://http://a:2379` used to pass as the
    TLS endpoint `http://a:2379` (the host:port check splits at the last colon only)."""
    error = f"--endpoints: {endpoint!r}: use https:// (TLS), http:// or host:port"
    assert Endpoints.parse(endpoint).errors == (error,)
    # One typo, one error: the scheme it was written with still counts for the TLS check.
    scheme = endpoint.partition("://")[0]
    assert Endpoints.parse(f"{endpoint},{scheme}://b:2379").errors == (error,)
