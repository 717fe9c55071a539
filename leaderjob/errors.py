"""The root of every exception leaderjob raises on purpose: ``except leaderjob.Error``.

    Error
    ├── LeadershipError        leadership could not be had or used (leaderjob.inprocess.leadership)
    │   ├── LeadershipUnavailable, LeadershipRejected
    │   └── LeadershipTimeout  (also a TimeoutError)
    ├── FencingError           a fence could not be checked (leaderjob.fencing)
    │   ├── StaleToken         a larger token was accepted before: this writer is deposed
    │   └── MarksFull
    └── StoreError             an etcd call failed (leaderjob.election.store)
        ├── StoreUnavailable   no answer: a write's outcome may be unknown
        └── StoreRejected      refused: credentials, permissions, TLS

Standard library only; nothing else here.
"""

from __future__ import annotations

__all__ = ["Error"]


class Error(Exception):
    """Any error leaderjob raises on purpose (``ValueError`` for bad options aside)."""
