"""The native router against its specification: the app's dispatch, Python's normalisation
and matcher.

Whenever ``bastion._native.RouteTable.route`` says a request is served natively, the app
hands it to its gateway (not to bastion's own endpoints), and Python picks the same route
for the path's normal form and forwards the same target (normal path mapped, raw query),
without refusing the request (400 ``invalid_path`` / ``invalid_method``, 404, 405).
``None`` (defer to Python) is allowed for what the router does not read; every target the
app hands to its gateway is routed (``test_every_gateway_target_is_read``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from _support.dispatch import python_target
from bastion import _native
from bastion.gateway.compile import compile_table
from bastion.gateway.errors import GatewayError
from bastion.gateway.matcher import RouteMatcher, check_method
from bastion.settings.config import Settings
from bastion.settings.routes import RouteMatch, RouteSettings


def route(name: str, path: str, upstream: str = "http://u:9", **kw: Any) -> RouteSettings:
    match_kw = {k: kw.pop(k) for k in ("host", "methods") if k in kw}
    return RouteSettings(
        name=name, match=RouteMatch(path=path, **match_kw), upstream=upstream, public=True, **kw
    )


ROUTES = [
    route("api", "/api"),
    route("orders", "/api/orders", "http://u:9/v1/", methods=["GET", "POST"], strip_prefix=True),
    route("orders-admin", "/api/orders", methods=["DELETE"], host="Admin.Example"),
    route("v2", "/api/v2/items", "http://u:9/base", host="api.example:8443", strip_prefix=True),
    route("dots", "/x.y~", methods=["GET"]),
    route("escaped", "/caf%C3%A9", strip_prefix=True),
    route("params", "/a;v=1"),
    route("subdelims", "/s!$&'()*+,=:@"),
    route("near-reserved", "/administrator"),
    route("any-host-admin", "/adm", methods=["PUT"]),
    route("host-admin", "/adm", host="admin.example", methods=["GET"]),
]
WITH_ROOT = [*ROUTES, route("root", "/", "http://u:9/r", methods=["GET"], strip_prefix=True)]


def _native_table(routes: list[RouteSettings]) -> _native.RouteTable:
    table = compile_table(Settings(routes=routes))
    return _native.RouteTable(json.dumps(table))


TABLES = {
    "routes": (RouteMatcher(ROUTES), _native_table(ROUTES)),
    "with-root": (RouteMatcher(WITH_ROOT), _native_table(WITH_ROOT)),
}


def python_decision(
    matcher: RouteMatcher, host: str | None, method: str, target: str
) -> tuple[int, str] | None:
    """What bastion's Python side does with the request: (route index, upstream target)."""
    try:
        check_method(method)
    except GatewayError:
        return None
    read = python_target(target)
    if read[0] != "gateway":
        return None
    _, path, query = read
    try:
        chosen = matcher.match(host or "", path, method)
    except GatewayError:
        return None
    index = next(i for i, r in enumerate(matcher.routes) if r is chosen)
    upstream = chosen.upstream_path(path)
    return index, upstream + "?" + query if query else upstream


def check(table: str, host: str | None, method: str, target: str) -> tuple[int, str] | None:
    matcher, native = TABLES[table]
    decided = native.route(host, method, target)
    if decided is not None:
        assert python_decision(matcher, host, method, target) == decided, (host, method, target)
    return decided


# -- hand-picked -------------------------------------------------------------------

NATIVE = [
    ("routes", "gw.test", "GET", "/api", (0, "/api")),
    ("routes", "gw.test", "GET", "/api/", (0, "/api/")),
    ("routes", "gw.test", "PROPFIND", "/api/x?y=1", (0, "/api/x?y=1")),
    ("routes", "gw.test", "GET", "/api/orders", (1, "/v1/")),
    ("routes", "gw.test", "HEAD", "/api/orders/7?x=%20", (1, "/v1/7?x=%20")),
    ("routes", "gw.test", "POST", "/api/orders/", (1, "/v1/")),
    ("routes", "gw.test", "GET", "/api/ordersx", (0, "/api/ordersx")),
    ("routes", "ADMIN.example:8443", "DELETE", "/api/orders/1", (2, "/api/orders/1")),
    ("routes", "admin.example.", "GET", "/api/orders/1", (1, "/v1/1")),
    ("routes", "API.example", "GET", "/api/v2/items/9", (3, "/base/9")),
    ("routes", "gw.test", "GET", "/api/v2/items/9", (0, "/api/v2/items/9")),
    ("routes", "gw.test", "GET", "/x.y~/z", (4, "/x.y~/z")),
    ("routes", "gw.test", "GET", "/caf%C3%A9/menu%20du%20jour", (5, "/menu%20du%20jour")),
    ("routes", "gw.test", "GET", "/s!$&'()*+,=:@/q", (7, "/s!$&'()*+,=:@/q")),
    ("routes", "gw.test", "GET", "/administrator", (8, "/administrator")),
    ("routes", "admin.example", "GET", "/adm/x", (10, "/adm/x")),
    ("routes", "other.example", "PUT", "/adm/x", (9, "/adm/x")),
    ("with-root", "gw.test", "GET", "/", (11, "/r/")),
    ("with-root", "gw.test", "GET", "/anything/deep?q", (11, "/r/anything/deep?q")),
    ("with-root", "gw.test", "GET", "/apix", (11, "/r/apix")),
]


