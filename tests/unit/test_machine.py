"""The pure election machine against docs/safety.md: each test names the rule it defends.

Timing throughout: ttl 3 s → renew interval 1 s, grace 0.3 s, margin 0.12 s and renew deadline
min(0.85·ttl, ttl·(1 − 2ρ) − grace − margin − ttl/100) = 2.544 s, so a lease last confirmed by a
keepalive sent at ``s`` has ``D = s + 2.994 − 0.12 = s + 2.874``, gives up renewing at
``s + 2.544`` and stops its job at ``D − grace = s + 2.574``. A leader whose last confirm read was
sent at ``c`` steps down at ``c + 2.544``.
"""

from __future__ import annotations

import pytest

from leaderjob.clock import FakeClock
from leaderjob.config import CLOCK_DRIFT, Timing
from leaderjob.election.machine import Machine, Phase, Reason

TIMING = Timing.from_ttl(3)
GIVE_UP = TIMING.renew_deadline  # 2.544 s after the last answered keepalive (or grant)
LEASE = 0x1EA5E
TOKEN = 42


def d_after(sent_at: float, ttl: float = 3) -> float:
    return sent_at + ttl * (1 - 2 * CLOCK_DRIFT) - TIMING.margin


def campaigning(granted_at: float = 0.0) -> Machine:
    m = Machine(TIMING)
    m.granted(LEASE, 3, sent_at=granted_at)
    return m


def test_timing_is_what_the_tests_assume() -> None:
    assert (TIMING.renew_interval, TIMING.grace, TIMING.margin) == pytest.approx((1, 0.3, 0.12))
    assert TIMING.renew_deadline == pytest.approx(2.544)
    assert d_after(0.0) == pytest.approx(2.874)


def leading(granted_at: float = 0.0) -> Machine:
    m = campaigning(granted_at)
    t = m.won(TOKEN, now=granted_at + 0.1)
    assert t is not None
    assert t.event == "election.acquired"
    return m


# --- §2: the local deadline -----------------------------------------------------------------------


def test_s6_deadline_counts_from_keepalive_send_time_not_reply_time() -> None:
    m = leading(granted_at=9.0)
    assert m.renewed(sent_at=10.0, ttl=3, now=11.0) is None
    assert m.deadline == pytest.approx(10 + 3 * (1 - 2 * CLOCK_DRIFT) - 0.12)
    assert m.deadline == pytest.approx(TIMING.deadline_after(10.0))


def test_s6_deadline_counts_from_grant_send_time() -> None:
    assert campaigning(granted_at=5.0).deadline == pytest.approx(d_after(5.0))


def test_s6_deadline_uses_the_smaller_of_asked_and_granted_ttl() -> None:
    m = Machine(TIMING)
    m.granted(LEASE, 2, sent_at=0.0)  # etcd granted less than asked
    assert m.deadline == pytest.approx(d_after(0.0, ttl=2))
    m = Machine(TIMING)
    m.granted(LEASE, 10, sent_at=0.0)  # or more: never trust more than we asked for
    assert m.deadline == pytest.approx(d_after(0.0))


def test_s6_an_older_reply_never_moves_the_deadline_back() -> None:
    m = leading()
    m.renewed(sent_at=1.0, ttl=3, now=1.2)
    m.renewed(sent_at=0.9, ttl=3, now=1.3)  # a reordered, older answer
    assert m.deadline == pytest.approx(d_after(1.0))


def test_s6_is_leader_ends_at_the_deadline() -> None:
    m = leading()
    d = d_after(0.0)
    assert m.is_leader(d - 0.001)
    assert not m.is_leader(d)


# --- §4: TTL ≤ 0 means the lease is gone ------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1])
def test_ttl_zero_answer_abandons_a_campaigning_lease(ttl: int) -> None:
    t = campaigning().renewed(sent_at=1.0, ttl=ttl, now=1.1)
    assert t is not None
    assert (t.event, t.reason, t.lease_id) == ("lease.lost", Reason.LEASE_EXPIRED, LEASE)


