"""Pins the one home of "is this API key usable" and of the key's subject: bastion.apikeys.state.

Every Python judge of a stored key's state — the key service's verification,
the verifiers of tokens exchanged from a key (RFC 8693, the gateway's ``jwt``
method), ``bastion doctor`` and the ``status`` of listings — uses these
functions, and no other module writes the rules again.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bastion
from bastion.apikeys import ApiKeyService, ApiKeySpec, InvalidApiKeyError, state
from bastion.apikeys.state import (
    api_key_refusal,
    api_key_status,
    api_key_subject,
    key_is_usable,
)
from bastion.settings import Settings
from bastion.storage import ApiKey, Database
from bastion.storage.shared import MemorySharedState

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = AT.timestamp()
KEY = ApiKey(digest="d", prefix="bst_x", id="k1")
SOURCE = Path(bastion.__file__).parent

# (the key's state, its refusal, its listing status)
CASES = [
    (KEY, None, "active"),
    (replace(KEY, expires_at=AT + timedelta(seconds=1)), None, "active"),
    (replace(KEY, expires_at=AT), "expired", "expired"),
    (replace(KEY, grace_until=AT + timedelta(seconds=1)), None, "grace"),
    (replace(KEY, grace_until=AT), "grace_ended", "rotated"),
    (replace(KEY, disabled=True, expires_at=AT), "disabled", "disabled"),
    (replace(KEY, revoked_at=AT, disabled=True), "revoked", "revoked"),
]


@pytest.mark.parametrize(("key", "refusal", "status"), CASES)
def test_refusal_usability_and_status_are_one_rule(
    key: ApiKey, refusal: str | None, status: str
) -> None:
    assert api_key_refusal(key, NOW) == refusal
    assert key_is_usable(key, NOW) is (refusal is None)
    assert api_key_status(key, AT) == status


@pytest.mark.parametrize(("key", "refusal", "status"), CASES)
async def test_verify_refuses_for_the_same_reason(
    db: Database, key: ApiKey, refusal: str | None, status: str
) -> None:
    service = ApiKeyService(db, Settings(), MemorySharedState())
    record, secret = await service.create(ApiKeySpec(name="a"))
    await db.api_keys.update(
        record.id,
        expires_at=key.expires_at,
        grace_until=key.grace_until,
        disabled=key.disabled,
        revoked_at=key.revoked_at,
    )
    if refusal is None:
        assert (await service.verify(secret, now=NOW)).id == record.id
    else:
        with pytest.raises(InvalidApiKeyError) as info:
            await service.verify(secret, now=NOW)
        assert info.value.reason == refusal


def test_subject_is_the_owner_else_the_key() -> None:
    assert api_key_subject(KEY) == "apikey:k1"
    assert api_key_subject(replace(KEY, owner_type="user", owner_id="u1")) == "user:u1"


def test_every_judge_imports_the_one_home() -> None:
    from bastion.apikeys import token_exchange
    from bastion.doctor import store_checks
    from bastion.gateway.authn import jwt

    assert token_exchange.key_is_usable is jwt.key_is_usable is store_checks.key_is_usable
    assert token_exchange.key_is_usable is state.key_is_usable
    assert token_exchange.api_key_subject is state.api_key_subject
    assert token_exchange.api_key_client_id is state.api_key_client_id


def _places_outside_the_home(matches: Callable[[ast.AST], bool]) -> list[str]:
    """``file:line`` of every node outside apikeys/state.py that ``matches``."""
    home = SOURCE / "apikeys" / "state.py"
    found: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path == home:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if matches(node):
                found.append(f"{path.relative_to(SOURCE)}:{getattr(node, 'lineno', 0)}")
    return found


def _attributes(node: ast.AST) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _orders_a_grace(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Compare)
        and all(isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in node.ops)
        and "grace_until" in _attributes(node)
    )


def _formats_an_owner(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) and {"owner_type", "owner_id"} <= _attributes(node)


def test_no_other_module_compares_a_rotation_grace() -> None:
    """``grace_until`` is ordered against a time only in the home (the state rule)."""
    assert _places_outside_the_home(_orders_a_grace) == []


def test_no_other_module_builds_a_subject_from_the_owner() -> None:
    """``f"{owner_type}:{owner_id}"`` is written only in the home."""
    assert _places_outside_the_home(_formats_an_owner) == []


def test_the_pins_can_fail() -> None:
    """The scans see what they look for (the home itself holds one of each)."""
    tree = ast.parse((SOURCE / "apikeys" / "state.py").read_text())
    assert any(_orders_a_grace(node) for node in ast.walk(tree))
    assert any(_formats_an_owner(node) for node in ast.walk(tree))
