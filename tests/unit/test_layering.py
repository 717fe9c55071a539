"""Which parts may import which: the run explorer reads etcd through neutral modules, not through
the command line's (``leaderjob.cli``: click, options, printing); the in-process singleton does
not load the daemon."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.unit.test_imports import loaded

PACKAGE = Path(__file__).resolve().parents[2] / "leaderjob"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_the_explorer_imports_nothing_of_the_command_line() -> None:
    offenders = {
        f"{p.relative_to(PACKAGE)}: {m}"
        for p in sorted((PACKAGE / "explorer").glob("*.py"))
        for m in _imports(p)
        if m == "leaderjob.cli" or m.startswith("leaderjob.cli.")
    }
    assert not offenders, sorted(offenders)


def test_the_singleton_does_not_load_the_daemon() -> None:
    mods = loaded("import leaderjob.inprocess.singleton")
    assert "leaderjob.daemon" not in mods and "click" not in mods


#: The etcd adapter's parts: the only modules that may import etcd3 or grpc (docs/architecture.md).
ETCD_ADAPTER = {"election/etcd.py", "election/etcd_channels.py", "election/etcd_wire.py"}


def test_only_the_etcd_adapter_imports_etcd3_or_grpc() -> None:
    """Everything else reaches etcd through the storage port (election/store.py)."""
    offenders = {
        f"{rel}: {m}"
        for p in sorted(PACKAGE.rglob("*.py"))
        if (rel := p.relative_to(PACKAGE).as_posix()) not in ETCD_ADAPTER
        for m in _imports(p)
        if m.split(".")[0] in ("etcd3", "grpc")
    }
    assert not offenders, sorted(offenders)