def test_ttl_zero_answer_ends_leadership() -> None:
    m = leading()
    t = m.renewed(sent_at=1.0, ttl=0, now=1.1)
    assert t is not None
    assert (t.event, t.reason, t.token) == ("election.lost", Reason.LEASE_EXPIRED, TOKEN)
    assert t.lost_leadership
    assert (m.phase, m.lease, m.token) == (Phase.IDLE, None, None)


# --- §2: giving up renewing, and freezes ------------------------------------------------------


def test_renewals_failing_past_renew_deadline_end_leadership() -> None:
    m = leading()
    for now in (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5):  # a retry every renew_interval/4
        assert m.renew_failed(now=now) is None
    t = m.renew_failed(now=GIVE_UP)  # last success was the grant at 0; renew deadline 2.544 s
    assert t is not None
    assert (t.event, t.reason) == ("election.lost", Reason.RENEW_DEADLINE)


def test_l4_thawed_leader_tries_once_before_applying_the_renew_deadline() -> None:
    """A process that slept through the renew deadline made no failed attempt: it may renew
    once more while D − grace is ahead; the hard limits still apply."""
    m = leading()
    assert m.check(now=GIVE_UP + 0.01) is None  # no attempt failed: not given up yet
    assert m.renew_due(GIVE_UP + 0.01)
    assert m.renewed(sent_at=GIVE_UP + 0.01, ttl=3, now=GIVE_UP + 0.02) is None
    assert m.is_leader(GIVE_UP + 0.02)


def test_renew_deadline_applies_once_an_attempt_failed() -> None:
    m = leading()
    assert m.renew_failed(now=GIVE_UP - 0.1) is None
    t = m.check(now=GIVE_UP)
    assert t is not None
    assert t.reason is Reason.RENEW_DEADLINE


def test_s6_frozen_process_reports_deadline_passed_before_anything_else() -> None:
    m = leading()
    t = m.check(now=d_after(0.0))  # the renew deadline passed too: the deadline wins
    assert t is not None
    assert (t.event, t.reason) == ("election.lost", Reason.DEADLINE_PASSED)


def test_s6_late_reply_whose_own_deadline_passed_does_not_revive() -> None:
    m = leading()
    t = m.renewed(sent_at=0.5, ttl=3, now=d_after(0.5) + 0.1)  # frozen mid-call
    assert t is not None
    assert (t.event, t.reason) == ("election.lost", Reason.DEADLINE_PASSED)
    assert not m.is_leader(d_after(0.5) + 0.1)


def test_s6_reply_arriving_after_the_deadline_does_not_revive() -> None:
    m = leading()
    old_d = d_after(0.0)  # 2.874
    t = m.renewed(sent_at=1.4, ttl=3, now=old_d + 0.1)  # sent in time, frozen past D
    assert t is not None
    assert t.reason is Reason.DEADLINE_PASSED
    assert m.phase is Phase.IDLE


# --- S5: when work may start ---------------------------------------------------------------


def test_s5_can_start_work_only_while_leading() -> None:
    assert not campaigning().can_start_work(now=0.1)
    assert leading().can_start_work(now=0.2)
    assert not Machine(TIMING).can_start_work(now=0.0)


def test_s5_can_start_work_false_with_less_than_grace_left() -> None:
    m = leading()
    m.renewed(sent_at=1.0, ttl=3, now=1.0)
    d = d_after(1.0)
    assert not m.can_start_work(now=d - TIMING.grace + 0.01)
    assert not m.can_start_work(now=d - TIMING.grace)


def test_s5_can_start_work_false_once_renewal_is_overdue() -> None:
    m = leading()
    assert TIMING.renew_deadline < d_after(0.0) - TIMING.grace  # give up before D − grace
    assert m.can_start_work(now=GIVE_UP - 0.01)
    assert not m.can_start_work(now=GIVE_UP)


