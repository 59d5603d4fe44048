"""OpenID Connect Discovery: the document says what is supported, and nothing more."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.protocol.oidc.discovery import openid_configuration
from bastion.protocol.rfc8414 import authorization_server_metadata

ISSUER = "https://auth.example.com"
ENDPOINTS = {
    "authorization_endpoint": "/oauth2/authorize",
    "token_endpoint": "/oauth2/token",
    "jwks_uri": "/oauth2/jwks.json",
    "userinfo_endpoint": "/oauth2/userinfo",
    "revocation_endpoint": "/oauth2/revoke",
}


def arguments(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "endpoints": ENDPOINTS,
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "auth_methods": ["client_secret_basic", "none"],
        "client_assertion_algs": ["ES256"],
        "id_token_signing_algs": ["ES256", "RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email"],
    }
    values.update(changes)
    return values


def test_document() -> None:
    document = openid_configuration(ISSUER, **arguments(acr_values_supported=["urn:bastion:pwd"]))
    assert document == {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/oauth2/authorize",
        "token_endpoint": ISSUER + "/oauth2/token",
        "jwks_uri": ISSUER + "/oauth2/jwks.json",
        "revocation_endpoint": ISSUER + "/oauth2/revoke",
        "userinfo_endpoint": ISSUER + "/oauth2/userinfo",
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email"],
        "prompt_values_supported": ["none", "login", "consent"],
        "request_uri_parameter_supported": False,
        "acr_values_supported": ["urn:bastion:pwd"],
    }


def test_shares_the_rfc8414_members() -> None:
    document = openid_configuration(ISSUER, **arguments())
    oauth = authorization_server_metadata(
        ISSUER,
        endpoints=ENDPOINTS,
        grant_types=arguments()["grant_types"],
        auth_methods=arguments()["auth_methods"],
        signing_algs=["ES256"],
        scopes_supported=arguments()["scopes_supported"],
        response_types=["code"],
    )
    assert {name: document[name] for name in oauth} == oauth
    for unsupported in (
        "request_parameter_supported",
        "claims_parameter_supported",
        "acr_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
    ):
        assert unsupported not in document


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"endpoints": {"token_endpoint": "/t", "jwks_uri": "/j"}},
            "needs the endpoints \\['authorization_endpoint'\\]",
        ),
        ({"grant_types": ["client_credentials"]}, "supports authorization_code"),
        ({"id_token_signing_algs": []}, "at least one algorithm"),
        ({"id_token_signing_algs": ["RS256", "none"]}, "never unsigned"),
        ({"scopes_supported": ["profile"]}, "must include openid"),
        ({"client_assertion_algs": ["none"]}, "'none' is never"),
    ],
)
def test_refuses_untrue_documents(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        openid_configuration(ISSUER, **arguments(**changes))
