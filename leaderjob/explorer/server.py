"""The explorer over HTTP: pages, the JSON API and the two assets, read-only (GET only).

:class:`App` routes one request target to (status, content type, body) — no sockets, so it is
tested without a server; :func:`serve` puts it behind a threading HTTP server for `leaderjob ui`,
and the daemon hands :meth:`App.route` to its own HTTP server (`--ui`).

Pages::

    /                               the jobs of the election
    /jobs/<job>?window=6h&until=T   one job: its timeline, the slots not run, upcoming fire times
    /jobs/<job>/runs/<name>         one run in full (?fragment=1: the detail panel's part)

The JSON API (docs/ui.md)::

    /api                            this list
    /api/jobs                       every job's status (as `status --json`, plus upcoming)
    /api/jobs/<job>                 one job's status
    /api/jobs/<job>/timeline        runs, slots not run, leaderships, overlaps (?window, ?until)
    /api/jobs/<job>/runs/<name>     one run (as `history --run --json`, output tails included)
    /api/jobs/<job>/upcoming        the next fire times (?count, at most 100) with DST notes
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from leaderjob.explorer import assets, render
from leaderjob.explorer.data import Source, fire_json
from leaderjob.explorer.model import to_json
from leaderjob.ops.http import PAGE_HEADERS, allowed_host

Response = tuple[int, str, bytes]
HTML = "text/html; charset=utf-8"
#: The longest window a timeline shows (a week of a per-minute job is about 10 000 runs).
MAX_WINDOW = 7 * 86400.0
DEFAULT_WINDOW = "6h"
API_INDEX = {
    "/api/jobs": "every job's status (as `leaderjob status --json`, plus `upcoming`)",
    "/api/jobs/<job>": "one job's status",
    "/api/jobs/<job>/timeline?window=6h&until=<ISO 8601>": "runs, slots not run, leaderships, "
    "overlaps",
    "/api/jobs/<job>/runs/<name>": "one run in full (as `leaderjob history --run --json`)",
    "/api/jobs/<job>/upcoming?count=10": "the next fire times with DST notes",
}


class BadRequest(ValueError):
    pass


class App:
    def __init__(self, source: Source) -> None:
        self.source = source

    def route(self, target: str) -> Response:
        from leaderjob.election.store import StoreError

        path, _, query = target.partition("?")
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        try:
            return self._route(parts, params)
        except BadRequest as exc:
            return _error(parts, 400, str(exc), self.source.election)
        except StoreError as exc:
            return _error(parts, 503, f"cannot read etcd: {exc}", self.source.election)

    def _route(self, parts: list[str], params: dict[str, str]) -> Response:
        election = self.source.election
        if parts == ["assets", "ui.css"]:
            return 200, "text/css; charset=utf-8", assets.CSS.encode()
        if parts == ["assets", "ui.js"]:
            return 200, "text/javascript; charset=utf-8", assets.JS.encode()
        api = parts[:1] == ["api"]
        rest = parts[1:] if api else parts
        if api and not rest:
            return _json(200, API_INDEX)
        if rest in ([], ["jobs"]):
            docs = [self.source.status(j) for j in self.source.jobs()]
            if api:
                return _json(200, docs)
            return 200, HTML, render.jobs_page(election, docs, self.source.clock()).encode()
        if rest[0] == "jobs" and len(rest) >= 2:
            job = self.source.job(rest[1])
            if job is None:
                return _error(parts, 404, f"no job {rest[1]!r} in {election!r}", election)
            tail = rest[2:]
            if tail[:1] == ["runs"] and len(tail) == 2:
                return self._run(job, tail[1], api, params)
            if api and tail == ["upcoming"]:
                count = _int(params.get("count", "10"), "count", 1, 100)
                schedule, fires = self.source.upcoming(job, count)
                return _json(200, {"schedule": schedule, "fires": [fire_json(f) for f in fires]})
            if api and tail == []:
                return _json(200, self.source.status(job))
            if tail == [] or (api and tail == ["timeline"]):
                return self._timeline(job, api, params)
        return _error(parts, 404, "no such page", election)

    def _timeline(self, job: Any, api: bool, params: dict[str, str]) -> Response:
        window_text = params.get("window") or DEFAULT_WINDOW
        window = _window(window_text)
        now = self.source.clock()
        until_text = (params.get("until") or "").strip()
        until = _until(until_text) if until_text else now
        status = self.source.status(job)
        timeline = self.source.timeline(job, until - window, until, status)
        if api:
            return _json(200, to_json(timeline))
        schedule, fires = self.source.upcoming(job, 10)
        body = render.job_page(
            self.source.election,
            status,
            timeline,
            [fire_json(f) for f in fires],
            schedule,
            window_text,
            until_text,
            now,
        )
        return 200, HTML, body.encode()

    def _run(self, job: Any, name: str, api: bool, params: dict[str, str]) -> Response:
        record = self.source.run(job, name)
        if record is None:
            return _error(
                ["api"] if api else [],
                404,
                f"no record {name!r}: it may have been pruned (history keeps the newest "
                "--history-limit records)",
                self.source.election,
            )
        if api:
            return _json(200, record)
        fragment = render.run_detail(job.name, record)
        if params.get("fragment"):
            return 200, HTML, fragment.encode()
        return (
            200,
            HTML,
            render.page(f"run {record.get('run_id')}", fragment, self.source.election).encode(),
        )


def _window(text: str) -> float:
    from leaderjob.units import DurationError, parse_duration

    try:
        window = parse_duration(text)
    except DurationError as exc:
        raise BadRequest(f"window {text!r}: {exc}") from None
    if not 0 < window <= MAX_WINDOW:
        raise BadRequest(f"window {text!r}: give a duration from 1m to 7d, e.g. 6h")
    return window


def _until(text: str) -> float:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise BadRequest(
            f"until {text!r}: give an ISO 8601 time with a zone, e.g. 2026-11-30T06:00:00Z"
        )
    return t.astimezone(UTC).timestamp()


def _int(text: str, name: str, lo: int, hi: int) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise BadRequest(f"{name} {text!r}: give a whole number from {lo} to {hi}")
    return int(text)


def _json(code: int, body: Any) -> Response:
    return code, "application/json", (json.dumps(body, indent=2) + "\n").encode()


def _error(parts: list[str], code: int, text: str, election: str) -> Response:
    if parts[:1] == ["api"]:
        return _json(code, {"error": text})
    title = {400: "Bad request", 404: "Not found", 503: "etcd unavailable"}.get(code, "Error")
    return code, HTML, render.message_page(election, title, text).encode()


def handler(route: Callable[[str], Response], listen_host: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not allowed_host(self.headers.get("Host", ""), listen_host):
                code, ctype, body = 421, "text/plain", b"this page answers to localhost only\n"
            else:
                try:
                    code, ctype, body = route(self.path)
                except Exception as exc:  # one bad request must not end the server
                    code, ctype, body = _json(500, {"error": type(exc).__name__})
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            for name, value in PAGE_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    return Handler


def serve(app: App, addr: tuple[str, int]) -> Any:
    """Start serving ``app`` on ``addr`` in a thread; returns the server (``server_address``,
    ``shutdown()``)."""
    from leaderjob.ops.http import _Listener

    httpd = _Listener(addr, handler(app.route, addr[0]))
    threading.Thread(target=httpd.serve_forever, name="leaderjob-ui", daemon=True).start()
    return httpd


def timed(app: App, target: str) -> tuple[Response, float]:
    """One request and its server time in seconds (the benchmark's measure)."""
    start = time.perf_counter()
    response = app.route(target)
    return response, time.perf_counter() - start