def test_s5_can_start_work_needs_the_minimum_window() -> None:
    m = leading()
    assert m.can_start_work(now=1.0, min_window=1.5)  # 1.544 s left before giving up
    assert not m.can_start_work(now=1.0, min_window=1.55)


def test_s5_won_is_refused_when_the_deadline_is_too_close() -> None:
    m = campaigning()
    t = m.won(TOKEN, now=GIVE_UP)
    assert t is None or t.event != "election.acquired"
    assert m.phase is not Phase.LEADING
    assert m.token is None


def test_s5_won_just_in_time_is_accepted() -> None:
    m = campaigning()
    now = GIVE_UP - 0.01
    t = m.won(TOKEN, now=now)
    assert t is not None
    assert (t.event, t.token, m.token, m.leading_since) == ("election.acquired", TOKEN, TOKEN, now)


def test_s5_won_only_counts_while_campaigning() -> None:
    assert Machine(TIMING).won(TOKEN, now=0.0) is None
    m = leading()
    assert m.won(TOKEN + 1, now=0.2) is None
    assert m.token == TOKEN


# --- L4: faults shorter than one renewal interval change nothing ------------------------------


def test_l4_one_failed_keepalive_then_success_changes_nothing() -> None:
    m = leading()
    assert m.renew_failed(now=1.0) is None
    assert m.renew_due(1.0) is False
    assert m.renew_due(1.25)  # retried soon, not a whole interval later
    assert m.renewed(sent_at=1.25, ttl=3, now=1.3) is None
    assert (m.phase, m.token) == (Phase.LEADING, TOKEN)
    assert m.deadline == pytest.approx(d_after(1.25))
    assert m.can_start_work(now=1.3)


def test_l4_steady_renewals_keep_leadership_indefinitely() -> None:
    m = leading()
    for i in range(1, 100):
        now = float(i)
        assert m.renew_due(now)
        assert m.renewed(sent_at=now, ttl=3, now=now + 0.05) is None
        m.confirmed(sent_at=now + 0.05)  # the elector's confirm read after each renewal
    assert m.is_leader(99.1)
    assert m.check(99.1) is None
    assert m.token == TOKEN


@pytest.mark.parametrize("ttl", [3, 15])
def test_l4_half_ttl_freeze_in_the_worst_phase_changes_nothing(ttl: int) -> None:
    timing = Timing.from_ttl(ttl)
    clock = FakeClock()
    m = Machine(timing)
    m.granted(LEASE, ttl, sent_at=clock.monotonic())
    assert m.won(TOKEN, now=clock.monotonic()) is not None
    clock.advance(timing.renew_interval)
    last = clock.monotonic()  # L: the last keepalive before the freeze, and its confirm read
    assert m.renewed(sent_at=last, ttl=ttl, now=last) is None
    m.confirmed(sent_at=last)
    eps = ttl / 1000
    clock.advance(ttl / 3 - eps)  # frozen just before the next keepalive is due ...
    assert not m.renew_due(clock.monotonic())
    assert m.check(clock.monotonic()) is None
    clock.advance(ttl / 2 + eps)  # ... for half the TTL
    now = clock.monotonic()
    assert now == pytest.approx(last + ttl / 3 + ttl / 2)
    give_up_at, term_at = m.give_up_at, m.term_at
    assert give_up_at is not None
    assert term_at is not None
    assert now < give_up_at  # still renewing, ...
    assert now < term_at  # ... and the running job is not told to stop
    assert m.check(now) is None  # the first thing after the freeze: nothing to do
    assert m.renew_due(now)
    assert m.renewed(sent_at=now, ttl=ttl, now=now + 0.01) is None
    m.confirmed(sent_at=now + 0.01)
    assert (m.phase, m.token) == (Phase.LEADING, TOKEN)
    assert m.deadline == pytest.approx(timing.deadline_after(now))
    assert m.can_start_work(now + 0.02)


# --- §4: keepalives alone are not trusted: a leader must keep confirming ----------------------


