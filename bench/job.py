"""The benchmark job: a write to a fenced store every 20 ms, with the runner's token.

    python bench/job.py URL RESOURCE LABEL TOKEN_ENV

Positional arguments only (``etcdctl lock NAME cmd…`` would parse flags). Each write carries
``writer = LABEL:<pid>`` so the store's decision log shows who wrote when, and whether the write
was accepted. Standard library only, so it starts fast. SIGTERM ends it at once (default action).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time

INTERVAL = 0.02


def main() -> int:
    url, resource, label, token_env = sys.argv[1:5]
    host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
    token = int(os.environ.get(token_env) or "0")
    body = json.dumps({"resource": resource, "token": token, "writer": f"{label}:{os.getpid()}"})
    next_at = time.monotonic()
    while True:
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("POST", "/write", body, {"Content-Type": "application/json"})
            conn.getresponse().read()
            conn.close()
        except OSError:
            pass
        next_at += INTERVAL
        time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
