"""End to end: the ``authenticate`` refusals the native plane renders itself, alike.

One ``bastion serve`` (SQLite, a recording echo upstream, a local trusted IdP) with four
native routes: ``keys`` (``auth: [api_key]``, CORS), ``both`` (``auth: [api_key, jwt]``,
bastion's own tokens), ``elsewhere`` (bastion's tokens for another audience) and ``idp``
(the IdP's tokens). Each refusal below is answered by the native plane (the request id's
per-plane prefix) and is byte-identical — body and head, but for the request id and the
date — to what Python's pipeline answered to the same request (recorded in
``tests/vectors/twins/test_native_authn_refusals.json``):

- no credential a method of the route reads → ``401 unauthenticated``;
- a key in the query string → ``400 api_key_in_query`` (whatever else the request carries);
- bastion's own tokens the verifier refuses whatever Python holds — ``alg: none``, HS256
  with the public key as the secret, another key under a known ``kid``, ``crit``, a
  tampered payload, oversized, two tokens, another route's audience, a revoked ``jti`` —
  and the IdP's (expired, wrong ``aud`` / ``typ`` / ``iss``, another key under its
  ``kid``) → ``401 invalid_token``;
- a token signed under a ``kid`` the native core does not hold: one ``signing_key`` lookup
  (Python pushes its keys if they hold it), then, still unknown, ``401 invalid_token``.

The forward-auth door (``/auth/verify``, asked as nginx asks it) refuses alike. No refused
request reaches the upstream, and each is one ``gateway.denied`` audit row with Python's
step and reason and one count of ``bastion_gateway_requests_total`` by its code, whichever
plane answered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread, run_cli
from _support.native import plane
from _support.recorded import Recorded
from bastion.crypto import SigningKeyPair, generate_api_key, sign_jwt
from bastion.storage import Database
from gateway.idp_support import FakeIdP

AUDIENCE = "https://api.test"
ORIGIN = "https://app.example"
RECORDED = Recorded(__name__)
UNAUTHENTICATED = 'Bearer realm="bastion"'
INVALID_TOKEN = 'Bearer realm="bastion", error="invalid_token"'
INVALID_REQUEST = 'Bearer realm="bastion", error="invalid_request"'
METRICS_TOKEN = "metrics-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: EchoThread, idp: FakeIdP
) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("authn-refusals")
    url = upstream.server.url
    config = cwd / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{cwd}/bastion.db\n"
        "trusted_proxies: [127.0.0.1]\n"
        "forward_auth: {headers: nginx}\n"
        f"metrics: {{token: {METRICS_TOKEN}}}\n"
        "trusted_issuers:\n"
        f"  - issuer: {idp.url}\n"
        f"    audiences: [{AUDIENCE}]\n"
        "routes:\n"
        "  - name: keys\n"
        "    match: {path: /api/keys}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        f"    cors: {{origins: [{ORIGIN}]}}\n"
        "  - name: both\n"
        "    match: {path: /api/both}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key, jwt]\n"
        "    scopes: [orders:read]\n"
        "  - name: elsewhere\n"
        "    match: {path: /api/elsewhere}\n"
        f"    upstream: {url}\n"
        "    auth: [jwt]\n"
        "    jwt: {audience: https://elsewhere.test}\n"
        "    scopes: [orders:read]\n"
        "  - name: idp\n"
        "    match: {path: /api/idp}\n"
        f"    upstream: {url}\n"
        "    auth: [jwt]\n"
        f"    jwt: {{issuers: [{idp.url}]}}\n"
        "    scopes: [orders:read]\n"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=cwd)
    assert migrated.returncode == 0, migrated.stderr
    proc = BastionProcess("-c", str(config), cwd=cwd).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def http(server: BastionProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as client:
        yield client


#: Every refusal of this module's server: (request id, status, reason, route), for the
#: audit and metrics check.
_REFUSED: list[tuple[str, int, str, str]] = []


def _get(http: httpx.Client, path: str, headers: Any = None, route: str = "") -> httpx.Response:
    """GET ``path`` (of ``route``: the path's second segment by default); a refusal is
    remembered for the audit and metrics check."""
    response = http.get(path, headers=headers)
    if response.status_code >= 400:
        reason = response.json()["reason"]
        route = route or path.split("/")[2]
        _REFUSED.append((response.headers["x-request-id"], response.status_code, reason, route))
    return response


def _planes(http: httpx.Client) -> tuple[str, str]:
    """(Python's, the native front's) request id prefixes."""
    native = plane(_get(http, "/api/keys/1"))
    python = plane(http.get("/healthz"))  # not a gateway request
    assert python != native
    return python, native


def _refused_alike(
    http: httpx.Client,
    upstream: EchoThread,
    path: str,
    headers: list[tuple[str, str]],
    *,
    status: int,
    reason: str,
    challenge: str,
    route: str,
) -> httpx.Response:
    """Ask natively: refused as Python refused (its recorded answer), nothing proxied."""
    _, native_plane = _planes(http)
    before = len(upstream.server.received)
    native = _get(http, path, headers)
    assert (native.status_code, native.json()["reason"]) == (status, reason), native.text
    assert native.headers["www-authenticate"] == challenge
    assert plane(native) == native_plane
    cors = " cors" if any(n == "Origin" for n, _ in headers) else ""
    RECORDED.check(f"{route} {status} {reason}{cors}", native)
    assert len(upstream.server.received) == before, "a refused request was proxied"
    assert route == path.split("/")[2]
    return native


def _bearer(*tokens: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}") for token in tokens]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _payload(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _compact(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token with an arbitrary header; ``sign(signing_input) -> bytes`` (default: none)."""
    signing_input = _b64(orjson.dumps(header)) + "." + _b64(orjson.dumps(claims))
    signature = b"" if sign is None else sign(signing_input.encode("ascii"))
    return signing_input + "." + _b64(signature)


def _own_token(server: BastionProcess, http: httpx.Client) -> tuple[dict[str, Any], str]:
    """A client (client credentials, ``orders:read``) and one of its access tokens."""
    result = run_cli(
        "clients",
        "create",
        f"svc-{uuid.uuid4().hex[:6]}",
        "--grant",
        "client_credentials",
        "--scope",
        "orders:read",
        "--json",
        env={"BASTION_CONFIG": "bastion.yaml"},
        cwd=server.cwd,
    )
    assert result.returncode == 0, result.stderr
    client = json.loads(result.stdout)
    response = http.post(
        "/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials"},
    )
    assert response.status_code == 200, response.text
    return client, str(response.json()["access_token"])


