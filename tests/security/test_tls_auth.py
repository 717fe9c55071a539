"""TLS and etcd RBAC against real etcd servers, and the job's arguments.

Each failure case must fail at start-up: exit status 1 when etcd (or its TLS layer) rejects us,
2 for a usage error; one plain line ``leaderjob: ...`` on stderr that says what is wrong; and
the job never runs. ``leaderjob lock`` is the daemon in its shortest form: campaign, run the
command once under leadership, release, exit with the command's status.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.binaries import etcd_version
from tests.security.conftest import ALLOWED, PASSWORD, USER

TIMEOUT = 30
#: The cases where etcd refuses the client's certificate (its side of the handshake).
CLIENT_CERT_REFUSED = ("expired_cert", "cert_from_other_ca", "no_client_cert")


def _lock(
    tmp_path: Path,
    endpoint: str,
    *flags: str,
    prefix: str = ALLOWED,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    timeout: float = TIMEOUT,
) -> tuple[subprocess.CompletedProcess[str], Path, float]:
    marker = tmp_path / f"ran-{time.monotonic_ns()}"
    argv = [
        sys.executable, "-m", "leaderjob", "lock",
        "--election", "sec", "--identity", "sec-test", "--endpoints", endpoint,
        "--prefix", prefix, "--ttl", "3s", "--log-format", "json", "--metrics-addr", "off",
        "--rpc-timeout", "2s", *flags, "--",
        *(command or [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]),
    ]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERJOB_")}
    full_env.update(env or {})
    t0 = time.monotonic()
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )
    return proc, marker, time.monotonic() - t0


#: gRPC's own log line format (``E1126 04:24:18.511415   31417 file.cc:123] text``).
_GRPC_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


def _plain_lines(stderr: str, *, grpc_errors: bool = False) -> list[str]:
    """stderr lines that are not JSON log records (nor, with ``grpc_errors``, gRPC's own
    error log lines, which it prints for a key that does not match its certificate)."""
    out = []
    for line in stderr.splitlines():
        if grpc_errors and _GRPC_LOG.match(line):
            continue
        try:
            json.loads(line)
        except ValueError:
            if line.strip():
                out.append(line)
    return out


def _assert_rejected(
    proc: subprocess.CompletedProcess[str], marker: Path, *phrases: str, grpc_errors: bool = False
) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert not marker.exists(), "the job ran although etcd rejected us"
    lines = _plain_lines(proc.stderr, grpc_errors=grpc_errors)
    assert len(lines) == 1 and lines[0].startswith("leaderjob: "), lines
    for phrase in phrases:
        assert phrase.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _assert_ran(proc: subprocess.CompletedProcess[str], marker: Path) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists()


# -- TLS -------------------------------------------------------------------------------------


def test_tls_with_client_certificate_works(tls_etcd, tmp_path):
    """TLS with server verification and a client certificate signed by etcd's CA: it leads and
    runs the job; by IP and by name (both in etcd's certificate)."""
    c = tls_etcd.certs
    tls = ["--cacert", str(c.ca), "--cert", str(c.client_cert), "--key", str(c.client_key)]
    _assert_ran(*_lock(tmp_path, tls_etcd.endpoint, *tls)[:2])
    port = tls_etcd.endpoint.rsplit(":", 1)[1]
    _assert_ran(*_lock(tmp_path, f"localhost:{port}", *tls)[:2])


def test_tls_options_from_environment(tls_etcd, tmp_path):
    """LEADERJOB_CACERT / LEADERJOB_CERT / LEADERJOB_KEY work like the flags."""
    c = tls_etcd.certs
    env = {
        "LEADERJOB_CACERT": str(c.ca),
        "LEADERJOB_CERT": str(c.client_cert),
        "LEADERJOB_KEY": str(c.client_key),
    }
    _assert_ran(*_lock(tmp_path, tls_etcd.endpoint, env=env)[:2])


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        ("wrong_ca", ("cannot verify etcd's certificate", "--cacert")),
        ("expired_cert", ("refused our client certificate",)),
        ("cert_from_other_ca", ("refused our client certificate",)),
        ("no_client_cert", ("refused our client certificate",)),
        ("server_name_mismatch", ("does not name this endpoint",)),
    ],
)
def test_tls_misconfiguration_fails_at_startup(tls_etcd, tmp_path, case, phrases):
    """A wrong CA, an expired or foreign client certificate, a key that is not the
    certificate's, no client certificate, or a server name that etcd's certificate does not
    carry: exit 1 at start-up with one clear line, job never run, no retry loop."""
    # etcd 3.4 refuses a client certificate after the handshake; grpc's C core then logs its
    # own lines ("Corruption detected", TSI_DATA_CORRUPTED) besides ours, as for a wrong key.
    grpc_noise = case in CLIENT_CERT_REFUSED and etcd_version()[:2] == (3, 4)
    c = tls_etcd.certs
    flags = {
        "wrong_ca": ["--cacert", c.other_ca, "--cert", c.client_cert, "--key", c.client_key],
        "expired_cert": ["--cacert", c.ca, "--cert", c.expired_cert, "--key", c.expired_key],
        "cert_from_other_ca": [
            "--cacert", c.ca, "--cert", c.stranger_cert, "--key", c.stranger_key,
        ],
        "no_client_cert": ["--cacert", c.ca],
        "server_name_mismatch": [
            "--cacert", c.ca, "--cert", c.client_cert, "--key", c.client_key,
            "--tls-server-name", "not-etcd.test",
        ],
    }[case]  # fmt: skip
    proc, marker, took = _lock(tmp_path, tls_etcd.endpoint, *map(str, flags), timeout=15)
    _assert_rejected(proc, marker, *phrases, grpc_errors=grpc_noise)
    assert took < 15, took


