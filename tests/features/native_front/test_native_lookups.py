"""End to end: a native cache miss is a control-plane lookup, and the request stays native.

A real ``bastion serve`` (native engine) with an API-key route and an introspection route
(a real local RFC 7662 endpoint, ``gateway.idp_support.FakeIdP``). The first request of a
credential the native caches do not hold asks Python for the record only
(``bastion.gateway.lookups``) and is then answered by the native plane — told apart by the
request id's per-plane prefix; Python's answers to the same requests are recorded in
``tests/vectors/twins/test_native_lookups.json``. Each lookup is counted in
``bastion_native_lookups_total{kind, outcome}``:

- a new API key's first request is native and proxied with the key's identity; an unknown
  key's first request gets the native 401, byte-identical to Python's, audited once;
  20 concurrent first requests of a new key make one lookup and 20 native answers;
  a key revoked with the CLI (another process) after a lookup cached it is refused within
  a second;
- an active token's first request is native; an inactive one's gets the native 401, alike;
  with the endpoint down, a new token gets the 503 ``introspection_unavailable``
  byte-identical to Python's, natively, and nothing of it is cached (each request asks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread, run_cli
from _support.native import (
    cli_json,
    feed_changes,
    native_lookups,
    plane,
    until_feed_past,
)
from _support.recorded import Recorded
from bastion.crypto import generate_api_key
from bastion.storage import Database
from gateway.idp_support import FakeIdP

#: Python's answers to this module's requests.
ANSWERS = Recorded(__name__)
INVALID_TOKEN = 'Bearer realm="bastion", error="invalid_token"'


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, echo_module: EchoThread, idp: FakeIdP
) -> Iterator[tuple[BastionProcess, Path]]:
    cwd = tmp_path_factory.mktemp("native-lookups")
    up = echo_module.server.url
    config = cwd / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{cwd}/bastion.db\n"
        "introspection:\n"
        f"  endpoint: {idp.url}/introspect\n"
        "  client_id: bastion-gw\n"
        "  client_secret: s3cret\n"
        "  cache_ttl: 60\n"
        "  negative_cache_ttl: 60\n"
        "  timeout: 2\n"
        "routes:\n"
        "  - name: keys\n"
        "    match: {path: /api/keys}\n"
        f"    upstream: {up}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        "  - name: tokens\n"
        "    match: {path: /api/tokens}\n"
        f"    upstream: {up}\n"
        "    auth: [introspection]\n"
        "    scopes: [orders:read]\n"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=cwd)
    assert migrated.returncode == 0, migrated.stderr
    proc = BastionProcess("-c", str(config), cwd=cwd).start()
    try:
        yield proc, config
    finally:
        proc.stop()


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _lookups(url: str) -> dict[tuple[str, str], int]:
    with httpx.Client(base_url=url, verify=False, timeout=10) as client:
        return native_lookups(client)


def _python_plane(client: httpx.Client) -> str:
    response = client.get("/healthz")  # not a gateway request: Python's plane
    assert response.status_code == 200
    return plane(response)


def _as_recorded(native: httpx.Response, case: str, status: int) -> None:
    """Byte-identical to Python's recorded answer but for the request id and the date."""
    assert native.status_code == status
    ANSWERS.check(case, native)


def _until(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.02)


