"""End to end: ``/auth/verify`` is decided by the native decision path, as Python decides it.

A real ``bastion serve`` (``tls: off``, ``trusted_proxies: [127.0.0.1]``) is asked directly
over HTTP, the way nginx and Caddy ask it. Told apart by the request id's per-plane prefix
(``_support.native.plane``):

- a valid key's first decision is native once its lookup answered (Python looks the key up
  and pushes it), and so are the next: 200 with the head Python gave (identity headers,
  request id, ``Cache-Control: no-store``, empty body), ``RateLimit`` headers, then a
  native 429;
- an unknown key's refusals are native and byte-identical to Python's 401, an
  authorization refusal native and byte-identical to the 403 Python rendered (recorded in
  ``tests/vectors/twins/test_native_forward_auth.json``);
- the native refusals are ``gateway.denied`` rows with ``data.door = "forward_auth"``;
- attacks: the other header family, a judged header repeated, a caller that is not a
  trusted proxy (both families) are refused natively, never judged, exactly as Python
  refuses them (400 ``forward_auth_ambiguous``, 403 ``forward_auth_untrusted``; compared
  with Python's recorded answers in ``tests/features/native_front/test_native_edges.py``);
  a client-sent ``X-Forwarded-For`` from a trusted proxy's client is the address limited.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson

from _support import BastionProcess, EchoThread, run_cli
from _support.native import cli_json, plane
from _support.recorded import Recorded, answer
from bastion.crypto import generate_api_key
from bastion.storage import Database

NGINX = ("X-Original-Method", "X-Original-URI")
FORWARDED = ("X-Forwarded-Method", "X-Forwarded-Uri")
RECORDED = Recorded(__name__)


def _config(tmp_path: Path, upstream: str, *, family: str, trusted: str) -> Path:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\n"
        f"data_dir: {tmp_path}/data\n"
        "tls: off\n"
        f"trusted_proxies: [{trusted}]\n"
        f"forward_auth: {{headers: {family}}}\n"
        "routes:\n"
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "    scopes: {GET: [orders:read], '*': [orders:write]}\n"
        "  - name: limited\n"
        "    match: {path: /api/limited}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "    limits: [{per: ip, rate: 2/hour}]\n"
        "  - name: internal\n"
        "    match: {path: /internal}\n"
        f"    upstream: {upstream}\n"
        "    public: true\n"
        "    ip: {allow: [10.0.0.0/8]}\n"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    return config


def _ask(
    client: httpx.Client,
    family: tuple[str, str],
    method: str,
    uri: str,
    *extra: tuple[str, str],
) -> httpx.Response:
    headers = [(family[0], method), (family[1], uri), *extra]
    return client.get("/auth/verify", headers=headers)


def _bearer(key: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {key}")


def _head(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The response head but for the request id (both headers) and the date."""
    rid = response.headers["x-request-id"].encode()
    return [
        (name.lower(), value.replace(rid, b"RID"))
        for name, value in response.headers.raw
        if name.lower() not in (b"date", b"x-request-id")
    ]


def _answer(response: httpx.Response, key_id: str) -> dict[str, Any]:
    """The answer as recorded (``_support.recorded.answer``), the key's id as ``KEY_ID``."""
    return orjson.loads(orjson.dumps(answer(response)).replace(key_id.encode(), b"KEY_ID"))


def _denied(db_path: Path) -> list[Any]:
    async def rows() -> list[Any]:
        db = await Database.connect(f"sqlite:///{db_path}")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return list(page.items)
        finally:
            await db.close()

    return asyncio.run(rows())


