"""The import graph of ``bastion`` holds no cycle, whatever hides it.

An import under ``if TYPE_CHECKING:`` is free at run time, so it can hold a cycle that a plain
import would break at start-up: the guarded module imports, at run time, the module guarding it.
An import inside a function dodges the same failure by running later. Either way the two modules
need each other: a shared type or helper lives in the wrong place, and belongs in a module both
may import. These tests read the source with :mod:`ast` (nothing is imported) and fail for such a
guard, for such a function-local import, for any run-time cycle at all, and (the first pin, kept
for its message) for one between packages of different layers (``docs/architecture.md``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bastion

ROOT = Path(bastion.__file__).parent

Statement = ast.Import | ast.ImportFrom

#: The layers of ``docs/architecture.md``, top down; a top-level name not here is its own layer.
LAYERS = {
    "__main__": 0,
    "cli": 0,
    "http": 0,
    "ui": 0,  # the interaction pages' templates, rendered by http/endpoints/login.py
    "runtime": 1,
    "reload": 1,
    "gateway": 2,
    "oauth": 2,
    "apikeys": 2,
    "credentials": 2,
    "ratelimit": 2,
    "audit": 2,
    "observability": 2,
    "doctor": 2,
    "secrets_rotation": 2,
    "users": 2,  # the users feature, a package being added
    "interaction": 2,  # browser sessions and the login policy (issue 16)
    "protocol": 3,
    "settings": 4,
    "crypto": 4,
    "storage": 4,
    "errors": 4,
}


@dataclass
class Imports:
    """What one module imports: at run time (at module level), under ``TYPE_CHECKING``, and
    inside its functions (``deferred``: run when the function is first called)."""

    runtime: set[str] = field(default_factory=set)
    guarded: set[str] = field(default_factory=set)
    deferred: set[str] = field(default_factory=set)


def _module_name(path: Path) -> str:
    parts = ("bastion", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in ROOT.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: Statement, importer: str) -> Iterator[str]:
    """The bastion modules an import statement loads (a ``from`` may name submodules)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        is_package = MODULES[importer].name == "__init__.py"
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    yield base
    yield from (f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)


def _with_packages(module: str) -> Iterator[str]:
    """``module`` and every package above it: importing a module runs its packages' ``__init__``."""
    parts = module.split(".")
    yield from (".".join(parts[:end]) for end in range(1, len(parts) + 1))


def _module_level(body: list[ast.stmt], guarded: bool) -> Iterator[tuple[Statement, bool]]:
    """The imports run when the module loads (not those in functions), and whether guarded."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, guarded
        elif isinstance(node, ast.If):
            yield from _module_level(node.body, guarded or _is_type_checking(node.test))
            yield from _module_level(node.orelse, guarded)
        elif isinstance(node, ast.Try):
            handlers = [handler.body for handler in node.handlers]
            for block in (node.body, *handlers, node.orelse, node.finalbody):
                yield from _module_level(block, guarded)


def _loaded(node: Statement, module: str) -> set[str]:
    """The bastion modules ``node`` loads when ``module`` runs it, packages included."""
    # A module's own packages are loaded before it, not by it.
    own = set(_with_packages(module))
    return {
        name
        for target in _targets(node, module)
        for name in _with_packages(target)
        if name in MODULES
    } - own


def _imports(module: str) -> Imports:
    found = Imports()
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top = set()
    for node, guarded in _module_level(tree.body, guarded=False):
        top.add(node)
        (found.guarded if guarded else found.runtime).update(_loaded(node, module))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and node not in top:
            found.deferred.update(_loaded(node, module))
    return found


GRAPH = {module: _imports(module) for module in MODULES}

#: Function-local imports that may close a cycle, (importer, imported) -> why. A deferral that
#: only keeps a heavy or optional module out of start-up closes none and needs no entry here.
DEFERRED_CYCLES: dict[tuple[str, str], str] = {}


def _run_time(module: str) -> set[str]:
    return GRAPH[module].runtime


def _run_time_or_deferred(module: str) -> set[str]:
    return GRAPH[module].runtime | GRAPH[module].deferred


def _reaches(
    start: str, goal: str, edges: Callable[[str], set[str]] = _run_time
) -> list[str] | None:
    """An import path from ``start`` to ``goal`` along ``edges`` (run-time imports), or None."""
    seen = {start}
    paths = [[start]]
    while paths:
        path = paths.pop()
        for nxt in sorted(edges(path[-1]) - seen):
            if nxt == goal:
                return [*path, nxt]
            seen.add(nxt)
            paths.append([*path, nxt])
    return None


def _layer(module: str) -> int | str:
    top = module.split(".")[1] if "." in module else module
    return LAYERS.get(top, top)


def _cycles() -> list[set[str]]:
    """The run-time graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for nxt in GRAPH[module].runtime:
            if nxt not in index:
                visit(nxt)
                low[module] = min(low[module], low[nxt])
            elif nxt in stack:
                low[module] = min(low[module], index[nxt])
        if low[module] == index[module]:
            component = set()
            while (member := stack.pop()) != module:
                component.add(member)
            component.add(module)
            if len(component) > 1:
                found.append(component)

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_the_graph_is_read() -> None:
    # A reader that found nothing would pass every test below.
    assert "bastion.storage.models" in GRAPH["bastion.storage.feed"].runtime
    assert "bastion.runtime" in GRAPH["bastion"].guarded
    assert "bastion.runtime" in GRAPH["bastion.cli.context"].deferred


def test_no_type_checking_guard_holds_a_cycle() -> None:
    held = [
        f"{module} guards {target}, which imports it back: {' -> '.join(path)}"
        for module, imports in sorted(GRAPH.items())
        for target in sorted(imports.guarded - imports.runtime)
        if (path := _reaches(target, module)) is not None
    ]
    assert held == []


def test_no_run_time_cycle() -> None:
    # Within one layer too: a cycle of module-level imports works only in one import order.
    assert [sorted(cycle) for cycle in _cycles()] == []


def _deferred_cycles() -> dict[tuple[str, str], list[str]]:
    """Each function-local import whose module imports the importer back, and the way back.

    The way back may itself run through function-local imports: once every function has
    run, the modules need each other all the same.
    """
    return {
        (module, target): path
        for module, imports in sorted(GRAPH.items())
        for target in sorted(imports.deferred - imports.runtime)
        if (path := _reaches(target, module, _run_time_or_deferred)) is not None
    }


def test_no_function_local_import_closes_a_cycle() -> None:
    closing = [
        f"{module} imports {target} in a function, which imports it back: {' -> '.join(path)}"
        for (module, target), path in _deferred_cycles().items()
        if (module, target) not in DEFERRED_CYCLES
    ]
    assert closing == []


def test_every_allowed_deferred_cycle_is_still_one() -> None:
    # An entry whose cycle is gone would let a new one in unnoticed.
    assert set(DEFERRED_CYCLES) <= set(_deferred_cycles())


def test_no_cycle_between_layers() -> None:
    layers = [(sorted(cycle), {_layer(module) for module in cycle}) for cycle in _cycles()]
    crossing = [cycle for cycle, spanned in layers if len(spanned) > 1]
    assert crossing == []
