"""End to end: a real OAuth client nobody here wrote obtains tokens from a running bastion.

Authlib's httpx client authenticates with client_secret_basic, client_secret_post
and private_key_jwt; the tokens are verified by a second, independent library
(jwcrypto) using nothing but the published JWKS. Introspection, revocation,
secret rotation with grace and disabling a client are exercised over HTTPS
against ``bastion serve`` with clients created by ``bastion clients create``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey
from jwcrypto import jwk, jwt

from _support import BastionProcess, run_cli
from bastion.oauth.clients import CACHE_TTL

AUDIENCE = "https://api.example.com"


def _create(cwd: Path, *args: str) -> dict[str, Any]:
    result = run_cli("clients", "create", *args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("oauth")
    proc = BastionProcess(cwd=cwd).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def metadata(server: BastionProcess) -> dict[str, Any]:
    response = httpx.get(
        server.url + "/.well-known/oauth-authorization-server", verify=False, timeout=10
    )
    assert response.status_code == 200
    return response.json()


def _verify_independently(token: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Verify with jwcrypto, trusting only the JWKS at the advertised jwks_uri."""
    jwks = httpx.get(metadata["jwks_uri"].replace("localhost", "127.0.0.1"), verify=False).json()
    keyset = jwk.JWKSet.from_json(json.dumps(jwks))
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    verified = jwt.JWT(jwt=token, key=keyset, algs=["ES256"], expected_type="JWS")
    return json.loads(verified.claims)


def _token_url(server: BastionProcess) -> str:
    return server.url + "/oauth2/token"


def test_metadata_lists_the_endpoints(server: BastionProcess, metadata: dict[str, Any]) -> None:
    issuer = metadata["issuer"]
    assert metadata["token_endpoint"] == issuer + "/oauth2/token"
    assert metadata["jwks_uri"] == issuer + "/oauth2/jwks.json"
    assert metadata["introspection_endpoint"] == issuer + "/oauth2/introspect"
    assert metadata["revocation_endpoint"] == issuer + "/oauth2/revoke"
    assert metadata["grant_types_supported"] == [
        "client_credentials",
        "refresh_token",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ]
    assert metadata["authorization_endpoint"] == issuer + "/oauth2/authorize"
    assert metadata["response_types_supported"] == ["code"]
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    jwks = httpx.get(server.url + "/oauth2/jwks.json", verify=False)
    assert jwks.headers["cache-control"] == "public, max-age=300"
    keys = jwks.json()["keys"]
    assert keys and all("d" not in key for key in keys)
    assert len({key["kid"] for key in keys}) == len(keys)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_secret(
    server: BastionProcess, metadata: dict[str, Any], method: str
) -> None:
    client = _create(
        server.cwd,
        "svc-" + method.replace("_", "-"),
        "--auth-method",
        method,
        "--grant",
        "client_credentials",
        "--scope",
        "read",
        "--scope",
        "write",
        "--audience",
        AUDIENCE,
    )
    with OAuth2Client(
        client["client_id"],
        client["client_secret"],
        token_endpoint_auth_method=method,
        verify=False,
    ) as oauth:
        token = oauth.fetch_token(_token_url(server), grant_type="client_credentials", scope="read")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "read"
    assert token["expires_in"] == 900
    claims = _verify_independently(token["access_token"], metadata)
    assert claims["iss"] == metadata["issuer"]
    assert claims["sub"] == client["client_id"]
    assert claims["client_id"] == client["client_id"]
    assert claims["aud"] == AUDIENCE
    assert claims["scope"] == "read"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]


