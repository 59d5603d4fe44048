"""OIDC Core §5.3/§5.4: the userinfo claims each scope releases."""

from __future__ import annotations

from bastion.protocol.oidc.userinfo import UserInfoSource, userinfo_claims

ALICE = UserInfoSource(
    subject="u1",
    preferred_username="alice",
    name="Alice Liddell",
    email="alice@example.com",
    email_verified=True,
    updated_at=1765108800.9,
)


def test_sub_always_and_claims_by_scope() -> None:
    assert userinfo_claims(ALICE, ["openid"]) == {"sub": "u1"}
    assert userinfo_claims(ALICE, ["openid", "profile"]) == {
        "sub": "u1",
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "updated_at": 1765108800,
    }
    assert userinfo_claims(ALICE, ["openid", "email"]) == {
        "sub": "u1",
        "email": "alice@example.com",
        "email_verified": True,
    }


def test_claims_without_a_value_are_left_out() -> None:
    bare = UserInfoSource(subject="u2", preferred_username="bob")
    assert userinfo_claims(bare, ["openid", "profile", "email"]) == {
        "sub": "u2",
        "preferred_username": "bob",
    }
