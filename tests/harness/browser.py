"""A headless Chromium driven over the DevTools protocol, with the standard library only.

Chromium is started with ``--remote-debugging-pipe``: it reads protocol messages from its file
descriptor 3 and writes to 4, each a JSON object ended by a NUL byte — no websocket, no port.
One page (a target attached with ``flatten``), and what a test needs of it: load a URL, evaluate
JavaScript, click at an element's centre like a mouse, take a screenshot.

The browser runs in its own process group, started through the test's ``ProcessGroup`` (killed
by group at teardown, never by name), with a throwaway profile directory.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.harness.procs import ProcessGroup, wait_until


def find_chromium() -> str | None:
    """Debian's ``chromium`` (or LEADERJOB_CHROMIUM_BIN)."""
    explicit = os.environ.get("LEADERJOB_CHROMIUM_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, procs: ProcessGroup, binary: str, width: int = 1400, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="lj-chromium-")
        # The browser's ends, moved above 9 first: the shell then puts them at 3 and 4 without
        # closing one it just placed.
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        to_browser_r, from_browser_w = (_high(to_browser_r), _high(from_browser_w))
        args = [
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--mute-audio",
            f"--window-size={width},{height}",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        script = (
            f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} '
            f"{to_browser_r}<&- {from_browser_w}>&-"
        )
        with Path(self.profile, "browser.log").open("wb") as log:
            self.proc = procs.adopt(
                subprocess.Popen(
                    ["bash", "-c", script, binary, *args],
                    pass_fds=(to_browser_r, from_browser_w),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._lock:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)

    def call(self, method: str, *, session: str | None = None, **params: Any) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            msg_id = self._next
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        if not wait_until(lambda: msg_id in self._replies, 30, 0.005):
            raise BrowserError(f"{method}: no reply from the browser in 30 s")
        with self._lock:
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the page."""
        return self.call(method, session=self.session, **params)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        reply = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression[:60]}…: {reply['exceptionDetails']}")
        return reply.get("result", {}).get("value")

    def load(self, url: str, timeout: float = 15.0) -> None:
        with self._lock:
            seen = len(self.events)
        self.send("Page.navigate", url=url)

        def loaded() -> bool:
            with self._lock:
                return any(e["method"] == "Page.loadEventFired" for e in self.events[seen:])

        if not wait_until(loaded, timeout, 0.02):
            raise BrowserError(f"{url} did not load in {timeout:g} s")

    def click(self, selector: str) -> None:
        """A mouse click at the centre of the first element matching ``selector``."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if box is None:
            raise BrowserError(f"nothing matches {selector!r}")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def press_enter(self) -> None:
        """The Enter key, on whatever has the keyboard focus."""
        common = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        self.send("Input.dispatchKeyEvent", type="keyDown", text="\r", **common)
        self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Wait until ``expression`` is truthy in the page; its value."""
        found: list[Any] = []
        wait_until(
            lambda: bool(v := self.evaluate(expression)) and not found.append(v), timeout, 0.05
        )
        if not found:
            raise BrowserError(f"not true within {timeout:g} s: {expression}")
        return found[0]

    def screenshot(self, path: Path, width: int, height: int) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close")
        deadline = time.monotonic() + 5
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)