def test_authlib_private_key_jwt(
    server: BastionProcess, metadata: dict[str, Any], tmp_path: Path
) -> None:
    key = jwk.JWK.generate(kty="EC", crv="P-256", kid="client-key-1")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(
        json.dumps({"keys": [{**key.export_public(as_dict=True), "alg": "ES256"}]})
    )
    client = _create(
        server.cwd,
        "svc-pkjwt",
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(jwks_file),
        "--grant",
        "client_credentials",
        "--scope",
        "read",
        "--audience",
        AUDIENCE,
    )
    assert client.get("client_secret") is None
    token_url = _token_url(server)
    # Authlib takes a joserfc key object for non-RSA keys.
    private_key = ECKey.import_key(key.export_to_pem(private_key=True, password=None))
    with OAuth2Client(
        client["client_id"],
        private_key,
        token_endpoint_auth_method="private_key_jwt",
        verify=False,
    ) as oauth:
        # The assertion's audience is the advertised token endpoint (issuer host).
        audience = metadata["token_endpoint"]
        oauth.register_client_auth_method(PrivateKeyJWT(audience, alg="ES256"))
        token = oauth.fetch_token(token_url, grant_type="client_credentials")
    claims = _verify_independently(token["access_token"], metadata)
    assert claims["client_id"] == client["client_id"]


def _basic(client: dict[str, Any], secret: str | None = None) -> httpx.BasicAuth:
    return httpx.BasicAuth(client["client_id"], secret or client["client_secret"])


def test_introspection_revocation_and_disable(server: BastionProcess) -> None:
    resource = _create(
        server.cwd, "api", "--grant", "client_credentials", "--scope", "bastion:introspect"
    )
    caller = _create(
        server.cwd,
        "caller",
        "--grant",
        "client_credentials",
        "--scope",
        "read",
        "--audience",
        AUDIENCE,
    )
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as http:

        def token() -> str:
            response = http.post(
                "/oauth2/token", auth=_basic(caller), data={"grant_type": "client_credentials"}
            )
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == "no-store"
            return response.json()["access_token"]

        def introspect(value: str) -> dict[str, Any]:
            response = http.post("/oauth2/introspect", auth=_basic(resource), data={"token": value})
            assert response.status_code == 200
            return response.json()

        first = token()
        active = introspect(first)
        assert active["active"] is True
        assert active["client_id"] == caller["client_id"]
        assert active["scope"] == "read"
        assert introspect("not-a-token") == {"active": False}

        # A client may not revoke another client's token; its own, yes.
        refused = http.post("/oauth2/revoke", auth=_basic(resource), data={"token": first})
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        assert introspect(first)["active"] is True
        revoked = http.post("/oauth2/revoke", auth=_basic(caller), data={"token": first})
        assert revoked.status_code == 200
        assert introspect(first) == {"active": False}
        unknown = http.post("/oauth2/revoke", auth=_basic(caller), data={"token": "garbage"})
        assert unknown.status_code == 200

        # Disabling the client (CLI, another process) refuses its live tokens at once
        # at introspection (read through to the database) ...
        second = token()
        assert introspect(second)["active"] is True
        result = run_cli("clients", "disable", caller["client_id"], "--json", cwd=server.cwd)
        assert result.returncode == 0, result.stderr
        assert introspect(second) == {"active": False}
        # ... and new token requests once the server's client cache expires (in-process
        # shared state cannot carry the CLI's invalidation; Redis or the admin API can).
        _until_status(http, caller, 401, within=CACHE_TTL + 2)


def _until_status(
    http: httpx.Client,
    client: dict[str, Any],
    status: int,
    *,
    within: float,
    secret: str | None = None,
) -> None:
    deadline = time.monotonic() + within
    while True:
        response = http.post(
            "/oauth2/token", auth=_basic(client, secret), data={"grant_type": "client_credentials"}
        )
        if response.status_code == status:
            if status == 401:
                assert response.json()["error"] == "invalid_client"
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.25)


