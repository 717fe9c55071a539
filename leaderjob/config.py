"""Frozen settings and the timing budget.

``Timing.validate()`` returns every problem at once, each saying what to change and why. The
budget is the local-deadline rule of docs/safety.md:

* ``D = send_time(last answered keepalive) + ttl·(1 − 2ρ) − margin`` is the local deadline: the job
  is dead by ``D``, and ``D`` is earlier than the moment etcd can expire the lease.
* ``2 × renew_interval ≤ renew_deadline``: a keepalive lost at its timeout (half an interval)
  still leaves room for a retry before giving up.
* ``renew_deadline + grace + margin < ttl·(1 − 2ρ)``: a leader that gives up renewing at
  ``renew_deadline`` can still stop its job (SIGTERM, ``grace``, SIGKILL) before ``D``.

The defaults spend the TTL like this: keepalive every ttl/3; keep trying until ≈ 0.85·ttl after the
last answered keepalive; grace ttl/10; margin ttl/25. Even in the worst phase (just before a
keepalive) a network fault shorter than one renew interval leaves time for a retry, and a freeze
of up to half the TTL ends before ``D − grace``, when a thawed leader renews at once (the renew
deadline counts failed renewals only): neither changes anything (docs/safety.md L4).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from leaderjob.units import format_duration

#: etcd's minimum lease TTL at default settings; shorter requests are silently raised.
MIN_TTL = 2
#: etcd's maximum lease TTL (``MaxLeaseTTL``); a grant above it is refused, every time.
MAX_TTL = 9_000_000_000
#: Bound on the relative drift between our monotonic clock and the etcd leader's.
CLOCK_DRIFT = 1e-3
#: The default lease TTL, in seconds (docs/configuration.md says why this value).
DEFAULT_TTL = 10
#: Key prefix under which all elections live unless told otherwise.
DEFAULT_PREFIX = "/leaderjob"


@dataclass(frozen=True)
class Timing:
    """Lease and supervision timings, in seconds. Build with :meth:`from_ttl` for the defaults."""

    ttl: float
    renew_interval: float
    renew_deadline: float
    grace: float
    margin: float

    @classmethod
    def from_ttl(
        cls,
        ttl: float,
        *,
        renew_interval: float | None = None,
        renew_deadline: float | None = None,
        grace: float | None = None,
        margin: float | None = None,
    ) -> Timing:
        """Defaults are fractions of the TTL, so ``--ttl 3s`` alone is a valid configuration.

        renew interval ttl/3 (keepalive cadence), grace ttl/10 (SIGTERM → SIGKILL), margin ttl/25
        (scheduling slack before the deadline), and the renew deadline (give up renewing) as long
        as the budget allows: ttl·(1 − 2ρ) − grace − margin − ttl/100, ≈ 0.85·ttl. An explicit
        ``grace`` or ``margin`` shrinks the default renew deadline to fit.
        """
        grace = ttl / 10 if grace is None else grace
        margin = ttl / 25 if margin is None else margin
        if renew_deadline is None:
            # The longest renew deadline the budget allows (≈ 0.85·ttl with default grace and
            # margin). If an explicit grace leaves no room, keep 0.85·ttl so that validate()
            # blames the flag the user set.
            room = ttl * (1 - 2 * CLOCK_DRIFT) - grace - margin - ttl / 100
            ri = ttl / 3 if renew_interval is None else renew_interval
            renew_deadline = room if room > ri else 0.85 * ttl
        return cls(
            ttl=ttl,
            renew_interval=ttl / 3 if renew_interval is None else renew_interval,
            renew_deadline=renew_deadline,
            grace=grace,
            margin=margin,
        )

    @property
    def usable_ttl(self) -> float:
        """The part of the TTL our clock can rely on, after the drift bound."""
        return self.ttl * (1 - 2 * CLOCK_DRIFT)

    def deadline_after(self, sent_at: float, ttl: float | None = None) -> float:
        """The local deadline ``D`` for a keepalive (or grant) sent at monotonic ``sent_at`` and
        answered with ``ttl`` (default: the configured TTL)."""
        usable = self.usable_ttl if ttl is None else ttl * (1 - 2 * CLOCK_DRIFT)
        return sent_at + usable - self.margin

    def validate(self) -> list[str]:
        errors: list[str] = []
        values = (
            ("--ttl", self.ttl),
            ("--renew-interval", self.renew_interval),
            ("--renew-deadline", self.renew_deadline),
            ("--grace", self.grace),
            ("--margin", self.margin),
        )
        for name, value in values:
            if not math.isfinite(value) or value <= 0:
                errors.append(f"{name} must be a positive duration, got {value!r}")
        if errors:
            return errors  # nothing below can be judged with a missing or infinite value
        ttl = format_duration(self.ttl)
        if self.ttl != int(self.ttl):
            errors.append(f"--ttl {ttl}: etcd leases are granted in whole seconds; use e.g. 3s")
        if self.ttl > MAX_TTL:
            errors.append(
                f"--ttl {ttl} is above etcd's maximum lease TTL of {MAX_TTL}s (etcd would refuse "
                "every grant); use e.g. --ttl 10s"
            )
        if self.ttl < MIN_TTL:
            errors.append(
                f"--ttl {ttl} is below etcd's minimum lease TTL of {MIN_TTL}s "
                "(etcd would silently raise it); use --ttl 2s or more"
            )
        if 2 * self.renew_interval > self.renew_deadline:
            errors.append(
                f"--renew-interval {format_duration(self.renew_interval)} must be at most half of "
                f"--renew-deadline {format_duration(self.renew_deadline)}: a leader needs room to "
                "retry a failed keepalive before it gives up (an explicit --grace or --margin "
                "shortens the default renew deadline: lower them, or raise --ttl)"
            )
        budget = self.renew_deadline + self.grace + self.margin
        if budget >= self.usable_ttl:
            spare = self.usable_ttl - self.renew_deadline - self.margin
            hint = (
                f"lower --grace to under {format_duration(spare)}"
                if spare > 0
                else "lower --renew-deadline"
            )
            errors.append(
                f"renew deadline + grace + margin = {format_duration(budget)} must be less than "
                f"--ttl {ttl} (less clock drift, {format_duration(self.usable_ttl)}): the job must "
                f"be dead before another replica can take the lease; {hint}, or raise --ttl"
            )
        return errors


@dataclass(frozen=True)
class Connection:
    """How to reach etcd. Secrets never appear in ``repr`` (and so never in logs)."""

    endpoints: tuple[str, ...] = ("127.0.0.1:2379",)
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Per-RPC timeout for calls that are not bounded by a tighter deadline.
    rpc_timeout: float = 5.0
    #: Server name to verify in the etcd certificate, if it differs from the endpoint host.
    server_name: str | None = None

    def validate(self) -> list[str]:
        errors: list[str] = []
        if not self.endpoints:
            errors.append("--endpoints is empty; give at least one host:port")
        for ep in self.endpoints:
            host, sep, port = ep.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                errors.append(f"--endpoints: {ep!r} is not host:port (e.g. 127.0.0.1:2379)")
        if (self.cert is None) != (self.key is None):
            errors.append("--cert and --key go together: give both for client-certificate auth")
        for flag, path in (("--cacert", self.cacert), ("--cert", self.cert), ("--key", self.key)):
            if path is not None and not os.access(path, os.R_OK):
                errors.append(f"{flag} {path}: file is missing or unreadable")
        if (self.user is None) != (self.password is None):
            errors.append(
                "--user needs a password (LEADERJOB_PASSWORD or --password-file), and a password "
                "needs --user"
            )
        return errors


#: Variables that carry etcd credentials (or point at them). A job never needs them, so they are
#: taken out of its environment; see docs/security.md for what a job under the same user can
#: still read.
SECRET_ENV_VARS = frozenset(
    {
        "LEADERJOB_PASSWORD",
        "LEADERJOB_PASSWORD_FILE",
        "LEADERJOB_USER",
        "LEADERJOB_KEY",
        "LEADERJOB_CERT",
    }
)


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment minus every credential-bearing variable."""
    return {k: v for k, v in environ.items() if k not in SECRET_ENV_VARS}


