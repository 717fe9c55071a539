"""Hand-written mutations of the process and driver code, each judged by the tests that defend
its promise (``make mutation-hand``; docs/testing.md).

mutmut (``make mutation``) covers the pure core. A pure rule can be proven and still be handed
the wrong value by its caller — a keepalive's reply time for its send time, every job for the
idle ones, a plain delete for a fenced Txn — so this script breaks the callers, the processes and
the fences one promise at a time, as written in ``catalog.py``: a file, an exact snippet of it, its
replacement, and the tests that must then fail.

For each mutation it copies the working tree to a scratch directory, replaces the snippet there
(never in the working tree), and runs the named tests on the copy (``PYTHONPATH`` puts the copy
first, child processes included). The verdict:

* ``killed``   — a test failed (or the run timed out): the promise is defended;
* ``survived`` — every test passed: the promise can break with the suite green;
* ``equivalent`` — it survived, and the catalog says why it cannot change a result today;
* ``n/a``      — the snippet is no longer in the file (the code moved on): the mutation needs
  rewriting, it is not counted in the score.

Exit status 1 if any mutation survived (or a name given with ``-k`` matched nothing).

    .venv/bin/python tests/mutations/run.py              # every mutation
    .venv/bin/python tests/mutations/run.py -k give_back # those whose name contains it
    .venv/bin/python tests/mutations/run.py --list
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from catalog import MUTATIONS, Mutation  # the catalog sits beside this script

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600.0  # one mutation's tests; a run that loops counts as caught


def _tree_files() -> list[str]:
    """Tracked and new (not ignored) files of the working tree, as they are now."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def _copy_tree(dest: Path) -> None:
    for rel in _tree_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def _apply(copy: Path, m: Mutation) -> str | None:
    """Apply ``m`` in ``copy``; return the original text, or None if the snippet is not there
    exactly once."""
    path = copy / m.file
    if not path.is_file():
        return None
    text = path.read_text()
    if text.count(m.old) != 1:
        return None
    path.write_text(text.replace(m.old, m.new))
    return text


def _run_tests(copy: Path, m: Mutation) -> tuple[str, float, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    env.pop("LEADERJOB_TEST_REPORT", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return "killed", time.monotonic() - started, "timed out"
    took = time.monotonic() - started
    lines = done.stdout.strip().splitlines() or ["(no output)"]
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    tail = lines[-1] + (f" -- {failed[0][:160]}" if failed else "")
    if done.returncode == 0:
        return "survived", took, tail
    if done.returncode in (1,):  # tests failed
        return "killed", took, tail
    # 2: interrupted/collection error, 3: internal, 4: usage, 5: no tests collected
    return "error", took, tail + "\n" + done.stdout[-2000:] + done.stderr[-2000:]


def _check_copy_is_used(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy))
    where = subprocess.run(
        [sys.executable, "-c", "import leaderjob; print(leaderjob.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"the scratch copy is not imported first (got {where}): cannot judge")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-k", dest="match", default="", help="only mutations whose name contains it")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument(
        "--tests", nargs="+", help="judge by these tests instead (e.g. the suite before a new test)"
    )
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.match in m.name]
    if args.tests:
        chosen = [dataclasses.replace(m, tests=tuple(args.tests)) for m in chosen]
    if args.list:
        for m in chosen:
            print(f"{m.name:44} {m.promise:8} {m.file}")
        return 0
    if not chosen:
        print(f"no mutation's name contains {args.match!r}; see --list")
        return 1
    verdicts: dict[str, list[str]] = {
        "killed": [],
        "survived": [],
        "equivalent": [],
        "n/a": [],
        "error": [],
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leaderjob-mutation-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        _check_copy_is_used(copy)
        for m in chosen:
            original = _apply(copy, m)
            if original is None:
                verdict, took, tail = "n/a", 0.0, "snippet not found: rewrite this mutation"
            else:
                try:
                    verdict, took, tail = _run_tests(copy, m)
                finally:
                    (copy / m.file).write_text(original)
                if verdict == "survived" and m.equivalent:
                    verdict, tail = "equivalent", m.equivalent
            verdicts[verdict].append(m.name)
            print(f"{verdict:10} {took:6.1f}s  {m.promise:8} {m.name}: {tail}", flush=True)
    judged = len(verdicts["killed"]) + len(verdicts["survived"])
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d}: {len(verdicts['killed'])} of {judged} killed, "
        f"{len(verdicts['survived'])} survived, {len(verdicts['equivalent'])} equivalent, "
        f"{len(verdicts['n/a'])} not applicable, {len(verdicts['error'])} errors "
        f"({time.monotonic() - began:.0f} s)"
    )
    for kind in ("survived", "equivalent", "n/a", "error"):
        if verdicts[kind]:
            print(f"{kind}: " + ", ".join(verdicts[kind]))
    return 1 if verdicts["survived"] or verdicts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
