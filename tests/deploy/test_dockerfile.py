"""The Dockerfile: hadolint-clean, and it keeps the contract the manifests rely on.

No container engine runs here, so the image is not built. Instead the builder stage is replayed:
the build context that .dockerignore lets through must build a wheel with the `leaderjob` entry
point, and deploy/docker/constraints.txt must pin every runtime dependency, for the image's
Python, within pyproject.toml's ranges.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy._support import DOCKERFILE, REPO, require_tool

CONSTRAINTS = REPO / "deploy" / "docker" / "constraints.txt"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _arg_defaults() -> dict[str, str]:
    """ARG defaults; a stage's bare `ARG NAME` (re-import of a global) does not override them."""
    defaults: dict[str, str] = {}
    for word, rest in _instructions():
        name, sep, value = rest.partition("=")
        if word == "ARG" and sep:
            defaults.setdefault(name, value)
    return defaults


def test_hadolint_reports_nothing() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not findings, f"hadolint findings:\n{findings}"


def test_dockerfile_keeps_the_image_contract() -> None:
    ins = _instructions()
    args = _arg_defaults()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder and a runtime stage"
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.1[12]\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", base), (
        f"base image must be python 3.11/3.12 slim, an exact version pinned by digest, got {base!r}"
    )
    tag = base.partition("@")[0]
    assert re.search(rf"^#.*\b{re.escape(tag)}\b", DOCKERFILE.read_text(), re.M), (
        f"a comment must name the digest's tag ({tag}) in words"
    )
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), "both stages use the pinned base"

    runtime = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    words = {w for w, _ in runtime}
    assert "COPY" in words and any("--from=builder" in r for w, r in runtime if w == "COPY")

    users = [r for w, r in runtime if w == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), (
        f"runtime must run as a numeric non-root user, got USER {users}"
    )

    apt = " ".join(r for w, r in runtime if w == "RUN" and "apt-get install" in r)
    assert re.search(r"--no-install-recommends\s.*\btini=\S+", apt), "tini from Debian, pinned"

    entrypoint = json.loads(next(r for w, r in runtime if w == "ENTRYPOINT"))
    assert entrypoint[:2] == ["/usr/bin/tini", "--"] and entrypoint[2] == "leaderjob", entrypoint

    healthcheck = next(r for w, r in runtime if w == "HEALTHCHECK")
    assert "http://127.0.0.1:9102/healthz" in healthcheck and '"python"' in healthcheck
    assert any(w == "EXPOSE" and "9102" in r.split() for w, r in runtime)

    labels = " ".join(r for w, r in runtime if w == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "created"):
        assert f"org.opencontainers.image.{key}=" in labels, f"missing OCI label {key}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert f'org.opencontainers.image.licenses="{project["license"]}"' in labels

    # The license text travels with the image, not only inside the venv's dist-info.
    assert any(
        w == "COPY" and "--from=builder" in r and r.split()[-2].endswith("/LICENSE")
        for w, r in runtime
    ), "the runtime stage copies LICENSE"


def test_constraints_reach_the_build_isolation() -> None:
    """The builder gives the constraints through the environment, which pip's isolated build
    environment inherits (a --constraint option does not reach it): setuptools is pinned too."""
    ins = _instructions()
    builder = ins[: max(i for i, (w, _) in enumerate(ins) if w == "FROM")]
    env = " ".join(r for w, r in builder if w == "ENV")
    for var in ("PIP_CONSTRAINT", "PIP_BUILD_CONSTRAINT"):
        assert f"{var}=/src/deploy/docker/constraints.txt" in env, f"builder ENV {var}"
    assert _constraints().get("setuptools"), "constraints.txt must pin the build backend"


# --- the builder stage, replayed --------------------------------------------------------------


def _dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # Docker's matcher: `**` spans directories, `*` and `?` stay within one path element.
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(fnmatch.translate(pattern[i : end + 1])[4:-3])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _in_context(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negated, pattern in patterns:
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(p) for p in prefixes):
            included = negated
    return included


@pytest.fixture(scope="module")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    patterns = _dockerignore_patterns()
    ctx = tmp_path_factory.mktemp("docker-context")
    skip_dirs = {".git", ".venv", "node_modules"}
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in skip_dirs or not path.is_file():
            continue
        if _in_context(rel.as_posix(), patterns):
            dest = ctx / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    return ctx


