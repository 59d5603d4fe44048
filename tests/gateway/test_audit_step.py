"""The gateway's audit step: every denial recorded, allowed requests counted.

Black-box, against a real ``bastion serve`` (SQLite, ``trusted_proxies: [127.0.0.2]``):
denials are read back as ``gateway.denied`` rows of its audit log, keyed by the request id
the response carried; allowed requests are only counted, as ``gateway.traffic`` rows (one
per route and principal and minute) the server writes when a minute closes or it stops.
Identities are real: API keys made with ``bastion keys create`` and access tokens of a
trusted local IdP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _support import EchoThread
from _support.gateway_edge import (
    PROXY,
    api_key,
    bearer,
    forwarded,
    idp_token,
    issuer_settings,
    problem,
    serve_edge,
    served_with,
)
from _support.gateway_server import GatewayServer, audit_rows, request_bytes
from gateway.idp_support import FakeIdP, IdPThread

ROUTES = """\
  - name: orders
    match: {path: /orders}
    upstream: {echo}
    auth: [api_key, jwt]
    jwt: {issuers: [{idp}]}
    scopes: [orders:read]
  - name: open
    match: {path: /open}
    upstream: {echo}
    auth: [api_key, jwt]
    jwt: {issuers: [{idp}]}
  - name: pub
    match: {path: /pub}
    upstream: {echo}
    public: true
"""
SETTINGS = "tls: off\ntrusted_proxies: [127.0.0.2]\n"


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


served = served_with(ROUTES, SETTINGS, idp=True)


def test_denials_are_recorded_with_reason_route_ip_and_request_id(served: GatewayServer) -> None:
    # A tab is the one control character a header value may carry: it is recorded escaped.
    headers = [
        ("User-Agent", "curl/8\tforged: line"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("Authorization", "Basic c2VjcmV0LWNyZWRlbnRpYWw6eA=="),
    ]
    response = served.raw(request_bytes("GET", "/orders/1", headers), source=PROXY)
    assert problem(response)[:2] == (401, "unauthenticated")
    rid = response.request_id
    (event,) = served.denied([rid]).values()
    assert (event.outcome, event.reason, event.route) == ("denied", "unauthenticated", "orders")
    assert (event.ip, event.request_id) == ("203.0.113.7", rid)
    assert event.user_agent == "curl/8\\x09forged: line"
    assert (event.subject, event.key_id, event.client_id) == (None, None, None)
    assert event.data == {
        "status": 401,
        "step": "authenticate",
        "method": "GET",
        "path": "/orders/1",
    }
    assert "c2VjcmV0" not in repr(event)  # the credential is never recorded


def test_a_known_identity_is_named_in_the_denial(served: GatewayServer, idp: FakeIdP) -> None:
    key, key_id = api_key(served, "audit-good")
    with served.client() as client:
        first = client.get("/orders", headers=bearer(key))
        second = client.get("/orders", headers=bearer(idp_token(idp, "svc", "svc")))
    assert problem(first)[:2] == problem(second)[:2] == (403, "insufficient_scope")
    rows = served.denied([first.headers["x-request-id"], second.headers["x-request-id"]])
    one, two = rows[first.headers["x-request-id"]], rows[second.headers["x-request-id"]]
    assert (one.reason, one.subject, one.key_id) == (
        "insufficient_scope",
        f"apikey:{key_id}",
        key_id,
    )
    assert one.data["step"] == "authorize"
    assert (two.subject, two.client_id, two.key_id) == ("svc", "svc", None)


def test_client_ip_behind_a_trusted_proxy(served: GatewayServer) -> None:
    with served.client(source=PROXY) as client:
        response = client.get("/nowhere", headers=forwarded("198.51.100.1, 192.0.2.44"))
    assert problem(response)[:2] == (404, "route_not_found")
    rid = response.headers["x-request-id"]
    (event,) = served.denied([rid]).values()
    assert (event.ip, event.route, event.reason) == ("192.0.2.44", None, "route_not_found")
    assert event.request_id == rid


def test_allowed_requests_are_counted_not_recorded(
    tmp_path: Path, echo_upstream: EchoThread, idp: FakeIdP
) -> None:
    routes = ROUTES.replace("{echo}", echo_upstream.server.url).replace("{idp}", idp.url)
    settings = issuer_settings(idp.url)
    with serve_edge(tmp_path, routes, settings + SETTINGS) as server:
        key, key_id = api_key(server, "audit-counted")
        with server.client() as client:
            rids = []
            for _ in range(3):
                response = client.get("/open", headers=bearer(key))
                assert response.status_code == 200
                rids.append(response.headers["x-request-id"])
            client_token = bearer(idp_token(idp, "svc", "svc"))
            assert client.get("/open", headers=client_token).status_code == 200
            assert client.get("/pub").status_code == 200
    # Stopped: the open minute's counts are written.
    assert audit_rows(tmp_path, "gateway.denied") == {}
    traffic = audit_rows(tmp_path, "gateway.traffic").values()
    counts: dict[tuple[str | None, str, str | None], int] = {}
    for row in traffic:  # a minute closing in between splits a count in two rows
        principal = (row.route, row.data["principal"], row.key_id or row.client_id or row.subject)
        counts[principal] = counts.get(principal, 0) + row.data["count"]
    assert counts == {
        ("open", "key", key_id): 3,
        ("open", "client", "svc"): 1,
        ("pub", "anonymous", None): 1,
    }
