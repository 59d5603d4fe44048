"""Security headers on every response; CSP only for HTML; explicit app headers win."""

from __future__ import annotations

from typing import Any

from bastion.http.middleware import SecurityHeadersMiddleware
from bastion.http.middleware.security_headers import CONTENT_SECURITY_POLICY

HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
NOSNIFF = (b"x-content-type-options", b"nosniff")
REFERRER = (b"referrer-policy", b"no-referrer")
CSP = (b"content-security-policy", CONTENT_SECURITY_POLICY)
XFO = (b"x-frame-options", b"DENY")


async def run(
    start: dict[str, Any], scheme: str = "https", **kwargs: Any
) -> list[tuple[bytes, bytes]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "scheme": scheme, "headers": [], "path": "/"}
    await SecurityHeadersMiddleware(app, **kwargs)(scope, None, send)  # type: ignore[arg-type]
    return list(sent[0]["headers"])


def start(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


async def test_json_over_https() -> None:
    headers = await run(start((b"content-type", b"application/json")))
    assert headers == [(b"content-type", b"application/json"), NOSNIFF, REFERRER, HSTS]


async def test_no_hsts_over_plain_http() -> None:
    headers = await run(start((b"content-type", b"application/json")), scheme="http")
    assert HSTS not in headers
    assert NOSNIFF in headers and REFERRER in headers


async def test_html_gets_csp_and_frame_options() -> None:
    headers = await run(start((b"content-type", b"text/html; charset=utf-8")))
    assert CSP in headers and XFO in headers and HSTS in headers
    assert CONTENT_SECURITY_POLICY == (
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


async def test_html_detection_is_case_insensitive() -> None:
    headers = await run(start((b"Content-Type", b"TEXT/HTML")))
    assert CSP in headers


async def test_explicit_headers_are_not_overridden() -> None:
    own_csp = (b"content-security-policy", b"default-src 'self'")
    own_referrer = (b"referrer-policy", b"same-origin")
    headers = await run(start((b"content-type", b"text/html"), own_csp, own_referrer))
    assert [h for h in headers if h[0] == b"content-security-policy"] == [own_csp]
    assert [h for h in headers if h[0] == b"referrer-policy"] == [own_referrer]
    assert XFO in headers


async def test_constant_start_message_is_not_mutated() -> None:
    message = start((b"content-type", b"text/plain"))
    await run(message)
    await run(message)
    assert message["headers"] == [(b"content-type", b"text/plain")]


async def test_server_header_replacement_for_engines_that_add_one() -> None:
    headers = await run(start(), server_header=b"bastion")
    assert (b"server", b"bastion") in headers
    headers = await run(start((b"server", b"upstream")), server_header=b"bastion")
    assert [h for h in headers if h[0] == b"server"] == [(b"server", b"upstream")]
    assert not [h for h in await run(start()) if h[0] == b"server"]
