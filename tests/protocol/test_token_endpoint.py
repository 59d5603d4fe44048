"""The token endpoint's one grant table: each grant declares its client authentication
and gets a request context (RFC 6749 section 3.2, RFC 8693 section 2.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from bastion.protocol.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    UnsupportedGrantTypeError,
)
from bastion.protocol.rfc6749.grants import ClientAuthentication, TokenRequest
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from protocol.protocol_support import Authenticator, confidential, form_request

BASIC = [("Authorization", "Basic c3ZjOnNlY3JldA==")]


@dataclass
class RecordingGrant:
    """A grant that answers with what it was given."""

    client_authentication: ClientAuthentication = "required"
    seen: list[TokenRequest] = field(default_factory=list)

    async def issue(self, token_request: TokenRequest) -> dict[str, Any]:
        self.seen.append(token_request)
        return {"access_token": "t", "token_type": "Bearer"}


@dataclass
class OptionalGrant(RecordingGrant):
    client_authentication: ClientAuthentication = "optional"


def _endpoint(**grants: RecordingGrant) -> TokenEndpoint:
    return TokenEndpoint({name.replace("_", "-"): grant for name, grant in grants.items()})


async def test_a_required_grant_gets_the_authenticated_client_and_address() -> None:
    grant = RecordingGrant()
    client = confidential()
    authenticate = Authenticator(client)
    await _endpoint(req=grant).handle(
        form_request({"grant_type": "req"}), authenticate, client_ip="192.0.2.1"
    )
    assert authenticate.calls == 1
    (seen,) = grant.seen
    assert (seen.client, seen.client_ip) == (client, "192.0.2.1")
    assert seen.request.form.get("grant_type") == "req"
    assert seen.authenticated_client() is client


async def test_a_required_grant_never_runs_for_an_unauthenticated_client() -> None:
    grant = RecordingGrant()
    with pytest.raises(InvalidClientError):
        await _endpoint(req=grant).handle(form_request({"grant_type": "req"}), Authenticator())
    assert grant.seen == []


async def test_an_optional_grant_authenticates_only_clients_that_send_credentials() -> None:
    grant = OptionalGrant()
    endpoint = _endpoint(opt=grant)
    authenticate = Authenticator()
    await endpoint.handle(form_request({"grant_type": "opt"}), authenticate)
    assert authenticate.calls == 0
    assert grant.seen[-1].client is None
    with pytest.raises(InvalidClientError):
        await endpoint.handle(form_request({"grant_type": "opt"}, headers=BASIC), authenticate)
    assert authenticate.calls == 1
    client = confidential()
    await endpoint.handle(
        form_request({"grant_type": "opt", "client_id": "svc"}), Authenticator(client)
    )
    assert grant.seen[-1].client is client
    assert len(grant.seen) == 2


@pytest.mark.parametrize("form", [{}, {"grant_type": "unknown"}, {"grant_type": "password"}])
async def test_unknown_grants_authenticate_the_client_first(form: dict[str, str]) -> None:
    # An unauthenticated caller learns nothing of the table: invalid_client comes first.
    with pytest.raises(InvalidClientError):
        await _endpoint(opt=OptionalGrant()).handle(form_request(form), Authenticator())
    with pytest.raises((InvalidRequestError, UnsupportedGrantTypeError)):
        await _endpoint(opt=OptionalGrant()).handle(
            form_request(form), Authenticator(confidential())
        )


def test_the_table_lists_its_grants_in_order() -> None:
    assert _endpoint(b=RecordingGrant(), a=OptionalGrant()).grant_types == ("b", "a")


async def test_a_context_without_a_client_refuses_to_name_one() -> None:
    context = TokenRequest(form_request({}), None)
    with pytest.raises(InvalidClientError) as caught:
        context.authenticated_client()
    assert caught.value.reason == "client_not_authenticated"
    assert context.client_ip is None


def test_bastion_grants_declare_their_client_authentication() -> None:
    from bastion.apikeys import token_exchange
    from bastion.protocol.rfc6749.grants import client_credentials

    assert client_credentials.ClientCredentialsGrant.client_authentication == "required"
    assert token_exchange.TokenExchangeGrant.client_authentication == "optional"
