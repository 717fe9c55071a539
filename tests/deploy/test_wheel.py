"""The README's install path, walked: build the sdist and the wheel from this tree, install the
wheel into a fresh venv with no source tree on its path, then run `leaderjob --version` and
`leaderjob demo` from there.

Two variants:

* the fast one (default suite, about 15 s): `python -m build --no-isolation` with the dev venv's
  own setuptools, no network; the wheel goes into a fresh venv with `--no-deps`, and the
  dependencies come from the dev venv's site-packages through a `.pth` line (a `.pth` line only
  appends a directory: the `.pth` files inside it, among them the editable install of this
  checkout, are not run, so `import leaderjob` finds the wheel's copy — asserted). The demo runs
  until its first table of runs, then is interrupted.
* the full one under `make wheel` (LEADERJOB_WHEEL_TEST=1): `python -m build` in a builder venv
  of its own, the wheel with its `demo` extra into a fresh venv that resolves every dependency
  again (grpcio, protobuf, the etcd binaries: about two minutes), and the whole demo.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import pytest

from leaderjob import __version__
from tests.deploy._support import REPO

# What the wheel must hold beyond the modules: the typing marker, and the guardian, which the
# daemon starts as a script by its path and which loads the files beside it.
MUST_SHIP = {"leaderjob/py.typed", "leaderjob/guard/guardian.py",
             "leaderjob/guard/guardian_runs.py", "leaderjob/guard/proctree.py",
             "leaderjob/guard/guardian_launch.py", "leaderjob/guard/guardian_spawn.py",
             "leaderjob/guard/guardian_wire.py",
             "leaderjob/guard/tail.py", "leaderjob/explorer/assets.py"}  # fmt: skip


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("LEADERJOB_", "VIRTUAL_ENV", "PYTHON"))
    }  # fmt: skip
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return env


def _run(argv: list[str | Path], cwd: Path, timeout: float) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _source_copy(dest: Path) -> Path:
    """The tree's files (tracked, and new ones not ignored) copied out, so that building writes
    no egg-info or build/ into the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
        check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _check_dist(dist: Path) -> Path:
    """The sdist and the wheel are there, and the wheel holds every module of the tree, the
    typing marker, the guardian and the explorer's assets."""
    wheel = dist / f"leaderjob-{__version__}-py3-none-any.whl"
    sdist = dist / f"leaderjob-{__version__}.tar.gz"
    assert wheel.exists() and sdist.exists(), sorted(p.name for p in dist.iterdir())
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(REPO).as_posix() for p in (REPO / "leaderjob").rglob("*.py")
        if "__pycache__" not in p.parts
    }  # fmt: skip
    assert modules - names == set(), "modules missing from the wheel"
    assert MUST_SHIP - names == set()
    assert any(n.endswith("/LICENSE") for n in names), "the license is in the wheel"
    with tarfile.open(sdist) as tar:
        tarnames = set(tar.getnames())
    root = f"leaderjob-{__version__}"
    assert {f"{root}/pyproject.toml", f"{root}/README.md", f"{root}/LICENSE"} <= tarnames
    assert {f"{root}/{m}" for m in modules | MUST_SHIP} - tarnames == set()
    return wheel


def _start_demo(exe: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(exe), "demo", "--duration", "1s"], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _until_first_table(proc: subprocess.Popen[str], timeout: float) -> str:
    """The demo's output until its first table of runs per replica (replicas started from the
    installed package ran jobs under their guardians), then Ctrl-C; its own cleanup runs."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if "runs per replica" in line or time.monotonic() > deadline:
            break
    # The table's three rows follow its header.
    lines.extend(proc.stdout.readline() for _ in range(3))
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    return "".join(lines) + rest


def test_the_wheel_built_offline_runs_from_a_fresh_venv(tmp_path: Path) -> None:
    src, dist, target, work = (tmp_path / d for d in ("src", "dist", "target", "work"))
    work.mkdir()
    _source_copy(src)
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], tmp_path, 120)
    wheel = _check_dist(dist)

    venv.create(target, with_pip=False)
    py = target / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index",
          wheel], tmp_path, 120)  # fmt: skip
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], work,
                     30).strip())  # fmt: skip
    (site / "dev-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    exe = target / "bin" / "leaderjob"
    demo = _start_demo(exe, work)  # the checks below run meanwhile
    try:
        where = _run([py, "-c", "import leaderjob, leaderjob.guard.guardian as g; "
                      "print(leaderjob.__file__); print(g.__file__)"], work, 30)  # fmt: skip
        assert all(Path(f).is_relative_to(site) for f in where.split()), where
        assert _run([exe, "--version"], work, 60).split()[-1] == __version__
        out = _until_first_table(demo, 60)
    finally:
        if demo.poll() is None:  # its replicas and etcd are in its process group
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert "runs per replica" in out, out[-3000:]
    assert "leads cleanup (token" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.skipif(
    os.environ.get("LEADERJOB_WHEEL_TEST") != "1",
    reason="a fresh venv install takes minutes: run `make wheel` (LEADERJOB_WHEEL_TEST=1)",
)
@pytest.mark.timeout(900)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    builder, target, dist = tmp_path / "builder", tmp_path / "target", tmp_path / "dist"
    venv.create(builder, with_pip=True)
    _run([builder / "bin" / "python", "-m", "pip", "install", "-q", "build"], tmp_path, 300)
    _run([builder / "bin" / "python", "-m", "build", "--outdir", dist, REPO], tmp_path, 300)
    wheel = _check_dist(dist)

    venv.create(target, with_pip=True)
    _run([target / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[demo]"], tmp_path, 600)
    exe = target / "bin" / "leaderjob"
    assert _run([exe, "--version"], tmp_path, 60).split()[-1] == __version__
    # Run from a directory without the source tree: the installed package, not this checkout.
    out = _run([exe, "demo", "--duration", "6s"], tmp_path, 300)
    assert "verdict: OK" in out, out[-3000:]