def test_build_context_is_the_package_only(build_context: Path) -> None:
    files = {
        p.relative_to(build_context).as_posix() for p in build_context.rglob("*") if p.is_file()
    }
    assert "pyproject.toml" in files
    assert "leaderjob/cli/__init__.py" in files
    assert "deploy/docker/constraints.txt" in files  # the Dockerfile's RUN needs it
    assert "LICENSE" in files  # the runtime stage copies it
    leaked = sorted(
        f
        for f in files
        if f.startswith(("tests/", ".venv/", ".git/", "docs/")) or "__pycache__" in f
    )
    assert not leaked, f"build context carries files the image must not: {leaked[:10]}"


@pytest.fixture(scope="module")
def wheel(build_context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install /src` in the builder starts with this: build a wheel from the context alone."""
    out = tmp_path_factory.mktemp("wheel")
    # As in the builder stage: the constraints reach the isolated build environment.
    env = {
        **os.environ,
        "PIP_CONSTRAINT": str(CONSTRAINTS),
        "PIP_BUILD_CONSTRAINT": str(CONSTRAINTS),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(out),
            str(build_context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode == 0, (
        f"building a wheel from the build context failed:\n{result.stderr}"
    )
    wheels = list(out.glob("leaderjob-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_from_build_context_has_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        text = zf.read(entry_points).decode()
    assert "leaderjob/cli/__init__.py" in names
    assert re.search(r"^leaderjob\s*=\s*leaderjob\.cli:main$", text, re.M), text


def test_wheel_carries_the_license_and_was_built_by_the_pinned_setuptools(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        generator = zf.read(f"{dist_info}/WHEEL").decode()
        license_text = zf.read(f"{dist_info}/licenses/LICENSE").decode()
    assert license_text == (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    # PEP 639: an SPDX expression and the file, not the deprecated free-text License field.
    assert re.search(r"^License-Expression: Apache-2\.0$", metadata, re.M), metadata[:800]
    assert re.search(r"^License-File: LICENSE$", metadata, re.M)
    assert not re.search(r"^License:", metadata, re.M)
    pinned = _constraints()["setuptools"]
    assert f"Generator: setuptools ({pinned})" in generator, (
        f"the wheel was not built by the pinned setuptools {pinned}:\n{generator}"
    )


def test_pinned_setuptools_satisfies_the_build_requirement() -> None:
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    requires = pyproject["build-system"]["requires"]
    setuptools = next(Requirement(r) for r in requires if Requirement(r).name == "setuptools")
    pinned = _constraints()["setuptools"]
    assert setuptools.specifier.contains(pinned), f"setuptools=={pinned} vs {setuptools}"


def _constraints() -> dict[str, str]:
    pins = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[_canonical(name)] = version.strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_constraints_pin_every_dependency_within_pyproject_ranges() -> None:
    from packaging.requirements import Requirement

    pins = _constraints()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    problems = []
    for spec in project["dependencies"]:
        req = Requirement(spec)
        pinned = pins.get(_canonical(req.name))
        if pinned is None:
            problems.append(f"{req.name} is not pinned in deploy/docker/constraints.txt")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}=={pinned} does not satisfy pyproject's {spec!r}")
    assert not problems, "\n".join(problems)


def test_constraints_resolve_the_whole_closure_for_the_image_python(
    wheel: Path, tmp_path: Path
) -> None:
    """What the builder's `pip install --constraint ...` resolves on python 3.12 / linux x86_64:
    it must succeed, and every distribution it picks must be pinned (no unpinned transitive dep)."""
    base = _arg_defaults()["PYTHON_IMAGE"]
    py = re.match(r"python:(\d+\.\d+)", base).group(1)  # type: ignore[union-attr]
    report = tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--report", str(report), "--python-version", py, "--implementation", "cp",
        "--only-binary=:all:",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64",
        "--constraint", str(CONSTRAINTS), str(wheel),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"pip could not resolve with the constraints:\n{result.stderr}"
    pins = _constraints()
    chosen = {
        _canonical(i["metadata"]["name"]): i["metadata"]["version"]
        for i in json.loads(report.read_text())["install"]
    }
    chosen.pop("leaderjob")
    unpinned = sorted(set(chosen) - set(pins))
    assert not unpinned, f"add to deploy/docker/constraints.txt: {unpinned}"
    assert all(chosen[n] == pins[n] for n in chosen), chosen
