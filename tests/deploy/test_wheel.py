"""The README's install path, walked: build the sdist and the wheel from this tree (`python -m
build`, in a builder venv of its own), install the wheel with its `demo` extra into a fresh venv,
then run `leaderjob --version` and `leaderjob demo` from there — no source tree on the path.

A fresh venv resolves every dependency again (grpcio, protobuf, the etcd binaries): about two
minutes, so this runs under `make wheel` (LEADERJOB_WHEEL_TEST=1), not in the default suite.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from leaderjob import __version__
from tests.deploy._support import REPO

pytestmark = pytest.mark.skipif(
    os.environ.get("LEADERJOB_WHEEL_TEST") != "1",
    reason="a fresh venv install takes minutes: run `make wheel` (LEADERJOB_WHEEL_TEST=1)",
)


def _run(argv: list[str | Path], cwd: Path, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADERJOB_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.timeout(900)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    builder, target, dist = tmp_path / "builder", tmp_path / "target", tmp_path / "dist"
    venv.create(builder, with_pip=True)
    _run([builder / "bin" / "python", "-m", "pip", "install", "-q", "build"], tmp_path, 300)
    _run([builder / "bin" / "python", "-m", "build", "--outdir", dist, REPO], tmp_path, 300)

    wheel = dist / f"leaderjob-{__version__}-py3-none-any.whl"
    sdist = dist / f"leaderjob-{__version__}.tar.gz"
    assert wheel.exists() and sdist.exists(), sorted(p.name for p in dist.iterdir())
    names = zipfile.ZipFile(wheel).namelist()
    assert "leaderjob/watchdog.py" in names and "leaderjob/cli/__init__.py" in names
    assert any(n.endswith("/LICENSE") for n in names), "the license is in the wheel"
    with tarfile.open(sdist) as tar:
        assert f"leaderjob-{__version__}/pyproject.toml" in tar.getnames()

    venv.create(target, with_pip=True)
    _run([target / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[demo]"], tmp_path, 600)
    exe = target / "bin" / "leaderjob"
    assert _run([exe, "--version"], tmp_path, 60).split()[-1] == __version__
    # Run from a directory without the source tree: the installed package, not this checkout.
    out = _run([exe, "demo", "--duration", "6s"], tmp_path, 300)
    assert "verdict: OK" in out, out[-3000:]
