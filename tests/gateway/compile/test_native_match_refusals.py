"""The native answers of ``match`` against their specification: the app's dispatch
(``BastionApp._dispatch``, run as is: ``_support/dispatch.py``) and Python's
``normalize_path`` and ``RouteMatcher``.

Whenever ``bastion._native.RouteTable.refusal`` says the native core renders a refusal for a
request (whose head passes ``framing``: a plain method, a Host), the Python app hands that
request to its gateway (not to its own endpoints) and the gateway's ``match`` step raises
exactly that error: ``400 invalid_path`` with the same detail, ``404 route_not_found``, or
``405 method_not_allowed`` with the same ``Allow``. Whenever ``RouteTable.target`` says the
app refuses a path itself (``app_invalid_path``), the app's dispatch raises that
``BadRequestPathError``; whenever it gives a normal form, the app hands the request to its
gateway and ``normalize_path`` gives that form; whenever ``RouteTable.route`` serves a
request, Python matches the same route and forwards the same target. And the native core
reads every origin-form ASCII target: only a control-plane path, a path outside ASCII or a
query outside visible ASCII is left to Python.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from _support.dispatch import python_target
from bastion import _native
from bastion.gateway.compile import compile_table
from bastion.gateway.errors import MethodNotAllowedError, RouteNotFoundError
from bastion.gateway.matcher import RouteMatcher
from bastion.settings.config import Settings
from bastion.settings.routes import RouteMatch, RouteSettings


def route(name: str, path: str, **kw: Any) -> RouteSettings:
    match_kw = {k: kw.pop(k) for k in ("host", "methods") if k in kw}
    return RouteSettings(
        name=name, match=RouteMatch(path=path, **match_kw), upstream="http://u:9", public=True, **kw
    )


ROUTES = [
    route("orders", "/api/orders", methods=["GET", "POST"]),
    route("orders-admin", "/api/orders", methods=["DELETE"], host="admin.example"),
    route("items", "/api/items"),
    route("writes", "/w", methods=["PUT", "PATCH"]),
    route("adm", "/adm", methods=["GET"], host="admin.example"),
]
MATCHER = RouteMatcher(ROUTES)
TABLE = compile_table(Settings(routes=ROUTES))
NATIVE = _native.RouteTable(json.dumps(TABLE))
# The methods the native core takes through `framing` (hygiene.rs `takes`).
PLAIN_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


def python_refusal(host: str, method: str, target: str) -> tuple[int, str, str, str | None] | None:
    """The error Python's gateway raises in ``match`` (``None``: none, or not the gateway's)."""
    read = python_target(target)
    if read[0] == "refused" and read[2] == "invalid_path":
        return 400, "invalid_path", read[1], None
    if read[0] != "gateway":
        return None  # the app's own (its endpoints, its 400) or uvicorn's
    try:
        MATCHER.match(host, read[1], method)
    except RouteNotFoundError as exc:
        return 404, exc.code, exc.detail, None
    except MethodNotAllowedError as exc:
        return 405, exc.code, exc.detail, exc.allow
    return None


def python_route(host: str, method: str, target: str) -> tuple[int, str] | None:
    """The route Python serves the request on and the target it forwards, if any."""
    read = python_target(target)
    if read[0] != "gateway":
        return None
    _, path, query = read
    try:
        chosen = MATCHER.match(host, path, method)
    except (RouteNotFoundError, MethodNotAllowedError):
        return None
    index = next(i for i, r in enumerate(MATCHER.routes) if r is chosen)
    upstream = chosen.upstream_path(path)
    return index, upstream + "?" + query if query else upstream


HAND_PICKED = [
    ("gw.test", "GET", "/", (404, "route_not_found", "No route matches this request.", None)),
    (
        "gw.test",
        "GET",
        "/nothing?x",
        (404, "route_not_found", "No route matches this request.", None),
    ),
    (
        "gw.test",
        "DELETE",
        "/api/orders/1",
        (405, "method_not_allowed", "DELETE is not allowed on this path.", "GET, HEAD, POST"),
    ),
    (
        "admin.example",
        "PUT",
        "/api/orders",
        (405, "method_not_allowed", "PUT is not allowed on this path.", "DELETE, GET, HEAD, POST"),
    ),
    (
        "gw.test",
        "GET",
        "/w",
        (405, "method_not_allowed", "GET is not allowed on this path.", "PATCH, PUT"),
    ),
    (
        "gw.test",
        "GET",
        "/api/../../x",
        (400, "invalid_path", "The request path climbs above the root ('..').", None),
    ),
    (
        "gw.test",
        "GET",
        "/api/orders/..;/items",
        (
            400,
            "invalid_path",
            "The request path contains a dot segment with a path parameter ('..;'), which is "
            "refused.",
            None,
        ),
    ),
    (
        "gw.test",
        "GET",
        "/a\\b",
        (400, "invalid_path", "The request path contains a backslash, which is refused.", None),
    ),
    (
        "gw.test",
        "GET",
        "/" + "a" * 8192,
        (400, "invalid_path", "The request path is longer than 8192 bytes.", None),
    ),
    # Rewritten by Python first: the normal form's refusal.
    ("gw.test", "GET", "/api//x", (404, "route_not_found", "No route matches this request.", None)),
    (
        "gw.test",
        "GET",
        "/%41PI/orders",
        (404, "route_not_found", "No route matches this request.", None),
    ),
    (
        "gw.test",
        "PUT",
        "/api/x/%2e%2e/orders/./1",
        (405, "method_not_allowed", "PUT is not allowed on this path.", "GET, HEAD, POST"),
    ),
    # Not the gateway's match refusals: served, the control plane's, or the app's own 400.
    ("gw.test", "GET", "/api/orders/1", None),
    ("gw.test", "GET", "/api//orders/1", None),
    ("gw.test", "GET", "/api/../admin", None),
    ("gw.test", "GET", "/x/../../oauth2/token", None),
    ("gw.test", "GET", "/admin/nothing", None),
    ("gw.test", "GET", "/api/%2e%2e/%2e%2e/x", None),
    ("gw.test", "GET", "/api/orders%2F1", None),
]


@pytest.mark.parametrize(("host", "method", "target", "expected"), HAND_PICKED)
def test_hand_picked(host: str, method: str, target: str, expected: Any) -> None:
    assert NATIVE.refusal(host, method, target) == expected
    if expected is not None:
        assert python_refusal(host, method, target) == expected


SEGMENTS = [
    "api", "orders", "items", "w", "adm", "admin", "oauth2", "healthz", ".well-known", "x",
    ".", "..", "", "..;", ".;x", "..;a=b", "a;b", ";", "\\", "a\\b", "\t", "\x7f", "é", " ",
    "%2e", "%2E%2e", "%2F", "%5c", "%00", "%41", "%6f%72ders", "%3B", "..%3b", "%", "%4", "%zz",
    "%25", "%7E", "~", "!$&'()*+,=:@", '"', "{|}",
]  # fmt: skip
HOSTS = ["gw.test", "admin.example", "ADMIN.example:8443", "admin.example.", "[::1]:80"]

paths = st.lists(st.sampled_from(SEGMENTS), max_size=7).map(lambda s: "/" + "/".join(s))
# Paths drawn character by character too: every spelling of "%", ".", "/", ";" and "\\".
spelled = st.text(alphabet="%./;\\aoip2eEfF5cC3bB", max_size=14).map(lambda s: "/" + s)
targets = st.one_of(
    paths,
    spelled,
    st.tuples(st.one_of(paths, spelled), st.sampled_from(["", "q", "a=%zz", "é", "x=/../"])).map(
        lambda pq: f"{pq[0]}?{pq[1]}"
    ),
)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(HOSTS), st.sampled_from(PLAIN_METHODS), targets)
@example("gw.test", "GET", "/api/orders/../../..")
@example("gw.test", "GET", "/api/%2e%2e/admin")
@example("gw.test", "GET", "//oauth2/token")
def test_native_refusals_are_pythons(host: str, method: str, target: str) -> None:
    refused = NATIVE.refusal(host, method, target)
    if refused is not None:
        assert python_refusal(host, method, target) == refused, (host, method, target)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(HOSTS), st.sampled_from(PLAIN_METHODS), targets)
@example("gw.test", "GET", "/api/%2Fadmin")
@example("gw.test", "GET", "/api;x=1")
@example("gw.test", "GET", "/API")
def test_every_native_answer_is_pythons(host: str, method: str, target: str) -> None:
    read = python_target(target)
    native = NATIVE.target(target)
    if native[0] == "gateway" or (native[0] == "refused"):
        assert native == read, (target, native, read)
    elif native == ("python", "reserved", None):
        # The control plane's; or a path the app refuses whatever it names, which is left
        # to Python when it looks like the control plane's.
        assert read == ("python", "reserved") or read[2] == "app_invalid_path", (target, read)
    else:
        assert native == ("python", "not_clean", None), native
        # Only a query no request carries (a space, a control character, a fragment).
        query = target.partition("?")[2]
        assert any(c <= " " or c in "#\x7f" for c in query), target
    # Served natively: the route and the upstream target Python's.
    served = NATIVE.route(host, method, target)
    if served is not None:
        assert python_route(host, method, target) == served, (host, method, target)
    # Every request Python serves on a route is served natively (all routes are native
    # here), and every refusal of its gateway's match step rendered natively.
    if native[0] == "gateway":
        assert served == python_route(host, method, target), (host, method, target)
        assert NATIVE.refusal(host, method, target) == python_refusal(host, method, target)
    if native[0] == "refused" and native[2] == "invalid_path":
        assert NATIVE.refusal(host, method, target) == python_refusal(host, method, target)
