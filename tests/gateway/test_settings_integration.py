"""The real settings models (not the test stand-ins) plug into the gateway."""

from __future__ import annotations

import ipaddress

from bastion.demo.echo import EchoServer
from bastion.gateway.pipeline import Gateway
from bastion.settings.models import RouteMatch, RouteSettings
from gateway.gateway_support import call


async def test_route_settings_drive_the_gateway(echo: EchoServer) -> None:
    routes = [
        RouteSettings(
            name="orders",
            match=RouteMatch(path="/api/orders", methods=["get", "POST"]),
            upstream=echo.url + "/v1",
            public=True,
            strip_prefix=True,
        ),
        RouteSettings(
            name="private", match=RouteMatch(path="/private"), upstream=echo.url, auth=["jwt"]
        ),
    ]
    gateway = Gateway(routes, trusted_proxies=[ipaddress.ip_network("10.0.0.0/8")])
    compiled = gateway.matcher.routes[0]
    assert compiled.methods == frozenset({"GET", "POST"})
    assert compiled.settings is routes[0]
    result = await call(gateway, "GET", "/api/orders/7", client=("10.0.0.1", 1))
    assert result.json()["path"] == "/v1/7"
    await gateway.shutdown()
