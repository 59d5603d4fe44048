"""The native ``match`` refusals against their specification: the app's dispatch and Python's
``normalize_path`` and ``RouteMatcher``.

Whenever ``bastion._native.RouteTable.refusal`` says the native core renders a refusal for a
request (whose head passes ``framing``: a plain method, a Host), the Python app hands that
request to its gateway (not to its own endpoints) and the gateway's ``match`` step raises
exactly that error: ``400 invalid_path`` with the same detail, ``404 route_not_found``, or
``405 method_not_allowed`` with the same ``Allow``. ``None`` (Python decides) is always
allowed; hand-picked requests pin that the refusals are really rendered natively.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion import _native
from bastion.gateway.compile import compile_table
from bastion.gateway.errors import BadRequestPathError, MethodNotAllowedError, RouteNotFoundError
from bastion.gateway.matcher import RouteMatcher
from bastion.gateway.paths import normalize_path
from bastion.http.app import is_reserved
from bastion.settings.models import RouteMatch, RouteSettings, Settings


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
for _entry in TABLE["routes"]:
    _entry["native"] = True
NATIVE = _native.RouteTable(json.dumps(TABLE))
# The methods the native core takes through `framing` (hygiene.rs `takes`).
PLAIN_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


def python_refusal(host: str, method: str, target: str) -> tuple[int, str, str, str | None] | None:
    """The error Python's gateway raises in ``match`` (``None``: none, or not the gateway's)."""
    raw_path = target.partition("?")[0]
    if "%" in raw_path:
        # The app normalises it first (a refusal there is the app's, not the gateway's).
        try:
            if is_reserved(normalize_path(raw_path.encode("utf-8"))):
                return None
        except BadRequestPathError:
            return None
    elif is_reserved(raw_path):
        return None  # the app serves it itself
    try:
        path = normalize_path(raw_path.encode("utf-8"))
        MATCHER.match(host, path, method)
    except BadRequestPathError as exc:
        return 400, exc.code, exc.detail, None
    except RouteNotFoundError as exc:
        return 404, exc.code, exc.detail, None
    except MethodNotAllowedError as exc:
        return 405, exc.code, exc.detail, exc.allow
    return None


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
    # Python's own answers: normalised and served, the control plane's, or escapes.
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
    "%2e", "%2F", "%41", "~", "!$&'()*+,=:@",
]  # fmt: skip
HOSTS = ["gw.test", "admin.example", "ADMIN.example:8443", "admin.example.", "[::1]:80"]

paths = st.lists(st.sampled_from(SEGMENTS), max_size=7).map(lambda s: "/" + "/".join(s))
targets = st.one_of(
    paths,
    st.tuples(paths, st.sampled_from(["", "q", "a=%zz", "é"])).map(lambda pq: f"{pq[0]}?{pq[1]}"),
)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(HOSTS), st.sampled_from(PLAIN_METHODS), targets)
@example("gw.test", "GET", "/api/orders/../../..")
def test_native_refusals_are_pythons(host: str, method: str, target: str) -> None:
    refused = NATIVE.refusal(host, method, target)
    if refused is not None:
        assert python_refusal(host, method, target) == refused, (host, method, target)
