"""/auth/verify in the Python app: a decision the native core deferred is refused, never judged."""

from __future__ import annotations

import pytest
from http_support import client_for, make_runtime

from bastion.http.app import create_app
from bastion.http.endpoints.forward_auth import forward_auth_routes


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_a_deferred_decision_is_503_gateway_unavailable(method: str) -> None:
    runtime = make_runtime()
    app = create_app(runtime, routes=forward_auth_routes(runtime))
    headers = {
        "X-Original-Method": "GET",
        "X-Original-URI": "/public",
        "X-HTTP-Method-Override": "GET",
    }
    async with client_for(app) as client:
        response = await client.request(method, "/auth/verify", headers=headers)
    # Fail closed: the proxy refuses the client request while no decision can be made.
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    if method != "HEAD":
        assert response.json()["reason"] == "gateway_unavailable"
