"""The version is written once, in pyproject.toml; everything else reads it or is checked.

* ``leaderjob.__version__`` (and so ``leaderjob --version``) reads the installed metadata;
* the Dockerfile's ``VERSION`` build argument (the ``org.opencontainers.image.version`` label)
  and the kustomization's image tag cannot read it, so these tests fail when they drift.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib

import pytest

from tests.deploy._support import DOCKERFILE, K8S, REPO, load_yaml


def _project_version() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project.get("dynamic", []), "the version is static in pyproject.toml"
    return str(project["version"])


def test_the_package_reports_the_version_of_its_metadata() -> None:
    import leaderjob

    assert leaderjob.__version__ == importlib.metadata.version("leaderjob")
    # An editable install's metadata is refreshed by reinstalling; a stale one shows here.
    assert leaderjob.__version__ == _project_version(), "reinstall: pip install -e ."
    out = subprocess.run(
        [sys.executable, "-m", "leaderjob", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.split()[-1] == _project_version(), out


def test_a_source_tree_without_metadata_says_its_version_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    import leaderjob

    assert leaderjob.__version__ == "0+unknown"
    with pytest.raises(AttributeError):
        _ = leaderjob.__no_such_attribute__  # type: ignore[attr-defined]


def test_dockerfile_version_label_is_the_project_version() -> None:
    defaults = re.findall(r"^ARG VERSION=(\S+)\s*$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert defaults == [_project_version()], (
        f"Dockerfile: ARG VERSION={defaults} must be pyproject.toml's {_project_version()}"
    )


def test_kustomization_image_tag_is_the_project_version() -> None:
    images = load_yaml(K8S / "base" / "kustomization.yaml")["images"]
    tags = [i.get("newTag") for i in images if i["name"] == "leaderjob"]
    assert tags == [_project_version()], (
        f"deploy/kubernetes/base/kustomization.yaml: leaderjob newTag {tags} must be "
        f"pyproject.toml's {_project_version()}"
    )


def test_deploy_docs_build_and_tag_the_project_version() -> None:
    """docs/deploy.md's build and kustomize commands are copied by readers as they stand."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"(?:/leaderjob:|VERSION=)(\d+\.\d+\.\d+\S*?)(?=[\s`]|$)", text, re.M))
    assert shown, "docs/deploy.md: no image tag or VERSION found"
    assert shown == {_project_version()}, f"docs/deploy.md shows versions {sorted(shown)}"