def test_server_name_verification_is_on_by_default(named_tls_etcd, tmp_path):
    """etcd's certificate names only etcd.test: connecting to 127.0.0.1 fails verification;
    --tls-server-name etcd.test verifies that name instead and works."""
    ca = str(named_tls_etcd.certs.ca)
    proc, marker, _ = _lock(tmp_path, named_tls_etcd.endpoint, "--cacert", ca)
    _assert_rejected(proc, marker, "does not name this endpoint", "--tls-server-name")
    ok = _lock(tmp_path, named_tls_etcd.endpoint, "--cacert", ca, "--tls-server-name", "etcd.test")
    _assert_ran(*ok[:2])


def test_a_key_that_is_not_the_certificates_is_one_line_and_exit_2(tls_etcd, tmp_path):
    """Said before any connection, so gRPC's TLS layer prints none of its own lines about it."""
    c = tls_etcd.certs
    flags = ["--cacert", c.ca, "--cert", c.client_cert, "--key", c.expired_key]
    proc, marker, _ = _lock(tmp_path, tls_etcd.endpoint, *map(str, flags))
    assert proc.returncode == 2, proc.stderr
    assert not marker.exists()
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert not any(_GRPC_LOG.match(line) for line in lines), lines
    expected = f"--key {c.expired_key} does not belong to --cert {c.client_cert}: give the key"
    assert lines[-1].startswith("Error: ") and expected in lines[-1], lines


