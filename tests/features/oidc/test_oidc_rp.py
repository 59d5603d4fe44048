"""bastion as an OpenID provider for relying parties nobody here wrote, against ``bastion serve``
over real HTTPS.

- **Authlib** (``OAuth2Client``): discovery → authorization URL with PKCE S256 → the browser
  part as plain HTTP form posts (login, consent, each with its CSRF cookie and field) → the
  callback with ``code``, ``state``, ``iss`` → token → the ID token verified with joserfc
  against the JWKS (``iss``, ``aud``, ``nonce``, ``at_hash``) → userinfo → refresh; then an
  admin revokes the consent through ``/admin/api/v1/users/{id}/consents/{client}`` and the
  refresh token dies with it.
- **openid-client** (panva, OpenID Certified; ``rp/rp.mjs`` run by node): discovery and the
  authorization URL, the browser part here, then openid-client exchanges the code
  (validating the ID token and the response's ``iss`` itself), calls userinfo and refreshes;
  then ``buildEndSessionUrl`` with ``id_token_hint`` and ``post_logout_redirect_uri``,
  followed by the browser, ends the session and lands on the registered URI with ``state``.
- **Chromium** (Playwright, Debian's chromium): login → consent page → the loopback
  callback receiving ``code``, ``state`` and ``iss`` → the account page listing the
  application, whose **Revoke** takes it off → RP-initiated logout with the ID token, landing
  on the RP's registered post-logout URI with ``state``; screenshots in
  ``test-artifacts/oidc/`` (or ``$BASTION_TEST_ARTIFACTS/oidc/``).

The issuer is ``https://localhost:<port>`` — the development default the README names —
and every client talks to that URL: strict clients compare the discovery document's
``issuer`` with the URL they were given.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from _support import BastionProcess
from _support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium
from _support.oidc_flow import browser_part, cli_json

PASSWORD = "violet staple orbit 42"
SCOPE = "openid profile email offline_access"
#: Registered without a port: a loopback redirect URI matches on any port (RFC 8252 §7.3).
REDIRECT = "http://127.0.0.1/cb"
RP = Path(__file__).parent / "rp"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("oidc")
    for name in ("alice", "bob", "carol"):
        cli_json(
            cwd,
            "users",
            "create",
            name,
            "--email",
            f"{name}@example.com",
            "--display-name",
            name.title(),
            "--password-stdin",
            stdin=PASSWORD,
        )
    with BastionProcess(cwd=cwd) as proc:
        yield proc


@pytest.fixture(scope="module")
def issuer(server: BastionProcess) -> str:
    document = httpx.get(server.url + "/.well-known/openid-configuration", verify=False).json()
    port = urlsplit(server.url).port
    assert document["issuer"] == f"https://localhost:{port}"  # the README's URL
    return str(document["issuer"])


def _register(server: BastionProcess, name: str, *after_logout: str) -> str:
    created = cli_json(
        server.cwd,
        "clients",
        "create",
        name,
        "--type",
        "public",
        "--redirect-uri",
        REDIRECT,
        *(arg for scope in SCOPE.split() for arg in ("--scope", scope)),
        *(arg for uri in after_logout for arg in ("--post-logout-redirect-uri", uri)),
    )
    assert created["grant_types"] == ["authorization_code", "refresh_token"]
    assert created["post_logout_redirect_uris"] == list(after_logout)
    return str(created["client_id"])


def _admin_headers(server: BastionProcess, http: httpx.Client, issuer: str) -> dict[str, str]:
    client = cli_json(
        server.cwd,
        "clients",
        "create",
        "ops",
        "--grant",
        "client_credentials",
        "--scope",
        "bastion:admin",
        "--audience",
        issuer + "/admin/api",
    )
    token = http.post(
        "/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials", "scope": "bastion:admin"},
    )
    assert token.status_code == 200, token.text
    return {"Authorization": "Bearer " + token.json()["access_token"]}


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_authlib_client_discovery_code_pkce_id_token_userinfo_refresh(
    server: BastionProcess, issuer: str
) -> None:
    client_id = _register(server, "Authlib app")
    callback = "http://127.0.0.1:8765/cb"
    with (
        httpx.Client(base_url=issuer, verify=False, timeout=30) as browser,
        OAuth2Client(
            client_id=client_id,
            token_endpoint_auth_method="none",
            redirect_uri=callback,
            scope=SCOPE,
            code_challenge_method="S256",
            verify=False,
        ) as rp,
    ):
        metadata = rp.request(
            "GET", issuer + "/.well-known/openid-configuration", withhold_token=True
        ).json()
        verifier = "k" * 20 + "Zr9XqL2-w0n7Yb_0a8Kf3dT1uVh6sJm4pQe5iRg"
        url, state = rp.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce="nonce-authlib"
        )
        assert parse_qs(urlsplit(url).query)["code_challenge"] == [
            create_s256_code_challenge(verifier)
        ]
        location = browser_part(browser, url, "alice", PASSWORD)
        response = parse_qs(urlsplit(location).query)
        assert location.startswith(callback + "?")
        assert (response["state"], response["iss"]) == ([state], [issuer])
        token = rp.fetch_token(
            metadata["token_endpoint"], authorization_response=location, code_verifier=verifier
        )
        jwks = KeySet.import_key_set(
            rp.request("GET", metadata["jwks_uri"], withhold_token=True).json()
        )
        algs = metadata["id_token_signing_alg_values_supported"]
        id_token = jwt.decode(token["id_token"], jwks, algorithms=algs)
        claims = id_token.claims
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            nonce={"essential": True, "value": "nonce-authlib"},
        )
        registry.validate(claims)
        assert claims["at_hash"] == _at_hash(token["access_token"])
        assert claims["amr"] == ["pwd"] and "sid" in claims and "auth_time" in claims

        info = rp.get(metadata["userinfo_endpoint"]).json()
        assert info == {
            "sub": claims["sub"],
            "name": "Alice",
            "preferred_username": "alice",
            "updated_at": info["updated_at"],
            "email": "alice@example.com",
            "email_verified": False,
        }
        refreshed = rp.refresh_token(metadata["token_endpoint"])
        assert refreshed["refresh_token"] != token["refresh_token"]

        # An admin revokes the consent: the client's refresh token for Alice dies with it.
        admin = _admin_headers(server, browser, issuer)
        consents = browser.get(f"/admin/api/v1/users/{claims['sub']}/consents", headers=admin)
        assert consents.status_code == 200
        assert [(c["client_id"], c["scope"]) for c in consents.json()["items"]] == [
            (client_id, "email offline_access openid profile")
        ]
        revoked = browser.delete(
            f"/admin/api/v1/users/{claims['sub']}/consents/{client_id}", headers=admin
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["refresh_tokens_revoked"] >= 1
        gone = browser.delete(
            f"/admin/api/v1/users/{claims['sub']}/consents/{client_id}", headers=admin
        )
        assert (gone.status_code, gone.json()["reason"]) == (404, "not_found")
        dead = browser.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refreshed["refresh_token"],
                "client_id": client_id,
            },
        )
        assert (dead.status_code, dead.json()["error"]) == (400, "invalid_grant")


def _node(*args: str, server: BastionProcess) -> dict[str, Any]:
    env = {
        **os.environ,
        "NODE_EXTRA_CA_CERTS": str(server.cwd / ".bastion" / "tls" / "dev-cert.pem"),
    }
    done = subprocess.run(
        ["node", str(RP / "rp.mjs"), *args],
        env=env,
        cwd=RP,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _node_ready() -> None:
    if shutil.which("node") is None or not (RP / "node_modules" / "openid-client").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(
                "openid-client is not installed (.ci/run runs npm ci in tests/features/oidc/rp)"
            )
        pytest.skip("openid-client is not installed (npm ci in tests/features/oidc/rp)")


def test_openid_client_discovery_code_pkce_id_token_userinfo_refresh(
    server: BastionProcess, issuer: str
) -> None:
    _node_ready()
    signed_out = "http://127.0.0.1:8766/signed-out"
    client_id = _register(server, "openid-client app", signed_out)
    callback = "http://127.0.0.1:8766/cb"
    alg = httpx.get(issuer + "/.well-known/openid-configuration", verify=False).json()[
        "id_token_signing_alg_values_supported"
    ][0]
    started = _node("start", issuer, client_id, callback, SCOPE, alg, server=server)
    with httpx.Client(base_url=issuer, verify=False, timeout=30) as browser:
        location = browser_part(browser, started["url"], "bob", PASSWORD)
        finished = _node(
            "finish",
            issuer,
            client_id,
            alg,
            location,
            started["verifier"],
            started["state"],
            started["nonce"],
            server=server,
        )
        # RP-initiated logout: openid-client builds the URL from discovery's
        # end_session_endpoint; the browser follows it and is signed out at once (the
        # hint's sid is this session), then sent to the registered URI with the state.
        assert browser.get("/account").status_code == 200
        logout = _node(
            "logout",
            issuer,
            client_id,
            alg,
            finished["id_token"],
            signed_out,
            "st-out",
            server=server,
        )
        assert logout["url"].startswith(issuer + "/oauth2/logout?")
        ended = browser.get(logout["url"])
        assert (ended.status_code, ended.headers["location"]) == (
            303,
            signed_out + "?state=st-out",
        )
        assert browser.get("/account").status_code == 303
    claims = finished["claims"]
    assert (claims["iss"], claims["aud"], claims["nonce"]) == (issuer, client_id, started["nonce"])
    assert finished["userinfo"]["sub"] == claims["sub"]
    assert finished["userinfo"]["preferred_username"] == "bob"
    assert finished["userinfo"]["email"] == "bob@example.com"
    assert finished["scope"] == SCOPE
    assert finished["refreshed"]["access_token_changed"] is True
    assert finished["refreshed"]["refresh_token_changed"] is True


class _Callback(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, list[str]]] = []
    signed_out: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        query = parse_qs(urlsplit(self.path).query)
        if path == "/cb":  # not the browser's /favicon.ico
            self.received.append(query)
        if path == "/signed-out":
            self.signed_out.append(query)
            body = b"<!doctype html><title>bye</title><p id=done>signed out at the RP</p>"
        else:
            body = b"<!doctype html><title>callback</title><p id=done>signed in</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.mark.slow
def test_chromium_login_consent_callback_account_and_logout(
    server: BastionProcess, issuer: str
) -> None:
    from playwright.sync_api import sync_playwright

    require_chromium()
    receiver = http.server.HTTPServer(("127.0.0.1", 0), _Callback)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{receiver.server_port}/cb"
    signed_out = f"http://127.0.0.1:{receiver.server_port}/signed-out"
    client_id = _register(server, "Browser app", signed_out)
    verifier = "c" * 43
    query = httpx.QueryParams(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": callback,
            "scope": SCOPE,
            "state": "browser-state",
            "nonce": "browser-nonce",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    shots = ARTIFACTS / "oidc"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with (
            sync_playwright() as playwright,
            httpx.Client(base_url=issuer, verify=False, timeout=30) as rp,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(ignore_https_errors=True).new_page()
                page.goto(f"{issuer}/oauth2/authorize?{query}")
                page.wait_for_url(re.compile(r".*/login\?.*"))
                page.get_by_label("Username").fill("carol")
                page.get_by_label("Password").fill(PASSWORD)
                page.screenshot(path=str(shots / "login.png"))
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(re.compile(r".*/consent\?request=.*"))
                assert page.locator("#client-name").inner_text() == "Browser app"
                assert page.locator("#signed-in-as").inner_text() == "carol"
                scopes = page.locator("#scopes li").all_inner_texts()
                assert len(scopes) == 4 and scopes[2].startswith("See your email address")
                page.screenshot(path=str(shots / "consent.png"))
                page.get_by_role("button", name="Allow").click()
                page.wait_for_url(re.compile(re.escape(callback) + r"\?.*"))
                assert page.locator("#done").inner_text() == "signed in"
                [received] = _Callback.received
                assert received["state"] == ["browser-state"]
                assert received["iss"] == [issuer]
                assert received["code"][0].startswith("bac_")
                # The code the browser brought back is good at the token endpoint.
                token = rp.post(
                    "/oauth2/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": received["code"][0],
                        "redirect_uri": callback,
                        "code_verifier": verifier,
                        "client_id": client_id,
                    },
                )
                assert token.status_code == 200, token.text
                assert token.json()["scope"] == SCOPE
                # The account page lists the application; Revoke takes it off.
                page.goto(f"{issuer}/account")
                app = page.locator(f'#consented-apps tr[data-client-id="{client_id}"]')
                assert app.locator("td").first.inner_text() == "Browser app"
                page.screenshot(path=str(shots / "account-consented-apps.png"), full_page=True)
                app.get_by_role("button", name="Revoke").click()
                page.wait_for_url(re.compile(r".*/account\?done=consent_revoked"))
                assert page.locator("#account-done").inner_text() == (
                    "The application's access was revoked."
                )
                assert page.locator("#no-consented-apps").is_visible()
                page.screenshot(path=str(shots / "account-consent-revoked.png"), full_page=True)
                # RP-initiated logout: the RP sends the browser with its ID token; the
                # session ends and the browser lands on the RP's registered URI.
                logout = httpx.QueryParams(
                    {
                        "id_token_hint": token.json()["id_token"],
                        "post_logout_redirect_uri": signed_out,
                        "state": "bye-state",
                    }
                )
                page.goto(f"{issuer}/oauth2/logout?{logout}")
                page.wait_for_url(re.compile(re.escape(signed_out) + r"\?state=bye-state"))
                assert page.locator("#done").inner_text() == "signed out at the RP"
                page.screenshot(path=str(shots / "rp-logout-landed.png"))
                page.goto(f"{issuer}/account")
                page.wait_for_url(re.compile(r".*/login\?return_to=.*"))
            finally:
                browser.close()
    finally:
        receiver.shutdown()
    assert _Callback.signed_out == [{"state": ["bye-state"]}]
    assert (shots / "consent.png").stat().st_size > 1000
