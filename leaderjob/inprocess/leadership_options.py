"""The options of in-process leadership, read and checked like ``leaderjob run``'s, and its errors.

Owns: turning :class:`~leaderjob.inprocess.leadership.Leadership`'s keyword options into the
daemon's frozen :class:`~leaderjob.config.Timing` and :class:`~leaderjob.config.Connection`, with
the CLI's one-line messages (as :class:`ValueError`), and the exceptions the handle raises. No I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

from leaderjob.config import (
    Connection,
    Endpoints,
    Timing,
    join_errors,
    system_ca_bundle,
)
from leaderjob.errors import Error

__all__ = [
    "DEFAULT",
    "Default",
    "LeadershipError",
    "LeadershipRejected",
    "LeadershipTimeout",
    "LeadershipUnavailable",
    "build_connection",
    "build_timing",
]


class LeadershipError(Error):
    """Leadership could not be had or used (never led, etcd unreachable or refusing us)."""


class LeadershipUnavailable(LeadershipError):
    """etcd could not be reached for ``etcd_timeout`` seconds while waiting to lead."""


class LeadershipRejected(LeadershipError):
    """etcd refused us (credentials, permissions, TLS): retrying will not help."""


class LeadershipTimeout(LeadershipError, TimeoutError):
    """Another candidate led for the whole ``timeout``."""


class Default(enum.Enum):
    """The constructor's ``timeout``, when ``acquire`` is given none."""

    TIMEOUT = 0


DEFAULT = Default.TIMEOUT


def build_timing(
    ttl: float,
    *,
    renew_interval: float | None = None,
    renew_deadline: float | None = None,
    grace: float | None = None,
    margin: float | None = None,
) -> Timing:
    """The timing budget from the same options as ``leaderjob run``; :class:`ValueError` with the
    CLI's one-line message when it cannot be met."""
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"--ttl must be a positive duration, e.g. 15s (got {ttl:g})")
    timing = Timing.from_ttl(
        ttl,
        renew_interval=renew_interval,
        renew_deadline=renew_deadline,
        grace=grace,
        margin=margin,
    )
    errors = timing.validate()
    if errors:
        raise ValueError(join_errors(errors))
    return timing


def build_connection(
    endpoints: Sequence[str] | str,
    *,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    user: str | None = None,
    password: str | None = None,
    tls_server_name: str | None = None,
    rpc_timeout: float = 5.0,
) -> Connection:
    """How to reach etcd, read like ``--endpoints`` and the TLS and auth options;
    :class:`ValueError` with the CLI's one-line message when something is wrong."""
    text = endpoints if isinstance(endpoints, str) else ",".join(endpoints)
    parsed = Endpoints.parse(text)
    errors = list(parsed.errors)
    if parsed.tls is False and (cacert or cert):
        errors.append(
            "--endpoints http:// means plain text, but --cacert/--cert ask for TLS: "
            "write https:// (or drop the scheme)"
        )
    if parsed.tls and cacert is None:
        cacert = system_ca_bundle()
        if cacert is None:
            errors.append("--endpoints https://: no system CA bundle found; give --cacert FILE")
    if not (math.isfinite(rpc_timeout) and rpc_timeout > 0):
        errors.append(f"--rpc-timeout must be a positive duration, got {rpc_timeout!r}")
    if errors:
        raise ValueError(join_errors(errors))
    conn = Connection(
        endpoints=parsed.hosts,
        cacert=cacert,
        cert=cert,
        key=key,
        user=user,
        password=password,
        rpc_timeout=rpc_timeout,
        server_name=tls_server_name,
    )
    errors = conn.validate()
    if errors:
        raise ValueError(join_errors(errors))
    return conn
