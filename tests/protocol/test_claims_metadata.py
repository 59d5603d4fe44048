"""RFC 9068 access token claims and RFC 8414 metadata."""

from __future__ import annotations

import pytest

from bastion.protocol.rfc8414 import authorization_server_metadata
from bastion.protocol.rfc9068 import ACCESS_TOKEN_TYP, access_token_claims

ISSUER = "https://auth.example.com"


def test_access_token_claims() -> None:
    claims = access_token_claims(
        issuer=ISSUER,
        subject="svc",
        audience="https://api",
        client_id="svc",
        scope="a b",
        ttl=900,
        now=1000.7,
        jti="j1",
    )
    assert claims == {
        "iss": ISSUER,
        "exp": 1900,
        "aud": "https://api",
        "sub": "svc",
        "client_id": "svc",
        "iat": 1000,
        "jti": "j1",
        "scope": "a b",
    }
    assert ACCESS_TOKEN_TYP == "at+jwt"


def test_access_token_claims_audiences_scope_and_extra() -> None:
    base = {
        "issuer": ISSUER,
        "subject": "u1",
        "client_id": "app",
        "ttl": 60.0,
        "now": 0.0,
        "jti": "j",
    }
    one = access_token_claims(audience=["https://a"], scope="", **base)  # type: ignore[arg-type]
    assert one["aud"] == "https://a"
    assert "scope" not in one
    two = access_token_claims(
        audience=("https://a", "https://b"),
        scope="",
        extra={"acr": "1", "amr": ["pwd"]},
        **base,  # type: ignore[arg-type]
    )
    assert two["aud"] == ["https://a", "https://b"]
    assert (two["acr"], two["amr"]) == ("1", ["pwd"])
    with pytest.raises(ValueError, match="extra claims may not replace \\['sub'\\]"):
        access_token_claims(audience="https://a", scope="", extra={"sub": "x"}, **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="audience"):
        access_token_claims(audience=[], scope="", **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        access_token_claims(audience="https://a", scope="", **{**base, "ttl": 0})  # type: ignore[arg-type]


ENDPOINTS = {
    "token_endpoint": "/oauth2/token",
    "jwks_uri": "/.well-known/jwks.json",
    "introspection_endpoint": "/oauth2/introspect",
    "revocation_endpoint": "https://auth.example.com/oauth2/revoke",
}
METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


def test_metadata_document() -> None:
    document = authorization_server_metadata(
        ISSUER,
        endpoints=ENDPOINTS,
        grant_types=["client_credentials"],
        auth_methods=METHODS,
        signing_algs=["ES256", "RS256", "PS256", "EdDSA"],
        scopes_supported=["orders:read"],
        service_documentation="https://docs.example.com",
    )
    algs = ["ES256", "RS256", "PS256", "EdDSA"]
    assert document == {
        "issuer": ISSUER,
        "token_endpoint": "https://auth.example.com/oauth2/token",
        "jwks_uri": "https://auth.example.com/.well-known/jwks.json",
        "introspection_endpoint": "https://auth.example.com/oauth2/introspect",
        "revocation_endpoint": "https://auth.example.com/oauth2/revoke",
        "scopes_supported": ["orders:read"],
        "response_types_supported": [],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": METHODS,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "introspection_endpoint_auth_methods_supported": METHODS[:3],
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        "service_documentation": "https://docs.example.com",
    }


def test_metadata_without_assertions_lists_no_algs() -> None:
    document = authorization_server_metadata(
        ISSUER,
        endpoints={"token_endpoint": "/t"},
        grant_types=["client_credentials"],
        auth_methods=["client_secret_basic"],
        signing_algs=["ES256"],
        extra={"code_challenge_methods_supported": ["S256"]},
    )
    assert "token_endpoint_auth_signing_alg_values_supported" not in document
    assert "introspection_endpoint_auth_methods_supported" not in document
    assert document["code_challenge_methods_supported"] == ["S256"]


@pytest.mark.parametrize(
    ("issuer", "kwargs", "message"),
    [
        ("ftp://x", {}, "must be an https URL"),
        (ISSUER + "/", {}, "no query, fragment or trailing slash"),
        (ISSUER + "?a=1", {}, "no query, fragment or trailing slash"),
        (ISSUER, {"endpoints": {"bogus_endpoint": "/x"}}, "unknown endpoint members"),
        (ISSUER, {"signing_algs": ["none"]}, "'none' is never"),
        (ISSUER, {"extra": {"issuer": "x"}}, "may not replace"),
    ],
)
def test_metadata_refuses_mistakes(issuer: str, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "endpoints": {},
        "grant_types": [],
        "auth_methods": [],
        "signing_algs": [],
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        authorization_server_metadata(issuer, **arguments)  # type: ignore[arg-type]
