"""``@leaderjob.singleton``'s tenure hands each run the real token (S1, S2).

The in-process runs are fenced by their token (``run.token``: fenced writes, the history
record); it must be the create revision of this replica's own election key at etcd, the same
value the slot's claim was guarded with. MemoryStore, the system clock, ``@every 1s``.
"""

from __future__ import annotations

import threading

import leaderjob
from leaderjob.clock import SystemClock
from leaderjob.election.memory import MemoryStore
from leaderjob.history.records import ElectionData
from leaderjob.inprocess.singleton import SlotRun
from tests.harness.procs import wait_until


def test_each_run_is_handed_the_create_revision_of_its_leaders_key_S2() -> None:
    store = MemoryStore(SystemClock())
    store.put("/unrelated", b"x", timeout=1)  # revisions move on: a token is not a count
    seen: list[tuple[str, int, int | None]] = []
    lock = threading.Lock()

    def work(run: SlotRun) -> None:
        leaders = store.candidates("/leaderjob/tok/leader", timeout=1)
        with lock:
            seen.append((run.slot, run.token, leaders[0].create_revision if leaders else None))

    s = leaderjob.singleton(election="tok", schedule="@every 1s", ttl=3, store=store.client())(
        work
    ).start()
    wait_until(lambda: seen, 10)
    s.stop(5)
    assert seen, "nothing ran"
    assert all(token == revision for _, token, revision in seen), seen
    history = ElectionData(store, "/leaderjob", "tok").history(50, timeout=1)
    tokens = {r["slot"]: r["token"] for r in history}
    assert all(tokens.get(slot) == token for slot, token, _ in seen), (tokens, seen)
