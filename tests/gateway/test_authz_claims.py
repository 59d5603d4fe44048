"""Required claims and roles (gateway/authz/claims.py): matching rules and exact errors."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bastion.gateway.authz import (
    ClaimMismatchError,
    MissingRoleError,
    RequiredClaims,
    compile_claims,
)


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("acme", "acme", True),
        ("acme", "other", False),
        ("acme", ["x", "acme"], True),
        (True, True, True),
        (True, 1, False),  # true is not 1
        (1, True, False),
        (1, 1, True),
        (["a", "b"], ["b", "a", "c"], True),
        (["a", "b"], ["a"], False),
        (["a"], "a", False),
        ("acme", None, False),
    ],
)
def test_claim_matching(expected: Any, actual: Any, ok: bool) -> None:
    required = RequiredClaims({"tenant": expected}, ())
    claims = {} if actual is None else {"tenant": actual}
    if ok:
        required.check(claims)
    else:
        with pytest.raises(ClaimMismatchError) as caught:
            required.check(claims)
        problem = caught.value.to_problem()
        assert (caught.value.status, problem["reason"], problem["claim"]) == (
            403,
            "claim_mismatch",
            "tenant",
        )
        assert problem["detail"] == "The credential's claim tenant does not allow this route."


def test_roles_from_a_dotted_path_array_or_string() -> None:
    required = RequiredClaims({}, ("admin", "ops"), "realm_access.roles")
    required.check({"realm_access": {"roles": ["ops", "admin", "x"]}})
    RequiredClaims({}, ("admin",)).check({"roles": "user admin"})
    with pytest.raises(MissingRoleError) as caught:
        required.check({"realm_access": {"roles": ["ops"]}})
    problem = caught.value.to_problem()
    assert (problem["status"], problem["reason"], problem["role"]) == (403, "missing_role", "admin")
    assert problem["detail"] == "This route requires the role admin."
    for claims in ({}, {"realm_access": "admin"}, {"realm_access": {"roles": [1, None]}}):
        with pytest.raises(MissingRoleError):
            required.check(claims)


def test_compile_from_settings() -> None:
    assert compile_claims(SimpleNamespace(claims={}, roles=[])) is None
    assert compile_claims(SimpleNamespace()) is None
    compiled = compile_claims(SimpleNamespace(claims={"a": 1}, roles=["r"], roles_claim="x.y"))
    assert compiled is not None
    assert compiled.roles_path == ("x", "y")
