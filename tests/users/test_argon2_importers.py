"""argon2 has one importer: crypto/passwords.py (the users feature goes through it)."""

from __future__ import annotations

import ast
from pathlib import Path

import bastion


def test_only_crypto_imports_argon2() -> None:
    package = Path(bastion.__file__).parent
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == "argon2" or name.startswith("argon2.") for name in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"crypto/passwords.py"}