def test_no_credential_and_a_key_in_the_query(http: httpx.Client, upstream: EchoThread) -> None:
    # No credential at all, with the route's CORS headers on the refusal.
    refused = _refused_alike(
        http,
        upstream,
        "/api/keys/1",
        [("Origin", ORIGIN)],
        status=401,
        reason="unauthenticated",
        challenge=UNAUTHENTICATED,
        route="keys",
    )
    assert refused.json()["detail"] == "This route requires authentication."
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    # Credentials no method of the route reads: another scheme, a dotted token on a
    # key-only route, a bare scheme.
    for headers in (
        [("Authorization", "Basic dXNlcjpwYXNz")],
        _bearer("a.b.c"),
        [("Authorization", "Bearer")],
    ):
        _refused_alike(
            http,
            upstream,
            "/api/keys/1",
            headers,
            status=401,
            reason="unauthenticated",
            challenge=UNAUTHENTICATED,
            route="keys",
        )
    _refused_alike(
        http,
        upstream,
        "/api/both/1",
        [("Authorization", "Bearer opaque-token")],
        status=401,
        reason="unauthenticated",
        challenge=UNAUTHENTICATED,
        route="both",
    )
    # A key in the query string: refused before any method, whatever the headers carry.
    key = generate_api_key()
    for path, headers in (
        (f"/api/keys/1?api_key={key}", [("Origin", ORIGIN)]),
        (f"/api/both/1?x=1&k={key.replace('_', '%5F')}", _bearer("a.b.c")),
    ):
        refused = _refused_alike(
            http,
            upstream,
            path,
            headers,
            status=400,
            reason="api_key_in_query",
            challenge=INVALID_REQUEST,
            route=path.split("/")[2],
        )
        assert key not in refused.text


