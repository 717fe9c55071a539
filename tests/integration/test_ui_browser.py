"""`leaderjob ui` in a real browser (headless Chromium), against a real etcd and real daemons: a
crash (`kill -9`) and a graceful handover in the window. The test checks what a person sees:

* one bar per run, in the lane of the replica that ran it (the runs the daemons logged);
* a marker with each leadership's token at the handovers (S2: three tokens, growing);
* the slot nobody ran while the crashed leader's lease ran out, as a tick saying `missed` (L3);
* a click on a run opens its detail with its output tail (the job printed its token);
* overlapping runs in red (forged records: real daemons never overlap, S3);
* a documented subset of accessibility rules (tests/integration/a11y.js) on both pages;
* the leading daemon serves the same page on its metrics port (`run --ui`).
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness.browser import Browser, find_chromium
from tests.harness.etcd import EtcdServer, free_port
from tests.harness.explorer import ELECTION, crash_and_handover
from tests.harness.procs import ProcessGroup, wait_until

CHROMIUM = find_chromium()
SKIP_REASON = "no chromium binary (Debian's chromium package)"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
A11Y = Path(__file__).with_name("a11y.js").read_text()

#: What the page shows, read in the browser: the lanes, the bars, the markers, the ticks.
SEEN = """(() => ({
  lanes: [...document.querySelectorAll('svg .lane')].map(g => g.dataset.lane),
  bars: [...document.querySelectorAll('svg a.run[data-run]')].map(a => [a.dataset.replica,
    a.dataset.run]),
  markers: [...document.querySelectorAll('svg .marker text')].map(t => t.textContent),
  ticks: [...document.querySelectorAll('svg .tick')].map(g => [g.dataset.reason,
    g.querySelector('title').textContent]),
  notRun: [...document.querySelectorAll('#not-run tbody tr')].map(tr => tr.textContent),
  overlaps: document.querySelectorAll('svg .overlap, svg .overlapping').length,
}))()"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module's tests (its start costs a couple of seconds)."""
    assert CHROMIUM is not None
    group = ProcessGroup()
    try:
        chromium = Browser(group, CHROMIUM)
        yield chromium
        chromium.close()
    finally:
        group.cleanup()


