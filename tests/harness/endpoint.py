"""A local HTTP server for tests whose clients may hang up first.

``ThreadingHTTPServer`` prints a traceback to stderr when a handler writes to a client that has
gone (a ping that timed out, an endpoint closed at the end of a test). That print can land after
the test, into whichever test then runs in the process, and fail it there. A client hanging up
is what these tests provoke on purpose, so it is not an error here.
"""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from typing import Any


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that ignores clients which hung up before their answer."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
