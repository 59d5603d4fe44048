"""The public surface of bastion.users is small and pinned."""

from __future__ import annotations

import ast
from pathlib import Path

import bastion.users


def test_exported_members() -> None:
    assert sorted(bastion.users.__all__) == [
        "INVALID_CREDENTIALS_DETAIL",
        "InvalidCredentialsError",
        "PasswordPolicy",
        "UserError",
        "UserOperations",
        "UserService",
        "UserSpec",
        "UserSpecError",
        "UserStateChange",
        "WeakPasswordError",
        "common_passwords",
        "user_view",
    ]
    for name in bastion.users.__all__:
        assert getattr(bastion.users, name) is not None


def test_only_crypto_imports_argon2() -> None:
    package = Path(bastion.users.__file__).parents[1]
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
