"""The ``limit`` step: route rate limits in front of the echo upstream.

Black-box, against real ``bastion serve`` processes (their clock is the real one: the
exact ``RateLimit`` values assume each test's requests take well under a second):

- one on the in-process limiter, a route per test (each test its own buckets), trusting
  127.0.0.2 as a proxy so a request names its client address in ``X-Forwarded-For``;
  identities are real API keys (``bastion keys create``) and access tokens of a trusted
  local IdP (a token carries a subject and a client, no key id);
- one on Redis reached through a TCP proxy the tests cut (an outage: each limit's ``fail``
  decides) and restore.

The check of a route's limits in the route table compiler keeps its unit test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pydantic
import pytest

from _support import EchoThread, TCPProxy
from _support.gateway_edge import (
    PROXY,
    bearer,
    forwarded,
    idp_token,
    issuer_settings,
    problem,
    serve_on_redis,
    served_with,
)
from _support.gateway_server import GatewayServer, fresh_echo
from bastion.demo.echo import EchoServer
from bastion.gateway.compile import limits as compile_limits
from bastion.settings.routes import RouteLimit
from gateway.idp_support import FakeIdP, IdPThread

#: route name -> its limits (each test its own route, so its own buckets).
LIMITED = {
    "seq": ["{per: key, rate: 3/minute}"],
    "routehdr": ["{per: route, rate: 5/second}"],
    "concurrent": ["{per: key, rate: 5/minute}"],
    "perkey": ["{per: key, rate: 1/minute}"],
    "perip": ["{per: ip, rate: 1/minute}"],
    "refused": ["{per: key, rate: 1/minute}", "{per: ip, rate: 3/minute}"],
    "lacks": ["{per: key, rate: 1/minute}"],
    "values": [
        "{per: subject, rate: 1/minute}",
        "{per: client, rate: 2/minute}",
        "{per: route, rate: 3/minute}",
    ],
    "two": ["{per: key, rate: 2/second}", "{per: key, rate: 3/minute}"],
    "problem": ["{per: ip, rate: 1/hour}"],
    "canon0": ["{per: ip, rate: 1/hour}"],
    "canon1": ["{per: ip, rate: 1/hour}"],
    "canon2": ["{per: ip, rate: 1/hour}"],
    "ipv6": ["{per: ip, rate: 1/hour}"],
}


def _routes(limited: dict[str, list[str]], upstream: str = "{echo}") -> str:
    return "".join(
        f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {upstream}\n"
        "    auth: [api_key, jwt]\n    jwt: {issuers: [{idp}]}\n"
        f"    limits: [{', '.join(limits)}]\n"
        for name, limits in limited.items()
    )


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    thread = IdPThread()
    try:
        yield thread.idp
    finally:
        thread.close()


served = served_with(_routes(LIMITED), "tls: off\ntrusted_proxies: [127.0.0.2]\n", idp=True)


@pytest.fixture(scope="module")
def keys(served: GatewayServer) -> dict[str, str]:
    """API keys a, b, k, k2 (none with limits of its own)."""
    return {
        name: served.cli("keys", "create", f"limit-{name}")["key"] for name in ("a", "b", "k", "k2")
    }


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoServer:
    return fresh_echo(echo_upstream)


def get(
    server: GatewayServer,
    path: str,
    key: str | None = None,
    ip: str = "203.0.113.7",
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """GET ``path`` as ``key`` (or ``token``) from client address ``ip``."""
    fields = {**forwarded(ip), **(headers or {})}
    if key is not None:
        fields.update(bearer(key))
    if token is not None:
        fields.update(bearer(token))
    with server.client(source=PROXY) as client:
        return client.get(path, headers=fields)


def limited(response: httpx.Response, retry_after: str) -> None:
    assert problem(response)[:2] == (429, "rate_limited")
    assert response.headers["retry-after"] == retry_after


def test_sequential_exactly_n_then_429_with_headers(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    seen = []
    for _ in range(3):
        response = get(served, "/seq/1", keys["k"])
        assert response.status_code == 200
        assert response.headers["ratelimit-policy"] == '"3/minute";q=3;w=60'
        seen.append(response.headers["ratelimit"])
    assert seen == ['"3/minute";r=2;t=20', '"3/minute";r=1;t=40', '"3/minute";r=0;t=60']
    for _ in range(2):
        refused = get(served, "/seq/1", keys["k"])
        limited(refused, "20")
        assert refused.headers["ratelimit-policy"] == '"3/minute";q=3;w=60'
        assert refused.headers["ratelimit"] == '"3/minute";r=0;t=60'
    assert len(echo.received) == 3


def test_route_limit_headers_on_admitted_responses(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    response = get(served, "/routehdr/1", keys["k"], headers={"RateLimit": "forged"})
    assert response.status_code == 200
    assert response.headers["ratelimit"] == '"5/second";r=4;t=1'


def test_concurrent_requests_admit_exactly_n(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    n = 5
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda _: get(served, "/concurrent/1", keys["k"]), range(10 * n)))
    admitted = [o for o in outcomes if o.status_code == 200]
    refused = [o for o in outcomes if o.status_code == 429]
    assert (len(admitted), len(refused)) == (n, 9 * n)
    assert all("ratelimit" in r.headers for r in admitted)
    assert len(echo.received) == n


def test_per_key_limits_do_not_share_buckets(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    assert get(served, "/perkey", keys["a"]).status_code == 200
    limited(get(served, "/perkey", keys["a"]), "60")
    assert get(served, "/perkey", keys["b"]).status_code == 200  # same IP, other key


def test_per_ip_limits_do_not_share_buckets(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    assert get(served, "/perip", keys["a"], ip="198.51.100.1").status_code == 200
    limited(get(served, "/perip", keys["b"], ip="198.51.100.1"), "60")  # other key, same IP
    assert get(served, "/perip", keys["a"], ip="198.51.100.2").status_code == 200


def test_a_refused_request_consumes_nothing_from_other_limits(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    first = get(served, "/refused", keys["a"])
    assert first.headers["ratelimit"] == '"1/minute";r=0;t=60, "3/minute";r=2;t=20'
    for _ in range(5):
        refused = get(served, "/refused", keys["a"])
        limited(refused, "60")
        assert refused.headers["ratelimit"] == '"1/minute";r=0;t=60, "3/minute";r=2;t=20'
    # The IP's bucket still holds 2: key b (same IP) gets them.
    second = get(served, "/refused", keys["b"])
    assert second.headers["ratelimit"] == '"1/minute";r=0;t=60, "3/minute";r=1;t=40'
    assert len(echo.received) == 2


def test_limit_on_a_value_the_request_lacks_is_skipped(
    served: GatewayServer, idp: FakeIdP, echo: EchoServer
) -> None:
    token = idp_token(idp, "alice", "app")
    for _ in range(3):  # a token has no key id: no per-key limit applies
        response = get(served, "/lacks", token=token)
        assert response.status_code == 200 and "ratelimit" not in response.headers


def test_subject_client_and_route_values(
    served: GatewayServer, keys: dict[str, str], idp: FakeIdP, echo: EchoServer
) -> None:
    def as_user(sub: str) -> httpx.Response:
        return get(served, "/values", token=idp_token(idp, sub, "app"))

    assert as_user("alice").status_code == 200
    limited(as_user("alice"), "60")  # alice's subject bucket is empty
    bob = as_user("bob")
    assert bob.headers["ratelimit"] == (
        '"1/minute";r=0;t=60, "2/minute";r=0;t=60, "3/minute";r=1;t=40'
    )
    limited(as_user("carol"), "30")  # client "app" is exhausted
    # A key identity has no client id: only its subject and the route apply.
    last = get(served, "/values", keys["k"])
    assert last.headers["ratelimit"] == '"1/minute";r=0;t=60, "3/minute";r=0;t=60'
    limited(get(served, "/values", keys["k2"]), "20")  # the route as a whole is exhausted


def test_two_limits_on_the_same_value_get_their_own_buckets(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    response = get(served, "/two", keys["a"])
    assert response.headers["ratelimit"] == '"2/second";r=1;t=1, "3/minute";r=2;t=20'


def test_429_renders_as_problem_json_with_retry_after(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    assert get(served, "/problem", keys["a"]).status_code == 200
    response = get(served, "/problem", keys["a"])
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3600"
    assert response.json()["reason"] == "rate_limited"
    assert len(echo.received) == 1
    (row,) = served.denied([response.headers["x-request-id"]]).values()
    assert (row.reason, row.route, row.data["step"]) == ("rate_limited", "problem", "limit")


def test_invalid_limit_is_a_config_error() -> None:
    bad = SimpleNamespace(per="key", rate="10/fortnight", burst=None, fail="closed")
    route = SimpleNamespace(name="r", limits=(bad,))
    settings = SimpleNamespace(shared=SimpleNamespace(url="memory://"))
    with pytest.raises(ValueError) as info:
        compile_limits.section(route, settings)
    assert str(info.value) == (
        "routes[r].limits[0]: invalid rate limit '10/fortnight': unknown unit 'fortnight' "
        "(use second, minute, hour or day)"
    )
    # The settings refuse it first.
    with pytest.raises(pydantic.ValidationError, match="unknown unit 'fortnight'"):
        RouteLimit(per="key", rate="10/fortnight")


# -- on Redis, and Redis down --------------------------------------------------------------

REDIS_LIMITED = {
    "closed": ["{per: key, rate: 5/minute}"],
    "oneclosed": ["{per: key, rate: 5/minute, fail: open}", "{per: ip, rate: 5/minute}"],
    "lenient": ["{per: key, rate: 1/minute, fail: open}"],
    "exact": ["{per: key, rate: 4/minute}"],
    "warm": ["{per: ip, rate: 1000/minute}"],
}


@pytest.fixture(scope="module")
def on_redis(
    tmp_path_factory: pytest.TempPathFactory,
    echo_upstream: EchoThread,
    idp: FakeIdP,
    redis_url: str,
) -> Iterator[tuple[GatewayServer, TCPProxy, str]]:
    routes = _routes(REDIS_LIMITED, echo_upstream.server.url).replace("{idp}", idp.url)
    settings = "tls: off\ntrusted_proxies: [127.0.0.2]\n" + issuer_settings(idp.url)
    directory = tmp_path_factory.mktemp("redis-limits")
    with serve_on_redis(directory, routes, settings, redis_url) as (server, proxy, _):
        key = server.cli("keys", "create", "redis-a")["key"]
        yield server, proxy, key


@pytest.fixture
def redis_down(
    on_redis: tuple[GatewayServer, TCPProxy, str],
) -> Iterator[tuple[GatewayServer, str]]:
    server, proxy, key = on_redis
    assert get(server, "/warm", key).status_code == 200  # the key looked up, Redis up
    proxy.cut()
    try:
        yield server, key
    finally:
        proxy.restore()


def test_redis_down_fails_closed_with_503(
    redis_down: tuple[GatewayServer, str], echo: EchoServer
) -> None:
    server, key = redis_down
    response = get(server, "/closed", key)
    assert problem(response)[:2] == (503, "rate_limiter_unavailable")
    assert response.headers["retry-after"] == "1"
    assert len(echo.received) == 0


def test_one_closed_limit_fails_the_request_closed(
    redis_down: tuple[GatewayServer, str], echo: EchoServer
) -> None:
    server, key = redis_down
    assert problem(get(server, "/oneclosed", key))[:2] == (503, "rate_limiter_unavailable")


def test_redis_down_fails_open_locally(
    redis_down: tuple[GatewayServer, str], echo: EchoServer
) -> None:
    server, key = redis_down
    response = get(server, "/lenient", key)
    assert response.status_code == 200
    assert response.headers["ratelimit"] == '"1/minute";r=0;t=60'
    limited(get(server, "/lenient", key), "60")  # still limited, by this node alone
    assert len(echo.received) == 1


def test_redis_limiter_admits_exactly_n(
    on_redis: tuple[GatewayServer, TCPProxy, str], echo: EchoServer
) -> None:
    server, _, key = on_redis
    deadline = time.monotonic() + 10
    while get(server, "/warm", key).status_code != 200:  # Redis answers again
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda _: get(server, "/exact", key), range(40)))
    statuses = [o.status_code for o in outcomes]
    assert (statuses.count(200), statuses.count(429)) == (4, 36)
    assert [r.path for r in echo.received if r.path != "/warm"] == ["/exact"] * 4


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:0:0:99"),  # same /64, another address
        ("2001:DB8:1:2::1", "2001:db8:1:2:0::1"),  # another spelling of the same address
        ("192.0.2.7", "::ffff:192.0.2.7"),  # IPv4 and its IPv4-mapped IPv6 form
    ],
    ids=["canon0", "canon1", "canon2"],
)
def test_per_ip_limits_count_the_canonical_address(
    served: GatewayServer,
    keys: dict[str, str],
    echo: EchoServer,
    request: pytest.FixtureRequest,
    first: str,
    second: str,
) -> None:
    route = "/" + request.node.callspec.id
    assert get(served, route, keys["a"], ip=first).status_code == 200
    response = get(served, route, keys["b"], ip=second)
    assert response.status_code == 429
    assert response.json()["reason"] == "rate_limited"
    assert len(echo.received) == 1


def test_per_ip_limits_of_other_ipv6_networks_do_not_share(
    served: GatewayServer, keys: dict[str, str], echo: EchoServer
) -> None:
    assert get(served, "/ipv6", keys["a"], ip="2001:db8:1:2::1").status_code == 200
    assert get(served, "/ipv6", keys["a"], ip="2001:db8:1:3::1").status_code == 200  # next /64
