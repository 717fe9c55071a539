"""Fencing at the resource: the checks that make a fencing token protect something.

A token (``LEADERJOB_FENCING_TOKEN``, the create revision of the leader's election key) protects a
resource only if the resource itself checks it, inside its own atomic write (S1). This package
holds those checks for the places jobs write:

* :mod:`leaderjob.fencing.etcd` — a write to etcd guarded by the leader's own key: the Txn
  ``If CreateRevision(leader_key) == token Then Put/Delete``. No high-water mark is needed: once
  the key is gone (or re-created, with a larger revision), the compare fails forever.
* :mod:`leaderjob.fencing.sql` — a fence row per protected resource, advanced in the caller's own
  transaction (PostgreSQL with psycopg 3, or any DB-API connection such as SQLite).
* :mod:`leaderjob.fencing.http` — WSGI and ASGI middleware that answers 409 to a request whose
  ``Leaderjob-Fencing-Token`` is below the high-water mark kept in a pluggable store.

Every check rejects a stale writer with one exception type, :class:`StaleToken` (exit status 3 from
``leaderjob fenced``), never with a silent no-op. What fencing does not give: atomicity of the job's
work. A job cut short leaves whatever it did before; jobs should be idempotent and keyed by slot.

Nothing here imports psycopg: the SQL fence takes the caller's connection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from leaderjob.errors import Error

__all__ = [
    "EXIT_STALE",
    "EXIT_UNKNOWN",
    "MAX_TOKEN",
    "TOKEN_ENV",
    "FencingError",
    "StaleToken",
    "parse_token",
    "token_from_env",
]

TOKEN_ENV = "LEADERJOB_FENCING_TOKEN"  # noqa: S105  # a variable name, not a secret
EXIT_STALE = 3  # what `leaderjob fenced` and the examples exit with when the token is stale
#: What `leaderjob fenced` exits with when the write's outcome is unknown: the request may have
#: reached etcd and been applied, but no answer came back (a timeout, a connection lost
#: mid-call). Distinct from 1 (etcd unreachable: certainly nothing written).
EXIT_UNKNOWN = 5
#: etcd revisions are signed 64-bit: no token is larger (and SQL's BIGINT holds every one).
MAX_TOKEN = 2**63 - 1


class FencingError(Error):
    """The fence could not be checked (bad token, unusable table name): nothing was written."""


class StaleToken(FencingError):
    """The resource has seen a larger token (or the leader's key is gone): this writer is deposed.

    ``high_water`` is the resource's mark when it is known (``None`` for etcd, where the guard is
    the leader key itself). The write was not applied, and must not be retried with this token.
    """

    def __init__(self, resource: str, token: int, high_water: int | None = None) -> None:
        self.resource = resource
        self.token = token
        self.high_water = high_water
        seen = "" if high_water is None else f" (high-water mark {high_water})"
        super().__init__(f"stale fencing token {token} for {resource}{seen}")


def parse_token(text: str, *, source: str = TOKEN_ENV) -> int:
    """A token as handed out by leaderjob: a positive integer. Raises :class:`FencingError`."""
    try:
        token = int(text.strip())
    except ValueError:
        raise FencingError(f"{source}: {text!r} is not an integer fencing token") from None
    if token <= 0:
        raise FencingError(f"{source}: fencing tokens are positive, got {token}")
    if token > MAX_TOKEN:
        raise FencingError(f"{source}: {token} is beyond etcd's revisions (at most 2^63 - 1)")
    return token


def token_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The run's token from ``LEADERJOB_FENCING_TOKEN``; :class:`FencingError` if unset or bad."""
    env = os.environ if environ is None else environ
    text = env.get(TOKEN_ENV)
    if text is None:
        raise FencingError(f"{TOKEN_ENV} is not set: run this under leaderjob")
    return parse_token(text)
