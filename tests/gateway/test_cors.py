"""The cors step: exact origins, preflights answered before authentication, look-alikes refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.apikeys.errors import InvalidApiKeyError
from bastion.demo.echo import EchoServer
from bastion.gateway.cors import (
    CorsHeaderNotAllowedError,
    CorsMethodNotAllowedError,
    CorsOriginNotAllowedError,
    _cors_edit,
)
from bastion.gateway.errors import MethodNotAllowedError, UnauthenticatedError
from bastion.gateway.pipeline import Gateway
from bastion.gateway.proxy import _response_headers
from gateway.edge_support import edge_route
from gateway.gateway_support import call

APP = "https://app.example.com"


@pytest.fixture
async def gateway(echo: EchoServer) -> AsyncIterator[Gateway]:
    gw = Gateway(
        [
            edge_route(
                "api",
                "/api",
                echo.url,
                methods=["GET", "POST", "DELETE"],
                cors={
                    "origins": [APP, "http://localhost:3000"],
                    "methods": ["GET", "POST"],
                    "expose_headers": ["RateLimit"],
                    "credentials": True,
                    "max_age": "5m",
                },
            ),
            edge_route(
                "private",
                "/private",
                echo.url,
                methods=["GET"],
                public=False,
                auth=["api_key"],
                api_key_header="X-API-Key",
                cors={"origins": [APP]},
            ),
            edge_route("plain", "/plain", echo.url, methods=["GET", "OPTIONS"]),
        ]
    )
    try:
        yield gw
    finally:
        await gw.shutdown()


def preflight(
    origin: str, method: str = "GET", headers: str | None = None
) -> list[tuple[str, str]]:
    out = [("origin", origin), ("access-control-request-method", method)]
    if headers is not None:
        out.append(("access-control-request-headers", headers))
    return out


async def test_preflight_answered_by_bastion(gateway: Gateway, echo: EchoServer) -> None:
    result = await call(
        gateway, "OPTIONS", "/api/x", headers=preflight(APP, "POST", "Content-Type, authorization")
    )
    assert result.status == 204
    assert result.header("access-control-allow-origin") == APP
    assert result.header("access-control-allow-methods") == "GET, HEAD, POST"
    assert result.header("access-control-allow-headers") == "authorization, content-type"
    assert result.header("access-control-allow-credentials") == "true"
    assert result.header("access-control-max-age") == "300"
    assert result.header("vary") == (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    )
    assert result.body == b""
    assert echo.connections == 0  # never proxied


async def test_preflight_needs_no_credentials_and_no_options_method(
    gateway: Gateway, echo: EchoServer
) -> None:
    # /private accepts only GET and needs an API key: the preflight is still answered.
    result = await call(gateway, "OPTIONS", "/private", headers=preflight(APP, "GET", "x-api-key"))
    assert result.status == 204
    assert result.header("access-control-allow-headers") == "authorization, content-type, x-api-key"
    assert result.header("access-control-allow-credentials") is None
    assert echo.connections == 0


async def test_preflight_does_not_let_other_methods_skip_authentication(gateway: Gateway) -> None:
    # Preflight headers on a GET do not make it a preflight: authentication still runs.
    with pytest.raises(UnauthenticatedError):
        await call(gateway, "GET", "/private", headers=preflight(APP, "GET"))
    # An OPTIONS without Access-Control-Request-Method is an ordinary request (405 here).
    with pytest.raises(MethodNotAllowedError):
        await call(gateway, "OPTIONS", "/private", headers=[("origin", APP)])


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "https://evil.com/https://app.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com:443",
        "https://app.example.com.",
        "https://APP.example.com",
        "HTTPS://app.example.com",
        "https://app.example.com/",
        "null",
        "*",
        "",
        " https://app.example.com",
        "https://app.example.co",
    ],
)
async def test_look_alike_origins_refused(gateway: Gateway, echo: EchoServer, origin: str) -> None:
    with pytest.raises(CorsOriginNotAllowedError) as caught:
        await call(gateway, "OPTIONS", "/api", headers=preflight(origin))
    assert caught.value.status == 403
    assert caught.value.code == "cors_origin_not_allowed"
    assert caught.value.detail == "This origin may not call this route from a browser."
    with pytest.raises(CorsOriginNotAllowedError):
        await call(gateway, "GET", "/api", headers=[("origin", origin)])
    assert echo.connections == 0


async def test_two_origin_headers_refused(gateway: Gateway) -> None:
    with pytest.raises(CorsOriginNotAllowedError):
        await call(gateway, "GET", "/api", headers=[("origin", APP), ("origin", APP)])


async def test_preflight_method_not_allowed(gateway: Gateway) -> None:
    # DELETE is a route method but not a CORS method.
    with pytest.raises(CorsMethodNotAllowedError) as caught:
        await call(gateway, "OPTIONS", "/api", headers=preflight(APP, "DELETE"))
    assert caught.value.code == "cors_method_not_allowed"
    assert caught.value.detail == "'DELETE' is not allowed from this origin."


async def test_preflight_for_a_method_the_route_lacks_is_not_answered(gateway: Gateway) -> None:
    with pytest.raises(MethodNotAllowedError):
        await call(gateway, "OPTIONS", "/api", headers=preflight(APP, "PUT"))


async def test_preflight_header_not_allowed(gateway: Gateway) -> None:
    with pytest.raises(CorsHeaderNotAllowedError) as caught:
        await call(gateway, "OPTIONS", "/api", headers=preflight(APP, "GET", "x-secret, accept"))
    assert caught.value.code == "cors_header_not_allowed"
    assert caught.value.detail == "Request header 'x-secret' is not allowed from this origin."


async def test_actual_request_echoes_the_exact_origin(gateway: Gateway, echo: EchoServer) -> None:
    result = await call(gateway, "GET", "/api/x", headers=[("origin", "http://localhost:3000")])
    assert result.status == 200
    assert result.header("access-control-allow-origin") == "http://localhost:3000"
    assert result.header("access-control-allow-credentials") == "true"
    assert result.header("access-control-expose-headers") == "RateLimit"
    assert "Origin" in (result.header("vary") or "")
    assert result.header("access-control-allow-origin") != "*"


async def test_vary_origin_without_origin_header(gateway: Gateway) -> None:
    result = await call(gateway, "GET", "/api/x")
    assert result.status == 200
    assert result.header("vary") == "Origin"
    assert result.header("access-control-allow-origin") is None


def test_upstream_cors_headers_are_replaced() -> None:
    edit = _cors_edit([(b"access-control-allow-origin", APP.encode())])
    upstream = [
        (b"access-control-allow-origin", b"*"),
        (b"Access-Control-Allow-Credentials", b"true"),
        (b"content-type", b"text/plain"),
    ]
    assert _response_headers(upstream, [edit]) == [
        (b"content-type", b"text/plain"),
        (b"access-control-allow-origin", APP.encode()),
    ]


async def test_errors_carry_cors_headers_for_allowed_origins(gateway: Gateway) -> None:
    with pytest.raises(UnauthenticatedError) as caught:
        await call(gateway, "GET", "/private", headers=[("origin", APP)])
    assert ("Access-Control-Allow-Origin".lower(), APP) in [
        (n.lower(), v)
        for n, v in caught.value.headers  # type: ignore[attr-defined]
    ]


class _RefuseEveryKey:
    async def verify(self, key: str, *, ip: str | None = None, now: float | None = None) -> None:
        raise InvalidApiKeyError("unknown")


async def test_a_refused_api_key_carries_cors_headers(echo: EchoServer) -> None:
    # InvalidApiKeyError is the API key service's, not a GatewayError: a page reads it too.
    gw = Gateway(
        [
            edge_route(
                "private",
                "/private",
                echo.url,
                methods=["GET"],
                public=False,
                auth=["api_key"],
                cors={"origins": [APP], "credentials": True},
            )
        ],
        api_keys=_RefuseEveryKey(),  # type: ignore[arg-type]
    )
    try:
        with pytest.raises(InvalidApiKeyError) as caught:
            await call(
                gw,
                "GET",
                "/private",
                headers=[("origin", APP), ("authorization", "Bearer bst_x")],
            )
    finally:
        await gw.shutdown()
    assert caught.value.headers == [  # type: ignore[attr-defined]
        ("access-control-allow-origin", APP),
        ("vary", "Origin"),
        ("access-control-allow-credentials", "true"),
    ]
    assert echo.connections == 0


async def test_routes_without_cors_are_untouched(gateway: Gateway) -> None:
    result = await call(gateway, "OPTIONS", "/plain", headers=preflight(APP))
    # An ordinary OPTIONS, proxied: no CORS headers from bastion.
    assert result.status == 200
    assert result.json()["method"] == "OPTIONS"
    assert result.header("access-control-allow-origin") is None
    assert result.header("vary") is None