def test_a_plain_client_at_a_tls_port_is_told_to_write_https(tls_etcd, tmp_path):
    endpoint = tls_etcd.endpoint.removeprefix("https://")
    argv = [sys.executable, "-m", "leaderjob", "status", "--election", "sec",
            "--endpoints", endpoint, "--rpc-timeout", "2s"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERJOB_")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "https://host:port" in proc.stderr, proc.stderr


def test_cert_without_key_is_a_usage_error(tls_etcd, tmp_path):
    c = tls_etcd.certs
    proc, marker, _ = _lock(
        tmp_path, tls_etcd.endpoint, "--cacert", str(c.ca), "--cert", str(c.client_cert)
    )
    assert proc.returncode == 2, proc.stderr
    assert "--cert and --key go together" in proc.stderr
    assert not marker.exists()


# -- RBAC --------------------------------------------------------------------------------------


def test_rbac_user_with_role_on_its_prefix_works(rbac_etcd, tmp_path):
    """A user whose role grants readwrite on its own prefix only: leads and runs the job, with
    the password from LEADERJOB_PASSWORD or from --password-file."""
    _assert_ran(
        *_lock(tmp_path, rbac_etcd.endpoint, "--user", USER, env={"LEADERJOB_PASSWORD": PASSWORD})[
            :2
        ]
    )
    pwfile = tmp_path / "password"
    pwfile.write_text(PASSWORD + "\n")
    _assert_ran(
        *_lock(tmp_path, rbac_etcd.endpoint, "--user", USER, "--password-file", str(pwfile))[:2]
    )


def test_rbac_wrong_password_fails_at_startup(rbac_etcd, tmp_path):
    proc, marker, took = _lock(
        tmp_path, rbac_etcd.endpoint, "--user", USER, env={"LEADERJOB_PASSWORD": "wrong"}
    )
    _assert_rejected(proc, marker, "authentication failed")
    assert took < 15


def test_rbac_prefix_outside_the_role_fails_at_startup(rbac_etcd, tmp_path):
    """The role covers /ljsec/ only: --prefix /elsewhere is refused by etcd (permission
    denied) at the first write, before any job."""
    proc, marker, took = _lock(
        tmp_path,
        rbac_etcd.endpoint,
        "--user",
        USER,
        prefix="/elsewhere",
        env={"LEADERJOB_PASSWORD": PASSWORD},
    )
    _assert_rejected(proc, marker, "permission denied")
    assert took < 15


def test_rbac_without_credentials_fails_at_startup(rbac_etcd, tmp_path):
    """No user at all against an etcd with auth enabled: refused, exit 1."""
    proc, marker, _ = _lock(tmp_path, rbac_etcd.endpoint)
    _assert_rejected(proc, marker)


def test_user_without_password_is_a_usage_error(rbac_etcd, tmp_path):
    proc, marker, _ = _lock(tmp_path, rbac_etcd.endpoint, "--user", USER)
    assert proc.returncode == 2, proc.stderr
    assert "--user needs a password" in proc.stderr
    assert not marker.exists()


def test_rbac_role_covers_its_prefix_and_not_a_sibling_that_shares_its_spelling(
    rbac_etcd, tmp_path
):
    """The role grants ``/ljsec/`` (with the slash): leaderjob keeps every key under
    ``<prefix>/``, so --prefix /ljsec runs, and --prefix /ljsecond (whose keys start with the
    same letters) is refused. This is what makes the test above a proof that leaderjob stays
    inside its prefix: a role granting more would let a stray key through."""
    _assert_ran(
        *_lock(tmp_path, rbac_etcd.endpoint, "--user", USER, env={"LEADERJOB_PASSWORD": PASSWORD})[
            :2
        ]
    )
    proc, marker, _ = _lock(
        tmp_path,
        rbac_etcd.endpoint,
        "--user",
        USER,
        prefix=f"{ALLOWED}ond",
        env={"LEADERJOB_PASSWORD": PASSWORD},
    )
    _assert_rejected(proc, marker, "permission denied")


# -- the command -------------------------------------------------------------------------------


def test_job_arguments_pass_through_unchanged_without_a_shell(etcd, prefix, tmp_path):
    """The command is executed without a shell: spaces, quotes, `$`, globs and `;` reach the
    job exactly as written; a shell runs only when the user writes one."""
    out = tmp_path / "argv.json"
    args = ["a b", "it's", '"double"', "$HOME", "${PATH}", "$(id)", "`id`", "*", ";", "", "x\ny"]
    script = f"import json, sys; open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))"
    proc, _, _ = _lock(
        tmp_path, etcd.endpoint, prefix=prefix, command=[sys.executable, "-c", script, *args]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text()) == args
    shell_out = tmp_path / "shell.txt"
    proc, _, _ = _lock(
        tmp_path,
        etcd.endpoint,
        prefix=prefix,
        command=["sh", "-c", f'printf %s "$0 $1" > {shell_out}', "$HOME", "b c"],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shell_out.read_text() == "$HOME b c"
