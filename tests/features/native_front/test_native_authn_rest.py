"""End to end: the credentials the native core used to defer, now answered natively, alike.

One ``bastion serve`` (SQLite, a recording echo upstream, a local IdP that is both a trusted
issuer and the RFC 7662 endpoint) with three native routes: ``keys`` (``auth: [api_key]``),
``tokens`` (``auth: [introspection]``) and ``idp`` (the IdP's JWTs). Each answer below comes
from the native plane (the request id's per-plane prefix) and, for a refusal, is byte-identical
but for the request id and the date to what Python's pipeline answered to the same request
(recorded in ``tests/vectors/twins/test_native_authn_rest.json``):

- two API keys, an overlong or a non-ASCII one → Python's ``401 invalid_api_key``;
- two opaque tokens, an overlong or a non-ASCII one → Python's ``401 invalid_token``;
- sender-constrained tokens (``check_binding``): an introspection answer or an IdP token
  bound by DPoP (``cnf.jkt``) or to a certificate the connection does not present → ``401
  invalid_token``; an IdP token with an empty ``cnf`` is a bearer token (``200``);
- a token of a key the IdP rotated in: one ``jwks`` lookup (Python refetches and pushes),
  then the native ``200``; a ``kid`` still unknown within ``min_refresh_interval`` → the
  native ``401 invalid_token``, no fetch; concurrent first requests after a rotation share
  one lookup and one fetch;
- a token of a client disabled with the CLI (another process): one ``client`` lookup, then
  the native ``401 invalid_token`` without another; enabled again, the native ``200``;
- a trusted issuer whose keys were never fetched: its lookup fails, Python's ``503
  issuer_unavailable``, natively;
- an introspection endpoint slower than its ``timeout``: Python's ``503
  introspection_unavailable`` with ``Retry-After: 1``, natively, counted ``outcome="unavailable"``.

Every refusal is one ``gateway.denied`` row at step ``authenticate`` with Python's reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
from starlette.responses import JSONResponse, Response

from _support import BastionProcess, EchoThread, run_cli
from _support.native import native_lookups, plane
from _support.recorded import Recorded
from bastion.apikeys import token_exchange
from bastion.crypto import SigningKeyPair, generate_api_key, sign_jwt
from bastion.protocol import rfc8693
from bastion.storage import Database
from gateway.idp_support import FakeIdP

AUDIENCE = "https://api.test"
RECORDED = Recorded(__name__)
INVALID_TOKEN = 'Bearer realm="bastion", error="invalid_token"'
RETRY = 2.0  # the IdP's min_refresh_interval


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
    cwd = tmp_path_factory.mktemp("authn-rest")
    url = upstream.server.url
    config = cwd / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{cwd}/bastion.db\n"
        "trusted_issuers:\n"
        f"  - issuer: {idp.url}\n"
        f"    audiences: [{AUDIENCE}]\n"
        f"    min_refresh_interval: {RETRY}\n"
        "  - issuer: https://127.0.0.1:9/unreachable\n"
        "    jwks_uri: https://127.0.0.1:9/keys\n"
        f"    audiences: [{AUDIENCE}]\n"
        "    timeout: 1\n"
        "introspection:\n"
        f"  endpoint: {idp.url}/introspect\n"
        "  client_id: bastion-gw\n"
        "  client_secret: s3cret\n"
        "  timeout: 3\n"
        "routes:\n"
        "  - name: keys\n"
        "    match: {path: /api/keys}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        "  - name: tokens\n"
        "    match: {path: /api/tokens}\n"
        f"    upstream: {url}\n"
        "    auth: [introspection]\n"
        "    scopes: [orders:read]\n"
        "  - name: own\n"
        "    match: {path: /api/own}\n"
        f"    upstream: {url}\n"
        "    auth: [jwt]\n"
        "    scopes: [orders:read]\n"
        "  - name: idp\n"
        "    match: {path: /api/idp}\n"
        f"    upstream: {url}\n"
        "    auth: [jwt]\n"
        f"    jwt: {{issuers: [{idp.url}]}}\n"
        "    scopes: [orders:read]\n"
        "  - name: gone\n"
        "    match: {path: /api/gone}\n"
        f"    upstream: {url}\n"
        "    auth: [jwt]\n"
        "    jwt: {issuers: [https://127.0.0.1:9/unreachable]}\n"
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


#: Every native refusal of this module: request id → (status, reason, route).
_REFUSED: dict[str, tuple[int, str, str]] = {}


def _python_plane(http: httpx.Client) -> str:
    response = http.get("/healthz")  # not a gateway request: Python's plane
    assert response.status_code == 200
    return plane(response)


def _refused_alike(
    http: httpx.Client,
    upstream: EchoThread,
    route: str,
    headers: list[tuple[str, Any]],
    *,
    status: int,
    reason: str,
    challenge: str | None,
) -> httpx.Response:
    """Natively refused, byte-identical to Python's recorded answer; nothing proxied."""
    python = _python_plane(http)
    before = len(upstream.server.received)
    native = http.get(f"/api/{route}/1", headers=headers)
    assert (native.status_code, native.json()["reason"]) == (status, reason), native.text
    assert plane(native) != python
    assert native.headers.get("www-authenticate") == challenge
    RECORDED.check(f"{route} {status} {reason}", native)
    assert len(upstream.server.received) == before, "a refused request was proxied"
    _REFUSED[native.headers["x-request-id"]] = (status, reason, route)
    return native


