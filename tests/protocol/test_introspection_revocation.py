"""RFC 7662 introspection and RFC 7009 revocation semantics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from bastion.crypto.jwt import InvalidTokenError
from bastion.errors import ServiceUnavailableError
from bastion.protocol.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
)
from bastion.protocol.rfc7009 import revoke
from bastion.protocol.rfc7662 import introspect
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.models import Client
from protocol.protocol_support import ISSUER, confidential, form_request

#: A resource server registered to introspect (the reserved scope).
INTROSPECTOR = confidential("rs", scopes=("bastion:introspect",))

CLAIMS: dict[str, Any] = {
    "iss": ISSUER,
    "sub": "svc",
    "aud": "https://api.example.com/orders",
    "client_id": "svc",
    "exp": 1_700_000_900,
    "iat": 1_700_000_000,
    "jti": "abc",
    "scope": "orders:read",
    "custom": "not copied",
}


def verifier(tokens: Mapping[str, Any]) -> Any:
    async def verify(token: str) -> Mapping[str, Any]:
        found = tokens.get(token)
        if isinstance(found, BaseException):
            raise found
        if found is None:
            raise InvalidTokenError("malformed")
        return dict(found)

    return verify


VERIFY = verifier(
    {
        "good": CLAIMS,
        "expired": InvalidTokenError("expired"),
        "revoked": InvalidTokenError("revoked"),
        "with-nbf": {**CLAIMS, "nbf": 1_700_000_000},
        "down": SharedStateUnavailableError("redis down"),
        "other": {**CLAIMS, "client_id": "someone-else", "sub": "someone-else", "jti": "xyz"},
        "no-jti": {k: v for k, v in CLAIMS.items() if k != "jti"},
    }
)


# -- introspection --------------------------------------------------------------------------


async def test_active_token() -> None:
    response = await introspect(
        form_request({"token": "good"}), caller=INTROSPECTOR, verify_token=VERIFY
    )
    assert response == {
        "active": True,
        "token_type": "Bearer",
        "scope": "orders:read",
        "client_id": "svc",
        "exp": 1_700_000_900,
        "iat": 1_700_000_000,
        "sub": "svc",
        "aud": "https://api.example.com/orders",
        "iss": ISSUER,
        "jti": "abc",
    }


async def test_nbf_is_copied_when_present() -> None:
    response = await introspect(
        form_request({"token": "with-nbf"}), caller=INTROSPECTOR, verify_token=VERIFY
    )
    assert response["nbf"] == 1_700_000_000


@pytest.mark.parametrize("token", ["expired", "revoked", "unknown", "x" * 10_000])
async def test_inactive_is_only_active_false(token: str) -> None:
    response = await introspect(
        form_request({"token": token, "token_type_hint": "refresh_token"}),
        caller=INTROSPECTOR,
        verify_token=VERIFY,
    )
    assert response == {"active": False}


async def test_unknown_hint_is_ignored() -> None:
    request = form_request({"token": "good", "token_type_hint": "banana"})
    assert (await introspect(request, caller=INTROSPECTOR, verify_token=VERIFY))["active"] is True


async def test_introspection_needs_a_token() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await introspect(form_request({}), caller=INTROSPECTOR, verify_token=VERIFY)
    assert caught.value.error_description == "missing parameter 'token'"


async def test_public_callers_refused() -> None:
    public = Client(client_id="spa", client_type="public", token_endpoint_auth_method="none")
    with pytest.raises(UnauthorizedClientError) as caught:
        await introspect(form_request({"token": "good"}), caller=public, verify_token=VERIFY)
    assert caught.value.error_description == "public clients cannot use the introspection endpoint"


async def test_outage_is_not_reported_as_inactive() -> None:
    with pytest.raises(ServiceUnavailableError):
        await introspect(form_request({"token": "down"}), caller=INTROSPECTOR, verify_token=VERIFY)


async def test_clients_without_the_introspect_scope_are_refused() -> None:
    # Being an authenticated confidential client is not enough: an orders:read
    # service must not read the claims of other clients' (e.g. admin) tokens.
    with pytest.raises(UnauthorizedClientError) as caught:
        await introspect(
            form_request({"token": "good"}), caller=confidential("rs"), verify_token=VERIFY
        )
    assert caught.value.reason == "introspection_not_allowed"
    assert caught.value.status == 400
    assert caught.value.error_description == (
        "the client is not allowed to introspect tokens (it needs the scope bastion:introspect)"
    )


# -- revocation ------------------------------------------------------------------------------


class DenyList:
    def __init__(self) -> None:
        self.revoked: list[tuple[str, float]] = []

    async def __call__(self, jti: str, exp: float) -> None:
        self.revoked.append((jti, exp))


async def test_revoke_own_token() -> None:
    deny = DenyList()
    done = await revoke(
        form_request({"token": "good", "token_type_hint": "access_token"}),
        caller=confidential("svc"),
        verify_token=VERIFY,
        revoke_jti=deny,
    )
    assert done is True
    assert deny.revoked == [("abc", 1_700_000_900.0)]


@pytest.mark.parametrize("token", ["expired", "revoked", "unknown", "no-jti"])
async def test_invalid_tokens_are_a_silent_success(token: str) -> None:
    deny = DenyList()
    request = form_request({"token": token, "token_type_hint": "refresh_token"})
    assert (
        await revoke(request, caller=confidential("svc"), verify_token=VERIFY, revoke_jti=deny)
        is False
    )
    assert deny.revoked == []


async def test_another_clients_token_is_refused_and_kept() -> None:
    deny = DenyList()
    with pytest.raises(InvalidGrantError) as caught:
        await revoke(
            form_request({"token": "other"}),
            caller=confidential("svc"),
            verify_token=VERIFY,
            revoke_jti=deny,
        )
    assert (caught.value.code, caught.value.status) == ("invalid_grant", 400)
    assert caught.value.error_description == "the token was not issued to this client"
    assert caught.value.reason == "foreign_token"
    assert deny.revoked == []


async def test_public_client_may_revoke_its_own_token() -> None:
    public = Client(client_id="svc", client_type="public", token_endpoint_auth_method="none")
    deny = DenyList()
    assert await revoke(
        form_request({"token": "good"}), caller=public, verify_token=VERIFY, revoke_jti=deny
    )
    assert deny.revoked == [("abc", 1_700_000_900.0)]


async def test_revocation_needs_a_token() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await revoke(
            form_request({}), caller=confidential(), verify_token=VERIFY, revoke_jti=DenyList()
        )
    assert caught.value.error_description == "missing parameter 'token'"


async def test_revocation_outage_propagates() -> None:
    with pytest.raises(ServiceUnavailableError):
        await revoke(
            form_request({"token": "down"}),
            caller=confidential(),
            verify_token=VERIFY,
            revoke_jti=DenyList(),
        )
