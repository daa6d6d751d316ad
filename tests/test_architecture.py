"""The core's structure: no import cycles among toolkit/'s modules (lazy imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"


def module_name(path: Path) -> str:
    parts = path.relative_to(TOOLKIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the toolkit modules it imports anywhere in its code (type-checking imports aside)."""
    modules = {module_name(path): path for path in TOOLKIT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for statement in node.body
            for inner in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "toolkit":
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
                graph[name] |= submodules
                if node.module in modules and len(submodules) < len(node.names):
                    graph[name].add(node.module)
            elif isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names} & modules.keys()
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


#: what a torch-free command must not import
HEAVY = frozenset({"torch", "torchvision", "numpy"})


def _typing_only(tree: ast.Module) -> set[int]:
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }


def _imported(node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    """The modules an import statement loads (a `from package import module` names the module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules] or [base]


def lazy_imports() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> what it imports at module level, [(module, function, toolkit module imported there)])."""
    paths = {module_name(path): path for path in TOOLKIT.rglob("*.py")}
    top: dict[str, set[str]] = {}
    lazy: list[tuple[str, str, str]] = []
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        typing_only = _typing_only(tree)
        top[name] = {
            imported
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only
            for imported in _imported(node, set(paths))
        }
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                        lazy += [
                            (name, function.name, imported)
                            for imported in _imported(node, set(paths))
                            if imported.split(".")[0] == "toolkit"
                        ]
    return top, lazy


def imports_heavy(module: str, top: dict[str, set[str]]) -> bool:
    """Whether importing `module` imports torch, torchvision or numpy (at module level, transitively)."""
    seen: set[str] = set()
    stack = [module]
    while stack:
        name = stack.pop()
        if name.split(".")[0] in HEAVY:
            return True
        if name not in seen and name in top:
            seen.add(name)
            stack.extend(top[name])
    return False


def test_function_level_imports_only_keep_torch_out() -> None:
    """A toolkit module imports another inside a function only when it is torch-free itself and the
    other imports torch: to keep torch out of the torch-free commands (and their error paths)."""
    top, lazy = lazy_imports()
    needless = [
        f"{module}.{function} imports {imported}"
        for module, function, imported in lazy
        if imports_heavy(module, top) or not imports_heavy(imported, top)
    ]
    assert not needless, needless
    assert imports_heavy("toolkit.model", top) and not imports_heavy("toolkit.spec", top)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_toolkit_has_no_import_cycles() -> None:
    graph = import_graph()
    assert "toolkit.spec.files" in graph and "toolkit.checkpoints" in graph["toolkit.commands.evaluate"]
    assert cycles(graph) == []


def test_a_call_back_is_found() -> None:
    from command_paths import calls_back

    edges = {("cli", "load"), ("load", "build"), ("build", "load"), ("build", "data")}
    assert calls_back(edges) == [("build", "load"), ("load", "build")]
    assert calls_back({("cli", "load"), ("load", "build"), ("cli", "build")}) == []


def test_each_command_goes_straight_down_the_core(tmp_path: Path) -> None:
    """eval, predict, export and attack on a checkpoint: no core module calls back into a module
    that called it (tests/command_paths.py traces the calls; docs/architecture.md shows them)."""
    from command_paths import trace_commands

    report = trace_commands(tmp_path)
    assert set(report) == {"eval CKPT", "predict CKPT", "export CKPT", "attack CKPT"}
    for command, found in report.items():
        assert "toolkit.build" in found["modules"] and "toolkit.checkpoints" in found["modules"], command
        assert found["calls_back"] == [], (command, found["calls_back"])
