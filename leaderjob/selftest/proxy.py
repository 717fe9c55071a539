"""The self-test's plumbing: a TCP proxy that can cut a candidate off etcd, and a store that
remembers the leases it was granted (for the cleanup) and counts its calls (``bench/scale.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from leaderjob.config import Connection
from leaderjob.election.etcd import EtcdStore
from leaderjob.election.store import Grant


class SelftestError(RuntimeError):
    """The self-test could not run (etcd unreachable, refused, or a step never happened)."""



# -- a cuttable TCP proxy --------------------------------------------------------------------


class CutProxy:
    """``127.0.0.1:<port>`` → ``target``; :meth:`cut` holds every byte both ways (and new
    connections) until :meth:`heal`, like a network partition that loses nothing."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target_host, self.target_port = host.strip("[]"), int(port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="leaderjob-selftest-proxy", daemon=True
        )
        self._thread.start()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = self._call(self._listen())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # a cut network holds the connection attempt too
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_w)
        await asyncio.gather(
            self._pump(reader, up_w), self._pump(up_r, writer), return_exceptions=True
        )
        for w in (writer, up_w):
            w.close()
            self._writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            await self._flowing.wait()  # held while cut: the reader stops, TCP backs up
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    async def _set(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def cut(self) -> None:
        self._call(self._set(False))

    def heal(self) -> None:
        self._call(self._set(True))

    async def _close(self) -> None:
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._flowing.set()
        await asyncio.sleep(0.01)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


# -- a store that remembers what it created --------------------------------------------------


class TrackingStore(EtcdStore):
    """An :class:`EtcdStore` that records every lease it was granted (for the cleanup) and
    counts its calls by operation (for ``bench/scale.py``)."""

    def __init__(self, conn: Connection, granted: list[int] | None = None) -> None:
        super().__init__(conn)
        self.granted = granted if granted is not None else []
        self.calls: dict[str, int] = {}
        self._count_lock = threading.Lock()

    def _count(self, op: str) -> None:
        with self._count_lock:
            self.calls[op] = self.calls.get(op, 0) + 1

    def grant(self, ttl: int, *, timeout: float) -> Grant:
        self._count("grant")
        g = super().grant(ttl, timeout=timeout)
        self.granted.append(g.lease_id)
        return g

    def keepalive(self, lease_id: int, *, timeout: float) -> int:
        self._count("keepalive")
        return super().keepalive(lease_id, timeout=timeout)

    def standing(
        self, prefix: str, key: str, create_revision: int, *, timeout: float, **kw: Any
    ) -> Any:
        self._count("standing")
        return super().standing(prefix, key, create_revision, timeout=timeout, **kw)

    def watch_deletes(
        self,
        keys: Sequence[str],
        start_revision: int,
        on_fire: Callable[[], None],
        *,
        timeout: float | None = None,
    ) -> Any:
        self._count("watch")
        return super().watch_deletes(keys, start_revision, on_fire, timeout=timeout)
