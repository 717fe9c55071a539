"""How fenced writes are cut into the batches etcd takes (:func:`batches`): pure."""

from __future__ import annotations

from leaderjob.election.store import MAX_TXN_OPS, Guarded, batch_ops, batches


def claim(i: int, *, deletes: int = 0, job: int | None = None) -> Guarded:
    base = f"/g/jobs/{i if job is None else job}"
    return Guarded(
        f"{base}/leader/1",
        10 + i,
        ((f"{base}/slots/s{i}", b"c"), (f"{base}/state/last_slot", b"s")),
        absent=(f"{base}/slots/s{i}", f"{base}/control/suspended"),
        deletes=tuple(f"{base}/slots/old{i}-{d}" for d in range(deletes)),
    )


def test_a_claim_counts_its_compares_or_its_writes_whichever_is_more() -> None:
    assert claim(0).ops == 3  # our key, the slot and the switch compared; two puts
    assert claim(0, deletes=4).ops == 6


def test_batches_stay_within_etcds_limit_in_order() -> None:
    writes = [claim(i) for i in range(300)]
    chunks = batches(writes)
    assert [i for c in chunks for i in c] == list(range(300))  # every write once, in order
    assert all(batch_ops([writes[i] for i in c]) <= MAX_TXN_OPS for c in chunks)
    assert [len(c) for c in chunks] == [125, 125, 50]


def test_a_wide_write_shrinks_its_batch() -> None:
    writes = [claim(i) for i in range(120)] + [claim(120, deletes=20)]
    chunks = batches(writes)
    assert all(batch_ops([writes[i] for i in c]) <= MAX_TXN_OPS for c in chunks)
    assert chunks == [list(range(120)), [120]]  # 120 + 1 + its 22 operations: over 128


def test_two_writes_of_one_key_never_share_a_batch() -> None:
    """etcd refuses a Txn that writes one key twice: the second claim of one job (its
    ``last_slot``) starts a new batch."""
    writes = [claim(0), claim(1), claim(2, job=0), claim(3)]
    assert batches(writes) == [[0, 1], [2, 3]]


def test_nothing_to_write_is_no_batch() -> None:
    assert batches([]) == []


def test_a_write_alone_is_a_txn_of_its_own() -> None:
    """A claim carrying many deletes fits alone (its own Txn, within 128), never nested."""
    wide = claim(0, deletes=MAX_TXN_OPS - 2)
    assert wide.ops == MAX_TXN_OPS
    assert batch_ops([wide]) == MAX_TXN_OPS
    assert batches([claim(1), wide, claim(2)]) == [[0], [1], [2]]
