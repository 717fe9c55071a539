"""The run explorer's pure parts (the timeline's view model, its SVG, the upcoming fire times),
the window read of the history on the in-memory store, and the routes of the app over it.

What the page must show is the promise made visible: one bar per run in the lane of the replica
that ran it, a marker where the token changed (S2: tokens of a job only grow; each leadership is
one token), a tick with its reason for each slot that did not run (L3: none is lost silently),
and any overlap of two runs in red (S3 and the deadline rule say it never happens)."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from leaderjob import cli
from leaderjob.clock import SystemClock
from leaderjob.election.memory import MemoryStore
from leaderjob.explorer import model, svg
from leaderjob.explorer.data import Source
from leaderjob.explorer.server import App, allowed_host
from leaderjob.explorer.upcoming import upcoming
from leaderjob.history.records import ElectionData, iso, not_run_record
from leaderjob.history.runs import stamp_blocks
from leaderjob.schedule import parse_schedule, slot_id

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def run(n: int, who: str, token: int, *, start: float = 0.0, secs: float = 0.5, **kw: object):  # type: ignore[no-untyped-def]
    at = T0 + timedelta(seconds=n + start)
    rec = {
        "run_id": f"{n:012x}",
        "slot": slot_id(T0 + timedelta(seconds=n)),
        "scheduled_time": iso(T0 + timedelta(seconds=n)),
        "started_at": iso(at),
        "finished_at": iso(at + timedelta(seconds=secs)),
        "duration_seconds": secs,
        "identity": who,
        "token": token,
        "outcome": "succeeded",
        "attempt": 0,
    }
    rec.update(kw)
    return (f"{n:013d}-{rec['run_id']}", rec)


def missed(n: int, who: str, token: int):  # type: ignore[no-untyped-def]
    fire = T0 + timedelta(seconds=n)
    rec = not_run_record(slot_id(fire), fire, "missed", outcome="missed", token=token, identity=who)
    return (f"{n:013d}-missed", rec)


def build(records, **kw):  # type: ignore[no-untyped-def]
    return model.build("job", T0.timestamp(), T0.timestamp() + 60, records, **kw)


# -- the view model --------------------------------------------------------------------------


def test_one_bar_per_run_in_the_lane_of_its_replica_and_a_marker_per_token_S2() -> None:
    records = [run(1, "a", 5), run(2, "a", 5), missed(3, "b", 9), run(4, "b", 9), run(5, "c", 12)]
    t = build(list(reversed(records)))  # any order in
    assert [(b.lane, b.token) for b in t.bars] == [("a", 5), ("a", 5), ("b", 9), ("c", 12)]
    assert t.lanes == ["a", "b", "c"]
    assert [(m.token, m.identity) for m in t.markers] == [(5, "a"), (9, "b"), (12, "c")]
    # The new leader's first record (the slot it recorded as missed) places its marker.
    assert t.markers[1].at == (T0 + timedelta(seconds=3)).timestamp()
    assert [(k.reason, k.slot) for k in t.ticks] == [("missed", records[2][1]["slot"])]
    assert t.counts == {"runs": 4, "missed": 1}
    assert t.overlaps == []


def test_a_range_record_is_one_band_standing_for_its_count_L3() -> None:
    first = slot_id(T0 + timedelta(seconds=10))
    rec = not_run_record(slot_id(T0 + timedelta(seconds=30)), T0 + timedelta(seconds=30),
                         "missed", outcome="missed", token=3, identity="b",
                         first_slot=first, count=21)  # fmt: skip
    t = build([("x", rec)])
    (tick,) = t.ticks
    assert (tick.at, tick.until, tick.slots) == (
        (T0 + timedelta(seconds=10)).timestamp(),
        (T0 + timedelta(seconds=30)).timestamp(),
        21,
    )
    assert t.counts["missed"] == 21


def test_overlapping_runs_are_flagged_and_merged_S3() -> None:
    records = [
        run(1, "a", 5, secs=5),
        run(3, "b", 9, secs=1),
        run(5, "b", 9, secs=2),
        run(20, "c", 12),
    ]
    t = build(records)

    def at(n: int) -> float:
        return (T0 + timedelta(seconds=n)).timestamp()

    assert t.overlaps == [(at(3), at(4)), (at(5), at(6))]
    # A run that spans two others: one stretch, merged.
    assert build(
        [run(1, "a", 5, secs=9), run(2, "b", 9, secs=3), run(4, "c", 12, secs=3)]
    ).overlaps == [(at(2), at(7))]
    assert [b.overlap for b in t.bars] == [True, True, True, False]
    # Touching is not overlapping: one run ends as the next starts.
    assert build([run(1, "a", 5, secs=1), run(2, "a", 5, secs=1)]).overlaps == []


def test_outside_the_window_is_left_out_and_failed_to_start_is_a_tick_to_open() -> None:
    failed = run(7, "a", 5, outcome="failed_to_start", not_run="failed_to_start", error="ENOENT")
    t = build([run(-30, "a", 5), failed, run(90, "a", 5)])
    assert t.bars == []
    (tick,) = t.ticks
    assert (tick.reason, tick.name, tick.detail) == ("failed_to_start", failed[0], "ENOENT")


def test_missing_fire_times_and_the_run_in_progress() -> None:
    now = (T0 + timedelta(seconds=50)).timestamp()
    current = {
        "slot": "s",
        "identity": "c",
        "token": 12,
        "claimed_at": iso(T0 + timedelta(seconds=48)),
    }
    t = build([run(1, "a", 5)], missing=[(now - 20, "slotX", "no record, no claim")],
              current=current, now=now)  # fmt: skip
    assert [(b.lane, b.running, b.end) for b in t.bars] == [("a", False, t.bars[0].end),
                                                            ("c", True, now)]  # fmt: skip
    assert [(k.reason, k.slot) for k in t.ticks] == [("missing", "slotX")]
    assert t.counts["runs"] == 1
    doc = model.to_json(t)
    assert doc["runs"][1]["end"] is None and doc["runs"][1]["running"]
    # A run in progress when `status` read the claims, ended (and recorded) by the time the
    # window was read: one bar, not a run overlapping itself.
    ended = run(48, "c", 12, secs=1, slot="s")
    t = build([ended], current=current, now=now)
    assert [(b.lane, b.running) for b in t.bars] == [("c", False)] and t.overlaps == []


# -- the SVG ---------------------------------------------------------------------------------


def test_svg_has_a_link_per_run_a_marker_per_token_and_escapes_names() -> None:
    t = build([run(1, "<a&b>", 5), run(2, "<a&b>", 5), run(4, "c", 9), missed(3, "c", 9)])
    out = svg.render(t, "/jobs/job/runs/{name}")
    assert out.count('<a class="run"') == 3
    assert out.count('class="marker"') == 2 and "token 9" in out
    assert 'data-reason="missed"' in out
    assert "<a&b>" not in out and "&lt;a&amp;b&gt;" in out
    assert 'href="/jobs/job/runs/0000000000001-000000000001"' in out


# -- the upcoming fire times -----------------------------------------------------------------


def test_upcoming_is_what_leaderjob_next_prints_with_a_note_where_dst_changes() -> None:
    after = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    fires = upcoming(schedule, after, 5)
    printed = CliRunner().invoke(
        cli.main,
        ["next", "30 2 * * *", "--timezone", "Europe/Berlin", "--count", "5",
         "--after", after.isoformat()],
    ).output.splitlines()  # fmt: skip
    assert [f.line for f in fires] == printed
    notes = [(f.local.day, f.note) for f in fires if f.note]
    assert len(notes) == 1 and notes[0][0] == 26 and "clocks go back 1h" in notes[0][1]
    assert [f.zone for f in fires] == ["CEST", "CEST", "CET", "CET", "CET"]


# -- the history, read by window -------------------------------------------------------------


def test_stamp_blocks_cover_exactly_the_range() -> None:
    rng = random.Random(26)
    for _ in range(300):
        lo = rng.randrange(0, 10_000)
        hi = rng.randrange(lo, 10_001)
        blocks = stamp_blocks(lo, hi, 4)
        # Each prefix holds the numbers from itself padded with 0s to itself padded with 9s.
        spans = [(int(b.ljust(4, "0")), int(b.ljust(4, "9")) + 1) for b in blocks]
        assert [n for a, b in spans for n in range(a, b)] == list(range(lo, hi)), (lo, hi)
        assert len(blocks) <= 2 * 9 * 4


def test_window_reads_the_records_of_its_time_and_splits_a_full_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore(SystemClock())
    data = ElectionData(store, "/p", "e")
    for minute in range(0, 600, 3):
        at = T0 + timedelta(minutes=minute)
        data.record({"run_id": f"{minute:012x}", "slot": slot_id(at)}, at, timeout=1)
    monkeypatch.setattr("leaderjob.history.runs.READ_MAX", 7)
    got = data.window(T0 + timedelta(hours=2), T0 + timedelta(hours=5), timeout=1)
    slots = [r["slot"] for _, r in got]
    want = [slot_id(T0 + timedelta(minutes=m)) for m in range(120, 300, 3)]
    assert set(want) <= set(slots)
    assert slots == sorted(slots) and len(slots) <= len(want) + 2  # the edges, rounded out
    name, _ = got[0]
    assert data.named(name, timeout=1) == got[0][1]


# -- the app over the in-memory store --------------------------------------------------------


@pytest.fixture
def app() -> App:
    store = MemoryStore(SystemClock())
    data = ElectionData(store, "/p", "e")
    now = datetime.now(UTC).replace(microsecond=0)
    store.put(data.schedule_key, json.dumps({"expr": "@every 1m", "timezone": "UTC"}).encode(),
              timeout=1)  # fmt: skip
    for i in range(5):
        at = now - timedelta(minutes=10 - i)
        rec = {"run_id": f"{i:012x}", "slot": slot_id(at), "scheduled_time": iso(at),
               "started_at": iso(at), "finished_at": iso(at + timedelta(seconds=2)),
               "identity": "r-1", "token": 7, "outcome": "succeeded"}  # fmt: skip
        data.record(rec, at + timedelta(seconds=2), timeout=1,
                    output={"stdout_tail": "hello <world>\n", "stderr_tail": ""})  # fmt: skip
    return App(Source(store, "/p", "e", 1.0))


def test_app_serves_the_jobs_the_timeline_and_a_run_with_its_output(app: App) -> None:
    code, ctype, body = app.route("/")
    assert code == 200 and ctype.startswith("text/html") and b'href="/jobs/e"' in body
    code, _, body = app.route("/api/jobs")
    (job,) = json.loads(body)
    assert code == 200 and job["job"] == "e" and job["last_run"]["outcome"] == "succeeded"
    assert json.loads(app.route("/api/jobs/e")[2])["schedule"]["expr"] == "@every 1m"
    code, _, body = app.route("/api/jobs/e/timeline?window=1h")
    doc = json.loads(body)
    assert code == 200 and doc["lanes"] == ["r-1"] and len(doc["runs"]) == 5
    name = doc["runs"][0]["name"]
    code, _, body = app.route(f"/jobs/e/runs/{name}?fragment=1")
    assert code == 200 and b"hello &lt;world&gt;" in body and b"<html" not in body
    code, _, body = app.route(f"/api/jobs/e/runs/{name}")
    assert json.loads(body)["stdout_tail"] == "hello <world>\n"
    code, _, body = app.route("/api/jobs/e/upcoming?count=3")
    assert code == 200 and len(json.loads(body)["fires"]) == 3
    code, _, body = app.route("/jobs/e?window=1h")
    assert code == 200 and body.count(b'<a class="run"') == 5
    # The timeline's oldest fire times have no record: the ledger calls them missing (L3).
    assert b'data-reason="missing"' in body


def test_a_key_put_by_hand_at_the_front_of_the_queue_is_not_shown_as_a_leader(app: App) -> None:
    """A key without a lease at the front of a queue was put by hand: nobody leads on it. The
    jobs page says so (and `status --json` names no leader, and the key as ``stray_key``)
    instead of naming it leader."""
    store = app.source.store
    store.put("/p/e/leader/694d1e5500000009", b"by hand", timeout=1)
    (job,) = json.loads(app.route("/api/jobs")[2])
    assert job["leader"] is None and job["stray_key"] == "/p/e/leader/694d1e5500000009"
    body = app.route("/")[2].decode()
    assert "no leader</span>: a key put by hand" in body and "/p/e/leader/694d1e5500000009" in body
    assert "<td>by hand</td>" not in body


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/jobs/e?window=8d", 400),
        ("/jobs/e?window=soon", 400),
        ("/api/jobs/e/timeline?until=yesterday", 400),
        ("/api/jobs/e/upcoming?count=0", 400),
        ("/jobs/nope", 404),
        ("/api/jobs/e/runs/0000000000000-nope", 404),
        ("/elsewhere", 404),
    ],
)
def test_app_answers_bad_requests_with_what_to_change(app: App, target: str, code: int) -> None:
    got, _, body = app.route(target)
    assert got == code and body


def test_a_loopback_page_answers_to_loopback_names_only() -> None:
    assert allowed_host("localhost:8080", "127.0.0.1")
    assert allowed_host("127.0.0.1:8080", "127.0.0.1")
    assert allowed_host("[::1]:8080", "::1")
    assert not allowed_host("evil.example:8080", "127.0.0.1")
    assert allowed_host("anything:8080", "0.0.0.0")


# -- the daemon's --ui -----------------------------------------------------------------------


def test_the_daemons_server_hands_other_paths_to_the_pages_with_their_headers() -> None:
    import http.client

    from prometheus_client import CollectorRegistry

    from leaderjob.ops.http import Server

    def pages(target: str) -> tuple[int, str, bytes]:
        return 200, "text/html; charset=utf-8", f"<p>{target}</p>".encode()

    server = Server(("127.0.0.1", 0), CollectorRegistry(), lambda: {}, pages=pages)
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/jobs/x?window=1h")
        reply = conn.getresponse()
        assert reply.read() == b"<p>/jobs/x?window=1h</p>"
        assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        conn.close()
    finally:
        server.close()
    # Without pages (the default), an unknown path is still the daemon's own 404.
    plain = Server(("127.0.0.1", 0), CollectorRegistry(), lambda: {})
    try:
        assert plain.route("/jobs/x")[0] == 404
    finally:
        plain.httpd.server_close()


def test_ui_on_the_daemon_needs_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("LEADERJOB_")]:
        monkeypatch.delenv(name)

    def no_etcd(conn: object) -> None:
        raise AssertionError("validation passed: leaderjob tried to open etcd")

    monkeypatch.setattr("leaderjob.cli.options.open_store", no_etcd)
    args = ["run", "--election", "e", "--metrics-addr", "off", "--ui", "--schedule", "@every 1m"]
    result = CliRunner().invoke(cli.main, [*args, "--", "true"])
    assert result.exit_code == 2, result.output
    assert "--ui serves on --metrics-addr" in result.output


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--listen", "nowhere"], "--listen 'nowhere': write HOST:PORT"),
        (["--listen", "off"], "--listen: give HOST:PORT"),
        (["--election", "a/b"], "election"),
    ],
)
def test_leaderjob_ui_refuses_bad_input_before_touching_etcd(
    monkeypatch: pytest.MonkeyPatch, args: list[str], hint: str
) -> None:
    def no_etcd(conn: object) -> None:
        raise AssertionError("leaderjob ui opened etcd")

    monkeypatch.setattr("leaderjob.cli.options.open_store", no_etcd)
    result = CliRunner().invoke(cli.main, ["ui", "--election", "e", *args])
    assert result.exit_code == 2, result.output
    assert hint in result.output


def test_a_crowded_window_links_only_the_runs_worth_opening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(svg, "LINK_LIMIT", 3)
    records = [run(n, "a", 5) for n in range(1, 6)] + [run(8, "a", 5, outcome="failed")]
    out = svg.render(build(records), "/r/{name}")
    # Six runs over the limit of three: the five succeeded ones are bare bars, the failed one
    # keeps its link and tooltip; every run is still one bar in its lane.
    assert out.count('<a class="run"') == 1 and 'data-run="000000000008"' in out
    assert out.count('class="bar o-ok"') == 5 and out.count('data-replica="a"') == 6


def test_the_daemons_pages_on_loopback_answer_to_loopback_names_only() -> None:
    import http.client

    from prometheus_client import CollectorRegistry

    from leaderjob.ops.http import Server

    def pages(target: str) -> tuple[int, str, bytes]:
        return 200, "text/html; charset=utf-8", b"<p>output tail</p>"

    server = Server(("127.0.0.1", 0), CollectorRegistry(), lambda: {}, pages=pages)
    server.start()

    def get(path: str, host: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": host})
            reply = conn.getresponse()
            reply.read()
            return reply.status
        finally:
            conn.close()

    try:
        assert get("/jobs/x", f"localhost:{server.port}") == 200
        assert get("/jobs/x", "rebound.example") == 421  # DNS rebinding
        assert get("/metrics", "rebound.example") == 200  # the daemon's own: unchanged
    finally:
        server.close()
