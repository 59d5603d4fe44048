"""The refresh token grant's protocol rules (RFC 6749 §6), over a stand-in token store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from bastion.protocol.rfc6749 import errors
from bastion.protocol.rfc6749.grants import TokenRequest, refresh_token
from bastion.protocol.rfc6749.grants.refresh_token import (
    RefreshRequest,
    RefreshTokenGrant,
    Rotation,
)
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from bastion.protocol.rfc7009 import revoke
from bastion.settings import Settings
from bastion.storage.models import Client
from protocol.protocol_support import ISSUER, Authenticator, confidential, form_request
from protocol.protocol_support import RecordingSigner as Signer

NOW = 1_700_000_000.0
#: The default lifetimes: 15 minutes for an access token.
TOKENS = Settings().tokens


@dataclass
class Store:
    """Rotates ``good`` only; records what it was asked."""

    good: str = "brt_good"
    calls: list[tuple[str, str, tuple[str, ...] | None, str | None]] = field(default_factory=list)

    async def rotate(self, refresh: RefreshRequest) -> Rotation:
        scope, presented = refresh.scope, refresh.refresh_token
        self.calls.append((presented, refresh.client.client_id, scope, refresh.client_ip))
        if presented != self.good:
            raise errors.InvalidGrantError(
                "the refresh token is invalid", reason="unknown_refresh_token"
            )
        return Rotation("brt_next", "jti-2", "user-1", scope or ("a", "b"), NOW)


def app(**changes: Any) -> Client:
    values: dict[str, Any] = {"grant_types": ("authorization_code", "refresh_token")}
    values.update(changes)
    return confidential("app", **values)


async def _run(
    form: dict[str, Any], client: Client | None = None, store: Store | None = None
) -> tuple[dict[str, Any], Signer, Store]:
    signer, store = Signer(), store or Store()
    grant = RefreshTokenGrant(
        refresh_tokens=store, issuer=ISSUER, settings_tokens=TOKENS, issue_token=signer
    )
    request = form_request({"grant_type": "refresh_token", **form})
    body = await grant.issue(TokenRequest(request, client or app(), "192.0.2.7"))
    return body, signer, store


async def test_a_refresh_rotates_and_issues_an_access_token_with_the_rotations_jti() -> None:
    body, signer, store = await _run({"refresh_token": "brt_good"})
    assert body == {
        "access_token": "access-token",
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": "brt_next",
        "scope": "a b",
    }
    assert store.calls == [("brt_good", "app", None, "192.0.2.7")]
    claims = signer.issued[0]
    assert (claims["jti"], claims["sub"], claims["client_id"]) == ("jti-2", "user-1", "app")
    assert (claims["iat"], claims["exp"]) == (int(NOW), int(NOW) + 900)
    assert claims["aud"] == "https://api.example.com/orders"  # the client's first audience


async def test_a_narrower_scope_and_a_resource_are_passed_on() -> None:
    body, signer, store = await _run(
        {
            "refresh_token": "brt_good",
            "scope": "a",
            "resource": "https://api.example.com/users",
        }
    )
    assert store.calls[0][2] == ("a",)
    assert body["scope"] == "a"
    assert signer.issued[0]["aud"] == "https://api.example.com/users"


async def test_an_empty_scope_is_the_original_scope() -> None:
    # RFC 6749 §3.2: a parameter sent without a value is as if omitted.
    _, _, store = await _run({"refresh_token": "brt_good", "scope": ""})
    assert store.calls[0][2] is None


@pytest.mark.parametrize(
    ("form", "error", "detail"),
    [
        ({}, errors.InvalidRequestError, "missing parameter 'refresh_token'"),
        ({"refresh_token": ""}, errors.InvalidRequestError, "missing parameter 'refresh_token'"),
        (
            {"refresh_token": "brt_good", "scope": "a\u00e9"},
            errors.InvalidScopeError,
            "scope contains a character RFC 6749 section 3.3 does not allow",
        ),
        (
            {"refresh_token": "brt_good", "resource": "https://elsewhere.example"},
            errors.InvalidTargetError,
            None,
        ),
        ({"refresh_token": "brt_stolen"}, errors.InvalidGrantError, "the refresh token is invalid"),
    ],
)
async def test_refusals(form: dict[str, Any], error: type[Exception], detail: str | None) -> None:
    store = Store()
    with pytest.raises(error) as caught:
        await _run(form, store=store)
    if detail is not None:
        assert getattr(caught.value, "error_description", None) == detail
    if error is not errors.InvalidGrantError:
        assert store.calls == []  # refused before the token is touched


async def test_a_client_not_allowed_the_grant_is_unauthorized() -> None:
    store = Store()
    with pytest.raises(errors.UnauthorizedClientError) as caught:
        await _run({"refresh_token": "brt_good"}, app(grant_types=("authorization_code",)), store)
    assert caught.value.error_description == (
        "the client is not allowed to use the refresh_token grant"
    )
    assert store.calls == []


async def test_the_grant_table_requires_client_authentication() -> None:
    grant = RefreshTokenGrant(Store(), ISSUER, TOKENS, Signer())
    endpoint = TokenEndpoint({refresh_token.GRANT_TYPE: grant})
    assert endpoint.grant_types == ("refresh_token",)
    request = form_request({"grant_type": "refresh_token", "refresh_token": "brt_good"})
    refusing = Authenticator(None)
    with pytest.raises(errors.InvalidClientError):
        await endpoint.handle(request, refusing)
    assert refusing.calls == 1
    # A public client authenticates with `none` (its client_id) and is bound by it.
    public = app(client_type="public", token_endpoint_auth_method="none")
    body = await endpoint.handle(request, Authenticator(public), client_ip="192.0.2.1")
    assert body["refresh_token"] == "brt_next"


@dataclass
class Revocations:
    """RFC 7009 stand-ins recording the order they are tried in."""

    refresh: set[str]
    tried: list[str] = field(default_factory=list)

    async def verify(self, token: str) -> dict[str, Any]:
        self.tried.append("access")
        if token != "jwt":
            raise errors.InvalidClientError(reason="not_a_token")  # any BastionError: not valid
        return {"client_id": "app", "jti": "j", "exp": NOW + 60}

    async def deny(self, jti: str, exp: float) -> None:
        self.tried.append(f"deny {jti}")

    async def end_family(self, token: str, caller: Client) -> bool:
        self.tried.append("refresh")
        return token in self.refresh


@pytest.mark.parametrize(
    ("token", "hint", "done", "tried"),
    [
        ("brt_x", "refresh_token", True, ["refresh"]),
        ("brt_x", None, True, ["access", "refresh"]),
        ("brt_x", "access_token", True, ["access", "refresh"]),
        # A wrong hint is an order, not a fact: the other kind is still tried.
        ("jwt", "refresh_token", True, ["refresh", "access", "deny j"]),
        ("jwt", None, True, ["access", "deny j"]),
        ("unknown", "refresh_token", False, ["refresh", "access"]),
    ],
)
async def test_revocation_tries_both_kinds_in_the_hints_order(
    token: str, hint: str | None, done: bool, tried: list[str]
) -> None:
    stand_in = Revocations({"brt_x"})
    form = {"token": token} if hint is None else {"token": token, "token_type_hint": hint}
    result = await revoke(
        form_request(form),
        caller=app(),
        verify_token=stand_in.verify,
        revoke_jti=stand_in.deny,
        revoke_refresh=stand_in.end_family,
    )
    assert (result, stand_in.tried) == (done, tried)
