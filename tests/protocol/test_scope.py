"""RFC 6749 §3.3 scope: the token grammar, parsing, and the grammar's one home."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import bastion
from bastion.protocol.rfc6749.errors import InvalidScopeError
from bastion.protocol.rfc6749.scope import is_scope_token, parse_scope

#: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
TOKEN_CHARACTERS = frozenset(chr(c) for c in [0x21, *range(0x23, 0x5B + 1), *range(0x5D, 0x7E + 1)])
#: Every character a copy of the grammar could be asked about.
PROBES = [chr(c) for c in range(0x80)] + ["é", "\u2028", "\U0001f600"]


@pytest.mark.parametrize("character", PROBES)
def test_a_token_is_printable_ascii_without_space_quote_or_backslash(character: str) -> None:
    assert is_scope_token(character) is (character in TOKEN_CHARACTERS)
    assert is_scope_token(f"orders:{character}") is (character in TOKEN_CHARACTERS)


def test_a_token_is_not_empty_and_not_a_list() -> None:
    assert is_scope_token("orders:read")
    assert not is_scope_token("")
    assert not is_scope_token("orders:read orders:write")
    assert not is_scope_token("orders:read\n")


def test_parse_scope_uses_the_grammar() -> None:
    assert parse_scope("  b a  b ") == ("b", "a")
    with pytest.raises(InvalidScopeError) as caught:
        parse_scope('a "b"')
    assert str(caught.value.detail) == (
        "scope contains a character RFC 6749 section 3.3 does not allow"
    )


def _string_patterns(tree: ast.AST) -> list[str]:
    """The constant patterns of the module's ``re.compile`` / ``re.fullmatch`` … calls."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(node.args[0].value)
    return found


def _is_the_scope_grammar(pattern: str) -> bool:
    """Whether ``pattern`` accepts exactly the scope-token characters, however spelled."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        return False
    accepted = {c for c in PROBES if compiled.fullmatch(c)}
    return accepted == TOKEN_CHARACTERS


def test_the_scope_grammar_has_one_home() -> None:
    """Only protocol/rfc6749/scope.py spells the scope-token grammar; the settings, the
    client and the API-key registries call ``is_scope_token``."""
    root = Path(bastion.__file__).parent
    homes = set()
    for module in sorted(root.rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        if any(_is_the_scope_grammar(pattern) for pattern in _string_patterns(tree)):
            homes.add(module.relative_to(root).as_posix())
    assert homes == {"protocol/rfc6749/scope.py"}
