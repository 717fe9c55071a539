"""HTTP fencing: WSGI and ASGI middleware for an application called by a leaderjob job.

The sidecar pattern (``deploy/kubernetes/examples/http-endpoint``): the scheduled job is an HTTP
call to the application, carrying its token in the ``Leaderjob-Fencing-Token`` header. The
middleware checks the header before the application sees the request:

* token below the high-water mark → **409 Conflict** (JSON body), the application is not called;
* token at or above the mark → the mark becomes the token (in the same atomic step of the store),
  then the application runs, with the token in ``environ["leaderjob.fencing_token"]`` (WSGI) or
  ``scope["leaderjob.fencing_token"]`` (ASGI);
* a header that is not a positive integer (or beyond etcd's 64-bit revisions) → **400**; no
  header → **428** (``require_token=False`` lets it through);
* a token above the mark that ``verify`` does not vouch for → **403**, the mark unchanged: any
  client could otherwise send token 10³⁰ and lock the real leader out for good.
  :class:`leaderjob.fencing.etcd.LeaderTokens` checks that the token is the create revision of
  the election's live leader key; :func:`trusted` vouches for every token, for endpoints only
  authenticated callers reach (your own authentication in front, a pod's loopback).

Resources are named from the normalised path (``//cleanup/`` and ``/cleanup`` are one), or by
``resource`` (a name, or a function of the path; ``None`` from it: not fenced, e.g. ``/healthz``).
:class:`MemoryMarks` and :class:`~leaderjob.fencing.sql.SqlMarks` hold at most ``limit`` resources
(a new one beyond it: **503**, never an eviction, which would forget a mark).

The mark lives in a :class:`Marks` store: :class:`MemoryMarks` for one process, or
:class:`leaderjob.fencing.sql.SqlMarks` (the SQL fence, shared by every replica). The check at the
door stops a deposed leader's call from starting; writes the application makes to a database
should be fenced in their own transaction too (:func:`leaderjob.fencing.sql.advance`), since a call
admitted a moment before its successor may still be running.

Standard library only.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from leaderjob.fencing import FencingError, StaleToken, parse_token

__all__ = [
    "HEADER",
    "REQUEST_KEY",
    "AsgiFencing",
    "Marks",
    "MarksFull",
    "MemoryMarks",
    "WsgiFencing",
    "normalise",
    "trusted",
]

HEADER = "Leaderjob-Fencing-Token"
_WSGI_KEY = "HTTP_" + HEADER.upper().replace("-", "_")
_ASGI_KEY = HEADER.lower().encode()
REQUEST_KEY = "leaderjob.fencing_token"


class Marks(Protocol):
    """A high-water-mark store: accept ``token >= mark`` and raise the mark, atomically."""

    def advance(self, resource: str, token: int) -> None:
        """Raise :class:`StaleToken` if ``token`` is below the mark; else set the mark to it."""
        ...


class MarksFull(FencingError):
    """The store holds as many resources as it may: a new one is refused (never evicted)."""


class MemoryMarks:
    """Marks in memory, for one process: they start from zero on restart, so a deposed
    leader's call after a restart of the application passes (use :class:`SqlMarks` for marks
    that survive, and are shared by replicas). At most ``limit`` resources."""

    def __init__(self, limit: int = 1024) -> None:
        self._marks: dict[str, int] = {}
        self._lock = threading.Lock()
        self.limit = limit

    def advance(self, resource: str, token: int) -> None:
        with self._lock:
            mark = self._marks.get(resource)
            if mark is None:
                if len(self._marks) >= self.limit:
                    raise MarksFull(f"{self.limit} fenced resources already: {resource!r} refused")
                mark = 0
            if token < mark:
                raise StaleToken(resource, token, mark)
            self._marks[resource] = token

    def get(self, resource: str) -> int | None:
        with self._lock:
            return self._marks.get(resource)


def normalise(path: str) -> str:
    """One name per resource: ``.``/``..`` resolved, repeated and trailing slashes dropped."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def trusted(token: int) -> bool:
    """A ``verify`` that vouches for every token: only for an endpoint that only authenticated
    callers reach (any caller could otherwise raise the mark and lock the leader out)."""
    return True


