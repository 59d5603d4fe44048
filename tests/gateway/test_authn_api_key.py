"""The api_key method over real HTTP: one ``bastion serve``, keys made by the REAL ApiKeyService.

The keys live in the served SQLite database (created, revoked, rotated as ``bastion keys``
does: :class:`_support.gateway_authn.Keys`, which waits for the server to follow each
change); requests go to the server from loopback addresses (``127.0.0.2`` is a trusted
proxy; a refusal's ``gateway.denied`` row names the client address); the echo upstream
answers with what it received. Every refusal is checked as its problem document, its
``WWW-Authenticate`` challenge (where it has one) and its ``gateway.denied`` row.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from _support import EchoThread
from _support.gateway_authn import Keys, own_client, own_signing_key, refused, upstream_saw
from _support.gateway_server import (
    GatewayServer,
    fresh_echo,
    plane,
    request_bytes,
    serve_gateway,
)
from bastion.crypto import sign_jwt
from bastion.storage.models import utcnow

ISSUER = "https://auth.test"
INVALID = "the API key is not valid"
INVALID_TOKEN = 'Bearer realm="bastion", error="invalid_token"'
IN_QUERY = (
    "API keys are accepted only in request headers (Authorization: Bearer, or the route's API "
    "key header), never in the query string: URLs end up in logs, browser history and Referer "
    "headers. Revoke or rotate a key that was sent there."
)
ROUTES = ("api", "hdr", "both", "jwtfirst", "orders", "billing")


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def served(
    echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    up = echo_upstream.server.url
    auth = {"both": "[api_key, jwt]", "jwtfirst": "[jwt, api_key]"}
    text = "".join(
        f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {up}\n"
        f"    auth: {auth.get(name, '[api_key]')}\n"
        + ("    api_key_header: X-API-Key\n" if name == "hdr" else "")
        for name in ROUTES
    )
    settings = f"tls: off\nissuer: {ISSUER}\ntrusted_proxies: [127.0.0.2, 10.0.0.0/8]\n"
    with serve_gateway(tmp_path_factory.mktemp("api-keys"), text, settings) as server:
        listed = [r["name"] for r in server.cli("routes", "list")["routes"]]
        assert listed == list(ROUTES)
        yield server


@pytest.fixture
def keys(served: GatewayServer) -> Keys:
    return Keys(served)


@pytest.fixture
def gateway(served: GatewayServer, echo_upstream: EchoThread) -> Iterator[httpx.Client]:
    fresh_echo(echo_upstream)
    with served.client() as client:
        yield client


def bearer(key: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {key}")


def tamper(key: str) -> str:
    """``key`` with its last character changed: the checksum no longer matches."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def invalid_key(served: GatewayServer, response: httpx.Response, route: str = "api") -> None:
    refused(served, response, 401, "invalid_api_key", route)
    assert response.headers["www-authenticate"] == INVALID_TOKEN
    assert response.json()["detail"] == INVALID


# -- allow -----------------------------------------------------------------------------------


def test_valid_bearer_key_is_proxied_without_the_key(
    gateway: httpx.Client, keys: Keys, echo_upstream: EchoThread
) -> None:
    key_id, key = keys.create(scopes=["orders:read"])
    response = gateway.get("/api/orders", headers=[bearer(key), ("X-Trace", "t1")])
    seen = upstream_saw(response)
    assert "authorization" not in seen
    assert seen["x-trace"] == "t1"
    assert key not in repr(echo_upstream.server.received[-1].headers)
    assert key.encode() not in response.content.replace(b"\\", b"")
    # The identity the upstream is told: the key's subject, id and scopes.
    assert seen["x-bastion-subject"] == f"apikey:{key_id}"
    assert seen["x-bastion-key-id"] == key_id
    assert seen["x-bastion-scopes"] == "orders:read"