def test_own_tokens_python_refuses_are_refused_natively(
    server: BastionProcess, http: httpx.Client, upstream: EchoThread
) -> None:
    client, token = _own_token(server, http)
    accepted = [_get(http, "/api/both/1", _bearer(token)) for _ in range(2)]
    assert [r.status_code for r in accepted] == [200, 200]
    jwks = http.get("/oauth2/jwks.json").json()["keys"]
    header = orjson.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    kid, alg = header["kid"], header["alg"]
    (public,) = [k for k in jwks if k["kid"] == kid]
    claims = _payload(token)
    impostor = SigningKeyPair.from_private_bytes(
        SigningKeyPair.generate(alg).private_bytes(), kid=kid, alg=alg
    )
    secret = json.dumps(public, sort_keys=True).encode()
    forged = {
        "alg none": _compact({"alg": "none", "kid": kid, "typ": "at+jwt"}, claims),
        "HS256 with the public key": _compact(
            {"alg": "HS256", "kid": kid, "typ": "at+jwt"},
            claims,
            lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
        ),
        "another key, a known kid": sign_jwt(claims, impostor, typ="at+jwt"),
        "crit": _compact({"alg": alg, "kid": kid, "typ": "at+jwt", "crit": ["exp"]}, claims)
        + "AAAA",
        "tampered": token.split(".")[0]
        + "."
        + _b64(orjson.dumps({**claims, "scope": "orders:read admin"}))
        + "."
        + token.split(".")[2],
        "oversized": _b64(b'{"alg":"ES256"}') + "." + "e" * 9000 + ".AAAA",
    }
    for name, bad in forged.items():
        refused = _refused_alike(
            http,
            upstream,
            "/api/both/1",
            _bearer(bad),
            status=401,
            reason="invalid_token",
            challenge=INVALID_TOKEN,
            route="both",
        )
        assert refused.json()["detail"] == "The access token is invalid, expired or revoked.", name
    # Two tokens (which one would act?), even a valid one among them.
    _refused_alike(
        http,
        upstream,
        "/api/both/1",
        _bearer(token, forged["tampered"]),
        status=401,
        reason="invalid_token",
        challenge=INVALID_TOKEN,
        route="both",
    )
    # A valid token of another route's audience.
    _refused_alike(
        http,
        upstream,
        "/api/elsewhere/1",
        _bearer(token),
        status=401,
        reason="invalid_token",
        challenge=INVALID_TOKEN,
        route="elsewhere",
    )
    # Another key under a kid nobody knows: one signing_key lookup (Python's keys may be
    # newer; they are not), then Python's 401, natively, alike.
    stranger = SigningKeyPair.generate(alg)
    _refused_alike(
        http,
        upstream,
        "/api/both/1",
        _bearer(sign_jwt(claims, stranger, typ="at+jwt")),
        status=401,
        reason="invalid_token",
        challenge=INVALID_TOKEN,
        route="both",
    )

    # Revoked (RFC 7009): refused natively once the deny-list reaches the native core.
    revoked = http.post(
        "/oauth2/revoke",
        auth=(client["client_id"], client["client_secret"]),
        data={"token": token},
    )
    assert revoked.status_code == 200, revoked.text
    deadline = time.monotonic() + 5
    while _get(http, "/api/both/1", _bearer(token)).status_code != 401:
        assert time.monotonic() < deadline, "the revocation did not arrive"
        time.sleep(0.05)
    _refused_alike(
        http,
        upstream,
        "/api/both/1",
        _bearer(token),
        status=401,
        reason="invalid_token",
        challenge=INVALID_TOKEN,
        route="both",
    )


