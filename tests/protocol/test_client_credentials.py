"""The client credentials grant (RFC 6749 §4.4) and the token endpoint's grant table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from bastion.protocol.rfc6749.errors import (
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from bastion.protocol.rfc6749.grants import client_credentials
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint, token_response
from bastion.storage.models import Client
from protocol.protocol_support import ISSUER, Authenticator, confidential, form_request

NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Tokens:
    access_token_ttl: float = 900.0
    max_access_token_ttl: float = 3600.0


class Signer:
    def __init__(self) -> None:
        self.issued: list[dict[str, Any]] = []

    async def __call__(self, claims: dict[str, Any]) -> str:
        self.issued.append(claims)
        return f"token-{len(self.issued)}"


async def _issue(
    form: dict[str, Any], client: Client | None = None, tokens: Tokens | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    signer = Signer()
    response = await client_credentials.handle(
        form_request({"grant_type": "client_credentials", **form}),
        client or confidential(),
        issuer=ISSUER,
        settings_tokens=tokens or Tokens(),
        issue_token=signer,
        now=NOW,
    )
    assert len(signer.issued) == 1
    return response, signer.issued[0]


async def _error(form: dict[str, Any], client: Client | None = None) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await _issue(form, client)
    return caught.value


async def test_default_token() -> None:
    response, claims = await _issue({})
    assert response == {
        "access_token": "token-1",
        "token_type": "Bearer",
        "expires_in": 900,
        "scope": "orders:read orders:write",
    }
    jti = claims.pop("jti")
    assert isinstance(jti, str)
    assert len(jti) >= 22
    assert claims == {
        "iss": ISSUER,
        "exp": int(NOW) + 900,
        "aud": "https://api.example.com/orders",
        "sub": "svc",
        "client_id": "svc",
        "iat": int(NOW),
        "scope": "orders:read orders:write",
    }


async def test_jti_is_unique() -> None:
    _, first = await _issue({})
    _, second = await _issue({})
    assert first["jti"] != second["jti"]


async def test_requested_scope_subset() -> None:
    response, claims = await _issue({"scope": "orders:write  orders:write"})
    assert response["scope"] == claims["scope"] == "orders:write"


async def test_scope_not_allowed() -> None:
    exc = await _error({"scope": "orders:read admin"})
    assert isinstance(exc, InvalidScopeError)
    assert (exc.code, exc.status) == ("invalid_scope", 400)
    assert exc.error_description == "scope 'admin' is not allowed for this client"


async def test_scope_bad_syntax() -> None:
    exc = await _error({"scope": 'orders:read "x"'})
    assert isinstance(exc, InvalidScopeError)
    assert exc.error_description == "scope contains a character RFC 6749 section 3.3 does not allow"


async def test_client_without_scopes_gets_no_scope_member() -> None:
    response, claims = await _issue({}, confidential(scopes=()))
    assert "scope" not in response
    assert "scope" not in claims


async def test_resource_selects_the_audience() -> None:
    response, claims = await _issue({"resource": "https://api.example.com/users"})
    assert claims["aud"] == "https://api.example.com/users"
    assert response["token_type"] == "Bearer"


async def test_audience_falls_back_to_the_issuer() -> None:
    _, claims = await _issue({}, confidential(audiences=()))
    assert claims["aud"] == ISSUER


@pytest.mark.parametrize(
    ("resource", "description"),
    [
        (
            "https://evil.example.com/",
            "resource 'https://evil.example.com/' is not allowed for this client",
        ),
        (
            "https://api.example.com/orders#frag",
            "resource must be an absolute URI without a fragment",
        ),
        ("/orders", "resource must be an absolute URI without a fragment"),
        ("https://api.example.com/ö", "resource must be an absolute URI without a fragment"),
        ("https://a b", "resource must be an absolute URI without a fragment"),
        (
            ["https://api.example.com/orders", "https://api.example.com/users"],
            "only one resource parameter per request is supported; request one token per resource",
        ),
    ],
)
async def test_resource_rules(resource: Any, description: str) -> None:
    exc = await _error({"resource": resource})
    assert isinstance(exc, InvalidTargetError)
    assert (exc.code, exc.status) == ("invalid_target", 400)
    assert exc.error_description == description


async def test_public_clients_refused() -> None:
    exc = await _error({}, confidential(client_type="public"))
    assert isinstance(exc, UnauthorizedClientError)
    assert exc.error_description == "public clients cannot use the client_credentials grant"


async def test_grant_not_registered() -> None:
    exc = await _error({}, confidential(grant_types=("authorization_code",)))
    assert isinstance(exc, UnauthorizedClientError)
    assert (exc.code, exc.status) == ("unauthorized_client", 400)
    assert exc.error_description == "the client is not allowed to use the client_credentials grant"


@pytest.mark.parametrize(("client_ttl", "expected"), [(None, 900), (60, 60), (7200, 3600)])
async def test_ttl(client_ttl: int | None, expected: int) -> None:
    response, claims = await _issue({}, confidential(access_token_ttl=client_ttl))
    assert response["expires_in"] == expected
    assert claims["exp"] - claims["iat"] == expected


# -- the token endpoint ------------------------------------------------------------------


def _endpoint(signer: Signer) -> TokenEndpoint:
    return TokenEndpoint(
        {
            "client_credentials": client_credentials.ClientCredentialsGrant(
                issuer=ISSUER, settings_tokens=Tokens(), issue_token=signer
            )
        }
    )


async def test_dispatch_client_credentials() -> None:
    signer = Signer()
    endpoint = _endpoint(signer)
    assert endpoint.grant_types == ("client_credentials",)
    body = await endpoint.handle(
        form_request({"grant_type": "client_credentials"}), Authenticator(confidential())
    )
    assert body["access_token"] == "token-1"
    status, headers, raw = token_response(body)
    assert status == 200
    assert headers == {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
    }
    assert orjson.loads(raw) == body


@pytest.mark.parametrize(
    ("grant_type", "description"),
    [
        ("password", "the password grant is not supported (RFC 9700 section 2.4)"),
        ("implicit", "the implicit grant is not supported (RFC 9700 section 2.1.2)"),
        ("authorization_code", "grant_type 'authorization_code' is not supported"),
        ("urn:x:" + "y" * 200, "grant_type 'urn:x:" + "y" * 94 + "' is not supported"),
    ],
)
async def test_unsupported_grants(grant_type: str, description: str) -> None:
    with pytest.raises(UnsupportedGrantTypeError) as caught:
        await _endpoint(Signer()).handle(
            form_request({"grant_type": grant_type}), Authenticator(confidential())
        )
    assert (caught.value.code, caught.value.status) == ("unsupported_grant_type", 400)
    assert caught.value.error_description == description


async def test_missing_grant_type() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await _endpoint(Signer()).handle(form_request({}), Authenticator(confidential()))
    assert caught.value.error_description == "missing parameter 'grant_type'"


def test_refused_grants_cannot_be_registered() -> None:
    grant = client_credentials.ClientCredentialsGrant(
        issuer=ISSUER, settings_tokens=Tokens(), issue_token=Signer()
    )
    with pytest.raises(ValueError, match="refused by design"):
        TokenEndpoint({"password": grant})
