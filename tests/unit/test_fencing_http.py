"""The HTTP fencing middleware, WSGI and ASGI, without a server: S1 at the application's door."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, MutableMapping
from typing import Any

import pytest

from leaderjob.fencing.http import REQUEST_KEY, AsgiFencing, MemoryMarks, WsgiFencing

CALLS: list[Any] = []


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    CALLS.append(environ.get(REQUEST_KEY))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


def wsgi_call(app: WsgiFencing, token: str | None, path: str = "/jobs/cleanup") -> tuple[int, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": path}
    if token is not None:
        environ["HTTP_LEADERJOB_FENCING_TOKEN"] = token
    status: list[str] = []
    body = b"".join(app(environ, lambda s, _h: status.append(s)))
    code = int(status[0].split()[0])
    return code, (json.loads(body) if code != 200 else body)


async def asgi_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    CALLS.append(scope.get(REQUEST_KEY))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


def asgi_call(app: AsgiFencing, token: str | None, path: str = "/jobs/cleanup") -> tuple[int, Any]:
    headers = [(b"host", b"app")]
    if token is not None:
        headers.append((b"leaderjob-fencing-token", token.encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    code = int(sent[0]["status"])
    body = sent[1]["body"]
    return code, (json.loads(body) if code != 200 else body)


@pytest.fixture(params=["wsgi", "asgi"])
def call(request: pytest.FixtureRequest) -> Any:
    CALLS.clear()
    marks = MemoryMarks()

    def make(**kw: Any) -> Any:
        if request.param == "wsgi":
            app = WsgiFencing(wsgi_app, marks, **kw)
            return lambda token, path="/jobs/cleanup": wsgi_call(app, token, path)
        app2 = AsgiFencing(asgi_app, marks, **kw)
        return lambda token, path="/jobs/cleanup": asgi_call(app2, token, path)

    return make


def test_s1_a_deposed_leaders_call_gets_409_and_never_reaches_the_app(call: Any) -> None:
    c = call()
    assert c("7") == (200, b"done")
    assert c("9") == (200, b"done")
    code, body = c("7")
    assert code == 409
    assert body == {
        "error": "stale fencing token",
        "resource": "/jobs/cleanup",
        "token": 7,
        "high_water": 9,
    }
    assert CALLS == [7, 9], "the stale call must not reach the application"


def test_s1_the_same_token_may_call_again(call: Any) -> None:
    c = call()
    assert c("7")[0] == 200
    assert c("7")[0] == 200
    assert CALLS == [7, 7]


def test_each_path_has_its_own_mark_unless_one_resource_is_named(call: Any) -> None:
    c = call()
    assert c("9", "/a")[0] == 200
    assert c("7", "/b")[0] == 200
    one = call(resource="cleanup")
    assert one("9", "/c")[0] == 200
    assert one("8", "/d")[0] == 409


def test_bad_tokens_are_400_and_missing_ones_pass_unless_required(call: Any) -> None:
    c = call()
    assert c("abc")[0] == 400
    assert c("0")[0] == 400
    assert c(None) == (200, b"done")
    assert CALLS == [None]
    strict = call(require_token=True)
    assert strict(None)[0] == 428


def test_asgi_passes_other_scopes_through() -> None:
    seen: list[str] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = AsgiFencing(app, MemoryMarks())
    asyncio.run(mw({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]