def test_leader_that_cannot_confirm_steps_down_after_renew_deadline() -> None:
    m = leading()  # the winning read at 0.1 is the first confirm
    for now in (1.0, 2.0):
        assert m.renewed(sent_at=now, ttl=3, now=now + 0.05) is None  # keepalives still pass
        m.confirm_failed()  # ... but every confirm read fails
    assert m.check(now=0.1 + GIVE_UP - 0.001) is None
    t = m.check(now=0.1 + GIVE_UP)
    assert t is not None
    assert (t.event, t.reason, t.token) == ("election.lost", Reason.UNCONFIRMED, TOKEN)
    assert (m.phase, m.lease) == (Phase.IDLE, None)


def test_confirm_counts_from_read_send_time_and_never_moves_back() -> None:
    m = leading()
    m.renewed(sent_at=1.0, ttl=3, now=1.05)
    m.confirmed(sent_at=1.5)
    m.confirmed(sent_at=1.2)  # a reordered, older read
    m.renewed(sent_at=2.0, ttl=3, now=2.05)
    m.renewed(sent_at=3.0, ttl=3, now=3.05)
    m.confirm_failed()
    assert m.check(now=1.5 + GIVE_UP - 0.001) is None
    t = m.check(now=1.5 + GIVE_UP)
    assert t is not None
    assert t.reason is Reason.UNCONFIRMED


def test_l4_a_confirm_slept_through_is_not_a_failed_confirm() -> None:
    """A frozen leader's confirm is overdue, but no read failed: it reads again on thaw."""
    m = leading()
    m.renewed(sent_at=GIVE_UP, ttl=3, now=GIVE_UP + 0.01)
    assert m.check(now=GIVE_UP + 0.2) is None


def test_campaigning_needs_no_confirm() -> None:
    m = campaigning()
    for now in (1.0, 2.0, 3.0):
        assert m.renewed(sent_at=now, ttl=3, now=now + 0.05) is None
    assert m.check(now=3.5) is None
    assert m.phase is Phase.CAMPAIGNING


# --- §2 / L5: an abandoned lease is dead for good -----------------------------------------


def test_l5_abandoned_lease_is_never_renewed_again() -> None:
    m = leading()
    m.renew_failed(now=GIVE_UP)
    assert m.lease is None
    assert not m.renew_due(GIVE_UP)
    assert not m.renew_due(1000.0)
    assert m.next_wakeup(GIVE_UP) is None
    # a late success revives nothing
    assert m.renewed(sent_at=GIVE_UP - 0.1, ttl=3, now=GIVE_UP + 0.1) is None
    assert (m.phase, m.lease, m.deadline) == (Phase.IDLE, None, None)


def test_l5_new_campaign_needs_a_new_lease() -> None:
    m = leading()
    m.resign()
    t = m.granted(LEASE + 1, 3, sent_at=5.0)
    assert (t.event, t.lease_id, m.phase) == ("lease.granted", LEASE + 1, Phase.CAMPAIGNING)
    t2 = m.won(TOKEN + 7, now=5.1)
    assert t2 is not None
    assert t2.token == TOKEN + 7  # the token is what the new key's create revision is


def test_l5_granted_refuses_to_replace_a_live_lease() -> None:
    with pytest.raises(AssertionError):
        leading().granted(LEASE + 1, 3, sent_at=1.0)


# --- leaving on purpose, and losing the key ---------------------------------------------------


def test_resign_while_leading_reports_token() -> None:
    t = leading().resign()
    assert t is not None
    assert (t.event, t.reason, t.token, t.lease_id) == (
        "election.lost",
        Reason.RESIGNED,
        TOKEN,
        LEASE,
    )


def test_resign_while_campaigning_is_lease_lost() -> None:
    t = campaigning().resign()
    assert t is not None
    assert (t.event, t.reason) == ("lease.lost", Reason.RESIGNED)
    assert Machine(TIMING).resign() is None


def test_key_lost_ends_leadership() -> None:
    t = leading().key_lost()
    assert t is not None
    assert (t.event, t.reason) == ("election.lost", Reason.KEY_LOST)


