"""End to end: ``auth: [jwt, introspection]`` routes served natively from the introspection cache.

A real local RFC 7662 endpoint (``gateway.idp_support.FakeIdP``, in a thread)
answers bastion's questions; a real ``bastion serve`` (native engine) lists the
route as native. Which plane answered is told by the request id's per-plane
prefix, what the endpoint was asked by its request counter:

- an active opaque token's every request is native (the first asks Python for the
  answer, a lookup: Python asks the endpoint and pushes it), with the identity
  upstream that Python's pipeline sent and no second question;
- an inactive token is refused natively from its first request with Python's
  byte-identical ``401 invalid_token`` (recorded in
  ``tests/vectors/twins/test_native_introspection.json``; no second question), and
  every 401 is one ``gateway.denied`` row;
- an endpoint that is down: Python's ``503 introspection_unavailable`` (rendered
  natively, ``test_native_lookups.py`` compares the bytes), never cached (every
  request asks again);
- the cache deadlines hold natively: an active answer ends at ``cache_ttl``
  (a token revoked at the issuer is then refused), and at the token's ``exp``
  when earlier (then Python asks again); a negative answer ends at
  ``negative_cache_ttl``;
- authorization still applies to a cached answer (the native plane's 403, as Python
  answered it), a dotted token
  is ``jwt``'s (listed first), an API key is never introspected;
- concurrent first requests of one token cost one question (one lookup), all native.
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
from _support.native import cli_json, native_lookups, plane
from _support.recorded import Recorded
from bastion.storage import Database
from gateway.idp_support import FakeIdP, IdPThread

CACHE_TTL = 4.0
NEGATIVE_TTL = 3.0
INVALID_TOKEN = 'Bearer realm="bastion", error="invalid_token"'


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    thread = IdPThread()
    try:
        yield thread.idp
    finally:
        thread.close()


def _config(tmp_path: Path, idp: FakeIdP, upstream: str) -> Path:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\n"
        "introspection:\n"
        f"  endpoint: {idp.url}/introspect\n"
        "  client_id: bastion-gw\n"
        "  client_secret: s3cret\n"
        f"  cache_ttl: {CACHE_TTL}\n"
        f"  negative_cache_ttl: {NEGATIVE_TTL}\n"
        "  timeout: 2\n"
        "routes:\n"
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {upstream}\n"
        "    auth: [jwt, introspection, api_key]\n"
        "    scopes: [orders:read]\n"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    return config


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: Python's answers to this module's requests.
ANSWERS = Recorded(__name__)


def _active(**extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "active": True,
        "sub": "alice",
        "client_id": "shop-app",
        "scope": "orders:read profile",
        "exp": int(time.time()) + 600,
    }
    answer.update(extra)
    return answer


def _forwarded(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.json()["headers"].items()}


def _same_refusal(native: httpx.Response) -> None:
    """Python's recorded 401, byte for byte but for the request id and the date."""
    assert native.status_code == 401
    ANSWERS.check("inactive", native)
    assert native.headers["www-authenticate"] == INVALID_TOKEN
    assert native.json()["reason"] == "invalid_token"


def _until(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)


