"""The daemon's modules depend one way: no module of ``leaderjob/daemon/`` imports the loop (it
orders them; they return what they decide), and there is no import circle among them — not even
one drawn only for type checking."""

from __future__ import annotations

import ast
from pathlib import Path

DAEMON = Path(__file__).resolve().parents[2] / "leaderjob" / "daemon"


def imports() -> dict[str, set[str]]:
    """module → the daemon modules it imports (at run time or for type checking)."""
    graph: dict[str, set[str]] = {}
    for path in DAEMON.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "leaderjob.daemon."
            ):
                deps.add(str(node.module).split(".")[2])
        graph[path.stem] = deps
    return graph


def test_no_daemon_module_imports_the_loop() -> None:
    graph = imports()
    assert [m for m, deps in graph.items() if "loop" in deps and m != "__init__"] == []


def test_the_daemon_modules_have_no_import_circle() -> None:
    graph = imports()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " → ".join((*path, module))
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_a_jobs_runner_is_composed_not_inherited() -> None:
    """One job's runner and its slot path are built of parts handed in (what starts a run, what
    records, the claims, the catch-up, the switches): no method's meaning hangs on base order,
    and no part declares a placeholder for another's method."""
    from leaderjob.daemon import catchup, claims, history, runner, runs, scheduling, switches

    parts = (
        runner.Runner,
        scheduling.Scheduling,
        catchup.CatchUp,
        switches.Switches,
        history.History,
        claims.Claims,
        runs.Runs,
    )
    assert [c for c in parts if c.__mro__ != (c, object)] == []
    for module in (runner, scheduling, catchup, switches, history, claims, runs):
        assert "NotImplementedError" not in Path(str(module.__file__)).read_text(), module
