"""A fault-injecting TCP proxy for putting a network between a client and etcd.

:class:`FaultProxy` listens on ``127.0.0.1:<free port>`` and forwards each accepted connection to
its target. It runs an asyncio loop in a daemon thread of its own. Faults are switched from any
thread; each control method returns once the new mode is in force, and it applies at once to
connections that already exist as well as to new ones.

Faults never drop or reorder bytes: a stalled direction *holds* its bytes (in the proxy, then in
the kernel's socket buffers once the proxy stops reading), as packets are held up by a cut
network, and delivers them in order when the fault is healed. gRPC and HTTP/2 streams therefore
survive a fault that is healed in time, as they would survive a real partition. Only
:meth:`FaultProxy.reset` ends connections.

Modes (each call replaces the previous mode):

* :meth:`~FaultProxy.blackhole` -- nothing flows either way. New connections are accepted (the
  kernel completes the handshake) but, while requests are held, not connected to the target.
* :meth:`~FaultProxy.blackhole_responses` -- client->server flows, server->client is held.
* :meth:`~FaultProxy.blackhole_requests` -- server->client flows, client->server is held.
* :meth:`~FaultProxy.delay_responses` -- server->client bytes are delivered ``seconds`` after
  they reached the proxy, in order.
* :meth:`~FaultProxy.delay_requests` -- the same for client->server bytes.
* :meth:`~FaultProxy.heal` -- plain pass-through; held bytes are delivered in order.

:meth:`~FaultProxy.reset` closes every current connection with a TCP RST on both sides (the
mode is kept; new connections are accepted). :class:`MultiProxy` drives one proxy per endpoint
of a cluster as a unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["FaultMode", "FaultProxy", "MultiProxy"]

_T = TypeVar("_T")

_CHUNK = 64 * 1024
_HIGH_WATER = 4 * 1024 * 1024  # per direction: stop reading while this much is held


@dataclass(frozen=True)
class FaultMode:
    """The fault in force. ``hold_*``: that direction does not flow; ``*_delay``: seconds each
    byte waits in the proxy before it is forwarded."""

    hold_requests: bool = False
    hold_responses: bool = False
    request_delay: float = 0.0
    response_delay: float = 0.0

    def held(self, upstream: bool) -> bool:
        return self.hold_requests if upstream else self.hold_responses

    def delay(self, upstream: bool) -> float:
        return self.request_delay if upstream else self.response_delay


def _split_hostport(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"target must be 'host:port', got {target!r}")
    return host.strip("[]"), int(port)


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close a connection at once with a TCP RST (SO_LINGER 0), dropping unsent data."""
    if writer is None:
        return
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@dataclass(eq=False)
class _Pipe:
    """One direction of a connection: bytes read from ``reader`` wait in ``queue`` (with their
    arrival time; ``b""`` marks EOF) until they may be written to ``writer``."""

    upstream: bool  # client -> server
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    buffered: int = 0


