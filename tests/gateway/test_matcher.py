"""Route matching: prefix boundaries, longest prefix, hosts, methods, compile-time checks."""

from __future__ import annotations

import pytest

from bastion.gateway.errors import GatewayConfigError, MethodNotAllowedError, RouteNotFoundError
from bastion.gateway.matcher import RouteMatcher, normalize_host, parse_upstream
from gateway.gateway_support import Route, route


def name(matcher: RouteMatcher, path: str, method: str = "GET", host: str = "gw.test") -> str:
    return matcher.match(host, path, method).name


@pytest.fixture
def matcher() -> RouteMatcher:
    return RouteMatcher(
        [
            route("api", "/api"),
            route("orders", "/api/orders", methods=["GET", "POST"]),
            route("orders-admin", "/api/orders", methods=["DELETE"], host="Admin.Example"),
            route("v2", "/api/v2/items"),
            route("admin-any", "/admin", host="admin.example"),
        ]
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/x", "api"),
        ("/api/orders", "orders"),
        ("/api/orders/", "orders"),
        ("/api/orders/42", "orders"),
        ("/api/ordersx", "api"),  # segment boundary: not the orders route
        ("/api/v2", "api"),
        ("/api/v2/items/1", "v2"),
    ],
)
def test_longest_prefix_on_segment_boundaries(
    matcher: RouteMatcher, path: str, expected: str
) -> None:
    assert name(matcher, path) == expected


@pytest.mark.parametrize("path", ["/apix", "/", "/ap", "/API/x", "/Api"])
def test_no_route(matcher: RouteMatcher, path: str) -> None:
    with pytest.raises(RouteNotFoundError) as caught:
        name(matcher, path)
    assert caught.value.code == "route_not_found"
    assert caught.value.status == 404
    assert caught.value.detail == "No route matches this request."


def test_root_route_matches_everything() -> None:
    matcher = RouteMatcher([route("root", "/"), route("api", "/api")])
    assert name(matcher, "/") == "root"
    assert name(matcher, "/anything/deep") == "root"
    assert name(matcher, "/apix") == "root"
    assert name(matcher, "/api/x") == "api"


def test_host_is_case_insensitive_without_port(matcher: RouteMatcher) -> None:
    for host in ["admin.example", "ADMIN.example:8443", "admin.example.", "Admin.Example:443"]:
        assert name(matcher, "/admin/x", host=host) == "admin-any"
    with pytest.raises(RouteNotFoundError):
        name(matcher, "/admin/x", host="other.example")
    with pytest.raises(RouteNotFoundError):
        name(matcher, "/admin/x", host="")


def test_host_specific_route_shares_a_prefix_with_any_host_route(matcher: RouteMatcher) -> None:
    assert name(matcher, "/api/orders", "DELETE", host="admin.example") == "orders-admin"
    assert name(matcher, "/api/orders", "GET", host="admin.example") == "orders"
    with pytest.raises(MethodNotAllowedError) as caught:
        name(matcher, "/api/orders", "DELETE", host="public.example")
    assert caught.value.allowed == ("GET", "HEAD", "POST")


def test_method_not_allowed_on_the_longest_prefix(matcher: RouteMatcher) -> None:
    # /api would accept PUT, but /api/orders owns the path: 405, not a fall-back.
    with pytest.raises(MethodNotAllowedError) as caught:
        name(matcher, "/api/orders/1", "PUT")
    error = caught.value
    assert error.code == "method_not_allowed"
    assert error.status == 405
    assert error.detail == "PUT is not allowed on this path."
    assert error.allow == "GET, HEAD, POST"
    assert error.to_problem()["allow"] == ["GET", "HEAD", "POST"]


def test_head_is_allowed_where_get_is(matcher: RouteMatcher) -> None:
    assert name(matcher, "/api/orders", "HEAD") == "orders"


def test_upstream_path_strip_prefix_and_base() -> None:
    matcher = RouteMatcher(
        [
            route("keep", "/keep", "http://up:8080/base/"),
            route("strip", "/strip", "http://up:8080/v1", strip_prefix=True),
            route("rootstrip", "/", "http://up", strip_prefix=True),
        ]
    )
    assert matcher.match("", "/keep/x", "GET").upstream_path("/keep/x") == "/base/keep/x"
    strip = matcher.match("", "/strip/x/y", "GET")
    assert strip.upstream_path("/strip/x/y") == "/v1/x/y"
    assert strip.upstream_path("/strip") == "/v1/"
    assert strip.upstream_path("/strip/") == "/v1/"
    assert matcher.match("", "/z", "GET").upstream_path("/z") == "/z"


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "base", "host_header"),
    [
        ("http://up", "http", "up", 80, "", b"up"),
        ("http://up:80/", "http", "up", 80, "", b"up"),
        ("https://Up.Example:8443/a/b/", "https", "up.example", 8443, "/a/b", b"up.example:8443"),
        ("https://up", "https", "up", 443, "", b"up"),
        ("http://[::1]:9000", "http", "::1", 9000, "", b"[::1]:9000"),
    ],
)
def test_parse_upstream(
    url: str, scheme: str, host: str, port: int, base: str, host_header: bytes
) -> None:
    upstream = parse_upstream(url)
    assert (upstream.scheme, upstream.host, upstream.port) == (scheme, host, port)
    assert upstream.base_path == base
    assert upstream.host_header == host_header


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (
            [route("a", "/x", "ftp://up")],
            "routes[a].upstream must be an http:// or https:// URL, got 'ftp://up'.",
        ),
        ([route("a", "/x", "http://u:p@up")], "routes[a].upstream must not contain user info."),
        (
            [route("a", "/x", "http://up/?q=1")],
            "routes[a].upstream must not contain a query or fragment.",
        ),
        ([route("a", "/x", "http:///x")], "routes[a].upstream has no host."),
        ([route("a", "/x", "http://up:99999")], "routes[a].upstream has an invalid port."),
        (
            [route("a", "/%61pi")],
            "routes[a].match.path '/%61pi' is not in normal form; write '/api'.",
        ),
        (
            [route("a", "api")],
            "routes[a].match.path 'api' is invalid: The request path must start with '/'.",
        ),
        ([route("a", "/x", methods=[])], "routes[a].match.methods must not be empty."),
        ([route("a", "/x", timeout=0)], "routes[a].timeout must be positive."),
        ([route("a", "/x"), route("a", "/y")], "Two routes are named 'a'; names are unique."),
        (
            [route("a", "/x", methods=["GET"]), route("b", "/x/", methods=["get", "POST"])],
            "routes[b] and routes[a] both match host * path /x for the same methods.",
        ),
    ],
)
def test_invalid_routes_fail_at_compile_time(routes: list[Route], message: str) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        RouteMatcher(routes)
    assert caught.value.code == "gateway_config_invalid"
    assert caught.value.detail == message


def test_disjoint_methods_on_one_prefix_are_fine() -> None:
    matcher = RouteMatcher(
        [route("r", "/x", methods=["GET"]), route("w", "/x", methods=["POST", "PUT"])]
    )
    assert name(matcher, "/x", "GET") == "r"
    assert name(matcher, "/x/1", "PUT") == "w"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com:8443", "example.com"),
        ("example.com.", "example.com"),
        ("[::1]:8443", "[::1]"),
        ("[::1]", "[::1]"),
        ("127.0.0.1:80", "127.0.0.1"),
    ],
)
def test_normalize_host(raw: str, expected: str) -> None:
    assert normalize_host(raw) == expected
