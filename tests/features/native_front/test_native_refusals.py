"""End to end: refused API keys are answered by the native plane, alike; misses coalesce.

- an unknown key's first request is served by the Python pipeline (which looks it up and
  pushes the refusal), the next by the native plane — told apart by the request id's
  per-plane prefix — with a byte-identical ``401 invalid_api_key`` (body and head, but for
  the request id and the date); a key whose format or checksum can never be valid is
  refused by the native plane from its first request (it never reaches Python), alike; and
  a key revoked with the CLI is refused natively once Python has seen it revoked;
- a key created with the CLI (another process) drops every refusal on the node (the change
  feed): the unknown key is asked of Python again, and the new key is accepted;
- every 401, whichever plane rendered it, is one ``gateway.denied`` audit row;
- concurrent first requests with one new valid key cost one lookup: exactly one of them is
  served by Python, the others wait for its push and are served natively.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from _support import BastionProcess, EchoThread
from _support.native import cli_json, migrated_config, plane
from bastion.crypto import generate_api_key
from bastion.storage import Database


def _config(tmp_path: Path, upstream: str) -> Path:
    return migrated_config(
        tmp_path,
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n",
    )


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _same_answer(python: httpx.Response, native: httpx.Response) -> None:
    """Byte-identical but for the request id (body and header) and the date."""
    assert python.status_code == native.status_code == 401
    rid_p, rid_n = python.headers["x-request-id"], native.headers["x-request-id"]
    assert python.content.replace(rid_p.encode(), b"RID") == native.content.replace(
        rid_n.encode(), b"RID"
    )

    def head(response: httpx.Response) -> list[tuple[bytes, bytes]]:
        return [
            (name.lower(), value)
            for name, value in response.headers.raw
            if name.lower() not in (b"x-request-id", b"date")
        ]

    assert head(python) == head(native)
    assert native.headers["www-authenticate"] == 'Bearer realm="bastion", error="invalid_token"'
    assert native.json()["reason"] == "invalid_api_key"


def _until(check: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the change feed's bound"
        time.sleep(0.05)


def test_refused_keys_are_answered_natively_alike_and_forgotten_on_change(
    tmp_path: Path, echo: EchoThread
) -> None:
    config = _config(tmp_path, echo.server.url)
    key = cli_json(config, "keys", "create", "shop", "--scope", "orders:read")
    unknown = generate_api_key()  # well formed, never stored
    statuses: list[int] = []
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):

        def get(credential: str) -> httpx.Response:
            response = client.get("/api/orders/1", headers=_bearer(credential))
            statuses.append(response.status_code)
            return response

        valid = [get(key["key"]), get(key["key"])]
        assert [r.status_code for r in valid] == [200, 200]
        python, native = plane(valid[0]), plane(valid[1])
        assert python != native

        first, second, third = get(unknown), get(unknown), get(unknown)
        assert [plane(first), plane(second), plane(third)] == [python, native, native]
        _same_answer(first, second)
        # A key that can never be valid (shape, tag or checksum) never reaches Python:
        # the native plane checks the format first, and answers alike.
        flipped = unknown[:-1] + ("A" if unknown[-1] != "A" else "B")
        for credential in ("bst_nope", flipped, "bst_Live_" + unknown[4:], unknown + "x"):
            made_up = get(credential)
            assert plane(made_up) == native, credential
            _same_answer(first, made_up)

        # A key created elsewhere (the CLI) drops every refusal on this node.
        created = cli_json(config, "keys", "create", "late", "--scope", "orders:read")
        _until(lambda: plane(get(unknown)) == python)
        assert plane(get(unknown)) == native  # refused again, pushed again
        accepted = get(created["key"])
        assert accepted.status_code == 200

        # A revoked key: Python sees it revoked first, then the native plane refuses it.
        cli_json(config, "keys", "revoke", key["id"])
        _until(lambda: get(key["key"]).status_code == 401)
        revoked = get(key["key"])
        assert (revoked.status_code, plane(revoked)) == (401, native)

    refusals = statuses.count(401)
    assert refusals >= 11

    async def denied() -> list[Any]:
        db = await Database.connect(f"sqlite:///{tmp_path}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return list(page.items)
        finally:
            await db.close()

    rows = asyncio.run(denied())
    # Every 401 is one row, whichever plane answered it, as Python records it.
    assert len(rows) == refusals
    for row in rows:
        assert (row.reason, row.route, row.ip) == ("invalid_api_key", "orders", "127.0.0.1")
        assert row.data["status"] == 401 and row.data["step"] == "authenticate"
        assert row.key_id is None and row.subject is None


def test_concurrent_first_requests_of_a_new_key_cost_one_lookup(
    tmp_path: Path, echo: EchoThread
) -> None:
    config = _config(tmp_path, echo.server.url)
    key = cli_json(config, "keys", "create", "burst", "--scope", "orders:read")
    count = 20

    async def burst(url: str) -> list[httpx.Response]:
        clients = [httpx.AsyncClient(base_url=url, verify=False, timeout=10) for _ in range(count)]
        try:
            # Open every connection first, so the key's requests arrive together.
            await asyncio.gather(*(c.get("/healthz") for c in clients))
            return await asyncio.gather(
                *(
                    c.get(f"/api/orders/{n}", headers=_bearer(key["key"]))
                    for n, c in enumerate(clients)
                )
            )
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    with BastionProcess("-c", str(config), cwd=tmp_path) as proc:
        responses = asyncio.run(burst(proc.url))
        with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
            native = plane(client.get("/api/orders/x", headers=_bearer(key["key"])))
    assert [r.status_code for r in responses] == [200] * count
    prefixes = [plane(r) for r in responses]
    # One request looked the key up (served by Python); the others waited for its push.
    assert sum(p != native for p in prefixes) == 1, prefixes