@pytest.mark.parametrize(("table", "host", "method", "target", "expected"), NATIVE)
def test_clean_requests_are_served_natively(
    table: str, host: str | None, method: str, target: str, expected: tuple[int, str]
) -> None:
    assert check(table, host, method, target) == expected


REWRITTEN = [
    # Python routes the normal form and forwards it (prefix stripped, base added).
    ("//api/x", (0, "/api/x")),
    ("/api//x", (0, "/api/x")),
    ("/api/./x", (0, "/api/x")),
    ("/x/../api/x", (0, "/api/x")),
    ("/api/%2e/x", (0, "/api/x")),
    ("/api/y/%2E%2E/x", (0, "/api/x")),
    ("/%61pi/x?q=%2e", (0, "/api/x?q=%2e")),
    ("/api/%3a", (0, "/api/%3A")),
    ("/api/x%e2%82%ac", (0, "/api/x%E2%82%AC")),
    ("/api/a b", (0, "/api/a%20b")),
    ('/api/"{x}"', (0, "/api/%22%7Bx%7D%22")),
    ("/api/.", (0, "/api/")),
    ("/api/x/..", (0, "/api/")),
    ("/caf%c3%a9", (5, "/")),
    ("/caf%C3%A9//menu/", (5, "/menu/")),
    # Bytes outside ASCII: the path percent-encoded (as ``normalize_path`` does), the query
    # as sent (Python's ``query_string``).
    ("/api/é", (0, "/api/%C3%A9")),
    ("/café/x?q=é", (5, "/x?q=é")),
    ("/api/orders/../orders/./7", (1, "/v1/7")),
    ("/a;v=1", (6, "/a;v=1")),  # path parameters: Python keeps them
    ("/api/x;y", (0, "/api/x;y")),
]


@pytest.mark.parametrize(("target", "expected"), REWRITTEN)
def test_targets_python_rewrites_are_served_natively(
    target: str, expected: tuple[int, str]
) -> None:
    assert check("routes", "gw.test", "GET", target) == expected


DEFERRED = [
    # Python refuses: the gateway's ``match`` step (no ``%``: rendered natively, audited)...
    ("/api\\x", "invalid_path"),
    ("/api/x\x00", "invalid_path"),
    ("/api/\tx", "invalid_path"),
    ("/../x", "invalid_path"),
    ("/a/../../x", "invalid_path"),
    ("/x/../../api/x", "invalid_path"),
    ("/..", "invalid_path"),
    ("/raw/..;/api/key/x", "invalid_path"),
    ("/raw/..;jsessionid=1/api", "invalid_path"),
    ("/raw/.;/api", "invalid_path"),
    ("/raw/..;", "invalid_path"),
    ("/..;/x", "invalid_path"),
    ("/" + "a" * 8192, "invalid_path"),
    # ... or the app before its gateway (a ``%``: rendered natively, not audited).
    ("/api%2fx", "app_invalid_path"),
    ("/api%2Fx", "app_invalid_path"),
    ("/api%5cx", "app_invalid_path"),
    ("/api/x%00", "app_invalid_path"),
    ("/api/x%0d%0a", "app_invalid_path"),
    ("/api/x%7F", "app_invalid_path"),
    ("/api/x%", "app_invalid_path"),
    ("/api/x%4", "app_invalid_path"),
    ("/api/x%zz", "app_invalid_path"),
    ("/%2e%2e/x", "app_invalid_path"),
    ("/raw/%2e%2e;/api", "app_invalid_path"),
    ("/raw/%2E.;x/api", "app_invalid_path"),
    ("/raw/.%2e;/api", "app_invalid_path"),
    ("/raw/..%3b/api", "app_invalid_path"),
    ("/api/x%2F..%2F..%2Fadmin", "app_invalid_path"),
    ("/api/x%5C..%5C..", "app_invalid_path"),
    ("/api/%00", "app_invalid_path"),
    # ... or a path without a leading "/" (``*``, an authority): the gateway's ``match``.
    ("api/x", "invalid_path"),
    ("", "invalid_path"),
    ("*", "invalid_path"),
    ("http://evil/x", "invalid_path"),
    # What no request the front reads carries: a space, a fragment in the query.
    ("/api?a b", "not_clean"),
    ("/api?a#b", "not_clean"),
    # The control plane's own paths, and spellings of them.
    ("/oauth2/token", "reserved"),
    ("/admin", "reserved"),
    ("/admin/api/v1/keys", "reserved"),
    ("/.well-known/openid-configuration", "reserved"),
    ("/healthz", "reserved"),
    ("/metrics", "reserved"),
    ("/auth/verify", "reserved"),
    ("/api-keys/leaks", "reserved"),
    ("/login", "reserved"),
    ("/logout", "reserved"),
    ("/account", "reserved"),
    ("//admin", "reserved"),
    ("/x/../admin", "reserved"),
    ("/%61dmin", "reserved"),
    ("/api/x%2F..%2F..%2Foauth2%2Fjwks.json", "app_invalid_path"),
    ("/oauth2/%2F", "reserved"),  # the app's 400 all the same: Python renders it
    # No route / no method (the native 404 / 405).
    ("/apix", "no_route"),
    ("/", "no_route"),
    ("/API/x", "no_route"),
    ("/API//x", "no_route"),
    ("/api;x", "no_route"),
]