def test_introspection_answers_are_served_natively_within_their_deadlines(
    tmp_path: Path, idp: FakeIdP, echo: EchoThread
) -> None:
    config = _config(tmp_path, idp, echo.server.url)
    key = cli_json(config, "keys", "create", "shop", "--scope", "orders:read")
    idp.answers["tok-alive"] = _active()
    idp.answers["tok-scopeless"] = _active(sub="carol", scope="profile")
    statuses: list[int] = []
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):

        def get(token: str) -> httpx.Response:
            response = client.get("/api/orders/1", headers=_bearer(token))
            statuses.append(response.status_code)
            return response

        # An API key is api_key's (never introspected): it tells the native plane's prefix.
        python = plane(client.get("/healthz"))  # Python's plane (not a gateway request)
        keyed = [get(key["key"]), get(key["key"])]
        assert [r.status_code for r in keyed] == [200, 200]
        native = plane(keyed[0])
        assert python != native == plane(keyed[1])
        assert idp.hits["introspect"] == 0

        # Active: Python asks once (a lookup) and pushes; native from the first request,
        # with the identity upstream Python's pipeline sent (these three values).
        first, second, third = get("tok-alive"), get("tok-alive"), get("tok-alive")
        assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
        assert [plane(first), plane(second), plane(third)] == [native, native, native]
        assert idp.hits["introspect"] == 1
        assert idp.basic_seen[0].startswith("Basic ")
        seen_n = _forwarded(first)
        assert seen_n["x-bastion-subject"] == "alice"
        assert seen_n["x-bastion-client"] == "shop-app"
        assert seen_n["x-bastion-scopes"] == "orders:read profile"
        assert "authorization" not in seen_n

        # Inactive: the native plane's 401 from the first request, alike, one question.
        dead = [get("tok-dead"), get("tok-dead")]
        assert [plane(r) for r in dead] == [native, native]
        for response in dead:
            _same_refusal(response)
        assert idp.hits["introspect"] == 2

        # A cached answer is still authorized per route: the native plane's 403 from the
        # first request (a lookup), byte-identical to Python's answer, never admitted.
        refused = [get("tok-scopeless"), get("tok-scopeless")]
        assert [plane(r) for r in refused] == [native, native]
        for response in refused:
            assert response.status_code == 403
            assert response.json()["reason"] == "insufficient_scope"
            ANSWERS.check("insufficient_scope", response)
        assert refused[0].headers["www-authenticate"] == (
            'Bearer realm="bastion", error="insufficient_scope", scope="orders:read"'
        )
        assert idp.hits["introspect"] == 3

        # A dotted token is jwt's (listed first): refused (natively: Python refuses a
        # malformed token whatever it holds), never introspected.
        forged = get("not.a.jwt")
        assert (forged.status_code, plane(forged)) == (401, native)
        assert forged.json()["reason"] == "invalid_token"
        assert idp.hits["introspect"] == 3

        # The token's exp ends its cached answer before cache_ttl: Python asks again.
        idp.answers["tok-short"] = _active(sub="bob", exp=int(time.time()) + 3)
        short = get("tok-short")
        assert (short.status_code, plane(short)) == (200, native)
        assert plane(get("tok-short")) == native
        hits = idp.hits["introspect"]
        _until(lambda: get("tok-short") is not None and idp.hits["introspect"] > hits, within=5)
        # (An answer past its exp, within the leeway, is not cached: the lookup asks, then
        # the request is deferred and Python's pipeline asks again.)
        assert idp.hits["introspect"] in (hits + 1, hits + 2)

        # The endpoint is down: Python's 503 for a new token, never cached ...
        idp.answers["tok-fresh"] = _active(sub="dave")
        assert [plane(get("tok-fresh")), plane(get("tok-fresh"))] == [native, native]
        hits = idp.hits["introspect"]
        idp.down = True
        for _ in range(2):
            down = get("tok-new")
            assert down.status_code == 503
            assert down.json()["reason"] == "introspection_unavailable"
            assert plane(down) == native
        assert idp.hits["introspect"] == hits + 2
        # ... while cached answers are still served natively until their deadline.
        fresh = get("tok-fresh")
        assert (fresh.status_code, plane(fresh)) == (200, native)

        # Revoked at the issuer: seen once cache_ttl has passed, then refused natively.
        idp.down = False
        idp.answers.pop("tok-fresh")
        _until(lambda: get("tok-fresh").status_code == 401, within=CACHE_TTL + 2)
        again = get("tok-fresh")
        assert (again.status_code, plane(again)) == (401, native)
        # The negative answer ends at negative_cache_ttl: Python asks again (a lookup).
        hits = idp.hits["introspect"]
        _until(
            lambda: get("tok-fresh") is not None and idp.hits["introspect"] > hits,
            within=NEGATIVE_TTL + 2,
        )
        assert idp.hits["introspect"] == hits + 1
        assert plane(get("tok-fresh")) == native

    refusals = statuses.count(401)

    async def denied() -> list[Any]:
        db = await Database.connect(f"sqlite:///{tmp_path}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return list(page.items)
        finally:
            await db.close()

    rows = [row for row in asyncio.run(denied()) if row.data["status"] == 401]
    # Every 401 is one row, as Python recorded it.
    assert len(rows) == refusals
    for row in rows:
        assert (row.reason, row.route, row.ip) == ("invalid_token", "orders", "127.0.0.1")
        assert row.data["step"] == "authenticate"
        assert row.subject is None and row.key_id is None


def test_concurrent_first_requests_of_a_token_cost_one_question(
    tmp_path: Path, idp: FakeIdP, echo: EchoThread
) -> None:
    config = _config(tmp_path, idp, echo.server.url)
    idp.answers["tok-burst"] = _active()
    count = 12

    async def burst(url: str) -> list[httpx.Response]:
        clients = [httpx.AsyncClient(base_url=url, verify=False, timeout=10) for _ in range(count)]
        try:
            await asyncio.gather(*(c.get("/healthz") for c in clients))
            return await asyncio.gather(
                *(
                    c.get(f"/api/orders/{n}", headers=_bearer("tok-burst"))
                    for n, c in enumerate(clients)
                )
            )
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    with BastionProcess("-c", str(config), cwd=tmp_path) as proc:
        responses = asyncio.run(burst(proc.url))
        with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
            native = plane(client.get("/api/orders/x", headers=_bearer("tok-burst")))
            lookups = native_lookups(client)
    assert [r.status_code for r in responses] == [200] * count
    assert idp.hits["introspect"] == 1
    # One lookup; every request answered by the native plane.
    assert [plane(r) for r in responses] == [native] * count
    assert lookups[("introspection", "found")] == 1
