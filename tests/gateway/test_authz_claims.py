"""Required claims and roles: matching rules and exact errors, over real HTTP.

One ``bastion serve`` with a ``jwt`` route per required claim value (``tenant``: a string,
``true``, ``1``, a list, a one-item list) and two role routes (roles under a dotted path;
roles in the default ``roles`` claim); requests carry bastion's own tokens (signed with the
server's active key for a client of it) with the claims under test. A refusal is the 403
problem with its ``claim`` or ``role`` member and one ``gateway.denied`` row by the
``authorize`` step. In process: what the control plane compiles of ``claims``, ``roles``
and ``roles_claim`` into the native route table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from _support import EchoThread
from _support.gateway_authn import own_client, own_signing_key, refused
from _support.gateway_server import GatewayServer, serve_gateway
from bastion.crypto import SigningKeyPair, sign_jwt
from bastion.gateway.compile.auth import section
from bastion.settings import RouteMatch, RouteSettings, Settings

ISSUER = "https://auth.test"
#: The route requiring each ``tenant`` value (YAML).
TENANT_ROUTES = {
    "t-str": "acme",
    "t-true": "true",
    "t-one": "1",
    "t-list": "[a, b]",
    "t-item": "[a]",
}


def _route_of(expected: Any) -> str:
    values = {"acme": "t-str", "True": "t-true", "1": "t-one", "['a', 'b']": "t-list"}
    values["['a']"] = "t-item"
    return values[repr(expected).strip("'") if isinstance(expected, str) else repr(expected)]


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def served(
    echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    up = echo_upstream.server.url
    extra = {name: f"claims: {{tenant: {value}}}" for name, value in TENANT_ROUTES.items()}
    extra["roles-path"] = "roles: [admin, ops]\n    roles_claim: realm_access.roles"
    extra["roles-plain"] = "roles: [admin]"
    text = "".join(
        f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {up}\n"
        f"    auth: [jwt]\n    {more}\n"
        for name, more in extra.items()
    )
    settings = f"tls: off\ntrusted_proxies: [192.0.2.1]\nissuer: {ISSUER}\n"
    with serve_gateway(tmp_path_factory.mktemp("claims"), text, settings) as server:
        yield server


@pytest.fixture(scope="module")
def signer(served: GatewayServer) -> tuple[SigningKeyPair, str]:
    return own_signing_key(served), own_client(served)["client_id"]


@pytest.fixture
def gateway(served: GatewayServer) -> Iterator[httpx.Client]:
    with served.client() as client:
        yield client


def call(
    gateway: httpx.Client, signer: tuple[SigningKeyPair, str], route: str, **claims: Any
) -> httpx.Response:
    """GET ``/route`` with a token of bastion's carrying ``claims``."""
    key, client_id = signer
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "user:alice",
        "aud": ISSUER,
        "client_id": client_id,
        "scope": "",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    token = sign_jwt({**base, **claims}, key, typ="at+jwt")
    return gateway.get(f"/{route}/x", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("acme", "acme", True),
        ("acme", "other", False),
        ("acme", ["x", "acme"], True),
        (True, True, True),
        (True, 1, False),  # true is not 1
        (1, True, False),
        (1, 1, True),
        (["a", "b"], ["b", "a", "c"], True),
        (["a", "b"], ["a"], False),
        (["a"], "a", False),
        ("acme", None, False),
    ],
)
def test_claim_matching(
    gateway: httpx.Client,
    served: GatewayServer,
    signer: tuple[SigningKeyPair, str],
    expected: Any,
    actual: Any,
    ok: bool,
) -> None:
    route = _route_of(expected)
    claims = {} if actual is None else {"tenant": actual}
    response = call(gateway, signer, route, **claims)
    if ok:
        assert response.status_code == 200, response.text
    else:
        refused(served, response, 403, "claim_mismatch", route, step="authorize")
        problem = response.json()
        assert problem["claim"] == "tenant"
        assert problem["detail"] == "The credential's claim tenant does not allow this route."


def test_roles_from_a_dotted_path_array_or_string(
    gateway: httpx.Client, served: GatewayServer, signer: tuple[SigningKeyPair, str]
) -> None:
    path = {"realm_access": {"roles": ["ops", "admin", "x"]}}
    assert call(gateway, signer, "roles-path", **path).status_code == 200
    assert call(gateway, signer, "roles-plain", roles="user admin").status_code == 200
    response = call(gateway, signer, "roles-path", realm_access={"roles": ["ops"]})
    refused(served, response, 403, "missing_role", "roles-path", step="authorize")
    problem = response.json()
    assert (problem["status"], problem["role"]) == (403, "admin")
    assert problem["detail"] == "This route requires the role admin."
    for claims in ({}, {"realm_access": "admin"}, {"realm_access": {"roles": [1, None]}}):
        response = call(gateway, signer, "roles-path", **claims)
        refused(served, response, 403, "missing_role", "roles-path", step="authorize")


def test_compile_from_settings() -> None:
    def route(**kw: Any) -> RouteSettings:
        return RouteSettings(
            name="r", match=RouteMatch(path="/r"), upstream="http://127.0.0.1:9", auth=["jwt"], **kw
        )

    plain = section(route(), Settings())
    assert isinstance(plain, dict)
    assert (plain["claims"], plain["roles"], plain["roles_claim"]) == ([], [], "roles")
    # The claims as [name, value] pairs, in the settings' order (the first failing one is named).
    compiled = section(route(claims={"b": 2, "a": 1}, roles=["r"], roles_claim="x.y"), Settings())
    assert isinstance(compiled, dict)
    assert (compiled["claims"], compiled["roles"], compiled["roles_claim"]) == (
        [["b", 2], ["a", 1]],
        ["r"],
        "x.y",
    )