@pytest.mark.parametrize(("target", "why"), DEFERRED)
def test_everything_else_is_deferred(target: str, why: str) -> None:
    native = TABLES["routes"][1]
    assert check("routes", "gw.test", "GET", target) is None
    assert native.defer_reason("gw.test", "GET", target) == why
    read = python_target(target)
    if why in ("invalid_path", "app_invalid_path"):
        assert read[0] == "refused" and read[2] == why, read
        assert native.target(target) == read


@pytest.mark.parametrize("target", ["/login", "/login?return_to=/x", "/logout", "/account"])
def test_a_root_route_does_not_shadow_the_login_pages(target: str) -> None:
    native = TABLES["with-root"][1]
    assert check("with-root", "gw.test", "GET", target) is None
    assert native.defer_reason("gw.test", "POST", target) == "reserved"


def test_methods_python_refuses_and_hosts_are_read_as_python_reads_them() -> None:
    _, native = TABLES["routes"]
    # Refused by ``framing`` (natively) before any route is matched.
    assert native.defer_reason("gw.test", "get", "/api") == "method"
    assert native.defer_reason("gw.test", "X" * 33, "/api") == "method"
    assert native.defer_reason("gw.test", "PUT", "/api/orders") == "method_not_allowed"
    assert native.defer_reason("gw.test", "DELETE", "/api/orders") == "method_not_allowed"
    assert native.defer_reason("gw.test", "GET", "/adm") == "method_not_allowed"
    # Any Host is read as ``normalize_host`` reads it (the value's latin-1 characters):
    # stripped (NEL and NBSP too), then no route's host unless it names one.
    assert check("routes", " Admin.Example\xa0", "DELETE", "/api/orders") == (2, "/api/orders")
    assert check("routes", "\x85admin.example.:1 ", "GET", "/adm/x") == (10, "/adm/x")
    assert check("routes", "admin.example\xe9", "GET", "/api") == (0, "/api")
    assert check("routes", "admin.example\xe9", "PUT", "/adm/x") == (9, "/adm/x")
    assert check("routes", " a", "GET", "/api") == (0, "/api")
    assert check("routes", "a b", "GET", "/api") == (0, "/api")
    # None (HTTP/1.0; HTTP/1.1's is ``framing``'s 400 first) or an empty one: the routes
    # for any host.
    assert check("routes", None, "GET", "/api") == (0, "/api")
    assert check("routes", "", "GET", "/api") == (0, "/api")
    assert check("routes", ".", "GET", "/api") == (0, "/api")
    # A character past U+00FF is on no wire (a header value is bytes).
    assert native.defer_reason("\u0100.example", "GET", "/api") == "host_not_latin1"


def test_options_is_routed_by_its_method_when_a_route_answers_preflights() -> None:
    from bastion.settings.routes import CorsSettings

    routes = [route("api", "/api", cors=CorsSettings(origins=["https://app.example"]))]
    table = compile_table(Settings(routes=routes))
    native = _native.RouteTable(json.dumps(table))
    # Whether it is a preflight is read from its head by the front (cors::route).
    assert native.defer_reason("gw.test", "OPTIONS", "/api") is None
    assert native.route("gw.test", "OPTIONS", "/api") == (0, "/api")
    assert native.route("gw.test", "GET", "/api") == (0, "/api")


