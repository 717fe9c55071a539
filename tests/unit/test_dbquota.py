"""etcd's database size against its quota: published, never fatal (what keeps NOSPACE from
surprising a cluster: every write, keepalives too, fails at the quota, so every leader would lose
its lease — L1/L4 depend on the alert firing first)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from leaderjob.election.store import StoreUnavailable
from leaderjob.ops.dbquota import DEFAULT_QUOTA_BYTES, DbQuotaProbe
from leaderjob.ops.metrics import Metrics
from leaderjob.units import parse_size


class Sizes:
    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def db_size(self, *, timeout: float) -> int:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"election": "e", **labels})


def test_size_and_quota_are_published():
    registry = CollectorRegistry()
    probe = DbQuotaProbe(Sizes(123_456), Metrics(registry, "e"), quota_bytes=8 * 1024**3)
    assert _value(registry, "leaderjob_etcd_db_quota_bytes") == 8 * 1024**3
    assert _value(registry, "leaderjob_etcd_db_size_bytes") == 0
    assert probe.poll_once() == 123_456
    assert _value(registry, "leaderjob_etcd_db_size_bytes") == 123_456


def test_a_failed_status_is_counted_not_fatal_and_keeps_the_last_size():
    registry = CollectorRegistry()
    down = StoreUnavailable("status", "down")
    store = Sizes(1000, down, down, 2000)
    probe = DbQuotaProbe(store, Metrics(registry, "e"))
    assert _value(registry, "leaderjob_etcd_db_quota_bytes") == DEFAULT_QUOTA_BYTES
    probe.poll_once()
    assert probe.poll_once() is None
    assert probe.poll_once() is None
    assert _value(registry, "leaderjob_etcd_db_size_bytes") == 1000
    assert _value(registry, "leaderjob_etcd_errors_total", operation="status") == 2
    assert probe.poll_once() == 2000
    assert _value(registry, "leaderjob_etcd_db_size_bytes") == 2000


def test_sizes_as_people_write_them():
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("8G") == 8 * 1000**3
    assert parse_size("512 MiB") == 512 * 1024**2
    assert parse_size("4096") == 4096
    for bad in ("", "2 GB of disk", "-1", "2XB"):
        with pytest.raises(ValueError, match="2GiB"):
            parse_size(bad)


class Status:
    """A store that reports etcd's own quota (etcd 3.6 on)."""

    def __init__(self, size: int, quota: int | None) -> None:
        self.answer = (size, quota)

    def db_status(self, *, timeout: float) -> tuple[int, int | None]:
        return self.answer


def test_etcds_own_quota_replaces_the_assumed_one():
    """A 64 MiB etcd under a daemon told nothing: the quota gauge says 64 MiB, not 2 GiB, so the
    80 % alert fires before NOSPACE."""
    registry = CollectorRegistry()
    probe = DbQuotaProbe(Status(60 * 1024**2, 64 * 1024**2), Metrics(registry, "e"))
    assert _value(registry, "leaderjob_etcd_db_quota_bytes") == DEFAULT_QUOTA_BYTES
    assert probe.poll_once() == 60 * 1024**2
    assert _value(registry, "leaderjob_etcd_db_quota_bytes") == 64 * 1024**2
    DbQuotaProbe(Status(1, None), Metrics(CollectorRegistry(), "f"), quota_bytes=123).poll_once()


def test_the_quota_field_is_read_from_the_status_wire_form():
    from etcd3 import etcdrpc

    from leaderjob.election.etcd_wire import DB_SIZE_QUOTA_FIELD, varint_field

    plain = etcdrpc.StatusResponse(version="3.5.1", dbSize=20480, leader=7).SerializeToString()
    assert varint_field(plain, DB_SIZE_QUOTA_FIELD) is None
    quota = 64 * 1024**2
    tag, value = bytes([DB_SIZE_QUOTA_FIELD << 3]), bytearray()
    n = quota
    while True:
        byte, n = n & 0x7F, n >> 7
        value.append(byte | (0x80 if n else 0))
        if not n:
            break
    # A field after it, of another wire type, is skipped.
    assert varint_field(plain + tag + bytes(value) + b"\x12\x01x", DB_SIZE_QUOTA_FIELD) == quota
    assert varint_field(plain + tag, DB_SIZE_QUOTA_FIELD) is None  # cut short: not a value
    assert varint_field(plain, 3) == 20480
