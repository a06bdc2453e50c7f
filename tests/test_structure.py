"""The package's shape: no import cycles, the model layer imports nothing above it, modules stay
readable in one sitting and functions stay short (a longer one carries a ``# Long:`` comment
right above its ``def`` saying why)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pwavenet"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# The model layer computes; it never reaches into training, data, evaluation or the front ends.
ABOVE_MODELS = ("cli", "data", "demo", "eval", "synthesis", "toy", "train")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The pwavenet modules an ``import from`` names (its module, and names that are modules)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    return [target, *(f"{target}.{a.name}" for a in node.names)]


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                found.update(_resolve(name, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name and m != "pwavenet"}
    return graph


def test_no_import_cycle() -> None:
    graph = _imports(_modules())
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_model_layer_imports_nothing_above_it() -> None:
    graph = _imports(_modules())
    upward = {
        (m, dep)
        for m, deps in graph.items()
        if m.startswith("pwavenet.models")
        for dep in deps
        if dep.split(".")[1] in ABOVE_MODELS
    }
    assert not upward, f"the model layer imports upward: {sorted(upward)}"


def test_modules_are_short() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in _modules().values()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_are_short_or_say_why() -> None:
    long = []
    for path in _modules().values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            size = node.end_lineno - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if size > MAX_FUNCTION_LINES and not lines[first - 2].strip().startswith("# Long:"):
                long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} {size}")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines without a '# Long:' why: {long}"
