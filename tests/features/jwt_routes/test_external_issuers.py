"""End to end: a trusted external issuer's tokens on a route of a real ``bastion serve``.

A real local IdP (``gateway.idp_support.FakeIdP``, in a thread) serves discovery
and its JWKS. The route's ``jwt.issuers`` names it, so the route is native: the
first token makes Python fetch the JWKS and push the keys into the native core,
and from then on the issuer's tokens are verified natively (told apart by the
request id's per-plane prefix). A rotated key reaches the native core through
Python (an unknown kid defers; Python refetches and pushes). Forged tokens —
another key, algorithm confusion, ``none``, wrong ``iss`` / ``aud``, expired —
are refused with exactly Python's 401 ``invalid_token``, rendered natively (a token
under an unknown ``kid`` by Python, which refetches the keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread, run_cli
from _support.native import plane
from bastion.crypto import SigningKeyPair, sign_jwt
from gateway.idp_support import FakeIdP, IdPThread

AUDIENCE = "https://api.test"
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
        "trusted_issuers:\n"
        f"  - issuer: {idp.url}\n"
        f"    audiences: [{AUDIENCE}]\n"
        "    min_refresh_interval: 1\n"
        "routes:\n"
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {upstream}\n"
        "    auth: [jwt]\n"
        f"    jwt: {{issuers: [{idp.url}]}}\n"
        "    scopes: {GET: [orders:read], '*': [orders:write]}\n"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    return config


def _claims(idp: FakeIdP, **overrides: Any) -> dict[str, Any]:
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


def _token(idp: FakeIdP, key: SigningKeyPair | None = None, **overrides: Any) -> str:
    return sign_jwt(_claims(idp, **overrides), key or idp.key, typ="at+jwt")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token with an arbitrary header: HMAC-signed with ``secret``, or unsigned."""
    signing_input = _b64(orjson.dumps(header)) + "." + _b64(orjson.dumps(claims))
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64(mac)


def _get(client: httpx.Client, token: str) -> httpx.Response:
    return client.get("/api/orders/1", headers={"Authorization": f"Bearer {token}"})


def _forwarded(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.json()["headers"].items()}


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == INVALID_TOKEN
    assert response.json()["reason"] == "invalid_token"


def test_external_tokens_are_verified_natively_and_rotation_is_picked_up(
    tmp_path: Path, idp: FakeIdP, echo: EchoThread
) -> None:
    config = _config(tmp_path, idp, echo.server.url)
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        # No keys natively yet: a jwks lookup (Python fetches and pushes), then native.
        first = _get(client, _token(idp))
        second = _get(client, _token(idp))  # another token, verified natively
        third = _get(client, _token(idp))
        assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
        native = plane(second)
        assert plane(first) == native == plane(third)
        assert idp.hits["jwks"] == 1
        # Each forwards the identity, never the token.
        for response in (first, second):
            seen = _forwarded(response)
            assert seen["x-bastion-subject"] == "alice@idp"
            assert seen["x-bastion-client"] == "spa"
            assert seen["x-bastion-scopes"] == "orders:read"
            assert "authorization" not in seen

        # Scopes are enforced on natively verified tokens (Python renders the 403).
        narrow = _get(client, _token(idp, scope="profile"))
        assert narrow.status_code == 403
        assert narrow.json()["reason"] == "insufficient_scope"

        # The IdP rotates: a token of the new key is a jwks lookup (its kid is unknown
        # natively): Python refetches the JWKS and pushes it, and the request goes on natively.
        time.sleep(1.1)  # past min_refresh_interval
        old = idp.key
        idp.keys = [SigningKeyPair.generate("RS256")]
        rotated = _get(client, _token(idp))
        assert rotated.status_code == 200, rotated.text
        assert plane(rotated) == native
        assert idp.hits["jwks"] == 2
        again = _get(client, _token(idp))
        assert again.status_code == 200, again.text
        assert plane(again) == native
        # The retired key no longer verifies anywhere (a fresh token: nothing cached).
        time.sleep(1.1)
        retired = _get(client, _token(idp, key=old))
        _refused(retired)
        assert plane(retired) == native


def test_forged_external_tokens_get_pythons_refusal(
    tmp_path: Path, idp: FakeIdP, echo: EchoThread
) -> None:
    config = _config(tmp_path, idp, echo.server.url)
    key = idp.key
    public_jwk = json.dumps(key.public_jwk(), sort_keys=True).encode("utf-8")
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        warm = _get(client, _token(idp))
        assert warm.status_code == 200, warm.text
        valid = _get(client, _token(idp))
        assert valid.status_code == 200, valid.text
        native = plane(valid)
        assert plane(warm) == native  # after the jwks lookup
        now = int(time.time())
        intruder = SigningKeyPair.generate("ES256")
        impostor = SigningKeyPair.from_private_bytes(
            intruder.private_bytes(), kid=key.kid, alg="ES256"
        )
        forged = {
            # another key, the IdP's kid: bad_signature
            "wrong key": _token(idp, key=impostor),
            # another key under its own kid: unknown_kid (after a rate-limited refetch)
            "unknown kid": _token(idp, key=intruder),
            # the IdP's public key as an HMAC secret: alg_not_allowed
            "alg confusion": _unsigned(
                {"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}, _claims(idp), public_jwk
            ),
            "alg none": _unsigned(
                {"alg": "none", "kid": key.kid, "typ": "at+jwt"}, _claims(idp), None
            ),
            # a well-signed token naming another issuer: not trusted here (wrong_issuer)
            "wrong iss": _token(idp, iss="https://evil.example"),
            "wrong aud": _token(idp, aud="https://other.api"),
            "expired": _token(idp, iat=now - 600, exp=now - 120),
            "wrong typ": sign_jwt(_claims(idp), key, typ="JWT"),
            "tampered": _token(idp)[:-6] + "AAAAAA",
        }
        for name, token in forged.items():
            response = _get(client, token)
            _refused(response)
            # Refused natively, Python's exact 401
            # (tests/features/native_front/test_native_authn_refusals.py); an unknown kid
            # after a jwks lookup, or at once while Python may not refetch yet.
            assert plane(response) == native, name
        # The valid one still is served natively afterwards.
        after = _get(client, _token(idp))
        assert after.status_code == 200
        assert plane(after) == native
