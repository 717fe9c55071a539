"""Regenerate docs/img/ui-timeline.png: the run explorer on a real history (`make screenshot`).

A throwaway etcd, three real replicas of `leaderjob run --schedule '@every 1s'`, a crash
(`kill -9`) and a graceful handover (tests/harness/explorer.py, the browser test's own story),
then `leaderjob ui`'s app on a free port, a headless Chromium, a click on one run of the replica
that handed over, and a screenshot of the page with that run's detail open.

    python docs/tools/ui_screenshot.py [--out docs/img/ui-timeline.png]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/img/ui-timeline.png")
    args = parser.parse_args()
    from leaderjob.election.etcd import EtcdStore
    from leaderjob.explorer.data import Source
    from leaderjob.explorer.server import App, serve
    from leaderjob.inprocess.leadership_options import build_connection
    from tests.harness.browser import Browser, find_chromium
    from tests.harness.etcd import EtcdServer
    from tests.harness.explorer import ELECTION, crash_and_handover
    from tests.harness.procs import ProcessGroup

    chromium = find_chromium()
    if chromium is None:
        print("ui_screenshot: no chromium binary (Debian's chromium package)", file=sys.stderr)
        return 2
    procs = ProcessGroup()
    etcd = EtcdServer()
    try:
        with tempfile.TemporaryDirectory(prefix="lj-shot-") as tmp:
            began = time.time()
            story = crash_and_handover(procs, Path(tmp), etcd.endpoint, "/shot", runs_each=5)
            store = EtcdStore(build_connection(etcd.endpoint))
            httpd = serve(App(Source(store, "/shot", ELECTION, 5.0)), ("127.0.0.1", 0))
            url = f"http://127.0.0.1:{httpd.server_address[1]}"
            browser = Browser(procs, chromium, width=1280, height=860)
            window = math.ceil(time.time() - began + 3)
            browser.load(f"{url}/jobs/{ELECTION}?window={window}s")
            browser.click(f'svg a.run[data-replica="{story.stopped}"]')
            browser.wait_for("!document.getElementById('detail').hidden")
            browser.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.screenshot(args.out, 1280, 860)
            browser.close()
            httpd.shutdown()
            store.close()
            print(f"wrote {args.out} (tokens {story.tokens})")
    finally:
        procs.cleanup()
        etcd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