#: Where a system CA bundle usually lives, after what the ssl module reports ($SSL_CERT_FILE, the
#: OpenSSL default): Debian/Ubuntu/Alpine, RHEL/Fedora, macOS/BSD.
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def system_ca_bundle() -> str | None:
    """The system's CA bundle file, or None if none is found."""
    import ssl

    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile, *SYSTEM_CA_BUNDLES):
        if path and os.path.isfile(path):
            return path
    return None


@dataclass(frozen=True)
class Endpoints:
    """``--endpoints`` parsed: ``host:port`` list and whether the scheme asked for TLS.

    ``https://`` means TLS (verified against ``--cacert``, else the system CA bundle); ``http://``
    means plain text; a bare ``host:port`` is plain unless ``--cacert``/``--cert`` is given (as
    before schemes were read). One list is one cluster, so it may not mix the two.
    """

    hosts: tuple[str, ...]
    tls: bool | None  # True: https://, False: http://, None: no scheme given
    errors: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Endpoints:
        hosts: list[str] = []
        schemes: set[str] = set()
        errors: list[str] = []
        for raw in (e.strip() for e in text.split(",")):
            if not raw:
                continue
            scheme, sep, rest = raw.partition("://")
            if not sep:
                schemes.add("")
                hosts.append(raw)
                continue
            scheme = scheme.lower()
            # A second scheme is no part of a host: `https://http://a:2379` is a typo, not the
            # host `http://a` (the host:port check splits at the last colon only).
            if scheme not in ("http", "https") or "://" in rest:
                errors.append(f"--endpoints: {raw!r}: use https:// (TLS), http:// or host:port")
            schemes.add(scheme)
            hosts.append(rest.rstrip("/"))
        if "https" in schemes and len(schemes) > 1:
            errors.append(
                "--endpoints mixes https:// with plain endpoints: one cluster speaks TLS or not; "
                "write https:// for every member, or for none"
            )
        tls = True if schemes == {"https"} else False if schemes == {"http"} else None
        return cls(tuple(hosts), tls, tuple(errors))