def test_an_issuer_never_fetched_is_python_s_503_natively(
    http: httpx.Client, upstream: EchoThread
) -> None:
    gone = SigningKeyPair.generate("ES256")
    now = int(time.time())
    claims = {
        "iss": "https://127.0.0.1:9/unreachable",
        "sub": "x",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    before = native_lookups(http)
    refused = _refused_alike(
        http,
        upstream,
        "gone",
        _bearer(sign_jwt(claims, gone, typ="at+jwt")),
        status=503,
        reason="issuer_unavailable",
        challenge=None,
    )
    assert refused.headers["retry-after"] == "1"
    after = native_lookups(http)
    assert after[("jwks", "unavailable")] == before.get(("jwks", "unavailable"), 0) + 1


def _cli(server: BastionProcess, *args: str) -> Any:
    result = run_cli(*args, "--json", env={"BASTION_CONFIG": "bastion.yaml"}, cwd=server.cwd)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def _bearer(*tokens: str | bytes) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for token in tokens:
        raw = token if isinstance(token, bytes) else token.encode("ascii")
        out.append(("Authorization", b"Bearer " + raw))
    return out


def test_keys_python_refuses_before_any_lookup(http: httpx.Client, upstream: EchoThread) -> None:
    before = native_lookups(http)
    key, other = generate_api_key(), generate_api_key()
    for headers in (
        _bearer(key, other),  # which one would act?
        _bearer(key + "x" * 60),  # longer than any key
        _bearer(key[:-3].encode("ascii") + "é".encode()),  # not ASCII
    ):
        refused = _refused_alike(
            http,
            upstream,
            "keys",
            headers,
            status=401,
            reason="invalid_api_key",
            challenge=INVALID_TOKEN,
        )
        assert refused.json()["detail"], refused.text
    # Refused before any lookup, as Python does.
    after = native_lookups(http)
    assert {k: n for k, n in after.items() if k[0] == "api_key"} == {
        k: before.get(k, 0) for k in after if k[0] == "api_key"
    }


def test_a_key_from_outside_its_ip_allow_list_is_refused_natively(
    server: BastionProcess, http: httpx.Client, upstream: EchoThread
) -> None:
    key = _cli(
        server, "keys", "create", "fenced", "--scope", "orders:read", "--ip-allow", "10.0.0.0/8"
    )["key"]
    refused = _refused_alike(
        http,
        upstream,
        "keys",
        _bearer(key),
        status=403,
        reason="api_key_ip_not_allowed",
        challenge=None,
    )
    assert refused.json()["title"] == "API key not allowed from this address"


def test_opaque_tokens_python_refuses_before_any_lookup(
    http: httpx.Client, upstream: EchoThread, idp: FakeIdP
) -> None:
    hits = idp.hits["introspect"]
    for headers in (
        _bearer("opaque-one", "opaque-two"),
        _bearer("o" * 9000),
        _bearer("caf\xe9".encode("latin-1")),
    ):
        _refused_alike(
            http,
            upstream,
            "tokens",
            headers,
            status=401,
            reason="invalid_token",
            challenge=INVALID_TOKEN,
        )
    assert idp.hits["introspect"] == hits, "nothing was introspected"


def _x5t(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _active(sub: str, **extra: Any) -> dict[str, Any]:
    return {
        "active": True,
        "sub": sub,
        "client_id": "shop-app",
        "scope": "orders:read",
        "exp": int(time.time()) + 600,
        **extra,
    }


def test_bound_introspection_answers_are_refused_natively(
    http: httpx.Client, upstream: EchoThread, idp: FakeIdP
) -> None:
    idp.answers["tok-dpop"] = _active("dave", cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2Hg"})
    idp.answers["tok-cert"] = _active("carol", cnf={"x5t#S256": _x5t(b"some certificate")})
    idp.answers["tok-empty-cnf"] = _active("erin", cnf={})
    before = native_lookups(http)
    for token in ("tok-dpop", "tok-cert"):
        # The first request looks the answer up, then refuses it natively.
        _refused_alike(
            http,
            upstream,
            "tokens",
            _bearer(token),
            status=401,
            reason="invalid_token",
            challenge=INVALID_TOKEN,
        )
    python = _python_plane(http)
    plain = http.get("/api/tokens/1", headers=_bearer("tok-empty-cnf"))
    assert (plain.status_code, plane(plain) != python) == (200, True), plain.text
    after = native_lookups(http)
    assert after[("introspection", "found")] == before.get(("introspection", "found"), 0) + 3


def _idp_token(idp: FakeIdP, key: SigningKeyPair, **extra: Any) -> str:
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
        **extra,
    }
    return sign_jwt(claims, key, typ="at+jwt")


def test_a_rotated_issuer_key_is_one_lookup_then_native(
    http: httpx.Client, upstream: EchoThread, idp: FakeIdP
) -> None:
    python = _python_plane(http)
    # Whatever fetched the IdP's set before, a new key is unknown to it now.
    time.sleep(RETRY)
    rotated = SigningKeyPair.generate("ES256")
    idp.keys.append(rotated)
    before, fetches = native_lookups(http), idp.hits["jwks"]
    first = http.get("/api/idp/1", headers=_bearer(_idp_token(idp, rotated)))
    assert (first.status_code, plane(first) != python) == (200, True), first.text
    assert idp.hits["jwks"] == fetches + 1
    after = native_lookups(http)
    assert after[("jwks", "found")] == before.get(("jwks", "found"), 0) + 1

    # A kid nobody publishes, within min_refresh_interval of that fetch: Python would
    # not refetch, so it is refused natively (no fetch, no lookup), as Python refused it.
    stranger = SigningKeyPair.generate("ES256")
    _refused_alike(
        http,
        upstream,
        "idp",
        _bearer(_idp_token(idp, stranger)),
        status=401,
        reason="invalid_token",
        challenge=INVALID_TOKEN,
    )
    assert idp.hits["jwks"] == fetches + 1
    assert native_lookups(http)[("jwks", "found")] == after[("jwks", "found")]

    # Bound tokens of the IdP (check_binding): DPoP, a certificate not presented.
    for cnf in ({"jkt": "0ZcOCORZNYy"}, {"x5t#S256": _x5t(b"cert")}, {"x5t#S256": 1}):
        _refused_alike(
            http,
            upstream,
            "idp",
            _bearer(_idp_token(idp, rotated, cnf=cnf)),
            status=401,
            reason="invalid_token",
            challenge=INVALID_TOKEN,
        )
    unbound = http.get("/api/idp/1", headers=_bearer(_idp_token(idp, rotated, cnf={})))
    assert (unbound.status_code, plane(unbound) != python) == (200, True), unbound.text

    # Past the interval, another rotation: 12 concurrent first requests, one lookup,
    # one fetch, 12 native answers.
    time.sleep(RETRY)
    newest = SigningKeyPair.generate("ES256")
    idp.keys.append(newest)
    before, fetches = native_lookups(http), idp.hits["jwks"]
    tokens = [_idp_token(idp, newest) for _ in range(12)]
    with ThreadPoolExecutor(len(tokens)) as pool:
        answers = list(pool.map(lambda t: http.get("/api/idp/1", headers=_bearer(t)), tokens))
    assert [(r.status_code, plane(r) != python) for r in answers] == [(200, True)] * 12
    assert idp.hits["jwks"] == fetches + 1
    after = native_lookups(http)
    assert after[("jwks", "found")] == before.get(("jwks", "found"), 0) + 1


def _until_status(http: httpx.Client, token: str, status: int) -> httpx.Response:
    """The answer once the change feed delivered a change made elsewhere."""
    deadline = time.monotonic() + 5
    while (response := http.get("/api/own/1", headers=_bearer(token))).status_code != status:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)
    return response


def test_a_disabled_clients_tokens_are_refused_natively(
    server: BastionProcess, http: httpx.Client, upstream: EchoThread
) -> None:
    python = _python_plane(http)
    client = _cli(
        server,
        "clients",
        "create",
        f"svc-{uuid.uuid4().hex[:6]}",
        "--grant",
        "client_credentials",
        "--scope",
        "orders:read",
    )
    issued = http.post(
        "/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials"},
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    # Native from the first request: the node's new signing key and the client's status
    # are looked up (signing_key, client), then the token is verified natively.
    ok = http.get("/api/own/1", headers=_bearer(token))
    assert (ok.status_code, plane(ok) != python) == (200, True), ok.text

    _cli(server, "clients", "disable", client["client_id"])
    before = native_lookups(http)
    refused = _until_status(http, token, 401)
    assert plane(refused) != python
    assert native_lookups(http)[("client", "refused")] == before.get(("client", "refused"), 0) + 1
    _REFUSED[refused.headers["x-request-id"]] = (401, "invalid_token", "own")
    # Remembered: refused natively again, alike, without another lookup.
    _refused_alike(
        http,
        upstream,
        "own",
        _bearer(token),
        status=401,
        reason="invalid_token",
        challenge=INVALID_TOKEN,
    )
    assert native_lookups(http)[("client", "refused")] == before.get(("client", "refused"), 0) + 1

    _cli(server, "clients", "enable", client["client_id"])
    found = native_lookups(http).get(("client", "found"), 0)
    again = _until_status(http, token, 200)
    assert plane(again) != python
    assert native_lookups(http)[("client", "found")] == found + 1


def test_a_token_exchanged_from_a_key_is_served_natively_as_the_key(
    server: BastionProcess, http: httpx.Client, upstream: EchoThread
) -> None:
    python = _python_plane(http)
    key = _cli(server, "keys", "create", "exchanger", "--scope", "orders:read")
    exchanged = http.post(
        "/oauth2/token",
        data={
            "grant_type": rfc8693.GRANT_TYPE,
            "subject_token": key["key"],
            "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    token = exchanged.json()["access_token"]
    before = native_lookups(http)
    first = http.get("/api/own/1", headers=_bearer(token))
    assert (first.status_code, plane(first) != python) == (200, True), first.text
    assert native_lookups(http)[("exchanged", "found")] == before.get(("exchanged", "found"), 0) + 1
    # Cached as the key's: the next one without a lookup.
    again = http.get("/api/own/1", headers=_bearer(token))
    assert (again.status_code, plane(again) != python) == (200, True), again.text
    assert native_lookups(http)[("exchanged", "found")] == before.get(("exchanged", "found"), 0) + 1

    # The key revoked with the CLI: its tokens are refused, natively, alike.
    _cli(server, "keys", "revoke", key["id"])
    refused = _until_status(http, token, 401)
    assert plane(refused) != python
    _REFUSED[refused.headers["x-request-id"]] = (401, "invalid_token", "own")
    assert native_lookups(http)[("exchanged", "refused")] >= 1
    _refused_alike(
        http,
        upstream,
        "own",
        _bearer(token),
        status=401,
        reason="invalid_token",
        challenge=INVALID_TOKEN,
    )


def test_an_endpoint_past_its_timeout_is_the_native_503(http: httpx.Client, idp: FakeIdP) -> None:
    """The lookup waits for the endpoint up to its own ``timeout`` (3 s here), then Python
    answers its 503 ``introspection_unavailable`` (counted ``unavailable``, nothing cached),
    rendered natively; once the endpoint is quick again the next request is served natively.
    (A *lost* lookup — no answer at all — is proved in ``gateway/test_lookups`` and the
    crate's ``lookup`` tests: since the native wait became a backstop, a slow endpoint no
    longer produces one.)"""
    python = _python_plane(http)
    idp.answers["tok-slow"] = _active("sam")

    def slow(token: str) -> Response:
        time.sleep(3.5)  # the IdP's own thread: longer than the endpoint's timeout (3 s)
        return JSONResponse(idp.answers.get(token, {"active": False}))

    before = native_lookups(http)
    idp.introspect_answer = slow
    try:
        failed = http.get("/api/tokens/1", headers=_bearer("tok-slow"))
    finally:
        idp.introspect_answer = None
    assert (failed.status_code, plane(failed) != python) == (503, True), failed.text
    document = failed.json()
    assert (document["reason"], document["title"]) == (
        "introspection_unavailable",
        "Token introspection unavailable",
    )
    assert failed.headers["retry-after"] == "1"
    assert "www-authenticate" not in failed.headers
    after = native_lookups(http)
    for outcome, more in (("unavailable", 1), ("lost", 0)):
        key = ("introspection", outcome)
        assert after[key] == before.get(key, 0) + more, key
    _REFUSED[failed.headers["x-request-id"]] = (503, "introspection_unavailable", "tokens")
    # Nothing of the failure was cached: the next request asks again and is served natively.
    again = http.get("/api/tokens/1", headers=_bearer("tok-slow"))
    assert (again.status_code, plane(again) != python) == (200, True), again.text


def test_every_native_refusal_is_audited_as_python_records_it(server: BastionProcess) -> None:
    assert _REFUSED, "run with the module's other tests"

    async def denied() -> dict[str, Any]:
        db = await Database.connect(f"sqlite:///{server.cwd}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=5000)
            return {row.request_id: row for row in page.items}
        finally:
            await db.close()

    deadline = time.monotonic() + 10
    rows = asyncio.run(denied())
    while not set(_REFUSED) <= set(rows):
        assert time.monotonic() < deadline, sorted(set(_REFUSED) - set(rows))[:5]
        time.sleep(0.2)
        rows = asyncio.run(denied())
    for rid, (status, reason, route) in _REFUSED.items():
        row = rows[rid]
        outcome = "denied" if status < 500 else "failure"
        assert (row.reason, row.route, row.outcome) == (reason, route, outcome), rid
        assert (row.data["status"], row.data["step"]) == (status, "authenticate"), rid
        assert row.subject is None and row.key_id is None, rid
