"""HTTP endpoints for Prometheus and Kubernetes probes.

``/metrics``  the daemon's own registry, in the format the scraper's ``Accept`` asks for (Prometheus
              text, or OpenMetrics), gzipped when ``Accept-Encoding`` allows — prometheus-client's
              own exposition helpers, as its ``MetricsHandler`` uses them.
``/healthz``  liveness: 200 while the loop turns and, on a leader, renewals are on time; 500 if the
              loop is stuck or a leader's renewal is overdue.
``/readyz``   200 while connected to etcd and campaigning or leading; 503 otherwise.
``/leader``   200 with ``{identity, token, since}`` on the leader, 503 elsewhere — so a Service
              or load balancer can route to the current leader. A daemon of a group of jobs
              (``--jobs``) has no one token: it answers 200 while it leads any job, with
              ``jobs`` (job → ``{leading, token}``); ``/leader?job=NAME`` answers for that job
              alone (200 with its token on its leader, 503 elsewhere, 404 for no such job).
``/status``   JSON: this replica's view (what ``leaderjob status`` shows, and more).

With ``--ui``, every other path goes to the read-only run explorer (``leaderjob ui``'s pages and
``/api``; :mod:`leaderjob.explorer`), handed in as ``pages``.

The daemon publishes an immutable snapshot after every cycle; handlers only read the latest one,
so a slow scrape never touches the loop.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # prometheus_client is imported only once /metrics is served
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric


Snapshot = Mapping[str, Any]
#: The daemon's own endpoints; with ``pages``, every other path is theirs.
OWN_PATHS = ("/metrics", "/healthz", "/readyz", "/leader", "/status")
#: Sent with every HTML page (the run explorer's): nothing but the server's own script and
#: style, never framed, nothing sniffed, nothing kept.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def parse_addr(addr: str) -> tuple[str, int] | None:
    """``HOST:PORT`` → (host, port); ``off`` → None. Raises ValueError with a readable message."""
    if addr.strip().lower() in ("off", "none", ""):
        return None
    host, sep, port = addr.strip().rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if (
        not sep
        or not port.isdigit()
        or not 0 <= int(port) < 65536
        or (":" in host and not bracketed)
        or "[" in host
        or "]" in host
    ):
        raise ValueError(
            f"--metrics-addr {addr!r}: write HOST:PORT (e.g. 0.0.0.0:9102, or [::]:9102 for "
            "IPv6 and IPv4) or off"
        )
    return (host or "0.0.0.0", int(port))  # noqa: S104 - a sidecar serves the pod IP


def allowed_host(host_header: str, listen_host: str) -> bool:
    """A page served on loopback answers only to a loopback name: a web site the operator
    visits cannot point a name of its own at 127.0.0.1 and read the page (DNS rebinding).
    Served on any other address, every Host is accepted."""
    loopback = {"localhost", "127.0.0.1", "::1"}
    if listen_host not in loopback:
        return True
    host = host_header.strip().lower()
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    return name in loopback


def health(snapshot: Snapshot, now: float) -> tuple[bool, str]:
    """Liveness verdict from a snapshot: (ok, reason)."""
    interval = float(snapshot["renew_interval"])
    stuck_after = max(5.0, 3 * interval)
    if now - float(snapshot["loop_at"]) > stuck_after:
        return False, f"loop stuck for {now - float(snapshot['loop_at']):.1f}s"
    last_ok = snapshot.get("renewed_at")
    if snapshot["leader"] and last_ok is not None and now - float(last_ok) > 1.5 * interval:
        return False, f"leader renewal overdue by {now - float(last_ok) - interval:.1f}s"
    return True, "ok"


def connected(snapshot: Snapshot, now: float) -> bool:
    """A call to etcd succeeded within the renew deadline."""
    last = snapshot.get("last_contact")
    return last is not None and now - float(last) < float(snapshot["connected_within"])


def ready(snapshot: Snapshot, now: float) -> tuple[bool, str]:
    if not connected(snapshot, now):
        return False, "not connected to etcd"
    if snapshot["phase"] not in ("campaigning", "leading"):
        return False, f"not campaigning ({snapshot.get('idle_reason') or snapshot['phase']})"
    return True, snapshot["phase"]


def public_view(snapshot: Snapshot, now: float) -> dict[str, Any]:
    """The JSON for /status: monotonic times turned into durations relative to now."""
    hidden = ("loop_at", "renewed_at", "deadline", "last_contact", "connected_within")
    view = {k: v for k, v in snapshot.items() if k not in hidden}
    view["connected"] = connected(snapshot, now)
    deadline = snapshot.get("deadline")
    view["deadline_remaining_seconds"] = (
        round(float(deadline) - now, 3) if deadline is not None and snapshot["leader"] else None
    )
    return view


def leader_view(snapshot: Snapshot, job: str | None = None) -> tuple[int, dict[str, Any]]:
    """``/leader``: (status, body). One job: its token. A group: every job's leadership, or
    ``job``'s alone."""
    body: dict[str, Any] = {
        "leader": bool(snapshot["leader"]),
        "election": snapshot["election"],
        "identity": snapshot["identity"],
        "token": snapshot["token"],
        "since": snapshot.get("leading_since"),
    }
    jobs: Mapping[str, Mapping[str, Any]] | None = snapshot.get("jobs")
    if jobs is None:
        if job is not None:
            return 404, {"error": f"election {snapshot['election']!r} runs no jobs file: drop ?job"}
        return (200 if body["leader"] else 503), body
    led = {
        name: {
            "leading": bool(j["leader"]),
            "token": j["token"] if j["leader"] else None,
            "since": j.get("leading_since") if j["leader"] else None,
        }
        for name, j in sorted(jobs.items())
    }
    if job is not None:
        if job not in led:
            return 404, {"error": f"no job {job!r} in election {snapshot['election']!r}"}
        body.update(
            job=job, leader=led[job]["leading"], token=led[job]["token"], since=led[job]["since"]
        )
        return (200 if body["leader"] else 503), body
    # A group's daemon holds one token per job it leads, none of its own.
    body.update(leader=any(j["leading"] for j in led.values()), token=None, since=None, jobs=led)
    return (200 if body["leader"] else 503), body


