"""HTTP fencing: WSGI and ASGI middleware for an application called by a leaderjob job.

The sidecar pattern (``deploy/kubernetes/examples/http-endpoint``): the scheduled job is an HTTP
call to the application, carrying its token in the ``Leaderjob-Fencing-Token`` header. The
middleware checks the header before the application sees the request:

* token below the high-water mark → **409 Conflict** (JSON body), the application is not called;
* token at or above the mark → the mark becomes the token (in the same atomic step of the store),
  then the application runs, with the token in ``environ["leaderjob.fencing_token"]`` (WSGI) or
  ``scope["leaderjob.fencing_token"]`` (ASGI);
* a header that is not a positive integer → **400**; no header → passed through, or 428 with
  ``require_token=True``.

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

__all__ = ["HEADER", "REQUEST_KEY", "AsgiFencing", "Marks", "MemoryMarks", "WsgiFencing"]

HEADER = "Leaderjob-Fencing-Token"
_WSGI_KEY = "HTTP_" + HEADER.upper().replace("-", "_")
_ASGI_KEY = HEADER.lower().encode()
REQUEST_KEY = "leaderjob.fencing_token"


class Marks(Protocol):
    """A high-water-mark store: accept ``token >= mark`` and raise the mark, atomically."""

    def advance(self, resource: str, token: int) -> None:
        """Raise :class:`StaleToken` if ``token`` is below the mark; else set the mark to it."""
        ...


class MemoryMarks:
    """Marks in memory, for one process (they start from zero on restart)."""

    def __init__(self) -> None:
        self._marks: dict[str, int] = {}
        self._lock = threading.Lock()

    def advance(self, resource: str, token: int) -> None:
        with self._lock:
            mark = self._marks.get(resource, 0)
            if token < mark:
                raise StaleToken(resource, token, mark)
            self._marks[resource] = token

    def get(self, resource: str) -> int | None:
        with self._lock:
            return self._marks.get(resource)


def _resource_default(path: str) -> str:
    return path


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
        resource: Callable[[str], str] | str,
        require_token: bool,
    ) -> None:
        self.marks = marks
        self.resource = (lambda _path: resource) if isinstance(resource, str) else resource
        self.require_token = require_token

    def __call__(self, header: str | None, path: str) -> _Refusal | int | None:
        if header is None:
            if self.require_token:
                return _Refusal(428, "Precondition Required", {"error": f"{HEADER} required"})
            return None
        try:
            token = parse_token(header, source=HEADER)
        except FencingError as exc:
            return _Refusal(400, "Bad Request", {"error": str(exc)})
        resource = self.resource(path)
        try:
            self.marks.advance(resource, token)
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

    ``resource`` is one name for every request, or a function of the request path (default: the
    path itself, so each endpoint has its own mark).
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        marks: Marks,
        *,
        resource: Callable[[str], str] | str = _resource_default,
        require_token: bool = False,
    ) -> None:
        self.app = app
        self.check = _Check(marks, resource, require_token)

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
        resource: Callable[[str], str] | str = _resource_default,
        require_token: bool = False,
    ) -> None:
        self.app = app
        self.check = _Check(marks, resource, require_token)

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