def start_ui(procs: ProcessGroup, tmp_path: Path, endpoint: str, prefix: str, election: str) -> str:
    port = free_port()
    with (tmp_path / f"ui-{election}.log").open("wb") as log:
        procs.spawn(
            [sys.executable, "-m", "leaderjob", "ui", "--election", election, "--endpoints",
             endpoint, "--prefix", prefix, "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(url + "/api", timeout=2).status == 200
        except OSError:
            return False

    assert wait_until(up, 20, 0.1), (tmp_path / f"ui-{election}.log").read_text()
    return url


def test_the_page_shows_each_run_the_handovers_and_a_missed_slot_L3_S2(
    etcd: EtcdServer, prefix: str, procs: ProcessGroup, tmp_path: Path, browser: Browser
) -> None:
    began = time.time()
    story = crash_and_handover(procs, tmp_path, etcd.endpoint, prefix)
    url = start_ui(procs, tmp_path, etcd.endpoint, prefix, ELECTION)
    window = math.ceil(time.time() - began + 5)
    browser.load(f"{url}/jobs/{ELECTION}?window={window}s")
    seen = browser.evaluate(SEEN)
    # Read after the page: the leader still runs, and logs each run before its record is read.
    finished = {
        name: {str(e["run_id"]) for e in d.events("job.finished")}
        for name, d in story.replicas.items()
    }

    # One bar per run, in its replica's lane: every run of the two replicas that are gone, and
    # the runs recorded so far of the one still leading (its newest record may be a cycle away).
    bars: dict[str, list[str]] = {}
    for replica, run_id in seen["bars"]:
        bars.setdefault(replica, []).append(run_id)
    for gone in (story.crashed, story.stopped):
        assert sorted(bars[gone]) == sorted(finished[gone]), gone
    assert set(bars[story.last]) <= finished[story.last] and len(bars[story.last]) >= 2
    assert seen["lanes"] == ["not run", story.crashed, story.stopped, story.last]
    # A marker with each leadership's token, in order (S2).
    assert seen["markers"] == [f"token {t}" for t in story.tokens]
    # The slot nobody ran while the crashed leader's lease ran out: a tick saying why (L3).
    missed = [title for reason, title in seen["ticks"] if reason == "missed"]
    assert missed and all(t.startswith("missed: slot ") for t in missed), seen["ticks"]
    assert any("missed" in row for row in seen["notRun"])
    # Real daemons never overlap (S3, the deadline rule): nothing red.
    assert seen["overlaps"] == 0

    # A click on one of the stopped replica's runs: its detail, with the output tail.
    browser.click(f'svg a.run[data-replica="{story.stopped}"]')
    detail = browser.wait_for(
        "!document.getElementById('detail').hidden && document.getElementById('detail').innerText"
    )
    assert f"report token={story.tokens[1]}" in detail
    assert f"by\n{story.stopped}" in detail or story.stopped in detail
    assert browser.evaluate(A11Y) == []
    # With the keyboard: focus the last run of the third leader, Enter opens its detail.
    last_run = browser.evaluate(
        f"(() => {{ const a = [...document.querySelectorAll("
        f"'svg a.run[data-replica=\"{story.last}\"]')].pop(); a.focus();"
        " return a.dataset.run; })()"
    )
    browser.press_enter()
    browser.wait_for(
        f"document.querySelector('#detail .run-id').textContent === {json.dumps(last_run)}"
    )

    browser.load(url + "/")
    row = browser.evaluate(f"document.querySelector('#jobs tr[data-job=\"{ELECTION}\"]').innerText")
    assert story.last in row and str(story.tokens[2]) in row
    assert browser.evaluate(A11Y) == []

    # The same page from the leading daemon itself (`run --ui`), beside its own endpoints.
    daemon = f"http://127.0.0.1:{story.ports[story.last]}"
    browser.load(daemon + "/")
    row = browser.evaluate(f"document.querySelector('#jobs tr[data-job=\"{ELECTION}\"]').innerText")
    assert story.last in row and str(story.tokens[2]) in row
    assert urllib.request.urlopen(daemon + "/leader", timeout=5).status == 200


def test_overlapping_runs_are_red_on_the_page_S3(
    etcd: EtcdServer, prefix: str, browser: Browser
) -> None:
    from leaderjob.election.etcd import EtcdStore
    from leaderjob.explorer.data import Source
    from leaderjob.explorer.server import App, serve
    from leaderjob.history.records import ElectionData, iso
    from leaderjob.inprocess.leadership_options import build_connection

    store = EtcdStore(build_connection(etcd.endpoint))
    data = ElectionData(store, prefix, "forged")
    now = datetime.now(UTC).replace(microsecond=0)
    for i, (who, start, secs) in enumerate([("r-1", 60, 30), ("r-2", 75, 10)]):
        at = now - timedelta(seconds=120 - start)
        record = {"run_id": f"{i:012x}", "slot": at.strftime("%Y%m%dT%H%M%SZ"),
                  "started_at": iso(at), "finished_at": iso(at + timedelta(seconds=secs)),
                  "identity": who, "token": 5 + i, "outcome": "succeeded"}  # fmt: skip
        data.record(record, at + timedelta(seconds=secs), timeout=5)
    httpd = serve(App(Source(store, prefix, "forged", 5.0)), ("127.0.0.1", 0))
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    browser.load(f"{url}/jobs/forged?window=5m")
    fills = browser.evaluate(
        "[...document.querySelectorAll('svg rect.overlap')].map(r => getComputedStyle(r).fill)"
    )
    outlined = browser.evaluate(
        "[...document.querySelectorAll('svg rect.overlapping')].map(r => getComputedStyle(r)"
        ".stroke)"
    )
    alert = browser.evaluate("document.querySelector('[role=alert]').innerText")
    assert browser.evaluate(A11Y) == []
    # The rules do find what they look for: faint text, a field without a label.
    browser.evaluate(
        "(() => { const p = document.createElement('p'); p.textContent = 'faint';"
        " p.style.color = '#bbb'; document.body.append(p);"
        " document.body.append(document.createElement('input')); })()"
    )
    findings = browser.evaluate(A11Y)
    assert [f.split(" ")[0] for f in findings] == ["no", "contrast"], findings
    assert fills == ["rgb(213, 0, 0)"]
    assert outlined == ["rgb(213, 0, 0)"] * 2
    assert "two runs of forged were under way at once" in alert
    assert json.loads(urllib.request.urlopen(f"{url}/api/jobs/forged/timeline").read())["overlaps"]