def test_admin_api_disables_a_client_immediately(
    server: BastionProcess, metadata: dict[str, Any]
) -> None:
    admin_audience = metadata["issuer"] + "/admin/api"
    admin = _create(
        server.cwd,
        "ops",
        "--grant",
        "client_credentials",
        "--scope",
        "bastion:admin",
        "--audience",
        admin_audience,
    )
    victim = _create(server.cwd, "victim", "--grant", "client_credentials")
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as http:
        _until_status(http, victim, 200, within=1)
        response = http.post(
            "/oauth2/token",
            auth=_basic(admin),
            data={"grant_type": "client_credentials", "scope": "bastion:admin"},
        )
        assert response.status_code == 200, response.text
        bearer = {"Authorization": "Bearer " + response.json()["access_token"]}
        assert http.get("/admin/api/v1/clients").status_code == 401
        listed = http.get("/admin/api/v1/clients", headers=bearer)
        assert listed.status_code == 200, listed.text
        assert victim["client_id"] in listed.text
        assert victim["client_secret"] not in listed.text
        disabled = http.post(f"/admin/api/v1/clients/{victim['client_id']}/disable", headers=bearer)
        assert disabled.status_code == 200, disabled.text
        _until_status(http, victim, 401, within=0.5)
        # A token for another audience is no admin credential.
        other = _create(
            server.cwd, "not-admin", "--grant", "client_credentials", "--scope", "bastion:admin"
        )
        response = http.post(
            "/oauth2/token", auth=_basic(other), data={"grant_type": "client_credentials"}
        )
        wrong_aud = {"Authorization": "Bearer " + response.json()["access_token"]}
        refused = http.get("/admin/api/v1/clients", headers=wrong_aud)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_secret_rotation_with_grace(server: BastionProcess) -> None:
    client = _create(server.cwd, "rotating", "--grant", "client_credentials")
    result = run_cli(
        "clients", "rotate-secret", client["client_id"], "--grace", "1h", "--json", cwd=server.cwd
    )
    assert result.returncode == 0, result.stderr
    new_secret = json.loads(result.stdout)["client_secret"]
    assert new_secret != client["client_secret"]
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as http:
        for secret in (client["client_secret"], new_secret):
            response = http.post(
                "/oauth2/token",
                auth=_basic(client, secret),
                data={"grant_type": "client_credentials"},
            )
            assert response.status_code == 200, response.text
    result = run_cli(
        "clients", "rotate-secret", client["client_id"], "--grace", "0", "--json", cwd=server.cwd
    )
    newest = json.loads(result.stdout)["client_secret"]
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as http:
        # The server's credential cache lets the CLI's change in within CACHE_TTL.
        _until_status(http, client, 200, within=CACHE_TTL + 2, secret=newest)
        for secret in (client["client_secret"], new_secret):
            _until_status(http, client, 401, within=1, secret=secret)


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        (
            {"grant_type": "password", "username": "a", "password": "b"},
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "implicit"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "admin"}, 400, "invalid_scope"),
        (
            {"grant_type": "client_credentials", "resource": "https://evil.example"},
            400,
            "invalid_target",
        ),
    ],
)
def test_token_errors(
    server: BastionProcess, data: dict[str, str], status: int, error: str
) -> None:
    client = _create(server.cwd, "errs", "--grant", "client_credentials", "--scope", "read")
    response = httpx.post(_token_url(server), auth=_basic(client), data=data, verify=False)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def test_bad_client_credentials(server: BastionProcess) -> None:
    client = _create(server.cwd, "bad-creds", "--grant", "client_credentials")
    data = {"grant_type": "client_credentials"}
    wrong = httpx.post(
        _token_url(server), auth=_basic(client, "bcs_wrong"), data=data, verify=False
    )
    unknown = httpx.post(
        _token_url(server), auth=httpx.BasicAuth("nobody", "bcs_x"), data=data, verify=False
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="bastion"'
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "invalid_client",
            "error_description": "client authentication failed",
        }
    )
    repeated = httpx.post(
        _token_url(server),
        auth=_basic(client),
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
        verify=False,
    )
    assert repeated.status_code == 400
    assert repeated.json()["error"] == "invalid_request"
    oversized = httpx.post(
        _token_url(server),
        auth=_basic(client),
        data={"grant_type": "client_credentials", "x": "a" * 70000},
        verify=False,
    )
    assert oversized.status_code == 413
    get = httpx.get(_token_url(server), verify=False)
    assert get.status_code == 405


