"""etcd's database size against its quota, read rarely and off the renew path.

Every claim, history record and publish is a write that etcd keeps until it is compacted. An etcd
whose backend reaches ``--quota-backend-bytes`` raises the NOSPACE alarm and refuses every write,
keepalives included: every leader loses its lease and nobody can take over. This probe reports
the size (``leaderjob_etcd_db_size_bytes``) next to the quota (``leaderjob_etcd_db_quota_bytes``:
etcd's own where etcd reports it, 3.6 on; else the one the daemon was told, ``--etcd-quota``) so
that an alert fires long before that.

Rules:

* One Maintenance Status call per ``interval`` (5 minutes by default: a database grows towards
  its quota over hours, and an idle daemon's requests stay a keepalive and a confirmation per
  renew interval), from a thread of its own.
  It never runs on the leader's path: it takes no lock the elector takes, and it waits on an
  event, so stopping it is prompt.
* A failed call is counted (``leaderjob_etcd_errors_total{operation="status"}``) and logged
  once per failure streak; it is never fatal, and the last size read stays published.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from leaderjob.election.store import StoreError
from leaderjob.log import get_logger

#: etcd's default ``--quota-backend-bytes`` (2 GiB).
DEFAULT_QUOTA_BYTES = 2 * 1024**3


class SizeSource(Protocol):
    def db_size(self, *, timeout: float) -> int: ...


def read_db(store: Any, timeout: float) -> tuple[int, int | None]:
    """The database size and etcd's own quota (None where etcd does not report it: before 3.6,
    or a store that only knows the size)."""
    status = getattr(store, "db_status", None)
    if status is not None:
        size, quota = status(timeout=timeout)
        return int(size), quota
    return int(store.db_size(timeout=timeout)), None


class DbQuotaProbe:
    """Polls ``store.db_size`` every ``interval`` seconds and publishes it on ``metrics``."""

    def __init__(
        self,
        store: SizeSource,
        metrics: Any,
        *,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        interval: float = 300.0,
        timeout: float = 5.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.quota_bytes = quota_bytes
        self.interval = interval
        self.timeout = timeout
        self.failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = get_logger(election=metrics.election)
        metrics.etcd_db_quota.labels(metrics.election).set(quota_bytes)
        metrics.etcd_db_size.labels(metrics.election)

    def poll_once(self) -> int | None:
        """One Status call: the size in bytes, or None if it failed (counted, logged once)."""
        m = self.metrics
        try:
            size, quota = read_db(self.store, self.timeout)
        except StoreError as exc:
            m.etcd_errors.labels(m.election, "status").inc()
            if not self.failing:
                self._log.warning("etcd.status_failed", error=str(exc))
            self.failing = True
            return None
        self.failing = False
        m.etcd_db_size.labels(m.election).set(size)
        if quota is not None and quota != self.quota_bytes:
            # etcd's own quota wins over the one the daemon was told: an alert at 80 % of a
            # 2 GiB default would never fire before NOSPACE on a 64 MiB quota.
            self.quota_bytes = quota
            m.etcd_db_quota.labels(m.election).set(quota)
        return size

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leaderjob-dbquota", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
