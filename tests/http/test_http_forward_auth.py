"""The forward-auth decision endpoint (/auth/verify) over real HTTP.

Two ``bastion serve`` for the module, one per header family (``forward_auth.headers``:
``nginx`` and ``forwarded``), with ``trusted_proxies: [127.0.0.2]`` (the tests ask from
127.0.0.2; 127.0.0.1 is an outsider). Routes: ``public``; ``api`` (API keys, ``GET``
needs ``read`` and any other method ``write``, CORS for one origin, ``max_body: 1``,
``192.0.2.0/24`` denied); ``hosted`` (public, for host ``api.example.com`` only). Each
refusal is checked as its problem document; decisions are audited and counted as the
gateway's (``data.door = "forward_auth"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from _support import EchoThread
from _support.gateway_authn import Keys
from _support.gateway_server import GatewayServer, serve_gateway

NGINX = ("X-Original-Method", "X-Original-URI")
FORWARDED = ("X-Forwarded-Method", "X-Forwarded-Uri")
TRUSTED = "127.0.0.2"  # the proxy asking; 127.0.0.1 (which may scrape /metrics) is not one
# Issue 13: Caddy and Traefik set only X-Forwarded-Method / -Uri and pass every client header
# through, so a client-sent X-Original-* must not change (nor be ignored in) the decision.
OTHER_FAMILY = (
    "The request carries {name}, but forward_auth.headers is {family}: bastion reads the "
    "original request only from {method} and {uri}, and refuses a request that carries the "
    "other family too (a client may have sent it). Set forward_auth.headers to match your "
    "proxy (nginx: nginx; Caddy, Traefik: forwarded)."
)


def _routes(upstream: str) -> str:
    return (
        f"  - name: public\n    match: {{path: /public}}\n    upstream: {upstream}\n"
        "    public: true\n"
        f"  - name: api\n    match: {{path: /api}}\n    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "    scopes: {GET: [read], '*': [write]}\n"
        "    cors: {origins: ['https://app.example.com']}\n"
        "    max_body: 1\n"
        "    ip: {deny: [192.0.2.0/24]}\n"
        f"  - name: hosted\n    match: {{path: /h, host: api.example.com}}\n"
        f"    upstream: {upstream}\n    public: true\n"
    )


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


def _serve(family: str, echo: EchoThread, tmp: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    settings = f"tls: off\ntrusted_proxies: [{TRUSTED}]\nforward_auth: {{headers: {family}}}\n"
    with serve_gateway(tmp.mktemp(family), _routes(echo.server.url), settings) as server:
        yield server


@pytest.fixture(scope="module")
def nginx(
    echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    yield from _serve("nginx", echo_upstream, tmp_path_factory)


@pytest.fixture(scope="module")
def forwarded(
    echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    yield from _serve("forwarded", echo_upstream, tmp_path_factory)


@pytest.fixture(scope="module")
def nginx_key(nginx: GatewayServer) -> tuple[str, str]:
    return Keys(nginx).create(scopes=["read"])


@pytest.fixture(scope="module")
def forwarded_key(forwarded: GatewayServer) -> tuple[str, str]:
    return Keys(forwarded).create(scopes=["read"])


def ask(
    server: GatewayServer,
    family: tuple[str, str],
    method: str,
    uri: str,
    *extra: tuple[str, str],
    source: str = TRUSTED,
    **kw: Any,
) -> httpx.Response:
    with server.client(source=source) as http:
        return http.get(
            "/auth/verify", headers=[(family[0], method), (family[1], uri), *extra], **kw
        )


def bearer(key: tuple[str, str]) -> tuple[str, str]:
    return ("Authorization", f"Bearer {key[1]}")


def problem(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/problem+json"
    return response.status_code, response.json()["reason"]


def test_allowed_returns_identity_headers(
    nginx: GatewayServer, nginx_key: tuple[str, str], echo_upstream: EchoThread
) -> None:
    response = ask(nginx, NGINX, "GET", "/api/x?q=1", bearer(nginx_key))
    assert response.status_code == 200
    assert response.headers["x-bastion-scopes"] == "read"
    assert response.headers["x-bastion-key-id"] == nginx_key[0]
    assert response.headers["x-bastion-request-id"] == response.headers["x-request-id"]
    assert response.headers["cache-control"] == "no-store"
    assert response.content == b""


def test_traefik_and_caddy_headers(
    forwarded: GatewayServer, forwarded_key: tuple[str, str]
) -> None:
    host = ("X-Forwarded-Host", "api.example.com")
    post = ask(forwarded, FORWARDED, "POST", "/api/x", host, bearer(forwarded_key))
    assert problem(post) == (403, "insufficient_scope")
    get = ask(forwarded, FORWARDED, "GET", "/api/x", host, bearer(forwarded_key))
    assert get.status_code == 200
    assert get.headers["x-bastion-key-id"] == forwarded_key[0]


def test_a_traefik_shaped_request(forwarded: GatewayServer, forwarded_key: tuple[str, str]) -> None:
    # What Traefik's forwardAuth sends (trustForwardHeader: false), plus the client's headers.
    traefik = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.example.com"),
        ("X-Forwarded-For", "198.51.100.4"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Server", "traefik-1"),
        ("X-Real-Ip", "198.51.100.4"),
        bearer(forwarded_key),
    ]
    response = ask(forwarded, FORWARDED, "GET", "/api/x?page=2", *traefik)
    assert response.status_code == 200
    assert response.headers["x-bastion-key-id"] == forwarded_key[0]
    spoofed = ask(forwarded, FORWARDED, "GET", "/api/x", *traefik, ("X-Original-URI", "/public"))
    assert problem(spoofed) == (400, "forward_auth_ambiguous")


def test_forwarded_mode_refuses_a_client_sent_original_uri(forwarded: GatewayServer) -> None:
    assert ask(forwarded, FORWARDED, "GET", "/api/key/x").status_code == 401
    response = ask(forwarded, FORWARDED, "GET", "/api/key/x", ("X-Original-URI", "/public/x"))
    assert problem(response) == (400, "forward_auth_ambiguous")
    assert response.json()["detail"] == OTHER_FAMILY.format(
        name="X-Original-URI",
        family="forwarded",
        method="X-Forwarded-Method",
        uri="X-Forwarded-Uri",
    )


def test_forwarded_mode_refuses_a_client_sent_original_method(
    forwarded: GatewayServer, forwarded_key: tuple[str, str]
) -> None:
    # A read-only key: DELETE is 403; a client-sent X-Original-Method: GET must not make it 200.
    denied = ask(forwarded, FORWARDED, "DELETE", "/api/x", bearer(forwarded_key))
    assert problem(denied) == (403, "insufficient_scope")
    spoofed = ask(
        forwarded,
        FORWARDED,
        "DELETE",
        "/api/x",
        bearer(forwarded_key),
        ("X-Original-Method", "GET"),
    )
    assert problem(spoofed) == (400, "forward_auth_ambiguous")


def test_nginx_mode_refuses_the_forwarded_family(nginx: GatewayServer) -> None:
    for name, value in (("X-Forwarded-Uri", "/public/x"), ("X-Forwarded-Method", "GET")):
        response = ask(nginx, NGINX, "DELETE", "/api/x", (name, value))
        assert problem(response) == (400, "forward_auth_ambiguous")
        assert response.json()["detail"] == OTHER_FAMILY.format(
            name=name, family="nginx", method="X-Original-Method", uri="X-Original-URI"
        )
    # Only the forwarded family, in nginx mode: refused, not judged.
    with nginx.client(source=TRUSTED) as http:
        response = http.get(
            "/auth/verify", headers={"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/x"}
        )
    assert problem(response) == (400, "forward_auth_ambiguous")


@pytest.mark.parametrize(
    ("family", "headers", "repeated"),
    [
        ("nginx", [("X-Original-URI", "/public/x")], "X-Original-Uri"),
        ("nginx", [("x-original-method", "GET")], "X-Original-Method"),
        (
            "nginx",
            [("X-Forwarded-Host", "a.test"), ("X-Forwarded-Host", "b.test")],
            "X-Forwarded-Host",
        ),
        ("forwarded", [("X-Forwarded-Uri", "/public/x")], "X-Forwarded-Uri"),
        ("forwarded", [("X-Forwarded-Method", "GET")], "X-Forwarded-Method"),
    ],
)
def test_repeated_judged_headers_are_refused(
    request: pytest.FixtureRequest, family: str, headers: list[tuple[str, str]], repeated: str
) -> None:
    server: GatewayServer = request.getfixturevalue(family)
    names = NGINX if family == "nginx" else FORWARDED
    response = ask(server, names, "DELETE", "/api/x", *headers)
    assert problem(response) == (400, "forward_auth_ambiguous")
    assert response.json()["detail"] == f"The request carries more than one {repeated} header."


def test_every_decision_is_audited_and_counted_like_the_gateway(
    nginx: GatewayServer, nginx_key: tuple[str, str]
) -> None:
    before = nginx.counts()
    denied = ask(nginx, NGINX, "DELETE", "/api/x", bearer(nginx_key))
    allowed = ask(nginx, NGINX, "GET", "/api/x", bearer(nginx_key))
    ambiguous = ask(nginx, NGINX, "GET", "/api/x", ("X-Forwarded-Uri", "/public"))
    assert (denied.status_code, allowed.status_code, ambiguous.status_code) == (403, 200, 400)
    rids = [denied.headers["x-request-id"], ambiguous.headers["x-request-id"]]
    rows = nginx.denied(rids)
    first, second = rows[rids[0]], rows[rids[1]]
    assert (first.outcome, first.reason, first.route, first.key_id) == (
        "denied",
        "insufficient_scope",
        "api",
        nginx_key[0],
    )
    assert first.data == {
        "status": 403,
        "step": "authorize",
        "method": "DELETE",
        "path": "/api/x",
        "door": "forward_auth",
    }
    assert (second.reason, second.route) == ("forward_auth_ambiguous", None)
    assert (second.data["step"], second.data["door"]) == ("forward_auth", "forward_auth")
    after = nginx.counts()
    for label in (("api", "insufficient_scope"), ("api", "allowed")):
        assert after.get(label, 0) - before.get(label, 0) == 1, label


def test_denials(nginx: GatewayServer) -> None:
    missing = ask(nginx, NGINX, "GET", "/api")
    assert problem(missing) == (401, "unauthenticated")
    assert missing.headers["www-authenticate"] == 'Bearer realm="bastion"'
    bad = ask(nginx, NGINX, "GET", "/api", ("Authorization", "x"))
    assert bad.status_code == 401
    nowhere = ask(nginx, NGINX, "GET", "/nowhere")
    assert problem(nowhere) == (404, "route_not_found")


def test_ip_rules_apply_to_the_forwarded_client(
    nginx: GatewayServer, nginx_key: tuple[str, str]
) -> None:
    response = ask(nginx, NGINX, "GET", "/api", bearer(nginx_key), ("X-Forwarded-For", "192.0.2.5"))
    assert problem(response) == (403, "ip_not_allowed")


def test_cors_and_body_steps_are_not_run(nginx: GatewayServer, nginx_key: tuple[str, str]) -> None:
    # A preflight is not answered 2xx (the proxy would pass it on as allowed): it is judged
    # as an OPTIONS request, which the route does not authorize without a credential.
    preflight = ask(
        nginx,
        NGINX,
        "OPTIONS",
        "/api",
        ("Origin", "https://app.example.com"),
        ("Access-Control-Request-Method", "GET"),
    )
    assert preflight.status_code == 401
    # Body size is the proxy's business: a body on the decision request is not judged.
    with nginx.client(source=TRUSTED) as http:
        body = http.request(
            "GET",
            "/auth/verify",
            headers=[*zip(NGINX, ("GET", "/api"), strict=True), bearer(nginx_key)],
            content=b"12345",
        )
    assert body.status_code == 200


def test_the_host_judged_is_the_forwarded_host(nginx: GatewayServer) -> None:
    assert ask(nginx, NGINX, "GET", "/h", ("X-Forwarded-Host", "api.example.com")).status_code == (
        200
    )
    assert problem(ask(nginx, NGINX, "GET", "/h")) == (404, "route_not_found")


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (
            [],
            "Say which request to judge: send X-Original-Method and X-Original-URI "
            "(forward_auth.headers is nginx).",
        ),
        ([("X-Original-Method", "GET")], None),
        (
            [("X-Original-Method", "get"), ("X-Original-URI", "/api")],
            "The original method is not an upper-case HTTP method.",
        ),
        (
            [("X-Original-Method", "GET"), ("X-Original-URI", "api")],
            "The original URI is not an origin-form path.",
        ),
        (
            [("X-Original-Method", "GET"), ("X-Original-URI", "http://evil/api")],
            "The original URI is not an origin-form path.",
        ),
        (
            [("X-Original-Method", "GET"), ("X-Original-URI", "/" + "a" * 9000)],
            "The original URI is not an origin-form path.",
        ),
    ],
)
def test_bad_requests(
    nginx: GatewayServer, headers: list[tuple[str, str]], detail: str | None
) -> None:
    with nginx.client(source=TRUSTED) as http:
        response = http.get("/auth/verify", headers=headers)
    assert problem(response) == (400, "forward_auth_bad_request")
    if detail is not None:
        assert response.json()["detail"] == detail


def test_untrusted_callers_are_refused(nginx: GatewayServer, nginx_key: tuple[str, str]) -> None:
    response = ask(nginx, NGINX, "GET", "/api", bearer(nginx_key), source="127.0.0.1")
    assert problem(response) == (403, "forward_auth_untrusted")
    assert response.json()["detail"] == (
        "Only a proxy listed in trusted_proxies may ask for forward-auth decisions."
    )
