"""The step's deadline: absolute, on the monotonic clock; each call's timeout is what is left."""

from __future__ import annotations

import pytest

from leaderjob.clock import FakeClock
from leaderjob.election.deadline import MIN_CALL, Deadline, DeadlinePassed
from leaderjob.election.store import StoreUnavailable


def test_each_call_gets_what_is_left_never_a_fresh_timeout() -> None:
    clock = FakeClock()
    dl = Deadline.after(clock.monotonic, 0.5)
    assert dl.timeout("keepalive") == pytest.approx(0.5)
    clock.advance(0.4)
    assert dl.timeout("standings", ceiling=5.0) == pytest.approx(0.1)
    assert dl.timeout("standings", ceiling=0.01) == pytest.approx(0.01)
    clock.advance(0.06)
    assert not dl.fits()
    with pytest.raises(DeadlinePassed) as exc:
        dl.check("standings")
    assert isinstance(exc.value, StoreUnavailable)  # callers handle it like any failed call
    with pytest.raises(DeadlinePassed):
        dl.timeout("create")


def test_a_limit_such_as_d_minus_grace_ends_it_earlier() -> None:
    clock = FakeClock()
    dl = Deadline.after(clock.monotonic, 0.5, limit=clock.monotonic() + 0.2)
    assert dl.remaining() == pytest.approx(0.2)
    assert dl.budget == 0.5
    assert dl.fits(0.2 - MIN_CALL)