# --- §2: every RPC and wakeup bounded by the deadline -----------------------------------------


def test_rpc_deadline_never_outlives_the_point_of_stopping_the_job() -> None:
    m = leading()
    term_at = m.term_at
    assert term_at is not None
    assert m.rpc_deadline(now=1.0, ceiling=5.0) == pytest.approx(term_at - 1.0)
    assert m.rpc_deadline(now=0.2, ceiling=0.3) == pytest.approx(0.3)
    assert m.rpc_deadline(now=term_at, ceiling=5.0) == 0.05  # a floor: a call can still be made


def test_next_wakeup_is_the_earliest_thing_to_do() -> None:
    m = leading()
    assert m.next_wakeup(0.2) == pytest.approx(1.0)  # the next renewal
    m.renew_failed(now=2.4)
    assert m.next_wakeup(2.4) == pytest.approx(GIVE_UP)  # giving up comes before the retry at 2.65


# --- edges found by mutation testing --------------------------------------------------------------


def test_transitions_carry_the_phase_they_lead_to_and_the_lease() -> None:
    """Every transition names the phase the machine is now in and the lease it concerns: the
    log and the caller react to them."""
    m = Machine(TIMING)
    t = m.granted(LEASE, 3, sent_at=0.0)
    assert (t.phase, t.lease_id) == (Phase.CAMPAIGNING, LEASE)
    won = m.won(TOKEN, now=0.1)
    assert won is not None
    assert (won.phase, won.lease_id, won.token) == (Phase.LEADING, LEASE, TOKEN)
    lost = m.resign()
    assert lost is not None
    assert (lost.phase, lost.lease_id, lost.token) == (Phase.IDLE, LEASE, TOKEN)


def test_l5_granted_says_why_it_refuses_a_live_lease() -> None:
    with pytest.raises(AssertionError) as refused:
        leading().granted(LEASE + 1, 3, sent_at=1.0)
    assert str(refused.value) == "a new campaign always starts from a fresh lease"


def test_tenure_bookkeeping_is_empty_outside_a_tenure_l5() -> None:
    """L5: nothing of a tenure survives its end: no start time, token or failed confirm."""
    m = Machine(TIMING)
    assert (m.leading_since, m.token, m.confirmed_sent, m.confirm_failures) == (None, None, None, 0)
    m = leading()
    m.confirm_failed()
    m.key_lost()
    assert (m.leading_since, m.token, m.confirmed_sent, m.confirm_failures) == (None, None, None, 0)


def test_l4_a_new_tenure_does_not_inherit_failed_confirms_of_the_last() -> None:
    """L4/L5: a confirm that failed in a lost tenure does not cut the next one short."""
    m = leading()
    m.confirm_failed()
    m.resign()
    m.granted(LEASE + 1, 3, sent_at=10.0)
    assert m.won(TOKEN + 1, now=10.1) is not None
    for now in (11.0, 12.0):
        assert m.renewed(sent_at=now, ttl=3, now=now + 0.05) is None
    assert m.check(now=10.1 + GIVE_UP + 0.01) is None


def test_l4_a_successful_confirm_clears_the_failed_ones() -> None:
    """L4: after a failed read, a successful one restores trust; a leader that then sleeps
    through its next confirm (no read failed) reads again instead of stepping down."""
    m = leading()
    m.confirm_failed()
    m.confirmed(sent_at=1.0)
    assert m.confirm_failures == 0
    for now in (1.0, 2.0, 3.0):
        assert m.renewed(sent_at=now, ttl=3, now=now + 0.05) is None
    assert m.check(now=1.0 + GIVE_UP + 0.01) is None


def test_failed_attempts_are_counted() -> None:
    m = leading()
    m.renew_failed(now=1.0)
    m.renew_failed(now=1.25)
    m.confirm_failed()
    m.confirm_failed()
    assert m.lease is not None
    assert (m.lease.failures, m.confirm_failures) == (2, 2)


