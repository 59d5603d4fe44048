"""End to end: refused API keys are answered by the native plane, alike.

- an unknown key's every request is answered by the native plane (the first asks Python
  for the record, a lookup: ``bastion_native_lookups_total``) — told apart by the request
  id's per-plane prefix — with the ``401 invalid_api_key`` Python's pipeline rendered, byte
  for byte (body and head, but for the request id and the date; recorded in
  ``tests/vectors/twins/test_native_refusals.json``); a key whose format or checksum can
  never be valid is refused natively without a lookup (it never reaches Python), alike; and
  a key revoked with the CLI is refused natively once the node has followed the change;
- a key created with the CLI (another process) drops every refusal on the node (the change
  feed): the unknown key is looked up again, and the new key is accepted;
- every 401, whichever plane rendered it, is one ``gateway.denied`` audit row.

Concurrent first requests of a new key: ``test_native_lookups.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from _support import BastionProcess, EchoThread
from _support.native import cli_json, migrated_config, native_lookups, plane
from _support.recorded import Recorded
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


RECORDED = Recorded(__name__)


def _same_answer(native: httpx.Response) -> None:
    """Python's answer, byte for byte but for the request id (body and header) and the date."""
    assert native.status_code == 401
    RECORDED.check("invalid_api_key", native)
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

        def get(credential: str, extra: dict[str, str] | None = None) -> httpx.Response:
            response = client.get("/api/orders/1", headers={**_bearer(credential), **(extra or {})})
            statuses.append(response.status_code)
            return response

        python = plane(client.get("/healthz"))  # Python's plane (not a gateway request)
        valid = [get(key["key"]), get(key["key"])]
        assert [r.status_code for r in valid] == [200, 200]
        native = plane(valid[0])
        assert python != native == plane(valid[1])

        refused = native_lookups(client)[("api_key", "refused")]
        first, second = get(unknown), get(unknown)
        assert [plane(first), plane(second)] == [native, native]
        _same_answer(first)
        _same_answer(second)
        assert native_lookups(client)[("api_key", "refused")] == refused + 1
        # A key that can never be valid (shape, tag or checksum) never reaches Python:
        # the native plane checks the format first, and answers alike.
        flipped = unknown[:-1] + ("A" if unknown[-1] != "A" else "B")
        for credential in ("bst_nope", flipped, "bst_Live_" + unknown[4:], unknown + "x"):
            made_up = get(credential)
            assert plane(made_up) == native, credential
            _same_answer(made_up)
        assert native_lookups(client)[("api_key", "refused")] == refused + 1

        # A key created elsewhere (the CLI) drops every refusal on this node: looked up again.
        created = cli_json(config, "keys", "create", "late", "--scope", "orders:read")
        _until(
            lambda: (
                plane(get(unknown)) == native
                and native_lookups(client)[("api_key", "refused")] > refused + 1
            )
        )
        looked_up = native_lookups(client)[("api_key", "refused")]
        assert plane(get(unknown)) == native  # refused again, from the cache
        assert native_lookups(client)[("api_key", "refused")] == looked_up
        accepted = get(created["key"])
        assert accepted.status_code == 200

        # A revoked key: refused natively once the node followed the revocation.
        cli_json(config, "keys", "revoke", key["id"])
        _until(lambda: get(key["key"]).status_code == 401)
        revoked = get(key["key"])
        assert (revoked.status_code, plane(revoked)) == (401, native)

    refusals = statuses.count(401)
    assert refusals >= 10

    async def denied() -> list[Any]:
        db = await Database.connect(f"sqlite:///{tmp_path}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return list(page.items)
        finally:
            await db.close()

    # (The 404 that told Python's prefix is a denial too.)
    rows = [row for row in asyncio.run(denied()) if row.data["status"] == 401]
    # Every 401 is one row, whichever plane answered it, as Python records it.
    assert len(rows) == refusals
    for row in rows:
        assert (row.reason, row.route, row.ip) == ("invalid_api_key", "orders", "127.0.0.1")
        assert row.data["status"] == 401 and row.data["step"] == "authenticate"
        assert row.key_id is None and row.subject is None
