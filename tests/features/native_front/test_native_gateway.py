"""End to end: which plane serves a gateway request, and that both answer alike.

- a key's first request is served natively once a lookup asked Python for its record, and
  so is every next one — told apart by the request id's per-plane prefix — the upstream
  seeing the same identity each time;
- every response carries exactly one ``Date`` (a proxied one: the upstream's);
- an unknown key's 401 (Python's problem document) is native from its first request (a
  lookup asks Python for the record only);
- the limiter's budget counts the key's first request (the one that made the lookup);
- ``bastion routes list`` says which plane serves each route, and why not native.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from _support import BastionProcess, EchoThread
from _support.native import cli_json, migrated_config, plane
from bastion.crypto import generate_api_key


def _config(tmp_path: Path, upstream: str) -> Path:
    return migrated_config(
        tmp_path,
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        "    limits: [{per: key, rate: 3/minute}]\n"
        "  - name: browser\n"
        "    match: {path: /api/browser}\n"
        f"    upstream: {upstream}\n"
        "    public: true\n"
        "    websocket: true\n",
    )


def test_python_then_native_alike_with_one_budget(tmp_path: Path, echo: EchoThread) -> None:
    config = _config(tmp_path, echo.server.url)
    key = cli_json(config, "keys", "create", "shop", "--scope", "orders:read")
    auth = {"Authorization": f"Bearer {key['key']}"}
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        python = plane(client.get("/healthz"))  # not a gateway request: Python's plane
        first = client.get("/api/orders/1", headers=auth)  # a lookup, then native
        second = client.get("/api/orders/2", headers=auth)
        third = client.get("/api/orders/3", headers=auth)
        fourth = client.get("/api/orders/4", headers=auth)
        unknown = {"Authorization": f"Bearer {generate_api_key()}"}  # well formed, not stored
        bad = client.get("/api/orders/5", headers=unknown)
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    # The native plane served the first (after its lookup) and the next ones.
    assert python != plane(first) == plane(second) == plane(third)
    for response in (first, second, third, fourth, bad):
        assert len(response.headers.get_list("date")) == 1, response.headers
    seen = [{k.lower(): v for k, v in r.json()["headers"].items()} for r in (first, second)]
    for headers in seen:
        assert "authorization" not in headers
        assert headers["x-bastion-key-id"] == key["id"]
        assert headers["x-bastion-scopes"] == "orders:read"
    # One budget: 3/minute, the first (looked up) request counted — the fourth is refused
    # natively with Python's problem document and headers.
    assert fourth.status_code == 429
    assert fourth.headers["content-type"] == "application/problem+json"
    assert fourth.json()["reason"] == "rate_limited"
    assert fourth.headers["retry-after"]
    assert plane(fourth) == plane(second)
    # A key's first refusal is native too (a lookup asks Python for the record only).
    assert bad.status_code == 401
    assert bad.json()["reason"] == "invalid_api_key"
    assert plane(bad) == plane(second)


def test_a_keys_own_limit_is_one_budget_across_planes(tmp_path: Path, echo: EchoThread) -> None:
    config = _config(tmp_path, echo.server.url)
    key = cli_json(
        config, "keys", "create", "tight", "--scope", "orders:read", "--rate-limit", "2/minute"
    )
    auth = {"Authorization": f"Bearer {key['key']}"}
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        python = plane(client.get("/healthz"))  # not a gateway request: Python's plane
        responses = [client.get(f"/api/orders/{n}", headers=auth) for n in (0, 1, 2)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    # The native plane served the first (after its lookup) and the second, refused the third.
    assert python != plane(responses[0]) == plane(responses[1]) == plane(responses[2])
    assert responses[2].json()["reason"] == "rate_limited"
    assert '"2/minute"' in responses[2].headers["ratelimit-policy"]
