"""The ``match`` section and the table-wide router inputs of the compiled route table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion import _native
from bastion.gateway.compile import TABLE_VERSION, compile_table
from bastion.gateway.compile.routes import section, table_section
from bastion.gateway.errors import GatewayConfigError
from bastion.http.app import RESERVED_PREFIXES
from bastion.settings.config import Settings
from bastion.settings.routes import CorsSettings, RouteMatch, RouteSettings


def route(
    name: str, path: str, upstream: str | list[str] = "http://u:9", **kw: Any
) -> RouteSettings:
    match_kw = {k: kw.pop(k) for k in ("host", "methods") if k in kw}
    kw.setdefault("public", True)
    return RouteSettings(
        name=name, match=RouteMatch(path=path, **match_kw), upstream=upstream, **kw
    )


def test_match_section_carries_what_the_matcher_compiles() -> None:
    orders = route(
        "orders",
        "/api/orders/",
        upstream=["http://o1:9000/v1/", "http://o2:9000/v2"],
        host="API.Example.com:8443",
        methods=["post", "GET", "get"],
        strip_prefix=True,
    )
    assert section(orders, None) == {
        "host": "api.example.com",
        "prefix": "/api/orders",
        "methods": ["GET", "POST"],
        "strip_prefix": True,
        "upstream_base": "/v1",
    }
    assert section(route("root", "/"), None) == {
        "host": None,
        "prefix": "/",
        "methods": None,
        "strip_prefix": False,
        "upstream_base": "",
    }


def test_a_prefix_not_in_normal_form_is_refused_like_the_matcher() -> None:
    with pytest.raises(GatewayConfigError) as caught:
        section(route("odd", "/%61pi"), None)
    assert caught.value.detail == (
        "routes[odd].match.path '/%61pi' is not in normal form; write '/api'."
    )
    with pytest.raises(GatewayConfigError) as caught:
        section(route("bad", "/a%2Fb"), None)
    assert caught.value.detail == (
        "routes[bad].match.path '/a%2Fb' is invalid: "
        "The request path contains an encoded slash (%2F), which is refused."
    )


def test_table_section() -> None:
    plain = Settings(routes=[route("a", "/a")])
    assert table_section(plain) == {"reserved": list(RESERVED_PREFIXES), "preflight": False}
    cors = Settings(
        routes=[
            route("a", "/a"),
            route("b", "/b", cors=CorsSettings(origins=["https://app.example"])),
        ]
    )
    assert table_section(cors)["preflight"] is True


def test_compile_table_shape_and_native_load() -> None:
    settings = Settings(
        routes=[
            route("a", "/a", methods=["GET"]),
            route("b", "/b", websocket=True),
            route("c", "/c", cors={"origins": ["https://app.example"]}),
        ]
    )
    table = compile_table(settings)
    assert table["version"] == TABLE_VERSION == 1
    assert table["match"] == {"reserved": list(RESERVED_PREFIXES), "preflight": True}
    assert [r["index"] for r in table["routes"]] == [0, 1, 2]
    assert table["routes"][0]["match"]["prefix"] == "/a"
    # CORS is native (the edge section carries the policy); WebSockets too (their limits).
    assert table["routes"][1]["edge"]["websocket"] == {
        "max_message_size": 1024 * 1024,
        "idle_timeout": 300.0,
        "max_duration": 86400.0,
    }
    assert table["routes"][0]["edge"]["websocket"] is None
    assert table["routes"][2]["edge"]["cors"]["origins"] == ["https://app.example"]
    loaded = _native.RouteTable(json.dumps(table))
    assert len(loaded) == 3
    assert loaded.route("h", "GET", "/b/x") == (1, "/b/x")
    assert loaded.route("h", "GET", "/a/x?q=1") == (0, "/a/x?q=1")
    assert loaded.route("h", "POST", "/a/x") is None
    assert loaded.defer_reason("h", "POST", "/a/x") == "method_not_allowed"


def test_native_loader_refuses_another_version() -> None:
    with pytest.raises(
        ValueError, match=r"^the route table has version 2; this build loads version 1$"
    ):
        _native.RouteTable('{"version": 2, "match": {}, "routes": []}')
    with pytest.raises(ValueError, match=r"^the route table is not valid: "):
        _native.RouteTable('{"version": 1, "routes": []}')


def test_routes_load_swaps_the_table_in_force() -> None:
    settings = Settings(routes=[route("a", "/a"), route("b", "/b", upstream="http://u:9/x")])
    table = compile_table(settings)
    _native.routes_load(json.dumps(table))
    assert _native.routes_route("h", "GET", "/b/1") == (1, "/x/b/1")
    with pytest.raises(ValueError, match=r"^the route table has version 9; "):
        _native.routes_load(json.dumps({**table, "version": 9}))
    assert _native.routes_route("h", "GET", "/b/1") == (1, "/x/b/1")  # the old one stays
    table["routes"] = table["routes"][:1]
    _native.routes_load(json.dumps(table))
    assert _native.routes_route("h", "GET", "/b/1") is None
    assert _native.routes_route("h", "GET", "/a") == (0, "/a")
    _native.routes_load(json.dumps({**table, "routes": []}))  # leave nothing in force
