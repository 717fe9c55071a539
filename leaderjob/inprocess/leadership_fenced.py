"""The fenced writes of in-process leadership: etcd writes that land only while our leader key
stands with our token (S1).

Owns: :class:`FencedWrites`, a mixin of :class:`~leaderjob.inprocess.leadership.Leadership`:
:attr:`~FencedWrites.fence`, :meth:`~FencedWrites.fenced_put`, :meth:`~FencedWrites.proclaim`,
:meth:`~FencedWrites.fenced_delete` and their async forms. A write refused because the key is
gone ends the tenure (the driver is told it was deposed) and raises
:class:`~leaderjob.fencing.StaleToken`. It must not know the election rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from leaderjob.fencing import StaleToken
from leaderjob.fencing.etcd import EtcdFence, refuse_own_keys
from leaderjob.inprocess.leadership_options import LeadershipError

if TYPE_CHECKING:
    from leaderjob.inprocess.leadership import Leadership

__all__ = ["FencedWrites"]


class FencedWrites:
    """Mixed into :class:`~leaderjob.inprocess.leadership.Leadership`."""

    @property
    def fence(self) -> EtcdFence:
        """Writes to etcd guarded by our key (etcd's ``IsOwner`` compare, one Txn each)."""
        me = cast("Leadership", self)
        d = me._driver
        if d is None or d.tenure is None or me._store is None:
            raise LeadershipError(f"not leading election {me.election!r}: nothing to fence with")
        return EtcdFence(me._store, d.tenure.key, d.tenure.token, me.connection.rpc_timeout)

    def fenced_put(self, key: str, value: bytes | str) -> None:
        """Put ``key`` only while etcd still holds our leader key with our token; raises
        :class:`~leaderjob.fencing.StaleToken` (and ends the tenure) when it does not."""
        self._fenced(lambda f: f.put(key, value), key)

    def proclaim(self, value: bytes | str) -> None:
        """Set the leader key's value, keeping its lease (etcd's ``Election.Proclaim``): what
        ``leaderjob status`` and ``etcdctl elect -l`` show. Guarded like :meth:`fenced_put`:
        :class:`~leaderjob.fencing.StaleToken` (and the tenure ends) once deposed."""
        me = cast("Leadership", self)
        d = me._driver
        lease = None if d is None else d.elector.lease_id
        if d is None or d.tenure is None or me._store is None or lease is None:
            raise LeadershipError(f"not leading election {me.election!r}: nothing to proclaim")
        data = value.encode() if isinstance(value, str) else value
        key, token = d.tenure.key, d.tenure.token
        guard = me._store.guarded_put
        if not guard(key, token, [(key, data)], timeout=me.connection.rpc_timeout, lease=lease):
            d.deposed()
            raise StaleToken(key, token)

    def fenced_delete(self, key: str) -> None:
        """Delete ``key`` under the same guard as :meth:`fenced_put`."""
        self._fenced(lambda f: f.delete(key), key)

    async def fenced_put_async(self, key: str, value: bytes | str) -> None:
        """:meth:`fenced_put` from a coroutine (the etcd call runs in a worker thread)."""
        await asyncio.to_thread(self.fenced_put, key, value)

    async def fenced_delete_async(self, key: str) -> None:
        """:meth:`fenced_delete` from a coroutine."""
        await asyncio.to_thread(self.fenced_delete, key)

    def _fenced(self, write: Callable[[EtcdFence], None], key: str) -> None:
        me = cast("Leadership", self)
        # The whole election (<prefix>/<election>/: candidates, slot claims, history).
        refuse_own_keys([key], me.prefix.rsplit("/", 1)[0] + "/")
        fence = self.fence
        try:
            write(fence)
        except StaleToken:
            d = me._driver
            if d is not None:
                d.deposed()
            raise
