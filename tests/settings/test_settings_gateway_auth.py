"""trusted_issuers, introspection, identity_headers and the routes' jwt / claims / roles keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]

ISSUER = "trusted_issuers:\n  - {issuer: 'https://idp.test/', audiences: [api]}\n"


def route(extra: str) -> str:
    return (
        "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', "
        f"auth: [jwt], {extra}}}\n"
    )


def test_defaults(load: Load) -> None:
    settings = load(ISSUER + route("jwt: {issuers: [self, 'https://idp.test']}"))
    (issuer,) = settings.trusted_issuers
    assert issuer.issuer == "https://idp.test"  # the final "/" is dropped, as for routes
    assert issuer.algorithms == ["RS256", "ES256"]
    assert (issuer.typ, issuer.cache_ttl, issuer.min_refresh_interval) == ("at+jwt", 600.0, 30.0)
    assert settings.routes[0].jwt is not None
    assert settings.routes[0].jwt.issuers == ["self", "https://idp.test"]
    assert settings.routes[0].roles_claim == "roles"
    assert settings.introspection is None
    assert settings.identity_headers.subject == "X-Bastion-Subject"
    assert settings.identity_headers.assertion.enabled is False


def test_bad_trusted_issuers(errors: Errors) -> None:
    text = (
        "trusted_issuers:\n"
        "  - {issuer: 'http://idp.test', audiences: [], algorithms: [HS256]}\n"
        "  - {issuer: 'https://idp.test', audiences: [a], algorithms: [none]}\n"
        "  - {issuer: 'https://idp.test', audiences: [a], min_refresh_interval: 0}\n"
    )
    assert errors(text) == [
        "trusted_issuers[0].issuer: 'http://idp.test' uses http — use https (http only for "
        "localhost)",
        "trusted_issuers[0].audiences: needs at least one non-empty audience — the aud your "
        "API's tokens carry, e.g. [https://api.example.com]",
        "trusted_issuers[0].algorithms: 'HS256' is not allowed — only asymmetric algorithms are "
        "accepted from external issuers: ES256, RS256, PS256, EdDSA",
        "trusted_issuers[1].algorithms: 'none' is not allowed — only asymmetric algorithms are "
        "accepted from external issuers: ES256, RS256, PS256, EdDSA",
        "trusted_issuers[2].min_refresh_interval: 0 is too small — use a number of at least 1",
    ]


def test_duplicate_issuer_and_unknown_route_issuer(errors: Errors) -> None:
    text = (
        ISSUER
        + "  - {issuer: 'https://idp.test', audiences: [b]}\n"
        + route("jwt: {issuers: ['https://other.test']}")
    )
    assert errors(text) == [
        "trusted_issuers[1].issuer: is listed twice — keep one entry",
        "routes[0].jwt.issuers[0]: 'https://other.test' is not in trusted_issuers — add it "
        "there, or use self for bastion's own tokens",
    ]


def test_route_jwt_claims_and_roles_rules(errors: Errors) -> None:
    assert errors(route("jwt: {issuers: []}, roles: [admin, admin], roles_claim: 'a..b'")) == [
        "routes[0].jwt.issuers: is empty — name self and/or issuers from trusted_issuers",
        "routes[0].roles[1]: 'admin' is listed twice — keep one",
        "routes[0].roles_claim: 'a..b' is not a claim path — use a claim name or a dotted "
        "path, e.g. roles or realm_access.roles",
    ]
    public = (
        "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', "
        "public: true, roles: [admin]}\n"
    )
    assert errors(public) == [
        "routes[0] (a): claims and roles need an authenticated caller — a public route has none; "
        "remove them or replace public: true with auth"
    ]
    keys_only = (
        "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', "
        "auth: [api_key], jwt: {audience: x}}\n"
    )
    assert errors(keys_only) == [
        "routes[0] (a): jwt settings are only read by the jwt method — add jwt to auth or "
        "remove jwt"
    ]


def test_introspection(load: Load, errors: Errors) -> None:
    text = (
        "introspection: {endpoint: 'https://idp.test/introspect', client_id: gw, "
        "client_secret: 'env:INTRO_SECRET'}\n"
        "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', "
        "auth: [introspection]}\n"
    )
    settings = load(text, {"INTRO_SECRET": "s3cret-value"})
    assert settings.introspection is not None
    assert settings.introspection.client_secret.get_secret_value() == "s3cret-value"
    assert (settings.introspection.cache_ttl, settings.introspection.negative_cache_ttl) == (
        60.0,
        5.0,
    )
    no_endpoint = (
        "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', "
        "auth: [introspection]}\n"
    )
    assert errors(no_endpoint) == [
        "routes[0].auth: lists introspection but no introspection endpoint is configured — "
        "add introspection: {endpoint, client_id, client_secret}"
    ]
    missing = "introspection: {endpoint: 'ftp://idp.test', client_id: gw}\n"
    assert errors(missing) == [
        "introspection.endpoint: 'ftp://idp.test' is not an absolute http(s) URL — use e.g. "
        "https://idp.example.com/oauth2/introspect",
        "introspection.client_secret: is required — add it",
    ]


def test_several_targets_need_an_assertion_audience(load: Load, errors: Errors) -> None:
    targets = "upstream: ['http://a.internal', 'http://b.internal']"
    on = "identity_headers: {assertion: {enabled: true}}\n"
    text = f"routes:\n  - {{name: a, match: {{path: /a}}, {targets}, auth: [api_key]}}\n"
    assert errors(on + text) == [
        "routes[0].assertion_audience: is required when the upstream lists several targets "
        "and the identity assertion is on — set the aud its targets check, e.g. "
        "https://orders.internal"
    ]
    # Set, or the assertion off, or a public route (which gets none): fine.
    given = text.replace("auth: [api_key]", "auth: [api_key], assertion_audience: https://a")
    assert load(on + given).routes[0].assertion_audience == "https://a"
    assert load(text).routes[0].upstream == ["http://a.internal", "http://b.internal"]
    public = text.replace("auth: [api_key]", "public: true")
    assert load(on + public).routes[0].public


def test_session_routes_are_accepted_without_scopes_of_their_own(
    load: Load, errors: Errors
) -> None:
    route = "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', "
    assert load(route + "auth: [api_key, session]}\n").routes[0].auth == ["api_key", "session"]
    assert load(route + "auth: [session], roles: [admin]}\n").routes[0].roles == ["admin"]
    # With another method, scopes are that method's; a browser session carries none.
    assert load(route + "auth: [jwt, session], scopes: [a]}\n").routes[0].auth == [
        "jwt",
        "session",
    ]
    assert errors(route + "auth: [session], scopes: [orders:read]}\n") == [
        "routes[0].scopes: a route accepting only session cannot require scopes (browser "
        "sessions carry none) — remove scopes and require roles instead"
    ]


def test_identity_headers(load: Load, errors: Errors) -> None:
    settings = load("identity_headers: {subject: X-User, assertion: {enabled: true, ttl: 10s}}\n")
    assert settings.identity_headers.subject == "X-User"
    assert settings.identity_headers.assertion.ttl == 10.0
    assert errors(
        "identity_headers: {subject: Host, client: 'a b', strip: ['', X-Ok], "
        "assertion: {ttl: 2m}}\n"
    ) == [
        "identity_headers.subject: 'Host' is a header the HTTP layer or the gateway controls "
        "— use a header of your own, e.g. X-Bastion-Subject",
        "identity_headers.client: 'a b' is not a header name — use letters, digits and '-', "
        "e.g. X-Bastion-Subject",
        "identity_headers.strip[0]: '' is not a header name — use letters, digits and '-'",
        "identity_headers.assertion.ttl: '2m' is too large — use a number of at most 60",
    ]
    assert errors("identity_headers: {subject: X-A, client: x-a}\n") == [
        "identity_headers: two identity headers share a name — give subject, client, scopes, "
        "key_id, request_id, email, roles and assertion.header distinct names"
    ]
    assert errors("identity_headers: {roles: X-Bastion-Email}\n") == [
        "identity_headers: two identity headers share a name — give subject, client, scopes, "
        "key_id, request_id, email, roles and assertion.header distinct names"
    ]
    renamed = load("identity_headers: {email: X-Mail, roles: X-Groups}\n").identity_headers
    assert (renamed.email, renamed.roles) == ("X-Mail", "X-Groups")


MTLS_ROUTE = (
    "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', auth: [mtls]}\n"
)


def test_mtls_needs_a_client_ca_and_tls(load: Load, errors: Errors, tmp_path: Path) -> None:
    assert errors(MTLS_ROUTE) == [
        "routes[0].auth: lists mtls but no client certificates are requested — set "
        "tls.client_ca to the PEM bundle of the CA that issues client certificates"
    ]
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with_ca = f"tls: {{client_ca: '{ca}'}}\n" + MTLS_ROUTE
    assert load(with_ca).tls.client_ca == ca
    off = "tls: off\ntrusted_proxies: [10.0.0.1]\n" + MTLS_ROUTE
    assert errors(off) == [
        "routes[0].auth: lists mtls, which needs bastion to terminate TLS — use tls mode auto "
        "or files with tls.client_ca"
    ]
    assert errors("tls: {client_ca: /nonexistent/ca.pem}\n") == [
        "tls.client_ca: file /nonexistent/ca.pem does not exist — check the path"
    ]
