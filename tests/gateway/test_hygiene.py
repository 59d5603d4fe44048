"""The framing and body steps: header limits, body framing, body size limits, method override."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from bastion.demo.echo import EchoServer
from bastion.gateway.authn.identity import Identity
from bastion.gateway.authz import InsufficientScopeError
from bastion.gateway.hygiene import (
    BadRequestFramingError,
    BadRequestHostError,
    BadRequestMethodError,
    BodyTooLargeError,
    HeadersTooLargeError,
    framing,
)
from bastion.gateway.pipeline import Exchange, Gateway
from gateway.edge_support import edge_route
from gateway.gateway_support import Recorder, call, make_receive, make_scope

CHUNKED = [("transfer-encoding", "chunked")]
LIMITS = SimpleNamespace(max_body=100, max_header_bytes=1000, max_headers=20)


@pytest.fixture
async def gateway(echo: EchoServer) -> AsyncIterator[Gateway]:
    gw = Gateway(
        [
            edge_route("small", "/small", echo.url, max_body=10),
            edge_route("default", "/default", echo.url),
        ],
        request_limits=LIMITS,
    )
    try:
        yield gw
    finally:
        await gw.shutdown()


async def test_declared_body_over_route_limit_is_413_before_reading(
    gateway: Gateway, echo: EchoServer
) -> None:
    with pytest.raises(BodyTooLargeError) as caught:
        await call(gateway, "POST", "/small", body=b"x" * 11, headers=[("content-length", "11")])
    assert caught.value.status == 413
    assert caught.value.code == "body_too_large"
    assert caught.value.detail == "The request body is larger than 10 bytes."
    assert echo.connections == 0


async def test_body_at_the_limit_passes(gateway: Gateway) -> None:
    result = await call(
        gateway, "POST", "/small", body=b"x" * 10, headers=[("content-length", "10")]
    )
    assert result.json()["body"] == "x" * 10


async def test_default_limit_applies_to_routes_without_max_body(gateway: Gateway) -> None:
    with pytest.raises(BodyTooLargeError) as caught:
        await call(
            gateway, "POST", "/default", body=b"x" * 101, headers=[("content-length", "101")]
        )
    assert caught.value.detail == "The request body is larger than 100 bytes."
    ok = await call(
        gateway, "POST", "/default", body=b"x" * 100, headers=[("content-length", "100")]
    )
    assert ok.status == 200


async def test_chunked_body_growing_past_the_limit_is_413(
    gateway: Gateway, echo: EchoServer
) -> None:
    with pytest.raises(BodyTooLargeError):
        await call(gateway, "POST", "/small", chunks=[b"x" * 6, b"x" * 6, b"x"], headers=CHUNKED)
    await asyncio.sleep(0.05)
    # The upstream connection was closed mid-body: nothing complete was received upstream,
    # and the next request gets a fresh, working connection.
    assert all(r.body != b"x" * 12 for r in echo.received)
    assert (
        await call(gateway, "POST", "/small", chunks=[b"x" * 5, b"x" * 5], headers=CHUNKED)
    ).status == 200


async def test_too_many_headers_is_431(gateway: Gateway) -> None:
    headers = [(f"x-h{i}", "v") for i in range(20)]  # + host = 21
    with pytest.raises(HeadersTooLargeError) as caught:
        await call(gateway, "GET", "/default", headers=headers)
    assert caught.value.status == 431
    assert caught.value.code == "headers_too_large"
    assert caught.value.detail == "The request has more than 20 header fields."
    assert (await call(gateway, "GET", "/default", headers=headers[:19])).status == 200


async def test_too_many_header_bytes_is_431(gateway: Gateway) -> None:
    with pytest.raises(HeadersTooLargeError) as caught:
        await call(gateway, "GET", "/default", headers=[("x-big", "a" * 1000)])
    assert caught.value.detail == "The request headers are larger than 1000 bytes."


async def test_header_limits_run_before_matching(gateway: Gateway) -> None:
    with pytest.raises(HeadersTooLargeError):
        await call(gateway, "GET", "/nowhere", headers=[("x-big", "a" * 1000)])


async def test_method_override_is_ignored_and_stripped(echo: EchoServer) -> None:
    async def reader(ex: Exchange) -> Identity | None:
        return Identity(method="api_key", subject="s", scopes=frozenset({"orders:read"}))

    gw = Gateway(
        [
            edge_route(
                "orders",
                "/orders",
                echo.url,
                public=False,
                auth=["api_key"],
                scopes={"GET": ["orders:read"], "*": ["orders:write"]},
            )
        ],
        authenticators={"api_key": reader},
    )
    try:
        with pytest.raises(InsufficientScopeError):
            await call(gw, "POST", "/orders", headers=[("x-http-method-override", "GET")])
        result = await call(
            gw,
            "GET",
            "/orders",
            headers=[
                ("X-HTTP-Method-Override", "DELETE"),
                ("x-http-method", "DELETE"),
                ("x-method-override", "DELETE"),
            ],
        )
        assert result.status == 200
        forwarded = {k.lower() for k in result.json()["headers"]}
        assert not forwarded & {"x-http-method-override", "x-http-method", "x-method-override"}
    finally:
        await gw.shutdown()


async def test_header_names_in_any_case_are_checked(gateway: Gateway) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing may be sent")

    scope = make_scope("POST", "/small")
    scope["headers"] += [(b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")]
    with pytest.raises(BadRequestFramingError) as caught:
        await gateway(scope, receive, send)
    assert caught.value.code == "bad_request_framing"
    ex = Exchange(gateway, make_scope("GET", "/small"), receive, send)
    ex.scope["headers"].append((b"X-HTTP-Method-Override", b"DELETE"))
    await framing(ex)
    assert all(name.lower() != b"x-http-method-override" for name, _ in ex.scope["headers"])


async def test_http2_body_without_content_length_is_counted(gateway: Gateway) -> None:
    # HTTP/2 has no Transfer-Encoding: a body may stream without any length header.
    scope = {**make_scope("POST", "/small"), "http_version": "2"}
    with pytest.raises(BodyTooLargeError):
        await gateway(scope, make_receive(chunks=[b"x" * 8, b"x" * 8]), Recorder())


@pytest.mark.parametrize("method", ["delete", "Delete", "gEt", "GET ", "", "DE\x00LETE", "X" * 33])
async def test_methods_that_are_not_upper_case_tokens_are_400_before_matching(
    gateway: Gateway, echo: EchoServer, method: str
) -> None:
    # "/nowhere" matches no route: the method is refused before matching.
    for path in ("/default", "/nowhere"):
        with pytest.raises(BadRequestMethodError) as caught:
            await call(gateway, method, path)
        assert (caught.value.status, caught.value.code) == (400, "invalid_method")
        assert caught.value.detail == (
            "The request method must be an upper-case HTTP method (e.g. DELETE, not delete)."
        )
    assert echo.connections == 0


@pytest.mark.parametrize("method", ["DELETE", "PROPFIND", "M-SEARCH", "PURGE"])
async def test_upper_case_token_methods_pass(gateway: Gateway, method: str) -> None:
    result = await call(gateway, method, "/default")
    assert result.json()["method"] == method


@pytest.mark.parametrize(
    ("headers", "host", "version", "detail"),
    [
        (
            [("host", "evil.test")],
            "gw.test",
            "1.1",
            "The request has more than one Host header; send one.",
        ),
        (
            [("HOST", "gw.test")],
            "gw.test",
            "1.0",
            "The request has more than one Host header; send one.",
        ),
        ([], None, "1.1", "An HTTP/1.1 request must carry a Host header."),
        ([("host", "")], None, "1.1", "An HTTP/1.1 request must carry a Host header."),
    ],
)
async def test_ambiguous_or_missing_host_is_400(
    gateway: Gateway,
    echo: EchoServer,
    headers: list[tuple[str, str]],
    host: str | None,
    version: str,
    detail: str,
) -> None:
    scope = make_scope("GET", "/default", headers=headers, host=host)
    scope["http_version"] = version
    with pytest.raises(BadRequestHostError) as caught:
        await gateway(scope, make_receive(), Recorder())
    assert (caught.value.status, caught.value.code) == (400, "invalid_host")
    assert caught.value.detail == detail
    assert echo.connections == 0


@pytest.mark.parametrize("version", ["1.0", "2"])
async def test_host_is_optional_before_http_1_1_and_in_http_2(
    gateway: Gateway, version: str
) -> None:
    scope = make_scope("GET", "/default", host=None)
    scope["http_version"] = version
    send = Recorder()
    await gateway(scope, make_receive(), send)
    assert send.result().status == 200