def test_l4_a_failed_keepalive_is_retried_a_quarter_interval_later() -> None:
    m = leading()
    m.renew_failed(now=1.0)
    assert m.lease is not None
    assert m.lease.next_renew_at == 1.0 + TIMING.renew_interval / 4


def test_l4_a_successful_keepalive_clears_the_failed_ones() -> None:
    """L4: after a failed and then an answered keepalive, a leader that sleeps past the renew
    deadline made no failed attempt since: it tries once more (D − grace is the limit)."""
    m = leading()
    m.renew_failed(now=1.0)
    assert m.renewed(sent_at=1.0, ttl=3, now=1.1) is None
    assert m.lease is not None and m.lease.failures == 0
    assert m.next_wakeup(1.1) == 1.0 + TIMING.renew_interval
    assert m.check(now=1.0 + GIVE_UP + 0.01) is None


def test_s6_a_keepalive_answered_with_a_shorter_positive_ttl_shortens_the_deadline() -> None:
    """S6: any positive TTL keeps the lease, and the deadline counts with the TTL etcd answered
    when it is shorter than the one asked for."""
    m = leading()
    assert m.renewed(sent_at=1.0, ttl=1, now=1.1) is None
    assert m.phase is Phase.LEADING
    assert m.deadline == pytest.approx(d_after(1.0, ttl=1))


def test_s6_a_lease_at_exactly_its_deadline_is_abandoned() -> None:
    m = campaigning()
    d = m.deadline
    assert d is not None
    t = m.check(now=d)
    assert t is not None
    assert (t.event, t.reason, t.phase) == ("lease.lost", Reason.DEADLINE_PASSED, Phase.IDLE)


def test_s6_a_leader_that_slept_to_exactly_d_minus_grace_steps_down() -> None:
    """S6: at D − grace the job must be told to stop, even with no failed renewal (the process
    slept): the leader steps down there, not at D."""
    m = leading()
    term_at = m.term_at
    assert term_at is not None
    assert m.check(now=term_at - 0.001) is None
    t = m.check(now=term_at)
    assert t is not None
    assert (t.event, t.reason, t.token) == ("election.lost", Reason.DEADLINE_PASSED, TOKEN)


def test_s6_a_leader_with_a_short_granted_ttl_wakes_at_d_minus_grace() -> None:
    """S6: when etcd granted a shorter TTL, D − grace can come before the next retry; the
    leader wakes for it. A candidate runs no job, so it waits for its retry instead of waking
    at a D − grace that asks nothing of it (and would wake it again and again)."""
    leader = Machine(TIMING)
    leader.granted(LEASE, 2, sent_at=0.0)
    assert leader.won(TOKEN, now=0.1) is not None
    candidate = Machine(TIMING)
    candidate.granted(LEASE, 2, sent_at=0.0)
    for m in (leader, candidate):
        for now in (1.0, 1.25, 1.5):
            assert m.renew_failed(now=now) is None
    assert leader.next_wakeup(1.5) == leader.term_at
    assert candidate.next_wakeup(1.55) == 1.75


def test_l4_a_keepalive_that_timed_out_is_retried_at_once() -> None:
    """A keepalive that waited out its timeout (a member without a leader while etcd elects
    one) is followed at once by the next, on the next endpoint: the renew budget is for getting
    through the etcd election, not for waiting (SAFETY.md §4: a new etcd leader extends every
    lease, so an election need not cost leadership)."""
    m = leading()
    m.renew_failed(now=1.5, sent_at=1.0)  # timed out after half an interval
    assert m.lease is not None
    assert m.lease.next_renew_at == 1.5
    assert m.renew_due(1.5)


def test_l4_a_keepalive_refused_at_once_is_retried_a_quarter_interval_after_its_send() -> None:
    """A member that refuses at once (killed) is not called in a tight loop."""
    m = leading()
    m.renew_failed(now=1.01, sent_at=1.0)
    assert m.lease is not None
    assert m.lease.next_renew_at == pytest.approx(1.0 + TIMING.renew_interval / 4)