def test_tokens_are_short_lived_and_unique(server: BastionProcess) -> None:
    client = _create(server.cwd, "many", "--grant", "client_credentials")
    jtis = set()
    for _ in range(5):
        response = httpx.post(
            _token_url(server),
            auth=_basic(client),
            data={"grant_type": "client_credentials"},
            verify=False,
        )
        payload = response.json()["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        assert claims["exp"] <= time.time() + 900 + 5
        jtis.add(claims["jti"])
    assert len(jtis) == 5


def test_private_key_jwt_assertion_is_single_use(
    server: BastionProcess, metadata: dict[str, Any], tmp_path: Path
) -> None:
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    key = jwk.JWK.generate(kty="EC", crv="P-256", kid="k1")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(
        json.dumps({"keys": [{**key.export_public(as_dict=True), "alg": "ES256"}]})
    )
    client = _create(
        server.cwd,
        "replay",
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(jwks_file),
        "--grant",
        "client_credentials",
    )
    private_key = ECKey.import_key(key.export_to_pem(private_key=True, password=None))
    assertion = private_key_jwt_sign(
        private_key,
        client_id=client["client_id"],
        token_endpoint=metadata["token_endpoint"],
        alg="ES256",
    )
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion.decode() if isinstance(assertion, bytes) else assertion,
    }
    first = httpx.post(_token_url(server), data=data, verify=False)
    assert first.status_code == 200, first.text
    replay = httpx.post(_token_url(server), data=data, verify=False)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged_tokens(server: BastionProcess, metadata: dict[str, Any]) -> dict[str, str]:
    """Tokens an attacker can make from public information, each of which must be refused."""
    jwks = httpx.get(server.url + "/oauth2/jwks.json", verify=False).json()
    public = jwks["keys"][0]
    now = int(time.time())
    claims = {
        "iss": metadata["issuer"],
        "sub": "x",
        "client_id": "x",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": "forged",
        "scope": "bastion:admin",
    }
    body = _b64(json.dumps(claims).encode())

    def unsigned(header: dict[str, Any], signature: str = "") -> str:
        return f"{_b64(json.dumps(header).encode())}.{body}.{signature}"

    hmac_key = jwk.JWK(kty="oct", k=_b64(json.dumps(public).encode()))
    hs256 = jwt.JWT(header={"alg": "HS256", "kid": public["kid"], "typ": "at+jwt"}, claims=claims)
    hs256.make_signed_token(hmac_key)
    attacker = jwk.JWK.generate(kty="EC", crv="P-256")
    embedded = jwt.JWT(
        header={"alg": "ES256", "typ": "at+jwt", "jwk": attacker.export_public(as_dict=True)},
        claims=claims,
    )
    embedded.make_signed_token(attacker)
    return {
        "alg none": unsigned({"alg": "none", "typ": "at+jwt"}),
        "alg NoNe with kid": unsigned({"alg": "NoNe", "kid": public["kid"], "typ": "at+jwt"}),
        "HS256 keyed with the public JWK": hs256.serialize(),
        "embedded jwk": embedded.serialize(),
        "stripped signature": unsigned({"alg": "ES256", "kid": public["kid"], "typ": "at+jwt"}),
        "r = s = 0": unsigned(
            {"alg": "ES256", "kid": public["kid"], "typ": "at+jwt"}, _b64(bytes(64))
        ),
        "JWE compact": "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
        "oversized": "a" * 100_000,
    }


def test_forged_tokens_are_inactive_and_never_500(
    server: BastionProcess, metadata: dict[str, Any]
) -> None:
    resource = _create(
        server.cwd, "rs", "--grant", "client_credentials", "--scope", "bastion:introspect"
    )
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as http:
        for name, token in _forged_tokens(server, metadata).items():
            response = http.post("/oauth2/introspect", auth=_basic(resource), data={"token": token})
            if name == "oversized":  # refused before parsing: the form cap is 64 KiB
                assert response.status_code == 413, name
                continue
            assert response.status_code == 200, (name, response.text)
            assert response.json() == {"active": False}, name
            admin = http.get("/admin/api/v1/clients", headers={"Authorization": f"Bearer {token}"})
            assert admin.status_code in (401, 431), (name, admin.status_code, admin.text)