def test_decisions_are_native_and_answered_as_python_answers(
    tmp_path: Path, echo: EchoThread
) -> None:
    config = _config(tmp_path, echo.server.url, family="nginx", trusted="127.0.0.1")
    key = cli_json(config, "keys", "create", "shop", "--scope", "orders:read")
    unknown = generate_api_key()
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, timeout=10) as client,
    ):
        # The key's first decision (after its lookup), then one from the native cache.
        first = _ask(client, NGINX, "GET", "/api/./orders/7?x=1", _bearer(key["key"]))
        second = _ask(client, NGINX, "GET", "/api/orders/7?x=1", _bearer(key["key"]))
        assert (first.status_code, second.status_code) == (200, 200)
        python, native = plane(client.get("/healthz")), plane(second)
        assert python != native
        assert plane(first) == native
        assert _head(first) == _head(second)
        assert _answer(first, key["id"]) == RECORDED["allowed GET /api/orders/7?x=1"]
        assert _answer(second, key["id"]) == RECORDED["allowed GET /api/orders/7?x=1"]
        assert second.content == b""
        assert second.headers["x-bastion-key-id"] == key["id"]
        assert second.headers["x-bastion-scopes"] == "orders:read"
        assert second.headers["x-bastion-subject"] == first.headers["x-bastion-subject"] != ""
        assert second.headers["x-bastion-request-id"] == second.headers["x-request-id"]
        assert second.headers["cache-control"] == "no-store"
        assert "x-bastion-client" not in second.headers
        assert len(echo.server.received) == 0  # a decision never reaches the upstream

        # Authorization refusals, natively as Python rendered them (recorded).
        post = _ask(client, NGINX, "POST", "/api/orders", _bearer(key["key"]))
        assert (post.status_code, post.json()["reason"]) == (403, "insufficient_scope")
        assert plane(post) == native
        assert post.headers["www-authenticate"] == (
            'Bearer realm="bastion", error="insufficient_scope", scope="orders:write"'
        )
        RECORDED.check("POST /api/orders 403 insufficient_scope", post)

        # The limit step, natively: RateLimit headers on the 200s, then a 429.
        allowed = [_ask(client, NGINX, "GET", "/api/limited", _bearer(key["key"])) for _ in "ab"]
        assert [(r.status_code, plane(r)) for r in allowed] == [(200, native), (200, native)]
        assert allowed[1].headers["ratelimit-policy"]
        assert allowed[1].headers["ratelimit"]
        limited = _ask(client, NGINX, "GET", "/api/limited", _bearer(key["key"]))
        assert (limited.status_code, plane(limited)) == (429, native)
        assert limited.json()["reason"] == "rate_limited"
        assert limited.headers["content-type"] == "application/problem+json"
        assert int(limited.headers["retry-after"]) > 0
        # The client address is the trusted proxy's X-Forwarded-For: another client is not
        # limited by this one's budget.
        other = _ask(
            client,
            NGINX,
            "GET",
            "/api/limited",
            _bearer(key["key"]),
            ("X-Forwarded-For", "203.0.113.9"),
        )
        assert (other.status_code, plane(other)) == (200, native)

        # With RateLimit headers, the head is Python's too (names in order; the remaining
        # budget differs).
        elsewhere = ("X-Forwarded-For", "198.51.100.1")
        by_first = _ask(client, NGINX, "GET", "/api/./limited", _bearer(key["key"]), elsewhere)
        by_native = _ask(client, NGINX, "GET", "/api/limited", _bearer(key["key"]), elsewhere)
        assert [plane(by_first), plane(by_native)] == [native, native]
        for answered in (by_first, by_native):
            names = [n for n, _ in _answer(answered, key["id"])["headers"]]
            assert names == RECORDED["limited names"]
        assert by_native.headers["ratelimit"] != by_first.headers["ratelimit"]

        # An unknown key: refused natively from the first decision (a lookup), alike.
        refused = [
            _ask(client, NGINX, "GET", "/api/orders", _bearer(unknown)),
            _ask(client, NGINX, "GET", "/api/./orders", _bearer(unknown)),
        ]
        assert [(r.status_code, plane(r)) for r in refused] == [(401, native), (401, native)]
        assert refused[1].json()["reason"] == "invalid_api_key"
        for answered in refused:
            assert _answer(answered, key["id"]) == RECORDED["unknown key 401 invalid_api_key"]

        # IP rules judge the client the trusted proxy names, natively (a spoofed
        # X-Forwarded-For is the proxy's business: it overwrites the client's).
        inside = _ask(client, NGINX, "GET", "/internal", ("X-Forwarded-For", "10.1.2.3"))
        assert (inside.status_code, plane(inside)) == (200, native)
        assert "x-bastion-subject" not in inside.headers  # a public route: anonymous
        outside = _ask(client, NGINX, "GET", "/internal", ("X-Forwarded-For", "203.0.113.7"))
        assert (outside.status_code, plane(outside)) == (403, native)
        assert outside.json()["reason"] == "ip_not_allowed"

        # A judged path not in normal form is judged in it, natively.
        dotted = _ask(client, NGINX, "GET", "/api/x/../orders", _bearer(key["key"]))
        assert (dotted.status_code, plane(dotted)) == (200, native)

    rows = _denied(tmp_path / "bastion.db")
    by_reason = {row.reason: row for row in rows}
    assert set(by_reason) == {
        "insufficient_scope",
        "rate_limited",
        "invalid_api_key",
        "ip_not_allowed",
    }
    # The native refusal: one row, as Python recorded it.
    scope_rows = [r for r in rows if r.reason == "insufficient_scope"]
    assert len(scope_rows) == 1
    assert {
        (r.route, r.ip, r.key_id, r.data["step"], r.data["status"], r.data["path"])
        for r in scope_rows
    } == {("orders", "127.0.0.1", key["id"], "authorize", 403, "/api/orders")}
    ip_row = by_reason["ip_not_allowed"]
    assert (ip_row.route, ip_row.ip, ip_row.data["step"]) == ("internal", "203.0.113.7", "ip")
    for row in rows:
        assert row.data["door"] == "forward_auth"
    limit_row = by_reason["rate_limited"]
    assert (limit_row.route, limit_row.ip, limit_row.key_id) == ("limited", "127.0.0.1", key["id"])
    assert limit_row.data["step"] == "limit" and limit_row.data["status"] == 429
    assert limit_row.data["method"] == "GET" and limit_row.data["path"] == "/api/limited"
    assert [r.data["step"] for r in rows if r.reason == "invalid_api_key"] == [
        "authenticate",
        "authenticate",
    ]


