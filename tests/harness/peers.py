"""Cut an etcd member off from its peers while its clients still reach it.

:class:`IsolatableCluster` is an :class:`~tests.harness.etcd.EtcdCluster` whose members advertise
their peer URLs through one :class:`PeerProxy` each, so every byte of raft traffic passes a proxy.
:meth:`IsolatableCluster.isolate_from_peers` then drops the member's raft traffic both ways:
connections *to* it (at its own proxy) and connections *from* it (at the others' proxies). Its
client port is untouched: clients keep talking to a member that has no leader, the fault that
etcd's require-leader metadata exists for.

How a connection's sender is known: rafthttp puts ``X-Server-From: <member id hex>`` on every
request it makes (the stream dials, pipeline and snapshot posts). The proxy reads the first
request head before it connects upstream, and keeps scanning what the client sends after it:
etcd's prober shares the pipeline transport, so a connection opened by a probe (no header) is
later reused for raft posts. A connection to an isolated member, or from one, is reset; new
ones are refused until :meth:`IsolatableCluster.heal_peers`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from .etcd import EtcdCluster, EtcdMember, free_port

_HEAD_LIMIT = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the other side sees the connection die at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


_FROM = b"x-server-from:"


def sender_id(data: bytes) -> str | None:
    """The member id (hex) of the last ``X-Server-From`` header in ``data``, if any."""
    lowered = data.lower()
    i = lowered.rfind(_FROM)
    if i < 0:
        return None
    end = lowered.find(b"\r\n", i)
    if end < 0:
        return None
    return lowered[i + len(_FROM) : end].strip().decode(errors="replace")


class PeerNet:
    """What the peer proxies share: member ids, who is isolated, the open connections."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.isolated: set[str] = set()
        self.names_by_id: dict[str, str] = {}  # "8e9e05c52164694d" -> "m0"
        #: (sender's member id, receiving member's name, client socket, upstream socket). Ids, not
        #: names: connections made before the ids were learnt must be found by cut() too.
        self.conns: list[tuple[str | None, str, socket.socket, socket.socket | None]] = []

    def blocked(self, src_id: str | None, dst: str) -> bool:
        with self.lock:
            src = None if src_id is None else self.names_by_id.get(src_id)
            return dst in self.isolated or (src is not None and src in self.isolated)

    def cut(self, name: str) -> None:
        with self.lock:
            self.isolated.add(name)
            doomed = [
                c
                for c in self.conns
                if c[1] == name or (c[0] is not None and self.names_by_id.get(c[0]) == name)
            ]
            self.conns = [c for c in self.conns if c not in doomed]
        for _src, _dst, client, upstream in doomed:
            _reset(client)
            if upstream is not None:
                _reset(upstream)


class PeerProxy:
    """A TCP proxy in front of one member's peer port (threads; plain HTTP between members)."""

    def __init__(self, net: PeerNet, name: str, target_port: int) -> None:
        self.net = net
        self.name = name
        self.target_port = target_port
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port), backlog=64)
        self._closed = False
        threading.Thread(target=self._accept, name=f"peer-proxy-{name}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.net.blocked(None, self.name):
            _reset(client)
            return
        head = b""
        client.settimeout(5.0)
        try:
            while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
                chunk = client.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError:
            _reset(client)
            return
        client.settimeout(None)
        src = sender_id(head)
        if self.net.blocked(src, self.name):
            _reset(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5.0)
            upstream.settimeout(None)
            upstream.sendall(head)
        except OSError:
            _reset(client)
            return
        with self.net.lock:
            self.net.conns.append((src, self.name, client, upstream))
        back = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        back.start()
        self._pump(client, upstream, True, head[-256:])
        back.join()
        # Both directions ended: forget the pair and close both sockets (raft redials all the
        # time while a member is down; a long soak must not pile up sockets).
        with self.net.lock:
            self.net.conns = [c for c in self.net.conns if c[2] is not client]
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(
        self, src: socket.socket, dst: socket.socket, requests: bool, tail: bytes = b""
    ) -> None:
        """Copy ``src`` to ``dst``; on the request side, check every request's sender."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if requests:
                    sender = sender_id(tail + data)
                    tail = (tail + data)[-256:]
                    if self.net.blocked(sender, self.name):
                        _reset(src)
                        _reset(dst)
                        return
                    if sender is not None:
                        self._tag(src, sender)
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _tag(self, client: socket.socket, sender: str) -> None:
        with self.net.lock:
            self.net.conns = [
                (sender, d, c, u) if c is client else (s, d, c, u) for s, d, c, u in self.net.conns
            ]


class _ProxiedMember(EtcdMember):
    """A member that listens on its own peer port but advertises its proxy's URL."""

    def __init__(self, *args: Any, advertise_peer_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.advertise_peer_url = advertise_peer_url

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--initial-advertise-peer-urls")
        cmd[i + 1] = self.advertise_peer_url
        return cmd


class IsolatableCluster(EtcdCluster):
    """An :class:`EtcdCluster` whose members can be cut off from their peers, not clients."""

    def __init__(self, size: int = 3, **kwargs: Any) -> None:
        self.net = PeerNet()
        self.peer_proxies: dict[str, PeerProxy] = {}
        super().__init__(size, **kwargs)

    def _make_members(self) -> None:
        for proxy in self.peer_proxies.values():
            proxy.close()
        self.net = PeerNet()
        names = [f"m{i}" for i in range(self.size)]
        ports = {n: (free_port(), free_port()) for n in names}
        self.peer_proxies = {n: PeerProxy(self.net, n, ports[n][1]) for n in names}
        initial = ",".join(f"{n}={self.peer_proxies[n].url}" for n in names)
        token = f"ljtest-{Path(self.base_dir).name}"
        self.members = [
            _ProxiedMember(
                n,
                client_port=ports[n][0],
                peer_port=ports[n][1],
                data_dir=self.base_dir / f"{n}.etcd",
                log_path=self.base_dir / f"{n}.log",
                initial_cluster=initial,
                cluster_token=token,
                advertise_peer_url=self.peer_proxies[n].url,
                **self._member_kwargs,
            )
            for n in names
        ]

    def isolate_from_peers(self, i: int) -> EtcdMember:
        """Cut member ``i``'s raft traffic both ways; its clients still reach it."""
        member = self.members[i]
        ids = {}
        for m in self.running_members():
            m.status(timeout=2.0)
            if m.member_id is not None:
                ids[f"{m.member_id:x}"] = m.name
        with self.net.lock:
            self.net.names_by_id.update(ids)
        self.net.cut(member.name)
        return member

    def heal_peers(self) -> None:
        with self.net.lock:
            self.net.isolated.clear()

    def close(self) -> None:
        super().close()
        for proxy in self.peer_proxies.values():
            proxy.close()
