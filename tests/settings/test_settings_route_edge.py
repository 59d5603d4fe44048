"""Route ``cors``, ``ip``, ``max_body`` and the top-level ``request_limits``: forms, errors."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_network

import pytest

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]

HEAD = (
    "routes:\n  - {name: a, match: {path: /a, methods: [GET, POST]}, "
    "upstream: 'http://x.internal', auth: [api_key]%s}\n"
)
ORIGIN = "https://app.example.com"


def route(extra: str) -> str:
    return HEAD % extra


def test_defaults(load: Load) -> None:
    settings = load(route(""))
    only = settings.routes[0]
    assert (only.cors, only.ip, only.max_body) == (None, None, None)
    limits = settings.request_limits
    assert (limits.max_body, limits.max_header_bytes, limits.max_headers) == (
        10_000_000,
        32768,
        100,
    )


def test_full_forms(load: Load) -> None:
    text = route(
        ", cors: {origins: ['https://app.example.com', 'http://localhost:3000', "
        "'https://[::1]:8443'], methods: [get], headers: [X-Trace], expose_headers: [RateLimit], "
        "credentials: true, max_age: 1h}, ip: {allow: [10.0.0.0/8, 192.0.2.10], "
        "deny: ['2001:db8::/32']}, max_body: 1MiB"
    )
    only = load(text).routes[0]
    assert only.cors is not None and only.ip is not None
    assert only.cors.origins == [ORIGIN, "http://localhost:3000", "https://[::1]:8443"]
    assert only.cors.methods == ["GET"]
    assert (only.cors.headers, only.cors.expose_headers) == (["X-Trace"], ["RateLimit"])
    assert (only.cors.credentials, only.cors.max_age) == (True, 3600.0)
    assert only.ip.allow == [ip_network("10.0.0.0/8"), ip_network("192.0.2.10/32")]
    assert only.ip.deny == [ip_network("2001:db8::/32")]
    assert only.max_body == 1024 * 1024


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("512", 512),
        ("512B", 512),
        ("10KB", 10_000),
        ("10kib", 10_240),
        ("2 MB", 2_000_000),
        ("1GiB", 1024**3),
        (4096, 4096),
    ],
)
def test_byte_sizes(load: Load, size: object, expected: int) -> None:
    assert load(f"request_limits: {{max_body: {size!r}}}\n").request_limits.max_body == expected


@pytest.mark.parametrize(
    ("origin", "line"),
    [
        (
            "*",
            "'*' is not allowed — bastion matches exact origins only; list each origin, "
            "e.g. https://app.example.com",
        ),
        (
            "null",
            "'null' is not allowed — it is the origin of sandboxed frames, file: pages and "
            "redirects, which any site can produce; list real origins",
        ),
        (
            "https://App.example.com",
            "'https://App.example.com' is not written as browsers send "
            "it — write https://app.example.com",
        ),
        (
            "https://app.example.com:443",
            "'https://app.example.com:443' is not written as "
            "browsers send it — write https://app.example.com",
        ),
        (
            "https://app.example.com/path",
            "'https://app.example.com/path' is not an origin — only "
            "scheme://host[:port], no path, query, user info or wildcard (e.g. "
            "https://app.example.com)",
        ),
        (
            "https://*.example.com",
            "'https://*.example.com' is not an origin — only "
            "scheme://host[:port], no path, query, user info or wildcard (e.g. "
            "https://app.example.com)",
        ),
        (
            "https://app.example.com.",
            "'https://app.example.com.' has an invalid host — use e.g. https://app.example.com",
        ),
        (
            "app.example.com",
            "'app.example.com' is not an http(s) origin — use e.g. https://app.example.com",
        ),
        (
            "https://app.example.com:99999",
            "'https://app.example.com:99999' has an invalid port — "
            "use e.g. https://app.example.com:8443",
        ),
    ],
)
def test_bad_origins(errors: Errors, origin: str, line: str) -> None:
    assert errors(route(f", cors: {{origins: ['{origin}']}}")) == [
        f"routes[0].cors.origins[0]: {line}"
    ]


def test_bad_cors_lists(errors: Errors) -> None:
    assert errors(route(", cors: {origins: []}")) == [
        "routes[0].cors.origins: is empty, which allows no page — list origins, e.g. "
        "[https://app.example.com]"
    ]
    assert errors(route(f", cors: {{origins: ['{ORIGIN}', '{ORIGIN}']}}")) == [
        "routes[0].cors.origins[1]: 'https://app.example.com' is listed twice — keep one"
    ]
    assert errors(route(f", cors: {{origins: ['{ORIGIN}'], methods: [DELETE]}}")) == [
        "routes[0].cors.methods: names DELETE, which match.methods does not accept — remove "
        "them or add them to match.methods"
    ]
    assert errors(route(f", cors: {{origins: ['{ORIGIN}'], methods: [OPTIONS]}}")) == [
        "routes[0].cors.methods[0]: 'OPTIONS' is not a method a page can ask for — use GET, "
        "HEAD, POST, PUT, PATCH or DELETE"
    ]
    assert errors(route(f", cors: {{origins: ['{ORIGIN}'], headers: ['bad header']}}")) == [
        "routes[0].cors.headers[0]: 'bad header' is not a header name — use letters, digits and '-'"
    ]
    assert errors(route(f", cors: {{origins: ['{ORIGIN}'], max_age: 2d}}")) == [
        "routes[0].cors.max_age: '2d' is too large — use a number of at most 86400"
    ]
    assert errors(route(", cors: {credentials: true}")) == [
        "routes[0].cors.origins: is required — add it"
    ]


def test_bad_ip_rules(errors: Errors) -> None:
    assert errors(route(", ip: {}")) == [
        "routes[0].ip: has neither allow nor deny — list networks, e.g. allow: [10.0.0.0/8], "
        "or remove ip"
    ]
    assert errors(route(", ip: {allow: [10.0.0.1/8]}")) == [
        "routes[0].ip.allow[0]: '10.0.0.1/8' has host bits set — did you mean 10.0.0.0/8?"
    ]
    assert errors(route(", ip: {deny: [nope]}")) == [
        "routes[0].ip.deny[0]: 'nope' is not an IP address or network — use e.g. 10.0.0.0/8 "
        "or 192.0.2.10"
    ]


def test_bad_sizes(errors: Errors) -> None:
    assert errors(route(", max_body: 10XB")) == [
        "routes[0].max_body: '10XB' is not a size — use bytes or e.g. 512KB, 10MB, 1MiB, 1GB"
    ]
    assert errors(route(", max_body: 0")) == [
        "routes[0].max_body: 0 is not a size — use a positive number of bytes or e.g. 10MB"
    ]
    assert errors(route(", max_body: yes")) == ["routes[0].max_body: true is not a number"]
    assert errors("request_limits: {max_headers: 5}\n") == [
        "request_limits.max_headers: 5 is too small — use a number of at least 16"
    ]
    assert errors("request_limits: {max_header_bytes: -1}\n") == [
        "request_limits.max_header_bytes: -1 is not a size — use a positive number of bytes "
        "or e.g. 10MB"
    ]
