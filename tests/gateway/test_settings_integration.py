"""The real settings models (not the test stand-ins) drive the gateway: compiled by the
control plane, then served natively by ``bastion serve``."""

from __future__ import annotations

from pathlib import Path

from _support import EchoThread
from _support.gateway_server import plane, serve_gateway
from bastion.gateway.control import GatewayControl
from bastion.ratelimit import MemoryLimiter
from bastion.settings.routes import RouteMatch, RouteSettings


def test_route_settings_compile_with_their_methods_and_settings() -> None:
    routes = [
        RouteSettings(
            name="orders",
            match=RouteMatch(path="/api/orders", methods=["get", "POST"]),
            upstream="http://orders.test/v1",
            public=True,
            strip_prefix=True,
        ),
        RouteSettings(
            name="private",
            match=RouteMatch(path="/private"),
            upstream="http://p.test",
            auth=["jwt"],
        ),
    ]
    control = GatewayControl(routes, authenticators={}, limiter=MemoryLimiter())
    compiled = control.routes[0]
    assert compiled.methods == frozenset({"GET", "POST"})
    assert compiled.settings is routes[0]
    assert compiled.upstream_path("/api/orders/7") == "/v1/7"
    assert [route.name for route in control.routes] == ["orders", "private"]


def test_route_settings_drive_the_served_gateway(tmp_path: Path) -> None:
    echo = EchoThread()
    try:
        routes = (
            "  - name: orders\n"
            "    match: {path: /api/orders, methods: [get, POST]}\n"
            f"    upstream: {echo.server.url}/v1\n"
            "    public: true\n"
            "    strip_prefix: true\n"
        )
        with (
            serve_gateway(tmp_path, routes, "tls: off\ntrusted_proxies: [192.0.2.1]\n") as server,
            server.client() as http,
        ):
            response = http.get("/api/orders/7")
            refused = http.delete("/api/orders/7")
        assert response.status_code == 200
        assert response.json()["path"] == "/v1/7"
        assert plane(response) == plane(refused)  # both answered natively, not deferred
        assert refused.status_code == 405
        assert refused.json()["reason"] == "method_not_allowed"
    finally:
        echo.close()
