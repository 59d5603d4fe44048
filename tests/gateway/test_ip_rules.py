"""The ip step: allow / deny networks of a route, deny wins, before authentication."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.demo.echo import EchoServer
from bastion.gateway.ip_rules import IpNotAllowedError, IpRules
from bastion.gateway.pipeline import Gateway
from gateway.edge_support import edge_route
from gateway.gateway_support import call


@pytest.fixture
async def gateway(echo: EchoServer) -> AsyncIterator[Gateway]:
    gw = Gateway(
        [
            edge_route(
                "office",
                "/office",
                echo.url,
                ip={"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.0/16"]},
            ),
            edge_route("blocked", "/blocked", echo.url, ip={"deny": ["192.0.2.0/24"]}),
            edge_route(
                "secret",
                "/secret",
                echo.url,
                public=False,
                auth=["api_key"],
                ip={"allow": ["10.0.0.0/8"]},
            ),
        ],
        trusted_proxies=["127.0.0.1"],
    )
    try:
        yield gw
    finally:
        await gw.shutdown()


@pytest.mark.parametrize(
    ("path", "address", "allowed"),
    [
        ("/office", "10.1.2.3", True),
        ("/office", "10.66.1.1", False),  # deny wins over allow
        ("/office", "11.0.0.1", False),
        ("/office", "2001:db8::1", True),
        ("/office", "2001:db9::1", False),
        ("/office", "::ffff:10.1.2.3", True),  # IPv4-mapped: judged as 10.1.2.3
        ("/office", "::ffff:10.66.0.1", False),
        ("/blocked", "192.0.2.200", False),
        ("/blocked", "198.51.100.1", True),
        ("/blocked", "::ffff:192.0.2.1", False),
    ],
)
async def test_allow_and_deny(gateway: Gateway, path: str, address: str, allowed: bool) -> None:
    if allowed:
        assert (await call(gateway, "GET", path, client=(address, 1234))).status == 200
        return
    with pytest.raises(IpNotAllowedError) as caught:
        await call(gateway, "GET", path, client=(address, 1234))
    assert caught.value.status == 403
    assert caught.value.code == "ip_not_allowed"
    assert caught.value.detail == "Requests from this address are not allowed on this route."


async def test_forwarded_for_only_from_trusted_proxies(gateway: Gateway) -> None:
    # From the trusted proxy, X-Forwarded-For names the client.
    ok = await call(
        gateway,
        "GET",
        "/office",
        client=("127.0.0.1", 1),
        headers=[("x-forwarded-for", "10.1.1.1")],
    )
    assert ok.status == 200
    # From anyone else, the claim is ignored: the peer is judged.
    with pytest.raises(IpNotAllowedError):
        await call(
            gateway,
            "GET",
            "/office",
            client=("203.0.113.9", 1),
            headers=[("x-forwarded-for", "10.1.1.1")],
        )


async def test_runs_before_authentication(gateway: Gateway) -> None:
    # A refused address learns nothing about credentials: 403, not 401.
    with pytest.raises(IpNotAllowedError):
        await call(gateway, "GET", "/secret", client=("203.0.113.9", 1))


async def test_no_peer_is_refused(gateway: Gateway) -> None:
    with pytest.raises(IpNotAllowedError) as caught:
        await call(gateway, "GET", "/blocked", client=None)
    assert caught.value.detail == "The client address cannot be determined."


def test_unparseable_address_is_refused() -> None:
    with pytest.raises(IpNotAllowedError):
        IpRules.of(deny=["192.0.2.0/24"]).check("not-an-ip")
    IpRules.of(deny=["192.0.2.0/24"]).check("[2001:db8::1]")
