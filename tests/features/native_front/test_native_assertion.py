"""End to end: the signed identity assertion, signed by the native plane.

With ``identity_headers.assertion`` on, gateway routes are still served
natively (``bastion routes list``): the native ``mutate`` step signs the
assertion with the current signing key the control plane pushed, for every
algorithm bastion's keys can have. The recording echo upstream shows what
arrives:

- the assertion verifies (joserfc) against ``/oauth2/jwks.json`` with exactly
  the JOSE header and claims Python's pipeline signed (spelled out below), on
  every request, the first of a key (after its lookup) included;
- a client-sent assertion (any spelling) never reaches the upstream;
- ``assertion_audience`` replaces the upstream URL as ``aud``; an anonymous
  request on a public route carries no assertion;
- after ``bastion signing-keys rotate --now`` (another process) the next
  natively served request is signed with the new key within about a second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws, jwt
from joserfc.jwk import KeySet

from _support import BastionProcess, EchoThread, run_cli
from _support.native import cli_json, migrated_config, plane

_ALGS = ["ES256", "RS256", "PS256", "EdDSA"]


def _config(tmp_path: Path, upstream: str, alg: str) -> Path:
    config = migrated_config(
        tmp_path,
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "    scopes: [orders:read]\n"
        "  - name: billing\n"
        "    match: {path: /api/billing}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "    assertion_audience: https://billing.example\n"
        "  - name: open\n"
        "    match: {path: /api/open}\n"
        f"    upstream: {upstream}\n"
        "    public: true\n",
    )
    text = config.read_text()
    config.write_text(
        "identity_headers:\n  assertion: {enabled: true, ttl: 20s}\n"
        f"signing_keys: {{algorithm: {alg}}}\n" + text
    )
    return config


def _seen(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {k.lower(): v for k, v in response.json()["headers"].items()}


def _verify(token: str, jwks: dict[str, Any], alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[alg])
    return dict(decoded.header), dict(decoded.claims)


@pytest.mark.parametrize("alg", _ALGS)
def test_native_assertion_verifies_with_pythons_claims_and_follows_rotation(
    tmp_path: Path, echo: EchoThread, alg: str
) -> None:
    config = _config(tmp_path, echo.server.url, alg)
    key = cli_json(config, "keys", "create", "shop", "--scope", "orders:read", "--scope", "audit:x")
    auth = {"Authorization": f"Bearer {key['key']}"}
    spoofed = {**auth, "X-Bastion-Assertion": "forged.by.client", "X_Bastion_Assertion": "x"}
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        issuer = proc.url.rstrip("/").replace("127.0.0.1", "localhost")  # the dev default
        python = plane(client.get("/healthz"))  # not a gateway request: Python's plane
        first = client.get("/api/orders/1", headers=auth)  # the key's lookup, then native
        second = client.get("/api/orders/2", headers=spoofed)
        third = client.get("/api/orders/3", headers=auth)
        billing = client.get("/api/billing/1", headers=auth)
        anonymous = client.get("/api/open/1", headers={"X-Bastion-Assertion": "forged"})
        jwks = client.get("/oauth2/jwks.json").json()
        # The native plane served them all, the first after the key's lookup.
        assert python != plane(first) == plane(second) == plane(third) == plane(billing)
        assert plane(anonymous) == plane(second)
        claims_seen = []
        for response in (first, second, third):
            seen = _seen(response)
            assert "forged" not in str(seen)
            header, claims = _verify(seen["x-bastion-assertion"], jwks, alg)
            kid = jwks["keys"][0]["kid"]
            assert header == {"alg": alg, "kid": kid, "typ": "bastion-assertion+jwt"}
            jti = claims.pop("jti")
            assert len(jti) == 32 and int(jti, 16) >= 0
            iat = claims.pop("iat")
            assert claims.pop("exp") == iat + 20
            assert abs(iat - time.time()) < 10
            assert claims == {
                "iss": issuer,
                "aud": echo.server.url,
                "sub": f"apikey:{key['id']}",
                "route": "orders",
                "auth_method": "api_key",
                "scope": "audit:x orders:read",
                "key_id": key["id"],
                "request_id": seen["x-bastion-request-id"],
            }
            claims_seen.append(jti)
        assert len(set(claims_seen)) == 3, "a fresh jti every time"
        _, claims = _verify(_seen(billing)["x-bastion-assertion"], jwks, alg)
        assert (claims["aud"], claims["route"]) == ("https://billing.example", "billing")
        assert "x-bastion-assertion" not in _seen(anonymous)

        old_kid = jwks["keys"][0]["kid"]
        rotated = cli_json(config, "signing-keys", "rotate", "--now")
        new_kid = rotated["key"]["kid"]
        assert new_kid != old_kid and rotated["key"]["state"] == "active"
        deadline = time.monotonic() + 1.5
        kids = []
        while True:
            response = client.get("/api/orders/4", headers=auth)
            assert plane(response) == plane(second), "served natively"
            token = _seen(response)["x-bastion-assertion"]
            kid = jws.extract_compact(token.encode()).protected["kid"]
            kids.append(kid)
            if kid == new_kid or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert kids[-1] == new_kid, kids
        # The new key is published: the upstream verifies it as before.
        jwks = client.get("/oauth2/jwks.json").json()
        header, claims = _verify(token, jwks, alg)
        assert header["kid"] == new_kid
        assert claims["key_id"] == key["id"]


def test_rsa_keys_stop_at_4096_bits_which_the_native_plane_signs_with(
    tmp_path: Path, echo: EchoThread
) -> None:
    # ring signs with RSA keys of 2048 to 4096 bits: a larger rsa_key_size is a config
    # error at load, and the largest allowed key is held and signed with natively.
    config = _config(tmp_path, echo.server.url, "RS256")
    base = config.read_text()
    config.write_text(
        base.replace(
            "signing_keys: {algorithm: RS256}",
            "signing_keys: {algorithm: RS256, rsa_key_size: 4352}",
        )
    )
    refused = run_cli("check-config", "-c", str(config), cwd=tmp_path)
    assert refused.returncode != 0
    assert (
        "signing_keys.rsa_key_size: 4352 is too large — use a number of at most 4096"
        in refused.stdout + refused.stderr
    )
    config.write_text(
        base.replace(
            "signing_keys: {algorithm: RS256}",
            "signing_keys: {algorithm: RS256, rsa_key_size: 4096}",
        )
    )
    key = cli_json(config, "keys", "create", "shop", "--scope", "orders:read")
    auth = {"Authorization": f"Bearer {key['key']}"}
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        python = plane(client.get("/healthz"))
        responses = [client.get(f"/api/orders/{n}", headers=auth) for n in range(3)]
        jwks = client.get("/oauth2/jwks.json").json()
    # Held natively: the requests are signed by the native plane (the first after a lookup).
    assert plane(responses[-1]) != python
    for response in responses:
        header, claims = _verify(_seen(response)["x-bastion-assertion"], jwks, "RS256")
        assert header["kid"] == jwks["keys"][0]["kid"]
        assert claims["key_id"] == key["id"]