def default_identity() -> str:
    """``$POD_NAME`` in Kubernetes, else ``hostname-pid``."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def election_prefix(prefix: str, election: str) -> str:
    """Where the candidate keys live: ``etcdctl elect -l <this>`` observes our leader."""
    return f"{prefix.rstrip('/')}/{election}/leader"


def validate_election_name(election: str) -> list[str]:
    if not election:
        return ["--election is required: name the job's election, e.g. --election cleanup"]
    bad = [c for c in election if not (c.isalnum() or c in "-_.")]
    if bad:
        return [
            f"--election {election!r}: use letters, digits, '-', '_' and '.' only "
            f"(found {''.join(sorted(set(bad)))!r})"
        ]
    return []


#: The shortest --starting-deadline: a slot's claim and start take tens of milliseconds, more on
#: a loaded machine; a shorter deadline would skip most slots as late.
MIN_STARTING_DEADLINE = 1.0


def validate_slot_timing(
    interval: float, jitter: float, starting_deadline: float | None
) -> list[str]:
    """Options that would lose slots silently, given the schedule's ``interval`` (seconds)."""
    errors = []
    if jitter >= interval:
        errors.append(
            f"--jitter {format_duration(jitter)} must be shorter than the schedule's interval "
            f"({format_duration(interval)}): a slot delayed past the next one holds it up until "
            "it is too late to run"
        )
    if starting_deadline is not None and starting_deadline < MIN_STARTING_DEADLINE:
        errors.append(
            f"--starting-deadline {format_duration(starting_deadline)} is too short: give at "
            "least 1s (starting a slot takes tens of milliseconds; a shorter deadline skips "
            "most slots as late)"
        )
    return errors


def join_errors(errors: Sequence[str]) -> str:
    return "; ".join(errors)