def _idp_claims(idp: FakeIdP, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": idp.url,
        "sub": "alice@idp",
        "aud": AUDIENCE,
        "client_id": "spa",
        "scope": "orders:read",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


def test_trusted_issuer_tokens_python_refuses_are_refused_natively(
    http: httpx.Client, upstream: EchoThread, idp: FakeIdP
) -> None:
    key = idp.key
    # The first token makes Python fetch the IdP's keys and push them.
    warm = _get(http, "/api/idp/1", _bearer(sign_jwt(_idp_claims(idp), key, typ="at+jwt")))
    assert warm.status_code == 200, warm.text
    now = int(time.time())
    impostor = SigningKeyPair.from_private_bytes(
        SigningKeyPair.generate("ES256").private_bytes(), kid=key.kid, alg="ES256"
    )
    forged = {
        "expired": sign_jwt(_idp_claims(idp, iat=now - 600, exp=now - 120), key, typ="at+jwt"),
        "not yet valid": sign_jwt(_idp_claims(idp, nbf=now + 600), key, typ="at+jwt"),
        "wrong aud": sign_jwt(_idp_claims(idp, aud="https://other.api"), key, typ="at+jwt"),
        "wrong typ": sign_jwt(_idp_claims(idp), key, typ="JWT"),
        "wrong iss": sign_jwt(_idp_claims(idp, iss="https://evil.example"), key, typ="at+jwt"),
        "another key, its kid": sign_jwt(_idp_claims(idp), impostor, typ="at+jwt"),
        "alg none": _compact({"alg": "none", "kid": key.kid, "typ": "at+jwt"}, _idp_claims(idp)),
    }
    for bad in forged.values():
        _refused_alike(
            http,
            upstream,
            "/api/idp/1",
            _bearer(bad),
            status=401,
            reason="invalid_token",
            challenge=INVALID_TOKEN,
            route="idp",
        )
    valid = _get(http, "/api/idp/1", _bearer(sign_jwt(_idp_claims(idp), key, typ="at+jwt")))
    assert valid.status_code == 200, valid.text


_REQUESTS = re.compile(
    rb'^bastion_gateway_requests_total\{outcome="([a-z_]+)",route="([a-z]+)"\} ([0-9.e+]+)$', re.M
)


def test_forward_auth_decisions_refuse_alike(http: httpx.Client) -> None:
    """The forward-auth door goes through the same decision: the same native refusals."""
    _, native_plane = _planes(http)
    key = generate_api_key()
    for uri, credential, status, reason in (
        ("/api/keys/1", [], 401, "unauthenticated"),
        (f"/api/keys/1?api_key={key}", [], 400, "api_key_in_query"),
        ("/api/both/1", _bearer("e30.e30.AAAA"), 401, "invalid_token"),
    ):
        asked = [("X-Original-Method", "GET"), ("X-Original-URI", uri), *credential]
        route = uri.split("/")[2].partition("?")[0]
        native = _get(http, "/auth/verify", asked, route)
        assert (native.status_code, native.json()["reason"]) == (status, reason), native.text
        assert plane(native) == native_plane
        RECORDED.check(f"verify {route} {status} {reason}", native)


def test_every_refusal_is_one_audit_row_and_counted_as_python_records_it(
    server: BastionProcess, http: httpx.Client
) -> None:
    assert _REFUSED, "run with the module's other tests"
    wanted = {rid: (status, reason, route) for rid, status, reason, route in _REFUSED}

    async def denied() -> dict[str, Any]:
        db = await Database.connect(f"sqlite:///{server.cwd}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=5000)
            return {row.request_id: row for row in page.items}
        finally:
            await db.close()

    deadline = time.monotonic() + 10
    rows = asyncio.run(denied())
    while not set(wanted) <= set(rows):
        assert time.monotonic() < deadline, sorted(set(wanted) - set(rows))[:5]
        time.sleep(0.2)
        rows = asyncio.run(denied())
    doors = set()
    for rid, (status, reason, route) in wanted.items():
        row = rows[rid]
        assert (row.reason, row.route, row.outcome) == (reason, route, "denied"), rid
        assert row.data["status"] == status and row.data["step"] == "authenticate", rid
        assert row.subject is None and row.key_id is None and row.client_id is None, rid
        doors.add(row.data.get("door", "gateway"))
    assert doors == {"gateway", "forward_auth"}
    # Both planes count into the same series: exactly one per refusal.
    expected = Counter((route, reason) for _, _, reason, route in _REFUSED)
    scraped = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    counted = {
        (route.decode(), outcome.decode()): float(value)
        for outcome, route, value in _REQUESTS.findall(scraped.content)
        if outcome != b"allowed"
    }
    assert counted == {key: float(n) for key, n in expected.items()}
