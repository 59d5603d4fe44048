"""Typed settings are read typed: no ``getattr`` on a settings object, no default written twice.

A setting read with ``getattr(settings, "name", default)`` survives a rename of
``name`` silently — the default takes over and a control switches off — and
writes its default a second time. These checks read the source of the whole
package (``src/bastion``), and each checker is shown the patterns it must catch.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

import bastion
import bastion.settings

PACKAGE = Path(bastion.__file__).parent
SETTINGS_PACKAGE = PACKAGE / "settings"

#: Every settings model class, by name (the types a parameter is annotated with).
MODELS: dict[str, type[BaseModel]] = {
    name: obj
    for module in pkgutil.iter_modules(bastion.settings.__path__)
    for name, obj in vars(importlib.import_module(f"bastion.settings.{module.name}")).items()
    if inspect.isclass(obj)
    and issubclass(obj, BaseModel)
    and obj.__module__.startswith("bastion.settings.")  # not pydantic's own BaseModel
}


def _sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")


# -- no getattr on a settings object ---------------------------------------------------------


def _names(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            yield child.id
        elif isinstance(child, ast.Attribute):
            yield child.attr


def _is_settings_name(name: str) -> bool:
    return name == "settings" or name.endswith("_settings") or name in MODELS


def _annotated_with_model(annotation: ast.expr | None) -> bool:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body  # a quoted annotation
    return annotation is not None and any(name in MODELS for name in _names(annotation))


class _GetattrOnSettings(ast.NodeVisitor):
    """Finds ``getattr(x, …)`` where ``x`` is (or is read from) a settings object.

    A settings object is: anything read through a name or attribute called ``settings`` /
    ``*_settings`` (``route.settings.cors``, ``settings.tls``); a name annotated with a
    settings model; a name bound from one (by assignment or a ``for`` loop over it);
    ``self`` in a class derived from a model.
    """

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self._tainted: list[set[str]] = [set()]
        self._in_model: list[bool] = [False]

    def _taints(self, node: ast.AST) -> bool:
        """Whether ``node`` reads a settings object: a name, attribute or item chain through
        one (``route.settings.cors``, ``settings.routes[0]``), or a choice between such."""
        if isinstance(node, ast.BoolOp):
            return any(self._taints(value) for value in node.values)
        if isinstance(node, ast.IfExp):
            return self._taints(node.body) or self._taints(node.orelse)
        chain: list[str] = []
        while isinstance(node, ast.Attribute | ast.Subscript):
            if isinstance(node, ast.Attribute):
                chain.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return False  # a call's result is not the settings object itself
        return node.id in self._tainted[-1] or any(map(_is_settings_name, [node.id, *chain]))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = {name for base in node.bases for name in _names(base)}
        self._in_model.append(bool(bases & {*MODELS, "_Section", "BaseModel"}))
        self.generic_visit(node)
        self._in_model.pop()

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        tainted = set(self._tainted[-1])
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        for arg in arguments:
            if _annotated_with_model(arg.annotation):
                tainted.add(arg.arg)
        if self._in_model[-1] and arguments and arguments[0].arg == "self":
            tainted.add("self")
        self._tainted.append(tainted)
        self.generic_visit(node)
        self._tainted.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def _bind(self, target: ast.expr) -> None:
        for child in ast.walk(target):
            if isinstance(child, ast.Name):
                self._tainted[-1].add(child.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        if self._taints(node.value):
            for target in node.targets:
                self._bind(target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if _annotated_with_model(node.annotation) or (
            node.value is not None and self._taints(node.value)
        ):
            self._bind(node.target)
        self.generic_visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        if self._taints(node.iter):
            self._bind(node.target)
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_comprehension(self, node: ast.comprehension) -> None:
        if self._taints(node.iter):
            self._bind(node.target)
        self.generic_visit(node)

    def _visit_generators_first(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        # A comprehension binds its targets before its element is evaluated.
        for generator in node.generators:
            self.visit(generator)
        elements = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for element in elements:
            self.visit(element)

    visit_ListComp = _visit_generators_first
    visit_SetComp = _visit_generators_first
    visit_GeneratorExp = _visit_generators_first
    visit_DictComp = _visit_generators_first

    def visit_Call(self, node: ast.Call) -> None:
        is_getattr = isinstance(node.func, ast.Name) and node.func.id == "getattr"
        if is_getattr and node.args and self._taints(node.args[0]):
            self.found.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)


def getattr_on_settings(source: str) -> list[tuple[int, str]]:
    """``(line, call)`` of every ``getattr`` on a settings object in ``source``."""
    finder = _GetattrOnSettings()
    finder.visit(ast.parse(source))
    return finder.found


@pytest.mark.parametrize(
    "source",
    [
        'getattr(route.settings, "cors", None)',
        'getattr(settings.server, "workers", 1)',
        'getattr(runtime.settings, "trusted_proxies", ())',
        'def f(route: RouteSettings) -> None:\n    getattr(route, "health", None)',
        'def f(cors: "CorsSettings | None") -> None:\n    getattr(cors, "max_age", 600)',
        'def f(config: Settings) -> None:\n    x = config.tls\n    getattr(x, "min_version")',
        'for route in settings.routes:\n    getattr(route, "cors", None)',
        '[getattr(route, "ip", None) for route in settings.routes]',
        "class TLSSettings(_Section):\n    def check(self) -> None:\n        getattr(self, name)",
    ],
)
def test_the_checker_finds_getattr_on_settings(source: str) -> None:
    assert len(getattr_on_settings(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        'getattr(error, "retry_after", None)',
        'getattr(os, "O_CLOEXEC", 0)',
        "class Policy:\n    def check(self) -> None:\n        getattr(self, name)",
        'def f(runtime: Runtime) -> None:\n    getattr(runtime, "auditor", None)',
    ],
)
def test_the_checker_leaves_other_getattr_alone(source: str) -> None:
    assert getattr_on_settings(source) == []


def test_no_getattr_on_settings_objects() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {call}"
        for path, source in _sources()
        for line, call in getattr_on_settings(source)
    ]
    assert found == [], "read settings as typed attributes:\n" + "\n".join(found)


# -- every default is written once -----------------------------------------------------------


@dataclass(frozen=True)
class _Default:
    model: str
    field: str
    value: object


def _literal_defaults() -> dict[str, list[_Default]]:
    """Field name -> the literal defaults settings models give it (None and bools aside:
    too common to tell a repeated default from a coincidence)."""
    defaults: dict[str, list[_Default]] = {}
    for name, model in MODELS.items():
        for field, info in model.model_fields.items():
            value = info.default
            if isinstance(value, int | float | str) and not isinstance(value, bool):
                defaults.setdefault(field, []).append(_Default(name, field, value))
    return defaults


DEFAULTS = _literal_defaults()


def _constant(node: ast.expr | None) -> object:
    """The value of a literal (``5``, ``"roles"``, ``30 * 86400.0``), else a sentinel."""
    if node is None:
        return _NOT_LITERAL
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Pow):
        left, right = _constant(node.left), _constant(node.right)
        if isinstance(left, int | float) and isinstance(right, int | float):
            return left * right if isinstance(node.op, ast.Mult) else left**right
    return _NOT_LITERAL


_NOT_LITERAL = object()


def _repeats(field: str, node: ast.expr | None) -> _Default | None:
    value = _constant(node)
    if value is _NOT_LITERAL or isinstance(value, bool):
        return None
    for default in DEFAULTS.get(field, ()):
        same = default.value == value  # 30 and 30.0 are the same number of seconds
        if same and isinstance(value, str) == isinstance(default.value, str):
            return default
    return None


def repeated_defaults(source: str) -> list[str]:
    """Read sites in ``source`` that write a settings default again as a fallback:
    ``x.roles_claim or "roles"``, ``x.max_age if … else 600``, ``getattr(x, "max_age", 600)``.
    """
    found: list[str] = []

    def report(node: ast.expr, field: str, fallback: ast.expr) -> None:
        default = _repeats(field, fallback)
        if default is not None:
            found.append(
                f"{node.lineno}: {ast.unparse(node)} repeats {default.model}.{field} "
                f"= {default.value!r}"
            )

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            for left, right in itertools.pairwise(node.values):
                if isinstance(left, ast.Attribute):
                    report(node, left.attr, right)
        elif isinstance(node, ast.IfExp) and isinstance(node.body, ast.Attribute):
            report(node, node.body.attr, node.orelse)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) == 3
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            report(node, node.args[1].value, node.args[2])
    return found


@pytest.mark.parametrize(
    "source",
    [
        'policy = route.roles_claim or "roles"',
        "age = cors.max_age if cors is not None else 600",
        'getattr(cors, "max_age", 600)',
        'version = str(getattr(settings.tls, "min_version", "1.2"))',
        "ttl = policy.known_for or 30 * 86400.0",
    ],
)
def test_the_checker_finds_repeated_defaults(source: str) -> None:
    assert len(repeated_defaults(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "policy = route.roles_claim",
        'claim = route.roles_claim or "sub"',
        "age = cors.max_age if cors is not None else None",
        'getattr(error, "retry_after", None)',
    ],
)
def test_the_checker_leaves_other_values_alone(source: str) -> None:
    assert repeated_defaults(source) == []


def test_every_settings_default_is_written_once() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{place}"
        for path, source in _sources()
        if not path.is_relative_to(SETTINGS_PACKAGE)
        for place in repeated_defaults(source)
    ]
    assert found == [], (
        "read the default from the settings model instead of writing it again:\n" + "\n".join(found)
    )
