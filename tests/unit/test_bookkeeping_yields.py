"""Bookkeeping (history records, pruning, the schedule published) yields to a burst's starts:
while start requests wait for room in the guardian's pipe, the loop sends them first. A
thousand runs' records, one etcd write each, held up the last starts of a burst by seconds.
The pure rule (``Session.may_bookkeep``) and the value the daemon hands it (its own starter's
queue), on the fake clock."""

from __future__ import annotations

from typing import Any

from leaderjob.daemon.starts import GuardianStarter
from leaderjob.election.memory import MemoryStore
from tests.unit.test_daemon_jobs import group_daemon
from tests.unit.test_daemon_schedule import Clock


def test_bookkeeping_waits_while_the_daemon_s_own_starts_are_queued() -> None:
    clock = Clock()
    d = group_daemon(MemoryStore(clock), clock, "a", jobs=("j1", "j2"))
    d.cycle()
    starter = d.starter
    assert isinstance(starter, GuardianStarter)
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
