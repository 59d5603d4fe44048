"""``bastion.settings`` is a foundation: it imports nothing above it (lazy imports included).

The gateway, the limiter, the audit log and the HTTP layer are built *from* the settings;
a validator that needs one of them takes its rule down into the settings instead
(the rate grammar lives in :mod:`bastion.settings.rates`, the tracing install probe in
:mod:`bastion.settings.monitoring`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import bastion.settings

#: What settings modules may import from bastion: themselves and the other foundations, and
#: the scope-token grammar, whose one home is the protocol (``tests/protocol/test_scope``); that
#: module imports only the protocol's errors and ``bastion.errors``.
ALLOWED = (
    "bastion.settings",
    "bastion.errors",
    "bastion.storage",
    "bastion.protocol.rfc6749.scope",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_settings_import_no_higher_layer() -> None:
    package = Path(bastion.settings.__file__).parent
    upward = [
        f"{path.name}:{line}: {module}"
        for path in sorted(package.rglob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] == "bastion"
        and not any(module == allowed or module.startswith(f"{allowed}.") for allowed in ALLOWED)
    ]
    assert upward == []