# -- generated ---------------------------------------------------------------------

SEGMENTS = [
    "api", "orders", "v2", "items", "x.y~", "caf%C3%A9", "caf%c3%a9", "a;v=1", "adm",
    "administrator", "admin", "oauth2", ".well-known", "healthz", "auth", "verify", "s!$&'()*+,=:@",
    "API", ".", "..", "", "%2e", "%2E", "%41", "%7e", "%20", "%3B", "%3b", "%2F", "%5C", "%00",
    "%", "%4", "\\", ";", "..;", "é", " ", "\t", "7", "q", "~", "%25", "%3A", "%3a",
]  # fmt: skip
HOSTS = [
    None, "", "gw.test", "admin.example", "ADMIN.example:8443", "admin.example.",
    "Admin.Example.:1", "api.example", "API.EXAMPLE:8443", "api.example:", "[::1]:80", "[::1",
    "other", ":", ".", "é",
]  # fmt: skip
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "Get", "PROPFIND"]

PREFIXES = sorted({r.match.path for r in WITH_ROOT} | {"/admin", "/oauth2", "/api-keys/leaks"})

segments = st.lists(st.sampled_from(SEGMENTS), max_size=6).map(lambda s: "/".join(s))
paths = st.one_of(
    segments.map(lambda s: "/" + s),
    # Under a route's prefix (or a reserved one), where the matcher has choices to make.
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from(["", "/"]), segments).map(
        lambda p: p[0].rstrip("/") + p[1] + p[2]
    ),
)
targets = st.one_of(
    paths,
    paths,
    st.tuples(paths, st.text(max_size=8)).map(lambda pq: f"{pq[0]}?{pq[1]}"),
    st.text(max_size=30),
)
hosts = st.one_of(st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.text(max_size=12))
methods = st.one_of(st.sampled_from(METHODS), st.sampled_from(METHODS), st.text(max_size=8))


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(sorted(TABLES)), hosts, methods, targets)
@example("routes", "gw.test", "GET", "/api/orders/7")
def test_native_never_disagrees_with_python(
    table: str, host: str | None, method: str, target: str
) -> None:
    check(table, host, method, target)


# -- generated tables ----------------------------------------------------------------

PREFIX_SEGMENTS = ["a", "b", "api", "x.y", "caf%C3%A9", "admin", "a;p"]
REQUEST_SEGMENTS = [*PREFIX_SEGMENTS, "", ".", "..", "%61", "c", "A"]


@st.composite
def route_tables(draw: st.DrawFn) -> tuple[RouteMatcher, _native.RouteTable]:
    """A random valid route table, compiled both ways, and which routes are native."""
    count = draw(st.integers(1, 6))
    routes = []
    for i in range(count):
        prefix = "/" + "/".join(draw(st.lists(st.sampled_from(PREFIX_SEGMENTS), max_size=3)))
        kw: dict[str, Any] = {
            "strip_prefix": draw(st.booleans()),
            "upstream": draw(st.sampled_from(["http://u:9", "http://u:9/base", "http://u/b/c/"])),
        }
        host = draw(st.sampled_from([None, "a.example", "B.example:8443"]))
        if host is not None:
            kw["host"] = host
        methods = draw(st.sampled_from([None, ["GET"], ["POST", "PUT"], ["GET", "DELETE"]]))
        if methods is not None:
            kw["methods"] = methods
        routes.append(route(f"r{i}", prefix, **kw))
    try:
        matcher = RouteMatcher(routes)
        settings = Settings(routes=routes)
    except (GatewayError, ValueError):
        assume(False)
        raise
    table = compile_table(settings)
    return matcher, _native.RouteTable(json.dumps(table))


request_paths = st.lists(st.sampled_from(REQUEST_SEGMENTS), max_size=5).map(
    lambda s: "/" + "/".join(s)
)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(
    route_tables(),
    st.sampled_from(["a.example", "A.EXAMPLE:1", "b.example.", "c.example", "."]),
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    request_paths,
    st.sampled_from(["", "?", "?q=1"]),
)
def test_generated_tables_agree(
    tables: tuple[RouteMatcher, _native.RouteTable],
    host: str,
    method: str,
    path: str,
    query: str,
) -> None:
    matcher, native = tables
    target = path + query
    decided = native.route(host, method, target)
    expected = python_decision(matcher, host, method, target)
    # Every request Python routed is routed natively alike (and nothing else),
    # whatever spelling of its path it came with.
    assert decided == expected
