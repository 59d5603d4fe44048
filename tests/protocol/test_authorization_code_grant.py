"""The authorization code grant's protocol rules (RFC 6749 §4.1.3, RFC 7636 §4.5, OIDC
Core §3.1.3.3), over a stand-in code store and signers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bastion.protocol.oidc.core import token_hash
from bastion.protocol.rfc6749 import errors
from bastion.protocol.rfc6749.grants import TokenRequest, authorization_code
from bastion.protocol.rfc6749.grants.authorization_code import (
    AuthorizationCodeGrant,
    CodeRedemption,
    RedeemedCode,
    returns_refresh_token,
)
from bastion.protocol.rfc6749.grants.refresh_token import Rotation
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from bastion.settings import Settings
from bastion.storage.models import Client
from protocol import protocol_support as support

CALLBACK = "https://app.example.com/cb"
VERIFIER = "v" * 43
NOW = 1_700_000_000.0
TOKENS = Settings().tokens
ISSUER = support.ISSUER
Signer = support.RecordingSigner


@dataclass
class Codes:
    """Redeems ``good`` only, for ``scope``; records what it was asked."""

    scope: str = "openid orders:read"
    redeemed: list[CodeRedemption] = field(default_factory=list)
    families: list[str] = field(default_factory=list)

    async def redeem(self, redemption: CodeRedemption) -> RedeemedCode:
        self.redeemed.append(redemption)
        if redemption.code != "bac_good":
            raise errors.InvalidGrantError("the authorization code is invalid", reason="x")
        return RedeemedCode(
            code_digest="digest",
            user_id="user-1",
            scope=self.scope,
            family_id="fam-1",
            issued_at=NOW - 5,
            nonce="n-0S6",
            auth_time=NOW - 30,
            acr="urn:bastion:acr:mfa",
            amr=("pwd", "otp"),
            sid="session-1",
        )

    async def start_family(self, client: Client, code: RedeemedCode) -> Rotation:
        self.families.append(code.family_id)
        return Rotation("brt_first", "jti-1", code.user_id, (), NOW)


class IdSigner:
    """Signs as the registered algorithm says (``None``: ES256, the server's default)."""

    def __init__(self) -> None:
        self.issued: list[dict[str, Any]] = []
        self.algs: list[str | None] = []

    async def __call__(self, build: Callable[[str], dict[str, Any]], alg: str | None) -> str:
        self.algs.append(alg)
        self.issued.append(build(alg or "ES256"))
        return "id-token"


def app(**changes: Any) -> Client:
    values: dict[str, Any] = {
        "grant_types": ("authorization_code", "refresh_token"),
        "redirect_uris": (CALLBACK,),
    }
    values.update(changes)
    return support.confidential("app", **values)


GOOD = {"code": "bac_good", "redirect_uri": CALLBACK, "code_verifier": VERIFIER}


async def _run(
    form: dict[str, Any], client: Client | None = None, codes: Codes | None = None
) -> tuple[dict[str, Any], Signer, IdSigner, Codes]:
    signer, id_signer, codes = Signer(), IdSigner(), codes or Codes()
    grant = AuthorizationCodeGrant(codes, ISSUER, TOKENS, id_signer, signer)
    request = support.form_request({"grant_type": "authorization_code", **form})
    body = await grant.issue(TokenRequest(request, client or app(), "192.0.2.7"))
    return body, signer, id_signer, codes


async def test_a_code_gives_an_access_token_and_an_id_token() -> None:
    body, signer, id_signer, codes = await _run(GOOD)
    # openid without offline_access: no refresh token (OIDC Core §11).
    assert body == {
        "access_token": "access-token",
        "id_token": "id-token",
        "token_type": "Bearer",
        "expires_in": 900,
        "scope": "openid orders:read",
    }
    [redemption] = codes.redeemed
    assert redemption.client.client_id == "app"
    assert (redemption.code, redemption.redirect_uri) == ("bac_good", CALLBACK)
    assert (redemption.code_verifier, redemption.client_ip) == (VERIFIER, "192.0.2.7")
    assert codes.families == ["fam-1"]
    claims = signer.issued[0]
    assert (claims["jti"], claims["sub"], claims["client_id"]) == ("jti-1", "user-1", "app")
    assert (claims["iat"], claims["scope"]) == (int(NOW), "openid orders:read")
    assert id_signer.issued == [
        {
            "iss": ISSUER,
            "sub": "user-1",
            "aud": "app",
            "exp": int(NOW) + 300,
            "iat": int(NOW),
            "auth_time": int(NOW) - 30,
            "nonce": "n-0S6",
            "acr": "urn:bastion:acr:mfa",
            "amr": ["pwd", "otp"],
            "sid": "session-1",
            "at_hash": token_hash("access-token", "ES256"),
        }
    ]
    assert id_signer.algs == [None]  # the client registered none: the server's default


@pytest.mark.parametrize(("alg", "digest"), [("RS256", hashlib.sha256), ("EdDSA", hashlib.sha512)])
async def test_the_id_token_follows_the_registered_algorithm(alg: str, digest: Any) -> None:
    _, _, id_signer, _ = await _run(GOOD, client=app(id_token_signed_response_alg=alg))
    assert id_signer.algs == [alg]
    # at_hash: the left half of the hash of the ID token's alg (OIDC Core §3.1.3.6).
    half = digest(b"access-token").digest()
    expected = base64.urlsafe_b64encode(half[: len(half) // 2]).rstrip(b"=").decode()
    assert id_signer.issued[0]["at_hash"] == expected


async def test_offline_access_or_a_plain_oauth_scope_returns_the_refresh_token() -> None:
    body, *_ = await _run(GOOD, codes=Codes(scope="openid offline_access"))
    assert (body["refresh_token"], body["id_token"]) == ("brt_first", "id-token")
    body, _, id_signer, _ = await _run(GOOD, codes=Codes(scope="orders:read"))
    assert body["refresh_token"] == "brt_first"
    assert "id_token" not in body
    assert id_signer.issued == []


@pytest.mark.parametrize(
    ("grant_types", "scope", "expected"),
    [
        (("authorization_code", "refresh_token"), ("a",), True),
        (("authorization_code", "refresh_token"), ("openid",), False),
        (("authorization_code", "refresh_token"), ("openid", "offline_access"), True),
        (("authorization_code",), ("a",), False),
        (("authorization_code",), ("openid", "offline_access"), False),
    ],
)
def test_when_the_refresh_token_is_returned(
    grant_types: tuple[str, ...], scope: tuple[str, ...], expected: bool
) -> None:
    assert returns_refresh_token(app(grant_types=grant_types), scope) is expected


@pytest.mark.parametrize(
    ("form", "error", "detail"),
    [
        ({**GOOD, "code": ""}, errors.InvalidRequestError, "missing parameter 'code'"),
        (
            {"code": "bac_good", "code_verifier": VERIFIER},
            errors.InvalidRequestError,
            "missing parameter 'redirect_uri'",
        ),
        (
            {"code": "bac_good", "redirect_uri": CALLBACK},
            errors.InvalidRequestError,
            "missing parameter 'code_verifier'",
        ),
        (
            {**GOOD, "code_verifier": "short"},
            errors.InvalidRequestError,
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        ),
        (
            {**GOOD, "resource": "https://elsewhere.example"},
            errors.InvalidTargetError,
            None,
        ),
        (
            {**GOOD, "code": "bac_bad"},
            errors.InvalidGrantError,
            "the authorization code is invalid",
        ),
    ],
)
async def test_refusals(form: dict[str, Any], error: type[Exception], detail: str | None) -> None:
    codes = Codes()
    with pytest.raises(error) as caught:
        await _run(form, codes=codes)
    if detail is not None:
        assert getattr(caught.value, "error_description", None) == detail
    if error is not errors.InvalidGrantError:
        assert codes.redeemed == []  # refused before the code is touched (and burnt)
    assert codes.families == []


async def test_a_client_not_allowed_the_grant_is_unauthorized() -> None:
    codes = Codes()
    with pytest.raises(errors.UnauthorizedClientError) as caught:
        await _run(GOOD, support.confidential("svc", grant_types=("client_credentials",)), codes)
    assert caught.value.error_description == (
        "the client is not allowed to use the authorization_code grant"
    )
    assert codes.redeemed == []


async def test_the_grant_table_requires_client_authentication() -> None:
    grant = AuthorizationCodeGrant(Codes(), ISSUER, TOKENS, IdSigner(), Signer())
    endpoint = TokenEndpoint({authorization_code.GRANT_TYPE: grant})
    request = support.form_request({"grant_type": "authorization_code", **GOOD})
    refusing = support.Authenticator(None)
    with pytest.raises(errors.InvalidClientError):
        await endpoint.handle(request, refusing)
    assert refusing.calls == 1
    public = app(client_type="public", token_endpoint_auth_method="none")
    body = await endpoint.handle(request, support.Authenticator(public), client_ip="192.0.2.1")
    assert body["id_token"] == "id-token"


def test_an_unadvertised_grant_is_served_but_not_listed() -> None:
    grant = AuthorizationCodeGrant(Codes(), ISSUER, TOKENS, IdSigner(), Signer())
    grants = {authorization_code.GRANT_TYPE: grant, "b": grant}
    endpoint = TokenEndpoint(grants, unadvertised=(authorization_code.GRANT_TYPE,))
    assert endpoint.grant_types == ("b",)
    assert TokenEndpoint(grants).grant_types == ("authorization_code", "b")
