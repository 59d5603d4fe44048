"""End to end: authentication cases the native core used to defer, now decided natively.

One ``bastion serve`` (SQLite, a recording echo upstream) with native routes for bastion's
own tokens (``own``) and for API keys whose ``claims`` / ``roles`` rules read the key's own
claims (``claimed``, ``roled``, ``fenced``). Each answer comes from the native plane (the
request id's per-plane prefix); each refusal is byte-identical to what Python's pipeline
answered to the same request but for the request id and the date, and one ``gateway.denied``
row alike Python's (both recorded in ``tests/vectors/twins/test_native_authn_cases.json``):

- an own token naming no ``kid`` (or ``"kid": null``): Python's verifier requires one,
  ``401 invalid_token``;
- an own token whose ``client_id`` is not a string (``client_is_active(str(...))`` finds
  no client), or whose ``sub`` / ``scope`` has another shape: ``401 invalid_token``;
- an own token valid within the leeway only (past its ``exp``): served, ``200``, and
  never cached (verified again on every request, as Python does);
- an API key on a route whose ``claims`` / ``roles`` name ``key_id`` / ``key_prefix``:
  ``200`` where they hold, Python's ``403 claim_mismatch`` / ``missing_role`` where not;
- ``bastion routes list`` shows every route ``native``;
- a route sending the signed identity assertion while the current signing key is one the
  native core cannot sign with (an RSA key over 4096 bits an older version stored): ``503
  assertion_unavailable``, audited at step ``mutate``, nothing proxied; public routes and
  routes without the assertion are unaffected.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from _support import BastionProcess, EchoThread, run_cli
from _support.gateway_server import audit_rows, plane, row_parts
from _support.recorded import Recorded
from bastion.crypto import SigningKeyPair
from bastion.crypto.envelope import create_keyring_file, load_keyring_file
from bastion.storage import Database
from bastion.storage.models import SigningKey
from bastion.storage.sql.schema import seal_context

INVALID_TOKEN = 'Bearer realm="bastion", error="invalid_token"'
#: The name of each refusal checked (its recorded case), by its request id.
_CASES: dict[str, str] = {}
#: This run's values in audit rows, by the placeholder that stands for them when recorded.
_MASKS: dict[str, str] = {}
RECORDED = Recorded(__name__)


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


def _cli(cwd: Path, *args: str) -> Any:
    result = run_cli(*args, "--json", env={"BASTION_CONFIG": "bastion.yaml"}, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def _routes(url: str, key: dict[str, Any] | None) -> str:
    text = (
        "routes:\n"
        "  - name: own\n"
        "    match: {path: /api/own}\n"
        f"    upstream: {url}\n"
        "    auth: [jwt]\n"
        "    scopes: [orders:read]\n"
    )
    if key is None:
        return text
    return text + (
        "  - name: claimed\n"
        "    match: {path: /api/claimed}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        f"    claims: {{key_id: {key['id']}, key_prefix: {key['prefix']}}}\n"
        "  - name: roled\n"
        "    match: {path: /api/roled}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        f"    roles: [{key['id']}]\n"
        "    roles_claim: key_id\n"
        "  - name: fenced\n"
        "    match: {path: /api/fenced}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        "    claims: {key_prefix: bst_live_nobody}\n"
        "  - name: unroled\n"
        "    match: {path: /api/unroled}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        "    roles: [admin]\n"
        "    roles_claim: key_prefix\n"
    )


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, upstream: EchoThread
) -> Iterator[tuple[BastionProcess, dict[str, Any]]]:
    cwd = tmp_path_factory.mktemp("authn-cases")
    url = upstream.server.url
    config = cwd / "bastion.yaml"
    storage = f"storage: sqlite:///{cwd}/bastion.db\n"
    config.write_text(storage + _routes(url, None))
    migrated = run_cli("migrate", "-c", str(config), cwd=cwd)
    assert migrated.returncode == 0, migrated.stderr
    # The key first: the routes' rules name its id and prefix.
    key = _cli(cwd, "keys", "create", "claimed", "--scope", "orders:read")
    _MASKS.update({key["id"]: "KEY_ID", key["prefix"]: "KEY_PREFIX"})
    config.write_text(storage + _routes(url, key))
    proc = BastionProcess("-c", str(config), cwd=cwd).start()
    try:
        yield proc, key
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def server(served: tuple[BastionProcess, dict[str, Any]]) -> BastionProcess:
    return served[0]


@pytest.fixture(scope="module")
def http(server: BastionProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as client:
        yield client


def _python_plane(http: httpx.Client) -> str:
    response = http.get("/healthz")  # not a gateway request: Python's plane
    assert response.status_code == 200
    return plane(response)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _alike(
    http: httpx.Client,
    upstream: EchoThread,
    path: str,
    headers: dict[str, str],
    *,
    status: int,
    code: str,
    challenge: str | None = None,
    case: str = "",
) -> httpx.Response:
    """The native answer, from the native plane; a refusal is what Python answered to
    ``case`` (recorded) and proxies nothing."""
    python = _python_plane(http)
    before = len(upstream.server.received)
    native = http.get(path, headers=headers)
    assert native.status_code == status, native.text
    assert plane(native) != python
    if status >= 400:
        assert native.json()["reason"] == code, native.text
        assert native.headers.get("www-authenticate") == challenge
        assert len(upstream.server.received) == before, "a refused request was proxied"
        RECORDED.check(case, native)
        _CASES[native.headers["x-request-id"]] = case
    return native


def _row(row: Any) -> Any:
    """An audit row's :func:`row_parts` as recorded: this run's key and client stood for by
    placeholders."""
    text = orjson.dumps(row_parts(row)).decode()
    for value, placeholder in _MASKS.items():
        text = text.replace(value, placeholder)
    return orjson.loads(text)


def _same_rows(server: BastionProcess, *natives: httpx.Response) -> None:
    """Each refusal is one ``gateway.denied`` row, as Python recorded it."""
    ids = {r.headers["x-request-id"] for r in natives}
    rows = audit_rows(Path(server.cwd), "gateway.denied", ids)
    assert set(rows) == ids
    for rid in ids:
        assert _row(rows[rid]) == RECORDED["row " + _CASES[rid]], _CASES[rid]


# -- bastion's own tokens -------------------------------------------------------------------


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _own_key(cwd: Path) -> SigningKeyPair:
    """The node's active signing key, unsealed from its database with its master key."""

    async def read() -> SigningKeyPair:
        db = await Database.connect(f"sqlite:///{cwd}/bastion.db")
        try:
            # The access-token key (signing_keys.algorithm, ES256); an RS256 key signs
            # ID tokens beside it.
            [active] = [
                k for k in await db.signing_keys.list() if k.state == "active" and k.alg == "ES256"
            ]
        finally:
            await db.close()
        keyring = load_keyring_file(cwd / ".bastion" / "master.key")
        context = seal_context("signing_keys", "private_key_sealed", active.kid)
        pem = keyring.open(active.private_key_sealed, context=context)
        return SigningKeyPair.from_private_bytes(pem, kid=active.kid, alg=active.alg)

    return asyncio.run(read())


