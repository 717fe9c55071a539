"""What one confirming read says of one of our keys (:mod:`leaderjob.election.verdict`): pure.

S2 and S6 rest on it: a job leads only on a read that showed its key intact on the current
lease with nothing before it; a key that is gone or not ours any more ends the tenure; a key
before a leader's is believed (the store is right, not our memory).
"""

from __future__ import annotations

import pytest

from leaderjob.election.store import KeyInfo, Standing
from leaderjob.election.verdict import Verdict, judge

LEASE = 0x1234
OURS = KeyInfo("/e/1234", b"me", create_revision=40, mod_revision=40, lease_id=LEASE)
BEFORE = KeyInfo("/e/0999", b"them", create_revision=31, mod_revision=31, lease_id=0x999)


def _standing(own: KeyInfo | None, predecessor: KeyInfo | None = None) -> Standing:
    return Standing(own=own, predecessor=predecessor, revision=50)


@pytest.mark.parametrize("leading", [False, True])
def test_nobody_before_our_intact_key_is_first(leading):
    assert judge(_standing(OURS), 40, LEASE, leading=leading) is Verdict.FIRST


@pytest.mark.parametrize("leading", [False, True])
@pytest.mark.parametrize(
    "own",
    [
        None,  # deleted (by hand, or the lease expired on the server)
        KeyInfo(OURS.key, b"me", 41, 41, LEASE),  # deleted and made again: another token
        KeyInfo(OURS.key, b"me", 40, 40, 0x5678),  # on another lease
    ],
    ids=["gone", "another-revision", "another-lease"],
)
def test_a_key_gone_or_not_the_one_we_made_is_lost_s2(own, leading):
    assert judge(_standing(own), 40, LEASE, leading=leading) is Verdict.LOST
    assert judge(_standing(own, BEFORE), 40, LEASE, leading=leading) is Verdict.LOST


def test_someone_before_a_candidate_is_waited_for():
    assert judge(_standing(OURS, BEFORE), 40, LEASE, leading=False) is Verdict.WAIT


def test_someone_before_a_leader_is_believed_s2():
    assert judge(_standing(OURS, BEFORE), 40, LEASE, leading=True) is Verdict.TAMPERED
