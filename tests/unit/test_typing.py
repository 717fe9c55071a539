"""The package's types as an application sees them: ``py.typed`` is shipped, and a typed user
file (tests/typing/user_app.py) passes ``mypy --strict``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "leaderjob" / "py.typed").is_file()
    assert 'leaderjob = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_a_typed_user_file_passes_mypy_strict() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "tests/typing/user_app.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
