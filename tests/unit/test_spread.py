"""The spreading rules one at a time, on a fixed view and a fake time (leaderjob.daemon.spread)."""

from __future__ import annotations

import pytest

from leaderjob.daemon.spread import Decision, Spreader, View

JOBS = frozenset(f"job{i}" for i in range(6))


def view(
    members: int,
    leading: set[str],
    *,
    idle: set[str] | None = None,
    jobs: frozenset[str] = JOBS,
) -> View:
    lead = frozenset(leading)
    return View(
        members=members,
        jobs=jobs,
        leading=lead,
        idle=lead if idle is None else frozenset(idle),
        standby=jobs - lead,
    )


def settled(s: Spreader, v: View, start: float = 0.0) -> float:
    """Show ``v`` once at ``start`` and return the first time a move may happen."""
    assert s.decide(v, start) == Decision()
    return start + s.settle


def drain_step_backs(s: Spreader, v: View, now: float) -> list[str]:
    out = []
    for _ in range(len(v.jobs) + 1):
        d = s.decide(v, now)
        if d.step_back is None:
            assert d.release is None
            break
        out.append(d.step_back)
    return out


@pytest.mark.parametrize(
    ("members", "jobs", "share"),
    [(3, 6, 2), (2, 6, 3), (4, 6, 2), (20, 20, 1), (19, 20, 2), (5, 3, 1), (1, 0, 0), (0, 5, 5)],
)
def test_fair_share_is_the_ceiling_of_jobs_over_members(members, jobs, share):
    assert Spreader.fair_share(members, jobs) == share


def test_spread_off_never_releases_nor_steps_back():
    s = Spreader(enabled=False)
    v = view(3, set(JOBS))
    assert all(s.decide(v, t) == Decision() for t in range(0, 200))
    v = view(3, {"job0", "job1"})
    assert all(s.decide(v, t) == Decision() for t in range(0, 200))


def test_settle_no_move_until_membership_held_for_settle_seconds():
    s = Spreader(pace=5, settle=5)
    v = view(3, {"job0", "job1"})  # at the share: it will step back
    t = settled(s, v)
    assert s.decide(v, t - 0.1) == Decision()
    assert s.decide(v, t).step_back is not None
    # A join: everything waits again, then the step-backs are done anew behind the newcomer.
    drain_step_backs(s, v, t)
    v4 = view(4, {"job0", "job1"})
    assert s.decide(v4, 20) == Decision()
    assert s.decide(v4, 24.9) == Decision()
    assert len(drain_step_backs(s, v4, 25)) == 4


def test_settle_a_reload_counts_as_a_change():
    s = Spreader(pace=5, settle=5)
    v = view(3, {"job0", "job1"})
    drain_step_backs(s, v, settled(s, v))
    smaller = view(3, {"job0", "job1"}, jobs=JOBS - {"job5"})
    assert s.decide(smaller, 30) == Decision()
    assert s.decide(smaller, 34.9) == Decision()
    assert len(drain_step_backs(s, smaller, 35)) == 3


def test_below_share_never_moves():
    s = Spreader(pace=1, settle=1)
    v = view(3, {"job0"})
    assert all(s.decide(v, t) == Decision() for t in range(0, 100))


def test_at_share_steps_back_once_everywhere_then_holds_still():
    """Hysteresis: within the share, no release — ever."""
    s = Spreader(pace=1, settle=1)
    v = view(3, {"job0", "job1"})
    backs = drain_step_backs(s, v, settled(s, v))
    assert sorted(backs) == ["job2", "job3", "job4", "job5"]
    assert all(s.decide(v, t) == Decision() for t in range(2, 200))


def test_above_share_steps_back_first_then_releases_one_idle_job():
    s = Spreader(pace=5, settle=5)
    v = view(3, {"job0", "job1", "job2"})
    t = settled(s, v)
    assert sorted(drain_step_backs(s, v, t)) == ["job3", "job4", "job5"]
    d = s.decide(v, t + 2 * s.pace)  # settle, then a pace, then its turn (< one pace)
    assert d.release in v.leading and d.step_back is None and "share 2" in d.reason


def test_first_release_after_a_change_waits_a_pace_beyond_settle():
    """The others' step-backs come first, so a release lands on a replica with room."""
    s = Spreader(pace=5, settle=5)
    v = view(3, {"job0", "job1", "job2"}, jobs=frozenset({"job0", "job1", "job2"}))  # share 1
    settled(s, v)
    assert all(s.decide(v, t / 10) == Decision() for t in range(0, 100))
    assert s.decide(v, 20).release is not None


def test_pace_at_most_one_release_per_pace_seconds():
    s = Spreader(pace=5, settle=5)
    jobs = frozenset({"job0", "job1", "job2", "job3"})
    v = view(4, set(jobs), jobs=jobs)  # share 1, three to shed
    settled(s, v)
    first = next(t / 10 for t in range(0, 300) if s.decide(v, t / 10).release is not None)
    assert all(s.decide(v, first + t / 10) == Decision() for t in range(1, 50))
    assert s.decide(v, first + 5.01).release is not None


def test_only_idle_jobs_are_released():
    s = Spreader(pace=5, settle=5)
    jobs = frozenset({"job0", "job1", "job2"})
    busy = view(3, set(jobs), idle=set(), jobs=jobs)
    settled(s, busy)
    assert all(s.decide(busy, t) == Decision() for t in range(0, 60))
    one_idle = view(3, set(jobs), idle={"job1"}, jobs=jobs)
    assert s.decide(one_idle, 60).release == "job1"


def test_a_released_job_is_not_stepped_back_again():
    """A release re-creates our key at the back already; stepping back there is a wasted write."""
    s = Spreader(pace=5, settle=5)
    jobs = frozenset({"job0", "job1", "job2"})
    v = view(3, set(jobs), jobs=jobs)
    settled(s, v)
    released = s.decide(v, 20).release
    assert released is not None
    after = view(3, set(jobs) - {released}, jobs=jobs)
    assert drain_step_backs(s, after, 21) == []


def test_choice_is_deterministic_and_differs_between_replicas():
    """Same view, same choice (no hidden randomness); two replicas (disjoint led sets) step back
    in different orders, so the order behind a leader differs from queue to queue."""
    jobs = frozenset(f"job{i:02d}" for i in range(40))
    orders = []
    for mine in ({"job00"}, {"job01"}):
        runs = []
        for _ in range(2):
            s = Spreader(pace=5, settle=5)
            v = view(40, mine, jobs=jobs)
            runs.append(drain_step_backs(s, v, settled(s, v)))
        assert runs[0] == runs[1]
        orders.append([j for j in runs[0] if j not in {"job00", "job01"}])
    assert orders[0] != orders[1]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="pace"):
        Spreader(pace=-1)
    with pytest.raises(ValueError, match="settle"):
        Spreader(settle=-1)