def test_spoofed_judged_headers_are_refused_never_judged(tmp_path: Path, echo: EchoThread) -> None:
    config = _config(tmp_path, echo.server.url, family="nginx", trusted="127.0.0.1")
    key = cli_json(config, "keys", "create", "shop", "--scope", "orders:read")
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, timeout=10) as client,
    ):
        warm = _ask(client, NGINX, "GET", "/api/orders", _bearer(key["key"]))
        assert warm.status_code == 200
        native = plane(warm)
        assert native != plane(client.get("/healthz"))
        attacks: list[tuple[tuple[str, str], ...]] = [
            # The other family, as a client would forge it through nginx.
            (("X-Forwarded-Uri", "/api/orders"),),
            (("X-Forwarded-Method", "GET"),),
            # A judged header twice: which one would a proxy have meant?
            (("X-Original-URI", "/api/orders"),),
            (("X-Original-Method", "GET"),),
            (("X-Forwarded-Host", "a.example"), ("X-Forwarded-Host", "b.example")),
        ]
        for extra in attacks:
            response = _ask(client, NGINX, "GET", "/api/orders", _bearer(key["key"]), *extra)
            assert response.status_code == 400, extra
            assert response.json()["reason"] == "forward_auth_ambiguous", extra
            assert plane(response) == native, extra
        for method, uri in (("get", "/api/orders"), ("GET", "api/orders"), ("GET", "")):
            response = _ask(client, NGINX, method, uri, _bearer(key["key"]))
            assert response.status_code == 400, (method, uri)
            assert response.json()["reason"] == "forward_auth_bad_request"
            assert plane(response) == native, (method, uri)
        missing = client.get("/auth/verify", headers=[_bearer(key["key"])])
        assert (missing.status_code, missing.json()["reason"]) == (400, "forward_auth_bad_request")
        # Still judged natively once the request is plain again.
        again = _ask(client, NGINX, "GET", "/api/orders", _bearer(key["key"]))
        assert (again.status_code, plane(again)) == (200, native)


def test_forwarded_family_and_untrusted_callers(tmp_path: Path, echo: EchoThread) -> None:
    trusted_dir, untrusted_dir = tmp_path / "trusted", tmp_path / "untrusted"
    trusted_dir.mkdir()
    untrusted_dir.mkdir()
    trusted = _config(trusted_dir, echo.server.url, family="forwarded", trusted="127.0.0.1")
    key = cli_json(trusted, "keys", "create", "shop", "--scope", "orders:read")
    with (
        BastionProcess("-c", str(trusted), cwd=trusted_dir) as proc,
        httpx.Client(base_url=proc.url, timeout=10) as client,
    ):
        answers = [
            _ask(
                client,
                FORWARDED,
                "GET",
                path,
                _bearer(key["key"]),
                ("X-Forwarded-Host", "shop.example"),
            )
            for path in ("/api/./orders", "/api/orders")
        ]
        assert [r.status_code for r in answers] == [200, 200]
        native = plane(answers[1])
        assert [plane(r) for r in answers] == [native, native]
        assert native != plane(client.get("/healthz"))
        for answered in answers:
            recorded = RECORDED["forwarded allowed GET /api/orders"]
            assert _answer(answered, key["id"]) == recorded
        # The nginx family is what a client forges through Caddy or Traefik.
        forged = _ask(
            client,
            FORWARDED,
            "GET",
            "/api/orders",
            _bearer(key["key"]),
            ("X-Original-URI", "/public"),
        )
        assert (forged.status_code, plane(forged)) == (400, native)
        assert forged.json()["reason"] == "forward_auth_ambiguous"

    # A bastion that trusts another proxy: the decision headers are never believed.
    untrusted = _config(untrusted_dir, echo.server.url, family="nginx", trusted="10.1.2.3")
    other_key = cli_json(untrusted, "keys", "create", "shop", "--scope", "orders:read")
    with (
        BastionProcess("-c", str(untrusted), cwd=untrusted_dir) as proc,
        httpx.Client(base_url=proc.url, timeout=10) as client,
    ):
        # The route itself is served natively to this client (the key is pushed by then).
        served = [client.get("/api/orders", headers=[_bearer(other_key["key"])]) for _ in "ab"]
        assert [r.status_code for r in served] == [200, 200]
        native = plane(served[1])
        for family in (NGINX, FORWARDED):
            for _ in "ab":
                response = _ask(client, family, "GET", "/api/orders", _bearer(other_key["key"]))
                assert response.status_code == 403, family
                assert response.json()["reason"] == "forward_auth_untrusted"
                assert plane(response) == native
