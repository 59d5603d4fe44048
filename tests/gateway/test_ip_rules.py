"""The ip step: allow / deny networks of a route, deny wins, before authentication.

Black-box, against a real ``bastion serve`` trusting 127.0.0.2 as a proxy: a request from
127.0.0.2 names its client in ``X-Forwarded-For``; one from 127.0.0.1 is judged by that
address. :class:`IpRules` itself (compiled into the route table, and used by
the admin API) keeps its unit test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread
from _support.gateway_edge import PROXY, forwarded, problem
from _support.gateway_server import GatewayServer, gateway_fixture
from bastion.gateway.ip_rules import IpNotAllowedError, IpRules

ROUTES = """\
  - name: office
    match: {path: /office}
    upstream: {echo}
    public: true
    ip: {allow: [10.0.0.0/8, '2001:db8::/32'], deny: [10.66.0.0/16]}
  - name: blocked
    match: {path: /blocked}
    upstream: {echo}
    public: true
    ip: {deny: [192.0.2.0/24]}
  - name: secret
    match: {path: /secret}
    upstream: {echo}
    auth: [api_key]
    ip: {allow: [10.0.0.0/8]}
"""

REFUSED = (403, "ip_not_allowed", "Requests from this address are not allowed on this route.")


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


served = gateway_fixture(ROUTES, "tls: off\ntrusted_proxies: [127.0.0.2]\n")


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
def test_allow_and_deny(served: GatewayServer, path: str, address: str, allowed: bool) -> None:
    with served.client(source=PROXY) as client:
        response = client.get(path, headers=forwarded(address))
    if allowed:
        assert response.status_code == 200
        assert response.json()["path"] == path
        return
    assert problem(response) == REFUSED
    (row,) = served.denied([response.headers["x-request-id"]]).values()
    assert (row.reason, row.route, row.ip, row.data["step"]) == (
        "ip_not_allowed",
        path[1:],
        address,
        "ip",
    )


def test_forwarded_for_only_from_trusted_proxies(served: GatewayServer) -> None:
    # From the trusted proxy, X-Forwarded-For names the client.
    with served.client(source=PROXY) as client:
        assert client.get("/office", headers=forwarded("10.1.1.1")).status_code == 200
    # From anyone else, the claim is ignored: the peer is judged.
    with served.client() as client:
        assert problem(client.get("/office", headers=forwarded("10.1.1.1"))) == REFUSED


def test_runs_before_authentication(served: GatewayServer) -> None:
    # A refused address learns nothing about credentials: 403, not 401.
    with served.client(source=PROXY) as client:
        assert problem(client.get("/secret", headers=forwarded("203.0.113.9"))) == REFUSED


def test_no_peer_is_refused(served: GatewayServer) -> None:
    # Over TCP there is always a peer; what cannot be determined is a hop the trusted proxy
    # names that is not an address: bastion's 400, whatever the route (Python's pipeline
    # answered the route's 403 "cannot be determined"; a hop that is no address is refused
    # before any route).
    with served.client(source=PROXY) as client:
        response = client.get("/blocked", headers=forwarded("not-an-ip"))
        assert (response.status_code, response.json()["reason"]) == (
            400,
            "invalid_forwarded_for",
        )


def test_unparseable_address_is_refused(served: GatewayServer) -> None:
    with pytest.raises(IpNotAllowedError):
        IpRules.of(deny=["192.0.2.0/24"]).check("not-an-ip")
    IpRules.of(deny=["192.0.2.0/24"]).check("[2001:db8::1]")
    # Over HTTP: a bracketed IPv6 hop is read as its address.
    with served.client(source=PROXY) as client:
        assert client.get("/blocked", headers=forwarded("[2001:db8::1]")).status_code == 200
