"""The package's shape: no import cycles, no giant functions.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy or type-only
import is still a dependency the next engineer has to follow, and a cycle through one is a cycle.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "simfactory"
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The package module an import name lands in: the longest known prefix."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (any import statement anywhere in the file)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = _package_of(module, path)
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                # `from pkg import sub` imports the submodule when there is one, else the package.
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = _target(name, modules)
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def test_import_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "simfactory.sim.engine" in graph
    assert any("simfactory.sim.engine" in deps for deps in graph.values())


def test_no_import_cycle() -> None:
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise AssertionError(f"import cycle: {cycle}") from None


def test_no_function_over_80_lines() -> None:
    offenders = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    offenders.append(f"{module}.{node.name} ({lines} lines, line {node.lineno})")
    assert not offenders, "functions over 80 lines:\n" + "\n".join(sorted(offenders))


def test_cli_command_modules_import_only_common() -> None:
    """Command modules share helpers through simfactory.cli.common only; main.py alone assembles them."""
    graph = import_graph()
    for module, deps in graph.items():
        if module.startswith("simfactory.cli.") and module not in ("simfactory.cli.main", "simfactory.cli.common"):
            cli_deps = {d for d in deps if d == "simfactory.cli" or d.startswith("simfactory.cli.")}
            assert cli_deps <= {"simfactory.cli.common"}, f"{module} imports {sorted(cli_deps)}"
    outside = [m for m, deps in graph.items() if not m.startswith("simfactory.cli")
               and any(d.startswith("simfactory.cli") and d != "simfactory.cli.main" for d in deps)]
    assert not outside, f"library modules import CLI command modules: {outside}"


def test_tests_import_helpers_the_way_plain_pytest_finds_them() -> None:
    """CI runs plain `pytest`, which puts tests/ on sys.path but not the checkout: `tests.x` imports fail there."""
    tests_dir = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name}: {n}" for n in names if n == "tests" or n.startswith("tests.")]
    assert offenders == []
