"""What one confirming read says of one of our keys: pure, from the read and what we hold.

The read (:class:`~leaderjob.election.store.Standing`) shows our key and the live key created
just before it, if any. Against the key we made on this lease (its create revision, the lease
it is attached to) and whether the job leads, it says one of four things (docs/safety.md S2,
S6: a leader is one whose key a read showed intact, with nothing before it):

- ``LOST``: our key is gone, or it is not the one we made on this lease (another create
  revision, another lease): the job's tenure ends and it joins its queue again, with a new key;
- ``TAMPERED``: a live key sits before a leader's key, which no election step makes (someone
  wrote keys by hand): the store is right, not our memory, so the job stops leading;
- ``WAIT``: someone is before us in the queue: watch that key (and our own);
- ``FIRST``: nobody is before us: a candidate leads, a leader is confirmed.

Every verdict but ``LOST`` also confirms the lease: the read found a key of ours intact on it.
"""

from __future__ import annotations

from enum import Enum

from leaderjob.election.store import Standing


class Verdict(Enum):
    LOST = "lost"
    TAMPERED = "tampered"
    WAIT = "wait"
    FIRST = "first"


def judge(standing: Standing, revision: int, lease_id: int, *, leading: bool) -> Verdict:
    """What ``standing`` says of our key made at create revision ``revision`` on lease
    ``lease_id``; ``leading``: the job leads now."""
    own = standing.own
    if own is None or own.create_revision != revision or own.lease_id != lease_id:
        return Verdict.LOST
    if standing.predecessor is not None:
        return Verdict.TAMPERED if leading else Verdict.WAIT
    return Verdict.FIRST
