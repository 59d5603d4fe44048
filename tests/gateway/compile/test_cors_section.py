"""The ``edge.cors`` section: the Python step's own compiled policy, as the native core reads it."""

from __future__ import annotations

import json
from typing import Any

from bastion import _native
from bastion.gateway.compile import compile_table
from bastion.gateway.compile.cors import section
from bastion.settings.config import Settings
from bastion.settings.routes import RouteMatch, RouteSettings


def route(name: str, path: str, **kw: Any) -> RouteSettings:
    match_kw = {k: kw.pop(k) for k in ("host", "methods") if k in kw}
    kw.setdefault("public", True)
    return RouteSettings(
        name=name, match=RouteMatch(path=path, **match_kw), upstream="http://u:9", **kw
    )


def test_defaults_follow_the_route() -> None:
    keyed = route(
        "keyed",
        "/k",
        methods=["POST", "GET"],
        public=False,
        auth=["api_key"],
        api_key_header="X-API-Key",
        cors={"origins": ["https://app.example.com", "http://localhost:3000"]},
    )
    assert section(keyed) == {
        "origins": ["http://localhost:3000", "https://app.example.com"],
        "methods": ["GET", "HEAD", "POST"],
        "headers": ["authorization", "content-type", "x-api-key"],
        "allow_methods": "GET, HEAD, POST",
        "allow_headers": "authorization, content-type, x-api-key",
        "expose_headers": "",
        "credentials": False,
        "max_age": "600",
    }
    # Every method but OPTIONS when the route lists none.
    assert section(route("any", "/a", cors={"origins": ["https://a.example"]}))["methods"] == [
        "DELETE",
        "GET",
        "HEAD",
        "PATCH",
        "POST",
        "PUT",
    ]
    assert section(route("none", "/n")) is None


def test_explicit_settings() -> None:
    explicit = route(
        "api",
        "/api",
        methods=["GET", "POST", "DELETE"],
        cors={
            "origins": ["https://app.example.com"],
            "methods": ["post"],
            "headers": ["X-Trace", "Content-Type"],
            "expose_headers": ["RateLimit", "X-Total"],
            "credentials": True,
            "max_age": "5m",
        },
    )
    assert section(explicit) == {
        "origins": ["https://app.example.com"],
        "methods": ["POST"],
        "headers": ["content-type", "x-trace"],
        "allow_methods": "POST",
        "allow_headers": "content-type, x-trace",
        "expose_headers": "RateLimit, X-Total",
        "credentials": True,
        "max_age": "300",
    }


def test_a_cors_route_is_native_and_the_table_loads() -> None:
    settings = Settings(
        routes=[route("api", "/api", cors={"origins": ["https://app.example.com"]})]
    )
    table = compile_table(settings)
    entry = table["routes"][0]
    assert entry["edge"]["cors"] == section(settings.routes[0])
    loaded = _native.RouteTable(json.dumps(table))
    assert loaded.route("h", "GET", "/api/x") == (0, "/api/x")
