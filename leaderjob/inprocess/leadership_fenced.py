"""The fenced writes of in-process leadership: etcd writes that land only while our leader key
stands with our token (S1).

Owns: :class:`FencedWrites`, a part of :class:`~leaderjob.inprocess.leadership.Leadership` handed
its :class:`~leaderjob.inprocess.leadership_hold.Hold`: the fence of the current tenure, the
fenced put and delete, ``proclaim`` and their async forms. A write refused because the key is
gone ends the tenure (the driver is told it was deposed) and raises
:class:`~leaderjob.fencing.StaleToken`. It must not know the election rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from leaderjob.fencing import StaleToken
from leaderjob.fencing.etcd import EtcdFence, refuse_own_keys
from leaderjob.inprocess.leadership_hold import Hold
from leaderjob.inprocess.leadership_options import LeadershipError

__all__ = ["FencedWrites"]


class FencedWrites:
    def __init__(self, hold: Hold) -> None:
        self.hold = hold

    @property
    def fence(self) -> EtcdFence:
        """Writes to etcd guarded by our key (etcd's ``IsOwner`` compare, one Txn each)."""
        h = self.hold
        d = h.driver
        if d is None or d.tenure is None or h.store is None:
            raise LeadershipError(f"not leading election {h.election!r}: nothing to fence with")
        return EtcdFence(h.store, d.tenure.key, d.tenure.token, h.connection.rpc_timeout)

    def put(self, key: str, value: bytes | str) -> None:
        self._fenced(lambda f: f.put(key, value), key)

    def delete(self, key: str) -> None:
        self._fenced(lambda f: f.delete(key), key)

    def proclaim(self, value: bytes | str) -> None:
        h = self.hold
        d = h.driver
        lease = None if d is None else d.elector.lease_id
        if d is None or d.tenure is None or h.store is None or lease is None:
            raise LeadershipError(f"not leading election {h.election!r}: nothing to proclaim")
        data = value.encode() if isinstance(value, str) else value
        key, token = d.tenure.key, d.tenure.token
        guard = h.store.guarded_put
        if not guard(key, token, [(key, data)], timeout=h.connection.rpc_timeout, lease=lease):
            d.deposed()
            raise StaleToken(key, token)

    async def put_async(self, key: str, value: bytes | str) -> None:
        """:meth:`put` from a coroutine (the etcd call runs in a worker thread)."""
        await asyncio.to_thread(self.put, key, value)

    async def delete_async(self, key: str) -> None:
        await asyncio.to_thread(self.delete, key)

    def _fenced(self, write: Callable[[EtcdFence], None], key: str) -> None:
        # The whole election (<prefix>/<election>/: candidates, slot claims, history).
        refuse_own_keys([key], self.hold.prefix.rsplit("/", 1)[0] + "/")
        fence = self.fence
        try:
            write(fence)
        except StaleToken:
            d = self.hold.driver
            if d is not None:
                d.deposed()
            raise
