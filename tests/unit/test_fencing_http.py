"""The HTTP fencing middleware, WSGI and ASGI, without a server: S1 at the application's door."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, MutableMapping
from typing import Any

import pytest

from leaderjob.fencing.http import REQUEST_KEY, AsgiFencing, MemoryMarks, WsgiFencing, trusted

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
        kw.setdefault("verify", trusted)
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


def test_bad_tokens_are_400_and_missing_ones_428_unless_allowed(call: Any) -> None:
    c = call()
    assert c("abc")[0] == 400
    assert c("0")[0] == 400
    assert c(str(2**63))[0] == 400  # beyond etcd's revisions (SqlMarks answered 500)
    assert c(None)[0] == 428  # required by default
    lax = call(require_token=False)
    assert lax(None) == (200, b"done")
    assert CALLS == [None]


def test_asgi_passes_other_scopes_through() -> None:
    seen: list[str] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = AsgiFencing(app, MemoryMarks(), verify=trusted)
    asyncio.run(mw({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_resource_names_are_normalised_so_slashes_do_not_bypass_the_mark(call: Any) -> None:
    """``/cleanup/``, ``//cleanup`` and ``/x/../cleanup`` used to be marks of their own."""
    c = call()
    assert c("9", "/cleanup")[0] == 200
    for path in ("/cleanup/", "//cleanup", "/x/../cleanup", "/./cleanup"):
        code, body = c("7", path)
        assert code == 409 and body["resource"] == "/cleanup", (path, body)


def test_a_resource_function_may_leave_paths_unfenced(call: Any) -> None:
    c = call(resource=lambda path: "jobs" if path.startswith("/jobs/") else None)
    assert c(None, "/healthz") == (200, b"done")
    assert c(None, "/jobs/cleanup")[0] == 428


def test_an_unverified_token_gets_403_and_never_raises_the_mark(call: Any) -> None:
    """Any client could send token 10**30 and lock the real leader out for good."""
    c = call(verify=lambda token: token == 9)
    assert c("9")[0] == 200
    code, body = c(str(10**18))
    assert code == 403 and body["error"] == "unverified fencing token"
    assert c("9")[0] == 200  # the mark is still 9
    assert CALLS == [9, 9]


def test_verify_must_be_chosen() -> None:
    with pytest.raises(ValueError, match="verify=LeaderTokens"):
        WsgiFencing(wsgi_app, MemoryMarks())


def test_memory_marks_are_bounded_and_never_evict(call: Any) -> None:
    from leaderjob.fencing.http import MarksFull

    marks = MemoryMarks(limit=2)
    marks.advance("/a", 5)
    marks.advance("/b", 5)
    with pytest.raises(MarksFull):
        marks.advance("/c", 5)
    marks.advance("/a", 6)  # known resources go on
    app = WsgiFencing(wsgi_app, marks, verify=trusted)
    assert wsgi_call(app, "7", "/d")[0] == 503
