"""compile/auth.py: the ``auth`` section of a native route, and that the native core loads it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion import _native
from bastion.gateway.compile import auth
from bastion.settings import RouteMatch, RouteSettings, Settings
from bastion.settings.oauth import TrustedIssuerSettings
from bastion.settings.routes import RouteJwtSettings

SETTINGS = Settings()


def route(**kw: Any) -> RouteSettings:
    kw.setdefault("auth", ["api_key"])
    match = RouteMatch(path="/orders", methods=["GET", "POST"])
    return RouteSettings(name="orders", match=match, upstream="http://u:9", **kw)


def loads(section: object) -> None:
    """The native loader accepts it (an anonymous request is then deferred or public)."""
    _native.authn_decide(json.dumps(section), "orders", "GET", [])


def test_public_route() -> None:
    section = auth.section(route(public=True, auth=[]), SETTINGS)
    assert section == {"public": True, "methods": []}
    loads(section)
    assert _native.authn_decide(json.dumps(section), "orders", "GET", []) == {
        "method": "public",
        "subject": None,
        "client_id": None,
        "scopes": [],
        "key_id": None,
        "routes": None,
    }


def test_api_key_and_jwt_with_method_scopes() -> None:
    section = auth.section(
        route(
            auth=["api_key", "jwt"],
            api_key_header="X-API-Key",
            scopes={"GET": ["orders:read"], "POST": ["orders:write", "orders:read"]},
        ),
        SETTINGS,
    )
    assert section == {
        "public": False,
        "methods": ["api_key", "jwt"],
        "api_key_header": "x-api-key",
        "scopes": {
            "by_method": {"GET": ["orders:read"], "POST": ["orders:read", "orders:write"]},
            "default": None,
        },
        "claims": [],
        "roles": [],
        "roles_claim": "roles",
        "jwt": {"audience": SETTINGS.issuer_url},
    }
    loads(section)


def test_scope_list_star_claims_roles_and_audience() -> None:
    section = auth.section(
        route(
            auth=["jwt"],
            scopes={"POST": ["w"], "*": ["r"]},
            claims={"tier": "gold", "n": 1, "flag": True, "groups": ["a"]},
            roles=["admin"],
            roles_claim="realm_access.roles",
            jwt=RouteJwtSettings(audience="https://orders.example"),
        ),
        SETTINGS,
    )
    assert isinstance(section, dict)
    assert section["scopes"] == {"by_method": {"POST": ["w"]}, "default": ["r"]}
    # In the settings' order (Python names the first failing claim).
    assert section["claims"] == [["tier", "gold"], ["n", 1], ["flag", True], ["groups", ["a"]]]
    assert section["roles"] == ["admin"]
    assert section["roles_claim"] == "realm_access.roles"
    assert section["jwt"] == {"audience": "https://orders.example"}
    assert section["api_key_header"] is None
    loads(section)
    listed = auth.section(route(scopes=["a", "b"]), SETTINGS)
    assert isinstance(listed, dict)
    assert listed["scopes"] == {"by_method": {}, "default": ["a", "b"]}
    assert "jwt" not in listed
    loads(listed)


def test_mtls_is_native() -> None:
    section = auth.section(route(auth=["mtls", "api_key"], scopes=["orders:read"]), SETTINGS)
    assert isinstance(section, dict)
    assert section["methods"] == ["mtls", "api_key"]
    loads(section)
    # Without a certificate the mtls method is not responsible; no other credential: Python.
    assert _native.authn_decide(json.dumps(section), "orders", "GET", []) is None


def test_trusted_external_issuers_compile_their_policies() -> None:
    settings = Settings(
        trusted_issuers=[
            TrustedIssuerSettings(
                issuer="https://idp.example",
                audiences=["https://api.a", "https://api.b"],
                algorithms=["RS256", "EdDSA"],
                typ=None,
            ),
            TrustedIssuerSettings(issuer="https://other.example", audiences=["https://x"]),
        ]
    )
    jwt = RouteJwtSettings(issuers=["https://idp.example", "self"])
    section = auth.section(route(auth=["jwt"], jwt=jwt), settings)
    assert isinstance(section, dict)
    leeway = float(settings.tokens.leeway)
    assert section["jwt"] == {
        "audience": settings.issuer_url,
        "issuers": [
            {
                "issuer": "https://idp.example",
                "audiences": ["https://api.a", "https://api.b"],
                "typ": None,
                "algorithms": ["RS256", "EdDSA"],
                "leeway": leeway,
                "required_claims": ["exp", "sub"],
            }
        ],
    }
    loads(section)
    # Only external issuers, with a route audience: it replaces the issuers' audiences.
    jwt = RouteJwtSettings(issuers=["https://other.example"], audience="https://orders")
    section = auth.section(route(auth=["jwt"], jwt=jwt), settings)
    assert isinstance(section, dict)
    assert section["jwt"] == {
        "audience": "https://orders",
        "self": False,
        "issuers": [
            {
                "issuer": "https://other.example",
                "audiences": ["https://orders"],
                "typ": "at+jwt",
                "algorithms": ["RS256", "ES256"],
                "leeway": leeway,
                "required_claims": ["exp", "sub"],
            }
        ],
    }
    loads(section)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        # The settings refuse it at load: meeting one here is a bug, never a Python route.
        (
            {"auth": ["jwt"], "jwt": RouteJwtSettings(issuers=["self", "https://idp.example"])},
            "auth: the jwt issuer https://idp.example is not a distinct trusted issuer",
        ),
    ],
)
def test_what_the_settings_refuse_is_an_error(kw: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        auth.section(route(**kw), SETTINGS)


def test_session_is_native_in_the_route_order() -> None:
    section = auth.section(route(auth=["api_key", "session"]), SETTINGS)
    assert section["methods"] == ["api_key", "session"]
    loads(section)


def test_introspection_is_native_in_the_route_order() -> None:
    section = auth.section(route(auth=["jwt", "introspection", "api_key"]), SETTINGS)
    assert isinstance(section, dict)
    assert section["methods"] == ["jwt", "introspection", "api_key"]
    loads(section)


def test_the_native_loader_refuses_a_bad_section() -> None:
    with pytest.raises(ValueError, match="cookie"):
        _native.authn_decide(
            json.dumps({"public": False, "methods": ["cookie"]}), "orders", "GET", []
        )
    with pytest.raises(ValueError, match="listed twice"):
        _native.authn_decide(
            json.dumps({"public": False, "methods": ["session", "session"]}), "orders", "GET", []
        )