class _Conn:
    """One proxied connection: two directions, each a reader task and a writer task."""

    def __init__(
        self, proxy: FaultProxy, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client_r = client_r
        self.client_w = client_w
        self.server_w: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def run(self) -> None:
        proxy = self.proxy
        # A full blackhole holds the connection attempt itself, like a cut network.
        while proxy.mode.hold_requests and not self.closed:
            await proxy.wait_change()
        if self.closed:
            return
        try:
            server_r, self.server_w = await asyncio.open_connection(
                proxy.target_host, proxy.target_port
            )
        except OSError:
            self.abort()
            return
        if self.closed:  # reset() while connecting
            _abort(self.server_w)
            return
        loop = asyncio.get_running_loop()
        for pipe in (
            _Pipe(upstream=True, reader=self.client_r, writer=self.server_w),
            _Pipe(upstream=False, reader=server_r, writer=self.client_w),
        ):
            self.tasks.add(loop.create_task(self._pump(pipe)))
            self.tasks.add(loop.create_task(self._deliver(pipe)))
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.close()

    async def _pump(self, pipe: _Pipe) -> None:
        """Read from one side into ``queue`` (b"" marks EOF). Stops reading while the direction
        is held or too much is buffered, so the sender sees TCP back-pressure."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        while True:
            while proxy.mode.held(pipe.upstream) or pipe.buffered >= _HIGH_WATER:
                await proxy.wait_change(0.05)
            try:
                data = await pipe.reader.read(_CHUNK)
            except OSError:
                data = b""
            pipe.queue.append((loop.time(), data))
            pipe.buffered += len(data)
            proxy.notify()
            if not data:
                return

    async def _deliver(self, pipe: _Pipe) -> None:
        """Forward ``queue`` in order, each chunk once its direction flows and its delay is up."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        queue, writer = pipe.queue, pipe.writer
        while True:
            if not queue:
                await proxy.wait_change()
                continue
            arrived, data = queue[0]
            mode = proxy.mode
            if mode.held(pipe.upstream):
                await proxy.wait_change()
                continue
            wait = arrived + mode.delay(pipe.upstream) - loop.time()
            if wait > 0:
                await proxy.wait_change(wait)
                continue
            queue.popleft()
            pipe.buffered -= len(data)
            if not data:  # EOF from the other side: half-close this side
                if writer.can_write_eof() and not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            if writer.is_closing():
                self.abort()
                return
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                self.abort()
                return

    def abort(self) -> None:
        """RST both sides and stop all tasks."""
        if self.closed:
            return
        self.closed = True
        _abort(self.client_w)
        _abort(self.server_w)
        current = asyncio.current_task()
        for t in self.tasks:
            if t is not current:
                t.cancel()
        self.proxy.notify()

    def close(self) -> None:
        """Orderly close after both directions finished."""
        if self.closed:
            return
        self.closed = True
        for w in (self.client_w, self.server_w):
            if w is not None:
                w.close()


class FaultProxy:
    """A TCP proxy ``127.0.0.1:<port>`` -> ``target`` with switchable faults (see module doc).

    Starts listening on construction (``start=False`` to defer; then call :meth:`start`). Use
    :meth:`close` or ``with``: it stops listening, RSTs all connections and stops the thread.
    """

    def __init__(
        self, target: str, *, host: str = "127.0.0.1", port: int = 0, start: bool = True
    ) -> None:
        self.target = target
        self.target_host, self.target_port = _split_hostport(target)
        self.host = host
        self._requested_port = port
        self.port = 0
        self.mode = FaultMode()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed: asyncio.Event | None = None
        if start:
            self.start()

    # ---- lifecycle

    def start(self) -> FaultProxy:
        """Start the loop thread and listen; returns once connections are accepted."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"FaultProxy->{self.target}", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._start_server())
        except BaseException:
            self.close()
            raise
        return self

    async def _start_server(self) -> None:
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(
            self._handle, self.host, self._requested_port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening, RST every connection, stop and join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive() and not loop.is_closed():
            with contextlib.suppress(Exception):
                self._run(self._shutdown())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
        self._loop = None
        self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.abort()
        tasks = [t for t in self._tasks if not t.done()]
        for conn in self._conns:
            tasks.extend(t for t in conn.tasks if not t.done())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0.01)  # let aborted transports run connection_lost (closes sockets)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- addresses

    @property
    def endpoint(self) -> str:
        """``"127.0.0.1:<port>"``: what the client should dial instead of the target."""
        return f"{self.host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Connections currently open through the proxy."""
        return self._run(self._count())

    async def _count(self) -> int:
        return sum(1 for c in self._conns if not c.closed)

    # ---- faults

    def set_mode(self, mode: FaultMode) -> None:
        """Put ``mode`` in force (for combinations the named methods do not offer)."""
        self._run(self._set_mode(mode))

    def blackhole(self) -> None:
        """Both directions stall; bytes are held, connections stay open."""
        self.set_mode(FaultMode(hold_requests=True, hold_responses=True))

    def blackhole_responses(self) -> None:
        """Client->server bytes flow; server->client bytes are held."""
        self.set_mode(FaultMode(hold_responses=True))

    def blackhole_requests(self) -> None:
        """Server->client bytes flow; client->server bytes are held."""
        self.set_mode(FaultMode(hold_requests=True))

    def delay_responses(self, seconds: float) -> None:
        """Server->client bytes are delivered ``seconds`` after they arrived, in order."""
        self.set_mode(FaultMode(response_delay=float(seconds)))

    def delay_requests(self, seconds: float) -> None:
        """Client->server bytes are delivered ``seconds`` after they arrived, in order."""
        self.set_mode(FaultMode(request_delay=float(seconds)))

    def heal(self) -> None:
        """Back to pass-through; held bytes are delivered in order."""
        self.set_mode(FaultMode())

    def reset(self) -> None:
        """RST every current connection on both sides; new connections are accepted."""
        self._run(self._reset())

    async def _set_mode(self, mode: FaultMode) -> None:
        self.mode = mode
        self.notify()

    async def _reset(self) -> None:
        for conn in list(self._conns):
            conn.abort()
        # abort() closes the sockets in callbacks queued ahead of this coroutine's resumption:
        # once reset() returns, the RSTs have been sent.
        await asyncio.sleep(0)

    # ---- loop internals

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError(f"FaultProxy for {self.target} is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    def notify(self) -> None:
        """(loop thread) Wake every coroutine waiting in :meth:`wait_change`."""
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_change(self, timeout: float | None = None) -> None:
        """(loop thread) Sleep until the mode or a queue changes, or ``timeout`` s pass."""
        event = self._changed
        if event is None:
            await asyncio.sleep(timeout or 0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = _Conn(self, reader, writer)
        self._conns.add(conn)
        try:
            await conn.run()
        except (Exception, asyncio.CancelledError):
            conn.abort()
        finally:
            self._conns.discard(conn)
            if task is not None:
                self._tasks.discard(task)

    def __repr__(self) -> str:
        return f"<FaultProxy {self.endpoint} -> {self.target} {self.mode}>"


class MultiProxy:
    """One :class:`FaultProxy` per target (e.g. per cluster member), driven as a unit.

    ``endpoints`` lists the proxies' endpoints in target order: give those to the daemon instead
    of the cluster's. Every fault method applies to all proxies; index it (``multi[i]``) to fault
    a single path. Close it (or use ``with``) to close them all.
    """

    def __init__(self, targets: Sequence[str]) -> None:
        self.proxies: list[FaultProxy] = []
        try:
            for target in targets:
                self.proxies.append(FaultProxy(target))
        except BaseException:
            self.close()
            raise

    @property
    def endpoints(self) -> list[str]:
        """The proxies' ``"127.0.0.1:port"``, in target order."""
        return [p.endpoint for p in self.proxies]

    def __len__(self) -> int:
        return len(self.proxies)

    def __getitem__(self, i: int) -> FaultProxy:
        return self.proxies[i]

    def __iter__(self) -> Iterator[FaultProxy]:
        return iter(self.proxies)

    def set_mode(self, mode: FaultMode) -> None:
        """:meth:`FaultProxy.set_mode` on every proxy."""
        for p in self.proxies:
            p.set_mode(mode)

    def blackhole(self) -> None:
        """:meth:`FaultProxy.blackhole` on every proxy."""
        for p in self.proxies:
            p.blackhole()

    def blackhole_responses(self) -> None:
        """:meth:`FaultProxy.blackhole_responses` on every proxy."""
        for p in self.proxies:
            p.blackhole_responses()

    def blackhole_requests(self) -> None:
        """:meth:`FaultProxy.blackhole_requests` on every proxy."""
        for p in self.proxies:
            p.blackhole_requests()

    def delay_responses(self, seconds: float) -> None:
        """:meth:`FaultProxy.delay_responses` on every proxy."""
        for p in self.proxies:
            p.delay_responses(seconds)

    def delay_requests(self, seconds: float) -> None:
        """:meth:`FaultProxy.delay_requests` on every proxy."""
        for p in self.proxies:
            p.delay_requests(seconds)

    def reset(self) -> None:
        """:meth:`FaultProxy.reset` on every proxy."""
        for p in self.proxies:
            p.reset()

    def heal(self) -> None:
        """:meth:`FaultProxy.heal` on every proxy."""
        for p in self.proxies:
            p.heal()

    def close(self) -> None:
        """Close every proxy. Idempotent."""
        for p in self.proxies:
            p.close()

    def __enter__(self) -> MultiProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
