"""Bookkeeping (history records, pruning, the schedule published) yields to a burst's starts:
while starts are on their way (queued for the guardian's pipe, or sent and not answered), the
machine's time goes to them. A thousand runs' records, one etcd write each, held up the last
starts of a burst by seconds. It yields for BOOKKEEPING_YIELDS at most: a stream of starts that
never ends does not hold the history back until its backlog overflows. The pure rule
(``Session.may_bookkeep``) and the value the daemon hands it (its own starter's state), on the
fake clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from leaderjob.daemon import Daemon
from leaderjob.daemon.session import BOOKKEEPING_YIELDS
from leaderjob.daemon.starts import GuardianStarter
from leaderjob.election.memory import MemoryStore
from tests.unit.test_daemon_jobs import group_daemon
from tests.unit.test_daemon_schedule import Clock


def _leading(clock: Clock) -> tuple[Daemon, GuardianStarter]:
    """A group daemon after its first cycle, between cycles, and its own starter."""
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=("j1", "j2"))
    d.cycle()
    d.session.deadline = None  # between cycles: the whole budget
    assert isinstance(d.starter, GuardianStarter)
    return d, d.starter


def test_bookkeeping_waits_while_the_daemon_s_own_starts_are_on_their_way() -> None:
    clock = Clock()
    d, starter = _leading(clock)
    assert d.session.may_bookkeep()
    queued: Any = (object(), clock.monotonic() + 5)
    starter.waiting.append(queued)
    assert not d.session.may_bookkeep(), "the daemon's queue did not reach the session"
    r = d.runners["j1"]
    r.history.record({"run_id": "r1", "slot": "s1", "outcome": "succeeded"})
    r.history.flush()
    assert r.history._backlog, "a record was written while starts waited"
    starter.waiting.clear()
    assert d.session.may_bookkeep()
    r.history.flush()
    assert not r.history._backlog


def test_bookkeeping_waits_for_starts_a_few_seconds_at_most() -> None:
    clock = Clock()
    d, starter = _leading(clock)
    in_flight = SimpleNamespace(confirm=lambda: None)  # sent, not answered
    starter.in_flight.append(in_flight)  # type: ignore[arg-type]
    assert not d.session.may_bookkeep()
    clock.advance(BOOKKEEPING_YIELDS - 0.1)
    assert not d.session.may_bookkeep()
    clock.advance(0.2)
    assert d.session.may_bookkeep(), "the history waited for ever behind a stream of starts"
    in_flight.confirm = lambda: True  # answered
    assert d.session.may_bookkeep()
    starter.in_flight.append(SimpleNamespace(confirm=lambda: None))  # type: ignore[arg-type]
    assert not d.session.may_bookkeep(), "a new burst after a pause is yielded to again"
