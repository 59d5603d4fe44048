"""Pins bastion.gateway's public names: adding or removing one must be a deliberate change."""

from __future__ import annotations

import bastion.demo
import bastion.gateway


def test_gateway_public_names() -> None:
    assert sorted(bastion.gateway.__all__) == sorted(
        [
            "ANONYMOUS",
            "BadRequestError",
            "BadRequestPathError",
            "ForbiddenError",
            "GatewayConfigError",
            "GatewayControl",
            "GatewayError",
            "Identity",
            "IdentityHeaders",
            "InsufficientScopeError",
            "InvalidBearerTokenError",
            "JwtAuthenticator",
            "MethodNotAllowedError",
            "RequestTooLargeError",
            "RouteMatcher",
            "RouteNotAllowedError",
            "RouteNotFoundError",
            "TrustedProxies",
            "UnauthenticatedError",
            "client_ip",
            "normalize_path",
        ]
    )
    for name in bastion.gateway.__all__:
        assert getattr(bastion.gateway, name) is not None


def test_demo_public_names() -> None:
    assert sorted(bastion.demo.__all__) == ["EchoRequest", "EchoServer", "start_echo_server"]
    for name in bastion.demo.__all__:
        assert getattr(bastion.demo, name) is not None
