"""A singleton runner built on python-etcd3's ``Lock``, the documented way.

    python bench/pylock.py HOST:PORT NAME TTL {plain|refresh} CMD...

``plain`` is the README's usage: ``with client.lock(name, ttl=ttl): subprocess.run(cmd)``.
Note that ``Lock.__enter__`` calls ``acquire()`` with its default ``timeout=10``: after 10 s of
waiting it returns False and the ``with`` body runs anyway, without the lock.
``refresh`` is what a careful user writes: ``lock.acquire(timeout=None)``, a thread calling
``lock.refresh()`` every TTL/3 (errors ignored: the library gives no other way to learn of a
loss), and ``lock.release()`` in ``finally``. The job gets
``lock.revision`` (python-etcd3 has no fencing token) in ``BENCH_TOKEN``. SIGTERM raises
SystemExit, so ``subprocess.run`` kills the child and the ``with`` block releases the lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import etcd3


def main() -> int:
    endpoint, name, ttl_text, mode, *cmd = sys.argv[1:]
    host, _, port = endpoint.rpartition(":")
    ttl = int(float(ttl_text))
    client = etcd3.client(host=host, port=int(port))

    def on_term(signum: int, frame: object) -> None:
        del signum, frame
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if mode == "plain":
        with client.lock(name, ttl=ttl) as lock:
            env = dict(os.environ, BENCH_TOKEN=str(getattr(lock, "revision", 0)))
            return subprocess.run(cmd, env=env, check=False).returncode
    lock = client.lock(name, ttl=ttl)
    lock.acquire(timeout=None)

    def refresh() -> None:
        while True:
            time.sleep(ttl / 3)
            try:
                lock.refresh()
            except Exception:  # nothing else a user could do here
                continue

    threading.Thread(target=refresh, daemon=True).start()
    try:
        env = dict(os.environ, BENCH_TOKEN=str(lock.revision))
        return subprocess.run(cmd, env=env, check=False).returncode
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