class Server:
    def __init__(
        self,
        addr: tuple[str, int],
        registry: CollectorRegistry,
        snapshot: Callable[[], Snapshot],
        clock: Callable[[], float] = time.monotonic,
        pages: Callable[[str], tuple[int, str, bytes]] | None = None,
    ) -> None:
        self.registry = registry
        self.snapshot = snapshot
        self.clock = clock
        self.pages = pages
        self.listen_host = addr[0]
        handler = _make_handler(self)
        self.httpd = _Listener(addr, handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="leaderjob-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def metrics(self, accept: str = "", accept_encoding: str = "") -> tuple[str, bytes, bool]:
        """/metrics: (content type, body, gzipped)."""
        from prometheus_client.exposition import choose_encoder, gzip_accepted

        encoder, content_type = choose_encoder(accept)
        body = encoder(_WithoutCreated(self.registry))
        if gzip_accepted(accept_encoding):
            return content_type, gzip.compress(body), True
        return content_type, body, False

    def route(self, target: str) -> tuple[int, str, bytes]:
        path, _, query = target.partition("?")
        if path == "/metrics":
            content_type, text, _ = self.metrics()
            return 200, content_type, text
        snap = self.snapshot()
        now = self.clock()
        if path == "/healthz":
            ok, why = health(snap, now)
            return _json(200 if ok else 500, {"ok": ok, "reason": why})
        if path == "/readyz":
            ok, why = ready(snap, now)
            return _json(200 if ok else 503, {"ok": ok, "reason": why})
        if path == "/leader":
            job = urllib.parse.parse_qs(query).get("job", [None])[-1]
            return _json(*leader_view(snap, job))
        if path == "/status":
            return _json(200, public_view(snap, now))
        if self.pages is not None:
            return self.pages(target)
        return _json(404, {"error": f"no such endpoint {path}"})


class _WithoutCreated:
    """The registry without the ``_created`` series of counters and histograms: they double the
    series for a value nobody graphs. Filtered here rather than with prometheus-client's
    process-wide ``disable_created_metrics()``, which would also change the counters of an
    application that hosts an in-process ``Leadership`` on its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if family.type in ("counter", "histogram", "summary", "gaugehistogram"):
                created = f"{family.name}_created"
                family.samples = [s for s in family.samples if s.name != created]
            yield family


class _Listener(ThreadingHTTPServer):
    """A threading HTTP server on IPv4 or IPv6. An IPv6 wildcard (``[::]``) is dual-stack: it
    accepts IPv4 clients too (as IPv4-mapped addresses), whatever the host's
    ``net.ipv6.bindv6only`` default says."""

    daemon_threads = True

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            with contextlib.suppress(OSError):  # a kernel without dual-stack keeps IPv6 only
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _json(code: int, body: Any) -> tuple[int, str, bytes]:
    return code, "application/json", (json.dumps(body, indent=2) + "\n").encode()


def _make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            gzipped = False
            try:
                path = self.path.partition("?")[0]
                if (
                    server.pages is not None
                    and path not in OWN_PATHS
                    and not allowed_host(self.headers.get("Host", ""), server.listen_host)
                ):
                    code, ctype, body = 421, "text/plain", b"this page answers to localhost only\n"
                elif self.path.partition("?")[0] == "/metrics":
                    ctype, body, gzipped = server.metrics(
                        self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
                    )
                    code = 200
                else:
                    code, ctype, body = server.route(self.path)
            except Exception as exc:
                code, ctype, body = _json(500, {"error": type(exc).__name__})
                gzipped = False
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            if ctype.startswith("text/html"):
                for name, value in PAGE_HEADERS.items():
                    self.send_header(name, value)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept, Accept-Encoding")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # probes every few seconds would drown the daemon's own log

    return Handler
