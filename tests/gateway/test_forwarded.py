"""The client address: one rule (gateway/forwarded.py), resolved once per request."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import bastion
from bastion.gateway import forwarded
from bastion.gateway.forwarded import (
    CLIENT_IP_SCOPE_KEY,
    TrustedProxies,
    client_ip,
    remember_client_ip,
    request_client_ip,
)

SRC = Path(bastion.__file__).parent


def _scope(peer: str | None, *forwarded_for: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 4000) if peer is not None else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded_for],
    }


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.5", ("198.51.100.1",), "203.0.113.5"),  # untrusted peer: header ignored
        ("10.0.0.1", ("6.6.6.6, 198.51.100.1",), "198.51.100.1"),  # rightmost untrusted hop
        ("10.0.0.1", ("6.6.6.6", "198.51.100.1, 10.0.0.2"), "198.51.100.1"),  # one list
        ("10.0.0.1", ("10.0.0.3, 10.0.0.2",), "10.0.0.3"),  # all trusted: the leftmost
        ("10.0.0.1", (), "10.0.0.1"),  # no header: the peer
        (None, ("198.51.100.1",), None),  # no peer from the server
    ],
)
def test_the_rule(peer: str | None, headers: tuple[str, ...], expected: str | None) -> None:
    assert client_ip(_scope(peer, *headers), TrustedProxies(["10.0.0.0/8"])) == expected


def test_resolved_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    rule = forwarded.client_ip

    def counting(scope: Any, trusted: TrustedProxies) -> str | None:
        calls.append(scope)
        return rule(scope, trusted)

    monkeypatch.setattr(forwarded, "client_ip", counting)
    trusted = TrustedProxies(["10.0.0.1"])
    scope = _scope("10.0.0.1", "198.51.100.1")
    remember_client_ip(scope, trusted)
    remember_client_ip(scope, trusted)
    assert scope[CLIENT_IP_SCOPE_KEY] == "198.51.100.1"
    assert request_client_ip(scope) == "198.51.100.1"
    assert len(calls) == 1


def test_an_unresolved_request_is_a_bug_not_a_guess() -> None:
    with pytest.raises(LookupError, match="not resolved"):
        request_client_ip(_scope("203.0.113.5"))


def _calls(tree: ast.AST, name: str) -> int:
    found = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            found += called == name
    return found


def test_the_rule_has_one_home_and_one_caller() -> None:
    """X-Forwarded-For is read in gateway/forwarded.py only; the rule is applied by the
    app as a request enters (http/app.py) and read back everywhere else."""
    readers: list[str] = []
    rule_callers: list[str] = []
    resolvers: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        literals = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
        ]
        if any(
            (lit if isinstance(lit, str) else lit.decode("latin-1")).lower() == "x-forwarded-for"
            for lit in literals
        ):
            readers.append(relative)
        if _calls(tree, "client_ip"):
            rule_callers.append(relative)
        if _calls(tree, "remember_client_ip"):
            resolvers.append(relative)
    # gateway/headers.py names the header only to strip it from what goes upstream.
    assert readers == ["gateway/forwarded.py", "gateway/headers.py"]
    assert rule_callers == ["gateway/forwarded.py"]
    assert resolvers == ["http/app.py"]