def _denied(config: Path, reason: str) -> list[Any]:
    async def rows() -> list[Any]:
        db = await Database.connect(f"sqlite:///{config.parent}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return [row for row in page.items if row.reason == reason]
        finally:
            await db.close()

    return asyncio.run(rows())


def _new_key(proc: BastionProcess, config: Path, name: str) -> dict[str, Any]:
    """A key created with the CLI, once this node followed its creation (the feed's
    delivery drops the key's native entry: a later one would cost a second lookup)."""
    before = feed_changes(proc.url)
    key: dict[str, Any] = cli_json(config, "keys", "create", name, "--scope", "orders:read")
    until_feed_past(proc.url, before)
    return key


def test_a_new_keys_first_request_is_native(server: tuple[BastionProcess, Path]) -> None:
    proc, config = server
    key = _new_key(proc, config, "first")
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        python = _python_plane(client)
        before = _lookups(proc.url)
        first, second = (client.get("/api/keys/1", headers=_bearer(key["key"])) for _ in range(2))
        after = _lookups(proc.url)
    for response in (first, second):
        assert response.status_code == 200, response.text
        assert plane(response) != python
        seen = {k.lower(): v for k, v in response.json()["headers"].items()}
        assert seen["x-bastion-key-id"] == key["id"]
        assert "authorization" not in seen
    assert after[("api_key", "found")] == before.get(("api_key", "found"), 0) + 1
    assert after[("api_key", "lost")] == before.get(("api_key", "lost"), 0)


def test_an_unknown_keys_first_request_is_refused_natively_alike(
    server: tuple[BastionProcess, Path],
) -> None:
    proc, config = server
    unknown = generate_api_key()  # well formed, never stored
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        python = _python_plane(client)
        before = _lookups(proc.url)
        native = client.get("/api/keys/1", headers=_bearer(unknown))
        after = _lookups(proc.url)
    assert plane(native) != python
    _as_recorded(native, "unknown key", 401)
    assert native.json()["reason"] == "invalid_api_key"
    assert native.headers["www-authenticate"] == INVALID_TOKEN
    assert after[("api_key", "refused")] == before.get(("api_key", "refused"), 0) + 1
    # Each 401 is one gateway.denied row, the native one as Python records its own.
    rid = native.headers["x-request-id"]
    _until(lambda: any(r.request_id == rid for r in _denied(config, "invalid_api_key")), 5.0)
    (row,) = [r for r in _denied(config, "invalid_api_key") if r.request_id == rid]
    assert (row.route, row.ip, row.key_id, row.subject) == ("keys", "127.0.0.1", None, None)
    assert (row.data["status"], row.data["step"]) == (401, "authenticate")


def test_concurrent_first_requests_of_a_new_key_make_one_lookup(
    server: tuple[BastionProcess, Path],
) -> None:
    proc, config = server
    key = _new_key(proc, config, "burst")
    count = 20

    async def burst() -> tuple[str, list[httpx.Response]]:
        clients = [
            httpx.AsyncClient(base_url=proc.url, verify=False, timeout=10) for _ in range(count)
        ]
        try:
            # Open every connection first (Python's /healthz), so the key's requests arrive
            # together.
            opened = await asyncio.gather(*(c.get("/healthz") for c in clients))
            responses = await asyncio.gather(
                *(
                    c.get(f"/api/keys/{n}", headers=_bearer(key["key"]))
                    for n, c in enumerate(clients)
                )
            )
            return plane(opened[0]), list(responses)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    before = _lookups(proc.url)
    python, responses = asyncio.run(burst())
    after = _lookups(proc.url)
    assert [r.status_code for r in responses] == [200] * count
    assert [plane(r) != python for r in responses] == [True] * count
    assert after[("api_key", "found")] == before.get(("api_key", "found"), 0) + 1
    assert sum(after.values()) == sum(before.values()) + 1


def test_a_revocation_after_a_lookup_takes_effect_within_a_second(
    server: tuple[BastionProcess, Path],
) -> None:
    proc, config = server
    key = _new_key(proc, config, "revoked")
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        python = _python_plane(client)
        allowed = client.get("/api/keys/1", headers=_bearer(key["key"]))
        assert (allowed.status_code, plane(allowed) != python) == (200, True)
        cli_json(config, "keys", "revoke", key["id"])
        revoked_at = time.monotonic()
        _until(
            lambda: client.get("/api/keys/1", headers=_bearer(key["key"])).status_code == 401, 1.0
        )
        assert time.monotonic() - revoked_at < 1.0
        refused = client.get("/api/keys/1", headers=_bearer(key["key"]))
    assert (refused.status_code, refused.json()["reason"]) == (401, "invalid_api_key")
    assert plane(refused) != python


def _active(sub: str) -> dict[str, Any]:
    return {
        "active": True,
        "sub": sub,
        "client_id": "shop-app",
        "scope": "orders:read",
        "exp": int(time.time()) + 600,
    }


def test_introspection_first_requests_are_native(
    server: tuple[BastionProcess, Path], idp: FakeIdP
) -> None:
    proc, _ = server
    idp.answers["tok-alive"] = _active("alice")
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        python = _python_plane(client)
        before, hits = _lookups(proc.url), idp.hits["introspect"]

        # Active: the first request is native, with the token's identity upstream.
        alive = client.get("/api/tokens/1", headers=_bearer("tok-alive"))
        assert (alive.status_code, plane(alive) != python) == (200, True), alive.text
        seen = {k.lower(): v for k, v in alive.json()["headers"].items()}
        assert (seen["x-bastion-subject"], seen["x-bastion-client"]) == ("alice", "shop-app")
        assert idp.hits["introspect"] == hits + 1

        # Inactive: the native 401 from the first request, as Python answered it.
        dead = client.get("/api/tokens/1", headers=_bearer("tok-dead"))
        assert plane(dead) != python
        _as_recorded(dead, "inactive token", 401)
        assert dead.headers["www-authenticate"] == INVALID_TOKEN
        assert dead.json()["reason"] == "invalid_token"
        assert idp.hits["introspect"] == hits + 2

        # The endpoint down: Python's 503, natively, alike; never cached (each asks again).
        idp.down = True
        try:
            down = [client.get("/api/tokens/1", headers=_bearer("tok-new")) for _ in range(2)]
        finally:
            idp.down = False
        assert [plane(r) != python for r in down] == [True, True]
        for response in down:
            _as_recorded(response, "introspection down", 503)
        assert down[0].json()["reason"] == "introspection_unavailable"
        assert down[0].headers["retry-after"] == "1"
        assert "www-authenticate" not in down[0].headers
        assert idp.hits["introspect"] == hits + 4
        after = _lookups(proc.url)
    for outcome, more in (("found", 1), ("refused", 1), ("unavailable", 2), ("lost", 0)):
        key = ("introspection", outcome)
        assert after[key] == before.get(key, 0) + more, key


def test_a_lookup_slower_than_a_second_is_waited_for(
    server: tuple[BastionProcess, Path], idp: FakeIdP
) -> None:
    """An endpoint slower than a second but within its `timeout` (2 s here) is waited for:
    the first request of its token, and those coalesced behind it, are served. (The native
    wait was 1 s: such a lookup was lost and a good credential's first requests got a 503 —
    as a loaded machine's store read did to a new API key's first request.) Past the
    timeout, Python's own 503 ``introspection_unavailable`` answers: a failed lookup, not a
    lost one."""
    proc, _ = server
    idp.answers["tok-slow"] = _active("carol")
    idp.answers["tok-slower"] = _active("dave")
    before = _lookups(proc.url)

    async def first_requests(token: str, count: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=proc.url, verify=False, timeout=20) as client:
            return await asyncio.gather(
                *(client.get("/api/tokens/1", headers=_bearer(token)) for _ in range(count))
            )

    idp.introspect_delay = 1.4
    try:
        started = time.monotonic()
        slow = asyncio.run(first_requests("tok-slow", 5))
        took = time.monotonic() - started
        idp.introspect_delay = 3.0
        slower = asyncio.run(first_requests("tok-slower", 1))[0]
    finally:
        idp.introspect_delay = 0.0
    assert [r.status_code for r in slow] == [200] * 5, [r.text for r in slow]
    assert took >= 1.4
    assert slower.status_code == 503, slower.text
    assert slower.json()["reason"] == "introspection_unavailable"
    assert slower.headers["retry-after"] == "1"
    after = _lookups(proc.url)
    for outcome, more in (("found", 1), ("unavailable", 1), ("lost", 0)):
        key = ("introspection", outcome)
        assert after[key] == before.get(key, 0) + more, key