@dataclass(frozen=True)
class _Refusal:
    status: int
    reason: str
    body: dict[str, Any]


class _Check:
    """The decision shared by both middlewares: a refusal, the admitted token, or None (no
    header, allowed)."""

    def __init__(
        self,
        marks: Marks,
        resource: Callable[[str], str | None] | str,
        require_token: bool,
        verify: Callable[[int], bool] | None,
    ) -> None:
        if verify is None:
            raise ValueError(
                "fencing middleware: pass verify=LeaderTokens(store, prefix, election) to check "
                "each token against etcd, or verify=trusted when only authenticated callers "
                "reach the endpoint: an unverified token could raise the mark and lock the "
                "leader out"
            )
        self.marks = marks
        self.resource = (lambda _path: resource) if isinstance(resource, str) else resource
        self.require_token = require_token
        self.verify = verify

    def __call__(self, header: str | None, path: str) -> _Refusal | int | None:
        resource = self.resource(normalise(path))
        if resource is None:
            return None  # not a fenced endpoint
        if header is None:
            if self.require_token:
                return _Refusal(428, "Precondition Required", {"error": f"{HEADER} required"})
            return None
        try:
            token = parse_token(header, source=HEADER)
        except FencingError as exc:
            return _Refusal(400, "Bad Request", {"error": str(exc)})
        if not self.verify(token):
            body = {"error": "unverified fencing token", "resource": resource, "token": token}
            return _Refusal(403, "Forbidden", body)
        try:
            self.marks.advance(resource, token)
        except MarksFull as exc:
            return _Refusal(503, "Service Unavailable", {"error": str(exc)})
        except StaleToken as exc:
            body = {
                "error": "stale fencing token",
                "resource": resource,
                "token": token,
                "high_water": exc.high_water,
            }
            return _Refusal(409, "Conflict", body)
        return token


class WsgiFencing:
    """WSGI middleware: ``app = WsgiFencing(app, MemoryMarks(), resource="cleanup")``.

    ``resource`` is one name for every request, or a function of the normalised request path
    (default: that path, so each endpoint has its own mark; ``None``: not fenced). ``verify``
    is required (see the module's doc).
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        marks: Marks,
        *,
        resource: Callable[[str], str | None] | str = normalise,
        require_token: bool = True,
        verify: Callable[[int], bool] | None = None,
    ) -> None:
        self.app = app
        self.check = _Check(marks, resource, require_token, verify)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        decision = self.check(environ.get(_WSGI_KEY), str(environ.get("PATH_INFO", "")))
        if isinstance(decision, _Refusal):
            data = json.dumps(decision.body).encode()
            start_response(
                f"{decision.status} {decision.reason}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
            )
            return [data]
        if decision is not None:
            environ[REQUEST_KEY] = decision
        return self.app(environ, start_response)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AsgiFencing:
    """ASGI middleware (HTTP scopes only; others pass through). The store is called in a worker
    thread, so a database-backed store does not block the event loop."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        marks: Marks,
        *,
        resource: Callable[[str], str | None] | str = normalise,
        require_token: bool = True,
        verify: Callable[[int], bool] | None = None,
    ) -> None:
        self.app = app
        self.check = _Check(marks, resource, require_token, verify)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if bytes(name).lower() == _ASGI_KEY:
                header = bytes(value).decode("latin-1")
                break
        path = str(scope.get("path", ""))
        decision = await asyncio.to_thread(self.check, header, path)
        if isinstance(decision, _Refusal):
            data = json.dumps(decision.body).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": decision.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(data)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": data})
            return
        if decision is not None:
            scope[REQUEST_KEY] = decision
        await self.app(scope, receive, send)