def test_owned_key_subject_and_case_insensitive_scheme(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    key_id, key = keys.create(owner_type="user", owner_id="alice")
    # (exact bytes: an HTTP client refuses a value with trailing whitespace)
    response = served.raw(request_bytes("GET", "/api", [("Authorization", f"bEaReR   {key} ")]))
    assert response.status == 200, response.body
    seen = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert seen["x-bastion-subject"] == "user:alice"
    assert seen["x-bastion-key-id"] == key_id


def test_configured_header_is_read_and_stripped(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    _, key = keys.create()
    assert "x-api-key" not in upstream_saw(gateway.get("/hdr", headers={"X-API-Key": key}))
    # the configured header is dedicated to keys: anything in it is verified
    invalid_key(served, gateway.get("/hdr", headers={"X-API-Key": "not-a-key"}), "hdr")
    # Authorization: Bearer bst_… still works on such a route
    assert "authorization" not in upstream_saw(gateway.get("/hdr", headers=[bearer(key)]))


def test_a_bearer_token_that_is_no_key_is_left_to_the_next_method(
    gateway: httpx.Client, served: GatewayServer
) -> None:
    # [api_key, jwt]: a bearer token that is no key is the jwt method's to judge ...
    signer = own_signing_key(served)
    now = int(time.time())
    client = own_client(served)["client_id"]
    claims = {"iss": ISSUER, "sub": "svc", "aud": ISSUER, "client_id": client, "scope": ""}
    token = sign_jwt({**claims, "iat": now, "exp": now + 300, "jti": "j1"}, signer, typ="at+jwt")
    seen = upstream_saw(gateway.get("/both", headers=[bearer(token)]))
    assert seen["x-bastion-subject"] == "svc" and "x-bastion-key-id" not in seen
    # ... and the jwt method's refusal is the answer, not the api_key method's.
    response = gateway.get("/both", headers=[bearer("eyJhbGc.x.y")])
    refused(served, response, 401, "invalid_token", "both")


def test_no_key_on_an_api_key_route_is_unauthenticated(
    gateway: httpx.Client, served: GatewayServer, echo_upstream: EchoThread
) -> None:
    for headers in ([], [("Authorization", "Basic dXNlcjpwdw==")], [("Authorization", "Bearer")]):
        response = gateway.get("/api", headers=headers)
        refused(served, response, 401, "unauthenticated", "api")
        assert response.json()["detail"] == "This route requires authentication."
        assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'
    assert echo_upstream.server.connections == 0


# -- deny ------------------------------------------------------------------------------------


def test_bad_checksum_and_unknown_look_identical(
    gateway: httpx.Client, keys: Keys, served: GatewayServer, echo_upstream: EchoThread
) -> None:
    _, key = keys.create()
    other_id, other = keys.create()
    keys.delete(other_id)
    bad = gateway.get("/api/x", headers=[bearer(tamper(key))])
    unknown = gateway.get("/api/x", headers=[bearer(other)])
    for response in (bad, unknown):
        invalid_key(served, response)
        assert key[:-1].encode() not in response.content
    rid_b, rid_u = bad.headers["x-request-id"], unknown.headers["x-request-id"]
    assert bad.content.replace(rid_b.encode(), b"") == unknown.content.replace(rid_u.encode(), b"")
    assert [(n, v) for n, v in bad.headers.items() if n not in ("x-request-id", "date")] == [
        (n, v) for n, v in unknown.headers.items() if n not in ("x-request-id", "date")
    ]
    assert echo_upstream.server.connections == 0


@pytest.mark.parametrize("state", ["revoked", "disabled", "expired"])
def test_revoked_disabled_expired_are_refused(
    gateway: httpx.Client, keys: Keys, served: GatewayServer, state: str
) -> None:
    key_id, key = keys.create()
    assert gateway.get("/api", headers=[bearer(key)]).status_code == 200
    if state == "revoked":
        keys.revoke(key_id)
    elif state == "disabled":
        keys.disable(key_id)
    else:
        expires = utcnow() + timedelta(seconds=3)
        keys.update(key_id, expires_at=expires)
        # expiry is checked against the clock on every request, not when the cache refreshes
        response = gateway.get("/api", headers=[bearer(key)])
        assert utcnow() >= expires or response.status_code == 200
        time.sleep(max(0.0, (expires - utcnow()).total_seconds()) + 0.1)
    invalid_key(served, gateway.get("/api/x", headers=[bearer(key)]))


def test_rotation_without_grace_ends_the_old_key(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    key_id, old = keys.create()
    new = keys.rotate(key_id, grace=0)
    assert gateway.get("/api", headers=[bearer(new)]).status_code == 200
    invalid_key(served, gateway.get("/api/x", headers=[bearer(old)]))


@pytest.mark.parametrize(
    "query",
    [
        "api_key={key}",
        "x=1&key={key}",
        "k={pct}",  # percent-encoded "_" hides nothing
        "k=bst_abcdefghijklmnopqrst",  # key-shaped, even if not a real key
    ],
)
def test_a_key_in_the_query_string_is_refused_whatever_else_is_sent(
    gateway: httpx.Client,
    keys: Keys,
    served: GatewayServer,
    echo_upstream: EchoThread,
    query: str,
) -> None:
    _, key = keys.create()
    text = query.format(key=key, pct=key.replace("_", "%5F"))
    for route in ("api", "jwtfirst"):
        response = gateway.get(f"/{route}?{text}", headers=[bearer(key)])
        refused(served, response, 400, "api_key_in_query", route)
        assert response.headers["www-authenticate"] == (
            'Bearer realm="bastion", error="invalid_request"'
        )
        assert response.json()["detail"] == IN_QUERY
        assert key.encode() not in response.content
    assert echo_upstream.server.connections == 0


def test_key_in_query_needs_a_key_shape(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    _, key = keys.create()
    for query in (
        "q=substitute_abcdefghijklmnopqrstuvwxyz",
        "q=xbst_abcdefghijklmnopqrstuvwxyz",
        "q=bst_short",
    ):
        assert gateway.get(f"/api?{query}", headers=[bearer(key)]).status_code == 200, query
    for query in ("q=bst%5Flive%5Fabcdefghijklmnopqrstuvwxyz", "bst_live_abcdefghijklmnop"):
        response = gateway.get(f"/api?{query}", headers=[bearer(key)])
        refused(served, response, 400, "api_key_in_query", "api")


def test_two_different_keys_are_refused(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    _, one = keys.create()
    _, two = keys.create()
    invalid_key(served, gateway.get("/hdr", headers=[bearer(one), ("X-API-Key", two)]), "hdr")
    invalid_key(served, gateway.get("/hdr", headers=[bearer(one), bearer(two)]), "hdr")
    # the same key twice is one key
    seen = upstream_saw(gateway.get("/hdr", headers=[bearer(one), ("X-API-Key", one)]))
    assert "authorization" not in seen and "x-api-key" not in seen


def test_key_routes_restrict_the_routes_it_may_call(
    gateway: httpx.Client, keys: Keys, served: GatewayServer, echo_upstream: EchoThread
) -> None:
    key_id, key = keys.create(routes=["orders"])
    assert gateway.get("/orders/1", headers=[bearer(key)]).status_code == 200
    response = gateway.get("/billing/1", headers=[bearer(key)])
    row = refused(served, response, 403, "route_not_allowed", "billing", step="authorize")
    assert response.json()["detail"] == "This credential may not call this route."
    assert row.key_id == key_id
    assert len(echo_upstream.server.received) == 1


def test_ip_allow_list_uses_the_peer_or_the_trusted_proxy_chain(
    served: GatewayServer, keys: Keys, echo_upstream: EchoThread
) -> None:
    fresh_echo(echo_upstream)
    _, key = keys.create(ip_allow=["127.0.0.1/32", "203.0.113.0/24"])
    with served.client() as allowed, served.client(source="127.0.0.3") as outsider:
        assert allowed.get("/api", headers=[bearer(key)]).status_code == 200
        response = outsider.get("/api", headers=[bearer(key)])
        row = refused(served, response, 403, "api_key_ip_not_allowed", "api")
        assert row.ip == "127.0.0.3"
        # a spoofed X-Forwarded-For from an untrusted peer changes nothing
        spoofed = outsider.get("/api", headers=[bearer(key), ("X-Forwarded-For", "203.0.113.9")])
        assert refused(served, spoofed, 403, "api_key_ip_not_allowed", "api").ip == "127.0.0.3"
    with served.client(source="127.0.0.2") as proxy:
        chain = [bearer(key), ("X-Forwarded-For", "198.51.100.1, 203.0.113.9")]
        assert proxy.get("/api", headers=chain).status_code == 200


@pytest.mark.parametrize(
    ("source", "forwarded", "ip"),
    [
        ("127.0.0.3", ["1.1.1.1"], "127.0.0.3"),  # not a trusted proxy: its header is ignored
        ("127.0.0.2", ["6.6.6.6, 1.1.1.1, 10.0.0.5"], "1.1.1.1"),  # rightmost untrusted
        ("127.0.0.2", ["6.6.6.6", "1.1.1.1"], "1.1.1.1"),  # repeated headers are one list
        ("127.0.0.2", ["10.0.0.9, 10.0.0.5"], "10.0.0.9"),  # all trusted: the leftmost
        ("127.0.0.2", [], "127.0.0.2"),  # no header: the peer
    ],
)
def test_client_ip(
    served: GatewayServer, source: str, forwarded: list[str], ip: str, echo_upstream: EchoThread
) -> None:
    # The client address of a request is its gateway.denied row's ip.
    with served.client(source=source) as client:
        response = client.get("/api", headers=[("X-Forwarded-For", v) for v in forwarded])
    assert refused(served, response, 401, "unauthenticated", "api").ip == ip


def test_every_answer_is_native(gateway: httpx.Client, keys: Keys, served: GatewayServer) -> None:
    """Which plane answers: every request of this module is the native plane's."""
    _, key = keys.create()
    python = plane(gateway.get("/healthz"))
    answers = [
        gateway.get("/api", headers=[bearer(key)]),
        gateway.get("/api", headers=[bearer(tamper(key))]),
        gateway.get(f"/api?k={key}", headers=[bearer(key)]),
        gateway.get("/api"),
    ]
    assert [r.status_code for r in answers] == [200, 401, 400, 401]
    assert {plane(r) for r in answers} != {python}
    assert python not in {plane(r) for r in answers}
