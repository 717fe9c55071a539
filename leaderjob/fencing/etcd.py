"""Writes to etcd guarded by the leader's own key: etcd's ``IsOwner`` compare in our own Txn.

    If CreateRevision(leader_key) == token Then Put/Delete …

The token *is* the create revision of the leader's key (S2), so the compare holds exactly while
that key exists as the one this leader created. When the lease expires or is revoked the key is
deleted, and a re-created key has a larger revision: a deposed leader's write fails, forever,
without any high-water mark (S1). The write and the check are one Txn, so no successor can slip
in between them.

A job run by leaderjob finds what it needs in its environment: ``LEADERJOB_LEADER_KEY``,
``LEADERJOB_FENCING_TOKEN`` and ``LEADERJOB_ENDPOINTS`` (never credentials: a job on an etcd with
authentication or TLS brings its own, with the usual connection options). Shell jobs use
``leaderjob fenced put KEY VALUE`` / ``leaderjob fenced delete KEY``.

Built on the storage port (:meth:`leaderjob.election.store.Store.guarded_put`); the only module
that talks to etcd stays ``leaderjob/election/etcd.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from leaderjob.election.store import Store, StoreError, StoreUnavailable
from leaderjob.fencing import FencingError, StaleToken, parse_token, token_from_env

__all__ = [
    "ENDPOINTS_ENV",
    "LEADER_KEY_ENV",
    "EtcdFence",
    "LeaderTokens",
    "outcome_unknown",
    "refuse_own_keys",
]

LEADER_KEY_ENV = "LEADERJOB_LEADER_KEY"
ENDPOINTS_ENV = "LEADERJOB_ENDPOINTS"


def refuse_own_keys(keys: Sequence[str], own: str) -> None:
    """:class:`FencingError` for a key under ``own`` (an election's own keys): a write there
    breaks the election — a put on a candidate key drops its lease, and the key then outlives
    every revoke, so no candidate can ever lead again."""
    for key in keys:
        if key.startswith(own) or key == own.rstrip("/"):
            raise FencingError(
                f"{key}: inside the election's own keys ({own}); a write there breaks the "
                "election (a put on the leader key drops its lease). Write outside it; "
                "to advertise a value on the leader key use Leadership.proclaim()"
            )


@dataclass(frozen=True)
class EtcdFence:
    """Guarded writes for the leader whose election key is ``leader_key`` with ``token``."""

    store: Store
    leader_key: str
    token: int
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.leader_key:
            raise FencingError("the leader key is empty")
        parse_token(str(self.token), source="token")

    @classmethod
    def from_env(
        cls, store: Store, environ: Mapping[str, str] | None = None, *, timeout: float = 5.0
    ) -> EtcdFence:
        """The fence of the run this process belongs to (``LEADERJOB_LEADER_KEY`` and
        ``LEADERJOB_FENCING_TOKEN``); :class:`FencingError` when they are missing."""
        env = os.environ if environ is None else environ
        key = env.get(LEADER_KEY_ENV)
        if not key:
            raise FencingError(f"{LEADER_KEY_ENV} is not set: run this under leaderjob")
        return cls(store, key, token_from_env(env), timeout)

    @property
    def candidate_keys(self) -> str:
        """The election's candidate keys (the leader key's directory, ``<prefix>/<election>/
        leader/``): no fenced write may touch them."""
        return self.leader_key.rsplit("/", 1)[0] + "/"

    def apply(self, puts: Sequence[tuple[str, bytes]] = (), deletes: Sequence[str] = ()) -> None:
        """Apply every put and delete in one Txn, or none: :class:`StaleToken` when the leader
        key is gone or has another create revision. Store errors pass through unchanged.
        :class:`FencingError` (nothing sent) for a key among the election's candidates."""
        refuse_own_keys([k for k, _ in puts] + list(deletes), self.candidate_keys)
        applied = self.store.guarded_put(
            self.leader_key, self.token, puts, deletes=deletes, timeout=self.timeout
        )
        if not applied:
            raise StaleToken(self.leader_key, self.token)

    def put(self, key: str, value: bytes | str) -> None:
        data = value.encode() if isinstance(value, str) else value
        self.apply(puts=[(key, data)])

    def delete(self, key: str) -> None:
        """Delete ``key`` (deleting a key that does not exist is not an error)."""
        self.apply(deletes=[key])


#: gRPC's words for a call that never got a connection: it sends a request only on a connection
#: whose handshake finished, so nothing was written. Every other unavailability of a write (a
#: deadline exceeded, above all) leaves its outcome unknown: etcd may have applied the Txn.
_NOT_SENT = ("failed to connect to all addresses",)


def outcome_unknown(exc: StoreError) -> bool:
    """True when a failed write may nevertheless have been applied by etcd."""
    if not isinstance(exc, StoreUnavailable):
        return False  # refused (credentials, permissions, TLS): etcd applied nothing
    detail = exc.detail.lower()
    return not any(words in detail for words in _NOT_SENT)


@dataclass(frozen=True)
class LeaderTokens:
    """``verify`` for the HTTP middleware: True only for the token of the election's leader
    now — the create revision of the live candidate key with the lowest one (a waiting
    candidate's larger token would lock the leader out). One linearizable read per call; an
    unreachable etcd verifies nothing."""

    store: Store
    prefix: str  # the daemon's --prefix, e.g. /leaderjob
    election: str
    timeout: float = 2.0

    def __call__(self, token: int) -> bool:
        from leaderjob.config import election_prefix

        try:
            keys = self.store.candidates(
                election_prefix(self.prefix, self.election), timeout=self.timeout
            )
        except StoreError:
            return False
        return bool(keys) and min(k.create_revision for k in keys) == token