def _sign(key: SigningKeyPair, claims: dict[str, Any], header: dict[str, Any]) -> str:
    signing_input = _b64(orjson.dumps(header)) + b"." + _b64(orjson.dumps(claims))
    return (signing_input + b"." + _b64(key.sign(signing_input))).decode("ascii")


@pytest.fixture(scope="module")
def own(server: BastionProcess, http: httpx.Client) -> tuple[SigningKeyPair, dict[str, Any]]:
    """The node's signing key and the claims of a token it issued (a template)."""
    cwd = Path(server.cwd)
    client = _cli(
        cwd,
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
    # The node's key and the client's status are known natively from here on.
    assert http.get("/api/own/1", headers=_bearer(token)).status_code == 200
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    _MASKS.update({claims["client_id"]: "CLIENT_ID", claims["sub"]: "SUBJECT"})
    return _own_key(cwd), claims


def _token(
    own: tuple[SigningKeyPair, dict[str, Any]],
    header: dict[str, Any] | None = None,
    **changes: Any,
) -> str:
    key, template = own
    now = int(time.time())
    claims = {**template, "jti": uuid.uuid4().hex, "iat": now - 5, "exp": now + 300}
    claims.update(changes)
    head = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"} if header is None else header
    return _sign(key, claims, head)


def test_a_token_valid_as_python_signs_it_is_native(
    server: BastionProcess,
    http: httpx.Client,
    upstream: EchoThread,
    own: tuple[SigningKeyPair, dict[str, Any]],
) -> None:
    # The control: the same signing path, the usual shape, served natively.
    _alike(http, upstream, "/api/own/1", _bearer(_token(own)), status=200, code="")


def test_an_own_token_naming_no_kid_is_refused_natively(
    server: BastionProcess,
    http: httpx.Client,
    upstream: EchoThread,
    own: tuple[SigningKeyPair, dict[str, Any]],
) -> None:
    key, _ = own
    refused = []
    for case, header in (
        ("own no kid", {"alg": key.alg, "typ": "at+jwt"}),
        ("own kid null", {"alg": key.alg, "kid": None, "typ": "at+jwt"}),
    ):
        token = _token(own, header)
        refused.append(
            _alike(
                http,
                upstream,
                "/api/own/1",
                _bearer(token),
                status=401,
                code="invalid_token",
                challenge=INVALID_TOKEN,
                case=case,
            )
        )
    _same_rows(server, *refused)


@pytest.mark.parametrize(
    "changes",
    [
        {"client_id": 7},
        {"client_id": None},
        {"client_id": ["a"]},
        {"sub": ""},
        {"sub": 12},
        {"scope": ["orders:read"]},
    ],
    ids=["client-int", "client-null", "client-list", "sub-empty", "sub-int", "scope-list"],
)
def test_claims_of_a_shape_python_refuses_are_refused_natively(
    server: BastionProcess,
    http: httpx.Client,
    upstream: EchoThread,
    own: tuple[SigningKeyPair, dict[str, Any]],
    changes: dict[str, Any],
) -> None:
    refused = _alike(
        http,
        upstream,
        "/api/own/1",
        _bearer(_token(own, **changes)),
        status=401,
        code="invalid_token",
        challenge=INVALID_TOKEN,
        case=f"own {orjson.dumps(changes).decode()}",
    )
    _same_rows(server, refused)


def test_a_token_valid_within_the_leeway_only_is_served_natively_uncached(
    server: BastionProcess,
    http: httpx.Client,
    upstream: EchoThread,
    own: tuple[SigningKeyPair, dict[str, Any]],
) -> None:
    now = int(time.time())
    # Expired 5 s ago, within the 30 s leeway: Python accepts it and caches nothing.
    token = _token(own, iat=now - 60, exp=now - 5)
    for _ in range(3):
        _alike(http, upstream, "/api/own/1", _bearer(token), status=200, code="")
    # Past the leeway: refused, natively and alike.
    late = _token(own, iat=now - 120, exp=now - 60)
    refused = _alike(
        http,
        upstream,
        "/api/own/1",
        _bearer(late),
        status=401,
        code="invalid_token",
        challenge=INVALID_TOKEN,
        case="own past the leeway",
    )
    _same_rows(server, refused)


# -- API keys whose rules read the key's claims ----------------------------------------------


def test_key_claims_rules_are_checked_natively(
    served: tuple[BastionProcess, dict[str, Any]], http: httpx.Client, upstream: EchoThread
) -> None:
    server, key = served
    headers = _bearer(key["key"])
    for path in ("/api/claimed/1", "/api/roled/1"):
        _alike(http, upstream, path, headers, status=200, code="")
    mismatch = _alike(
        http, upstream, "/api/fenced/1", headers, status=403, code="claim_mismatch", case="fenced"
    )
    assert mismatch.json()["claim"] == "key_prefix"
    missing = _alike(
        http, upstream, "/api/unroled/1", headers, status=403, code="missing_role", case="unroled"
    )
    _same_rows(server, mismatch, missing)


# -- the identity assertion without a key the native core signs with ------------------------


def _store_legacy_key(cwd: Path) -> str:
    """An active RSA key over 4096 bits, as an older version stored it; its kid."""
    path = cwd / ".bastion" / "master.key"
    keyring = load_keyring_file(path) if path.exists() else create_keyring_file(path)
    pair = SigningKeyPair(
        rsa.generate_private_key(public_exponent=65537, key_size=4352),
        kid="legacy-4352",
        alg="RS256",
    )
    context = seal_context("signing_keys", "private_key_sealed", pair.kid)
    record = SigningKey(
        kid=pair.kid,
        alg=pair.alg,
        public_jwk=pair.public_jwk(),
        private_key_sealed=keyring.seal(pair.private_bytes(), context=context),
        state="active",
    )

    async def store() -> None:
        db = await Database.connect(f"sqlite:///{cwd}/bastion.db")
        try:
            await db.signing_keys.create(record)
        finally:
            await db.close()

    asyncio.run(store())
    return pair.kid


def test_no_key_to_sign_the_assertion_with_is_a_native_503(
    tmp_path: Path, upstream: EchoThread
) -> None:
    url = upstream.server.url
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\n"
        # The deployment the older version ran: its access-token (and assertion) key RS256.
        "signing_keys: {algorithm: RS256}\n"
        "identity_headers:\n  assertion: {enabled: true}\n"
        "routes:\n"
        "  - name: signed\n"
        "    match: {path: /api/signed}\n"
        f"    upstream: {url}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        "  - name: open\n"
        "    match: {path: /api/open}\n"
        f"    upstream: {url}\n"
        "    public: true\n"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    kid = _store_legacy_key(tmp_path)
    key = _cli(tmp_path, "keys", "create", "shop", "--scope", "orders:read")
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        python = plane(client.get("/healthz"))
        before = len(upstream.server.received)
        refused = [client.get("/api/signed/1", headers=_bearer(key["key"])) for _ in range(2)]
        for response in refused:
            assert response.status_code == 503, response.text
            assert plane(response) != python
            problem = response.json()
            assert (problem["reason"], problem["title"]) == (
                "assertion_unavailable",
                "Identity assertion unavailable",
            )
            assert "retry-after" not in response.headers
        assert len(upstream.server.received) == before, "proxied without its assertion"
        # Anonymous: no assertion to sign, proxied natively.
        public = client.get("/api/open/1")
        assert (public.status_code, plane(public) != python) == (200, True)
    ids = {r.headers["x-request-id"] for r in refused}
    rows = audit_rows(tmp_path, "gateway.denied", ids)
    assert set(rows) == ids
    for row in rows.values():
        assert (row.reason, row.route, row.key_id) == ("assertion_unavailable", "signed", key["id"])
        assert row.data["step"] == "mutate"
    # The start-up log names the key and the fix.
    assert kid in proc.stderr and "signing-keys rotate" in proc.stderr
