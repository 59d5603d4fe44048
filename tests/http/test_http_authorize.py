"""``/oauth2/authorize``, ``/consent``, ``/oauth2/userinfo`` and discovery through the full app
over a real runtime (SQLite, in-process shared state): the flow login → consent → code →
token → userinfo, and every refusal with its exact code."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from http_support import real_runtime
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from bastion.audit.events import Event
from bastion.crypto.jwt import sign_jwt
from bastion.http.endpoints import create_full_app
from bastion.http.endpoints.login import CONTENT_SECURITY_POLICY
from bastion.interaction.consents import ConsentService
from bastion.runtime import Runtime
from bastion.storage import Client, User
from bastion.users import UserService, UserSpec

PASSWORD = "violet staple orbit 42"
CALLBACK = "http://127.0.0.1:9999/cb"
SIGNED_OUT = "http://127.0.0.1:9999/signed-out"
VERIFIER = "Zr9XqL2-w0n7Yb_0a8Kf3dT1uVh6sJm4pQe5iRg.oCy~"
CHALLENGE = create_s256_code_challenge(VERIFIER)
SCOPE = "openid profile email offline_access orders:read"
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
_REQUEST = re.compile(r'name="request" value="([A-Za-z0-9_-]+)"')

SPA = Client(
    "spa",
    name="Orders SPA",
    client_type="public",
    token_endpoint_auth_method="none",
    grant_types=("authorization_code", "refresh_token"),
    redirect_uris=(CALLBACK, "https://app.example.com/cb"),
    scopes=tuple(SCOPE.split()),
    post_logout_redirect_uris=(SIGNED_OUT, "https://app.example.com/bye?from=op"),
)
#: Another client, with a post-logout URI of its own.
OTHER = Client(
    "other",
    name="Other app",
    client_type="public",
    token_endpoint_auth_method="none",
    grant_types=("authorization_code",),
    redirect_uris=("https://other.example.com/cb",),
    post_logout_redirect_uris=("https://other.example.com/bye",),
)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with real_runtime(tmp_path) as rt:
        await rt.db.clients.create(SPA)
        await rt.db.clients.create(OTHER)
        yield rt


@pytest.fixture
async def alice(runtime: Runtime) -> User:
    return await UserService(runtime.db, runtime.settings).create(
        UserSpec("alice", email="alice@example.com", display_name="Alice Liddell"), PASSWORD
    )


@pytest.fixture
async def bob(runtime: Runtime) -> User:
    return await UserService(runtime.db, runtime.settings).create(UserSpec("bob"), PASSWORD)


@pytest.fixture
def events(runtime: Runtime) -> list[Event]:
    seen: list[Event] = []
    runtime.auditor.subscribe(seen.append)
    return seen


def _client(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_full_app(runtime), client=("198.51.100.7", 4000)),
        base_url="https://testserver",
    )


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(runtime) as client:
        yield client


def _params(**changes: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "spa",
        "redirect_uri": CALLBACK,
        "scope": SCOPE,
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **changes,
    }
    return {name: value for name, value in params.items() if value is not None}


def _query(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def _found(pattern: re.Pattern[str], html: str) -> str:
    found = pattern.search(html)
    assert found is not None, html
    return found.group(1)


async def _login(http: httpx.AsyncClient, location: str, username: str) -> str:
    """Follow a redirect to the login form, sign in; where the login sends the browser."""
    assert location.startswith("/login?"), location
    form = await http.get(location)
    assert form.status_code == 200
    return_to = _query(location)["return_to"]
    data = {
        "csrf_token": _found(_TOKEN, form.text),
        "username": username,
        "password": PASSWORD,
        "return_to": return_to,
    }
    response = await http.post("/login", data=data)
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def _consent(http: httpx.AsyncClient, location: str, decision: str = "allow") -> str:
    assert location.startswith("/consent?request="), location
    page = await http.get(location)
    assert page.status_code == 200, page.text
    data = {
        "csrf_token": _found(_TOKEN, page.text),
        "request": _found(_REQUEST, page.text),
        "decision": decision,
    }
    response = await http.post("/consent", data=data)
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def _next(http: httpx.AsyncClient, location: str) -> str:
    response = await http.get(location)
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


async def _authorize(http: httpx.AsyncClient, **changes: str | None) -> str:
    response = await http.get("/oauth2/authorize", params=_params(**changes))
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


async def _code_flow(
    http: httpx.AsyncClient, username: str = "alice", **changes: str | None
) -> str:
    """Login and consent from scratch; the callback's location."""
    location = await _authorize(http, **changes)
    location = await _next(http, await _login(http, location, username))
    return await _consent(http, location)


async def _redeem(http: httpx.AsyncClient, code: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER,
        "client_id": "spa",
    }
    return await http.post("/oauth2/token", data=form)


def _callback(location: str, runtime: Runtime) -> dict[str, str]:
    assert location.startswith(CALLBACK + "?"), location
    query = _query(location)
    assert query["iss"] == runtime.settings.issuer_url
    return query


# -- the flow -----------------------------------------------------------------------------


async def test_login_consent_code_token_userinfo(
    http: httpx.AsyncClient, runtime: Runtime, alice: User, events: list[Event]
) -> None:
    start = await _authorize(http)
    assert start.startswith("/login?return_to=%2Foauth2%2Fauthorize%2Fcontinue%3Frequest%3D")
    login_page = await http.get(start)
    assert (
        "form-action 'self' http://127.0.0.1:9999;" in login_page.headers["content-security-policy"]
    )
    plain_login = await http.get("/login?return_to=/account")
    assert plain_login.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    after_login = await _login(http, start, "alice")
    assert after_login.startswith("/oauth2/authorize/continue?request=")
    consent_at = await _next(http, after_login)
    page = await http.get(consent_at)
    # Browsers check form-action on the redirects after a form: the client's origin is allowed.
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", "form-action 'self' http://127.0.0.1:9999"
    )
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    assert '<span id="client-name">Orders SPA</span>' in page.text
    scopes = re.findall(r'<li data-scope="([^"]+)">([^<]+)</li>', page.text)
    assert [scope for scope, _ in scopes] == SCOPE.split()
    assert dict(scopes)["email"] == "See your email address and whether it is verified"
    assert dict(scopes)["orders:read"] == "Use the API permission “orders:read”"
    callback = _callback(await _consent(http, consent_at), runtime)
    assert callback["state"] == "st-1" and callback["code"].startswith("bac_")

    token = await _redeem(http, callback["code"])
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["scope"] == SCOPE and body["refresh_token"].startswith("brt_")
    jwks = KeySet.import_key_set((await http.get("/oauth2/jwks.json")).json())
    claims = jwt.decode(body["id_token"], jwks, algorithms=["ES256"]).claims
    session = (await runtime.db.sessions.list_for_user(alice.id))[0]
    assert (claims["sub"], claims["aud"], claims["nonce"]) == (alice.id, "spa", "n-1")
    assert (claims["sid"], claims["amr"]) == (session.id, ["pwd"])
    assert claims["auth_time"] == int(session.auth_time.timestamp())

    info = await http.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.status_code == 200
    assert info.headers["cache-control"] == "no-store"
    assert info.json() == {
        "sub": alice.id,
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "updated_at": int(alice.updated_at.timestamp()),
        "email": "alice@example.com",
        "email_verified": False,
    }
    posted = await http.post(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert posted.status_code == 200 and posted.json()["sub"] == alice.id
    [issued] = [e for e in events if e.type == "oauth.authorize"]
    assert (issued.outcome, issued.subject, issued.client_id, issued.ip) == (
        "success",
        alice.id,
        "spa",
        "198.51.100.7",
    )
    assert issued.data == {"scope": SCOPE}
    given = [e for e in events if e.type == "consent.given"]
    assert [(e.outcome, e.subject, e.client_id, e.data["scope"]) for e in given] == [
        ("success", alice.id, "spa", "email offline_access openid orders:read profile")
    ]


async def test_a_remembered_consent_skips_the_page_unless_prompt_consent(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    _callback(await _code_flow(http), runtime)
    # The same scopes, or fewer: straight back with a code.
    again = _callback(await _authorize(http, scope="openid profile"), runtime)
    assert again["code"].startswith("bac_")
    # prompt=consent asks again, once: allowing returns the code, no loop.
    asked = await _authorize(http, prompt="consent")
    assert asked.startswith("/consent?request=")
    assert _callback(await _consent(http, asked), runtime)["code"].startswith("bac_")
    # A scope beyond the remembered set asks again (a client may register more later).
    await runtime.db.clients.update("spa", scopes=(*SCOPE.split(), "orders:write"))
    wider = await _authorize(http, scope="openid orders:write")
    assert wider.startswith("/consent?request=")


async def test_prompt_login_and_max_age_ask_once_without_a_loop(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    _callback(await _code_flow(http), runtime)
    for changes in ({"prompt": "login"}, {"max_age": "0"}):
        location = await _authorize(http, **changes)
        assert location.startswith("/login?"), changes
        back = await _next(http, await _login(http, location, "alice"))
        assert _callback(back, runtime)["code"].startswith("bac_"), changes
    # max_age long enough: no login.
    assert _callback(await _authorize(http, max_age="3600"), runtime)["code"]


async def test_login_hint_prefills_the_username(http: httpx.AsyncClient) -> None:
    location = await _authorize(http, login_hint="alice@example.com")
    assert _query(location)["login_hint"] == "alice@example.com"
    form = await http.get(location)
    assert 'name="username" value="alice@example.com"' in form.text


async def test_a_post_request_is_kept_server_side(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    response = await http.post("/oauth2/authorize", data=_params())
    assert response.status_code == 303
    location = response.headers["location"]
    assert "code_challenge" not in location and "nonce" not in location
    back = await _next(http, await _login(http, location, "alice"))
    assert _callback(await _consent(http, back), runtime)["state"] == "st-1"


async def test_prompt_none_login_required_then_consent_required(
    http: httpx.AsyncClient, runtime: Runtime, alice: User, events: list[Event]
) -> None:
    refused = _callback(await _authorize(http, prompt="none"), runtime)
    assert (refused["error"], refused["state"]) == ("login_required", "st-1")
    assert "code" not in refused
    location = await _authorize(http)
    await _login(http, location, "alice")  # signed in, never consented
    refused = _callback(await _authorize(http, prompt="none"), runtime)
    assert (refused["error"], refused["state"]) == ("consent_required", "st-1")
    audited = [(e.outcome, e.reason, e.subject) for e in events if e.type == "oauth.authorize"]
    assert audited == [
        ("failure", "login_required", None),
        ("failure", "consent_required", alice.id),
    ]


async def test_deny_sends_access_denied(
    http: httpx.AsyncClient, runtime: Runtime, alice: User, events: list[Event]
) -> None:
    location = await _next(http, await _login(http, await _authorize(http), "alice"))
    denied = _callback(await _consent(http, location, "deny"), runtime)
    assert denied == {
        "error": "access_denied",
        "error_description": "the user denied the request",
        "state": "st-1",
        "iss": runtime.settings.issuer_url,
    }
    assert await runtime.db.consents.list_for_user(alice.id) == ()
    [audited] = [e for e in events if e.type == "oauth.authorize"]
    assert (audited.outcome, audited.reason, audited.subject) == (
        "failure",
        "access_denied",
        alice.id,
    )


async def test_a_kept_request_answers_once(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    after_login = await _login(http, await _authorize(http), "alice")
    consent_at = await _next(http, after_login)
    _callback(await _consent(http, consent_at), runtime)
    again = await http.get(after_login)
    assert again.status_code == 400
    assert "Sign-in request expired" in again.text
    assert "location" not in again.headers


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"client_id": "nobody"}, "unknown client"),
        ({"client_id": None}, "missing parameter 'client_id'"),
        ({"redirect_uri": "http://127.0.0.1:9999/cb/"}, "not registered"),
        ({"redirect_uri": "HTTP://127.0.0.1:9999/cb"}, "not registered"),
        ({"redirect_uri": "http://127.0.0.1:9999/cb?x=1"}, "not registered"),
        ({"redirect_uri": "http://127.0.0.1:9999/cb#f"}, "not registered"),
        ({"redirect_uri": "https://app.example.com@evil.example/cb"}, "not registered"),
        ({"redirect_uri": "https://app.example.com.evil.example/cb"}, "not registered"),
        ({"redirect_uri": "http://app.example.com/cb"}, "not registered"),
        ({"redirect_uri": "https://evil.example/cb"}, "not registered"),
    ],
)
async def test_an_untrusted_client_or_redirect_is_a_page_never_a_redirect(
    http: httpx.AsyncClient, changes: dict[str, str | None], reason: str, events: list[Event]
) -> None:
    response = await http.get("/oauth2/authorize", params=_params(**changes))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    text = html.unescape(response.text)
    assert "Invalid authorization request" in text and reason in text
    [audited] = [e for e in events if e.type == "oauth.authorize"]
    assert audited.outcome == "failure"
    expected = {"nobody": "unknown_client", None: "client_id_missing"}
    assert audited.reason == expected.get(changes.get("client_id", "spa"), "redirect_uri_mismatch")


async def test_a_repeated_client_id_or_redirect_uri_is_a_page(http: httpx.AsyncClient) -> None:
    for name, value in (("client_id", "spa"), ("redirect_uri", CALLBACK)):
        query = urlencode([*_params().items(), (name, value)])
        response = await http.get(f"/oauth2/authorize?{query}")
        assert response.status_code == 400 and "location" not in response.headers
        assert f"parameter '{name}' repeated" in html.unescape(response.text)


@pytest.mark.parametrize(
    ("changes", "error", "description"),
    [
        ({"code_challenge": None}, "invalid_request", "code_challenge"),
        ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
        ({"code_challenge_method": None}, "invalid_request", "S256"),
        ({"code_challenge": "short"}, "invalid_request", "code_challenge"),
        ({"response_type": "token"}, "unsupported_response_type", "use code"),
        ({"scope": "openid admin"}, "invalid_scope", ""),
        ({"prompt": "none login"}, "invalid_request", "prompt=none"),
        ({"request": "eyJ"}, "request_not_supported", ""),
    ],
)
async def test_bad_requests_redirect_with_the_error_state_and_iss(
    http: httpx.AsyncClient,
    runtime: Runtime,
    changes: dict[str, str | None],
    error: str,
    description: str,
) -> None:
    refused = _callback(await _authorize(http, **changes), runtime)
    assert (refused["error"], refused["state"]) == (error, "st-1")
    assert description in refused.get("error_description", "")


async def test_a_repeated_parameter_redirects_invalid_request(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    query = urlencode([*_params().items(), ("scope", "openid")])
    response = await http.get(f"/oauth2/authorize?{query}")
    refused = _callback(response.headers["location"], runtime)
    assert refused["error"] == "invalid_request"
    assert refused["error_description"] == "parameter 'scope' repeated"


async def test_consent_posts_without_or_with_a_forged_csrf_token_are_refused(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    location = await _next(http, await _login(http, await _authorize(http), "alice"))
    page = await http.get(location)
    request_id = _found(_REQUEST, page.text)
    for token in (None, "0" * 64):
        data = {"request": request_id, "decision": "allow"}
        if token is not None:
            data["csrf_token"] = token
        refused = await http.post("/consent", data=data)
        assert refused.status_code == 403
        assert "Form expired" in refused.text
    assert await runtime.db.consents.list_for_user(alice.id) == ()


async def test_a_consent_cannot_be_posted_from_another_users_session(
    runtime: Runtime, alice: User, bob: User
) -> None:
    async with _client(runtime) as browser:
        location = await _next(browser, await _login(browser, await _authorize(browser), "alice"))
        page = await browser.get(location)
        request_id = _found(_REQUEST, page.text)
        # Bob signs in in the same browser (a new session), then posts Alice's consent form.
        login = await browser.get("/login")
        signed_in = await browser.post(
            "/login",
            data={
                "csrf_token": _found(_TOKEN, login.text),
                "username": "bob",
                "password": PASSWORD,
            },
        )
        assert signed_in.status_code == 303
        form = await browser.get("/login")  # a fresh CSRF token for the new cookie
        data = {"csrf_token": _found(_TOKEN, form.text), "request": request_id, "decision": "allow"}
        refused = await browser.post("/consent", data=data)
        assert refused.status_code == 403
        assert "Consent belongs to another sign-in" in refused.text
    assert await runtime.db.consents.list_for_user(alice.id) == ()
    assert await runtime.db.consents.list_for_user(bob.id) == ()


async def test_a_replayed_code_is_refused_and_revokes_its_tokens(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    code = _callback(await _code_flow(http), runtime)["code"]
    token = (await _redeem(http, code)).json()
    replay = await _redeem(http, code)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    info = await http.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert info.status_code == 401
    await _refresh_refused(http, token["refresh_token"])


async def test_a_wrong_or_missing_verifier_is_invalid(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    code = _callback(await _code_flow(http), runtime)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    wrong = await http.post(
        "/oauth2/token", data={**form, "client_id": "spa", "code_verifier": "x" * 43}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    # The code was burnt by the wrong try: the right verifier gets nothing now.
    assert (await _redeem(http, code)).status_code == 400
    code = _callback(await _authorize(http), runtime)["code"]
    missing = await http.post("/oauth2/token", data={**form, "code": code, "client_id": "spa"})
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")


# -- userinfo ------------------------------------------------------------------------------


async def _tokens(http: httpx.AsyncClient, runtime: Runtime, **changes: str | None) -> Any:
    code = _callback(await _code_flow(http, **changes), runtime)["code"]
    return (await _redeem(http, code)).json()


async def _refresh_refused(http: httpx.AsyncClient, refresh_token: str) -> None:
    """The refresh token is dead: ``invalid_grant``."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "spa"}
    refresh = await http.post("/oauth2/token", data=form)
    assert (refresh.status_code, refresh.json()["error"]) == (400, "invalid_grant")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_userinfo_refusals(http: httpx.AsyncClient, runtime: Runtime, alice: User) -> None:
    token = (await _tokens(http, runtime))["access_token"]
    missing = await http.get("/oauth2/userinfo")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="bastion"'
    in_query = await http.get("/oauth2/userinfo", params={"access_token": token})
    assert (in_query.status_code, in_query.json()["error"]) == (400, "invalid_request")
    in_body = await http.post("/oauth2/userinfo", data={"access_token": token})
    assert (in_body.status_code, in_body.json()["error"]) == (400, "invalid_request")
    both = await http.get(
        "/oauth2/userinfo", params={"access_token": token}, headers=_bearer(token)
    )
    assert both.status_code == 400
    forged = await http.get("/oauth2/userinfo", headers=_bearer(token[:-4] + "AAAA"))
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"].startswith(
        'Bearer realm="bastion", error="invalid_token"'
    )


async def test_userinfo_needs_the_openid_scope_and_gives_claims_by_scope(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    plain = await _tokens(http, runtime, scope="orders:read")
    refused = await http.get("/oauth2/userinfo", headers=_bearer(plain["access_token"]))
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="bastion", error="insufficient_scope", '
        'error_description="the access token needs the scope openid", scope="openid"'
    )
    # openid was not among the consented scopes: the page comes again.
    code = _callback(await _consent(http, await _authorize(http, scope="openid")), runtime)["code"]
    bare = (await _redeem(http, code)).json()
    info = await http.get("/oauth2/userinfo", headers=_bearer(bare["access_token"]))
    assert info.json() == {"sub": alice.id}


async def test_userinfo_refuses_a_disabled_user_and_a_revoked_token(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    tokens = await _tokens(http, runtime)
    revoke = await http.post(
        "/oauth2/revoke", data={"token": tokens["access_token"], "client_id": "spa"}
    )
    assert revoke.status_code == 200
    revoked = await http.get("/oauth2/userinfo", headers=_bearer(tokens["access_token"]))
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in revoked.headers["www-authenticate"]
    code = _callback(await _authorize(http), runtime)["code"]
    fresh = (await _redeem(http, code)).json()
    await UserService(runtime.db, runtime.settings).set_disabled(alice.id, True)
    disabled = await http.get("/oauth2/userinfo", headers=_bearer(fresh["access_token"]))
    assert disabled.status_code == 401
    assert 'error="invalid_token"' in disabled.headers["www-authenticate"]


# -- consent revocation ----------------------------------------------------------------------


async def test_revoking_a_consent_revokes_the_clients_refresh_tokens(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    tokens = await _tokens(http, runtime)
    consents = ConsentService(runtime.db, runtime.refresh_tokens)
    revoked = await consents.revoke(alice.id, "spa")
    assert [c.scope for c in revoked.consents] == [
        "email offline_access openid orders:read profile"
    ]
    assert revoked.refresh_tokens >= 1
    await _refresh_refused(http, tokens["refresh_token"])
    info = await http.get("/oauth2/userinfo", headers=_bearer(tokens["access_token"]))
    assert info.status_code == 401
    # The next request asks for consent again.
    assert (await _authorize(http)).startswith("/consent?request=")


async def test_the_account_page_lists_the_consented_app_and_revokes_it(
    http: httpx.AsyncClient, runtime: Runtime, alice: User, bob: User, events: list[Event]
) -> None:
    tokens = await _tokens(http, runtime)
    page = await http.get("/account")
    assert page.status_code == 200
    row = re.search(r'<tr data-client-id="spa">(.*?)</tr>', page.text, re.S)
    assert row is not None, page.text
    assert "Orders SPA" in row.group(1)
    assert "email offline_access openid orders:read profile" in row.group(1)
    csrf = _found(_TOKEN, page.text)
    # Without the CSRF token, or for a client never allowed: refused, nothing revoked.
    no_csrf = await http.post("/account/consents/revoke", data={"client_id": "spa"})
    assert no_csrf.status_code == 403
    unknown = await http.post(
        "/account/consents/revoke", data={"csrf_token": csrf, "client_id": "other"}
    )
    assert unknown.status_code == 404
    assert "You have not allowed that application." in unknown.text
    assert len(await runtime.db.consents.list_for_user(alice.id)) == 1
    revoked = await http.post(
        "/account/consents/revoke", data={"csrf_token": csrf, "client_id": "spa"}
    )
    assert (revoked.status_code, revoked.headers["location"]) == (
        303,
        "/account?done=consent_revoked",
    )
    after = await http.get(revoked.headers["location"])
    assert "The application&#39;s access was revoked." in after.text
    assert 'data-client-id="spa"' not in after.text
    assert 'id="no-consented-apps"' in after.text
    assert await runtime.db.consents.list_for_user(alice.id) == ()
    (event,) = [e for e in events if e.type == "consent.revoked"]
    assert (event.subject, event.client_id, event.data["actor"]) == (
        alice.id,
        "spa",
        f"user:{alice.id}",
    )
    await _refresh_refused(http, tokens["refresh_token"])


async def test_a_user_cannot_revoke_another_users_consent(
    runtime: Runtime, alice: User, bob: User
) -> None:
    async with _client(runtime) as alices, _client(runtime) as bobs:
        await _code_flow(alices)
        login = await bobs.get("/login")
        signed_in = await bobs.post(
            "/login",
            data={
                "csrf_token": _found(_TOKEN, login.text),
                "username": "bob",
                "password": PASSWORD,
            },
        )
        assert signed_in.status_code == 303
        page = await bobs.get("/account")
        assert 'id="no-consented-apps"' in page.text
        refused = await bobs.post(
            "/account/consents/revoke",
            data={"csrf_token": _found(_TOKEN, page.text), "client_id": "spa"},
        )
        assert refused.status_code == 404
    assert len(await runtime.db.consents.list_for_user(alice.id)) == 1


# -- discovery --------------------------------------------------------------------------------


async def test_discovery_is_complete_and_agrees_with_rfc8414(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    issuer = runtime.settings.issuer_url
    openid = (await http.get("/.well-known/openid-configuration")).json()
    oauth = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert openid["issuer"] == oauth["issuer"] == issuer
    for name, path in {
        "authorization_endpoint": "/oauth2/authorize",
        "token_endpoint": "/oauth2/token",
        "userinfo_endpoint": "/oauth2/userinfo",
        "jwks_uri": "/oauth2/jwks.json",
        "revocation_endpoint": "/oauth2/revoke",
        "introspection_endpoint": "/oauth2/introspect",
    }.items():
        assert openid[name] == oauth[name] == issuer + path
    assert {k: v for k, v in openid.items() if k in oauth} == oauth
    assert openid["response_types_supported"] == ["code"]
    assert openid["response_modes_supported"] == ["query"]
    assert openid["code_challenge_methods_supported"] == ["S256"]
    assert openid["authorization_response_iss_parameter_supported"] is True
    assert openid["scopes_supported"] == ["openid", "profile", "email", "offline_access"]
    assert "authorization_code" in openid["grant_types_supported"]
    assert openid["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert {"sub", "email", "preferred_username", "auth_time", "nonce"} <= set(
        openid["claims_supported"]
    )
    assert openid["request_uri_parameter_supported"] is False


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        ("https://app.example.com/cb?x=1", "https://app.example.com"),
        ("http://127.0.0.1:51234/cb", "http://127.0.0.1:51234"),
        ("http://[::1]:8080/cb", "http://[::1]:8080"),
        ("com.example.app:/oauth2redirect", "com.example.app:"),
        ("https://app.example.com;script-src/cb", None),
    ],
)
def test_form_action_sources(uri: str, source: str | None) -> None:
    from bastion.http.endpoints.pages import form_action_source

    assert form_action_source(uri) == source


@pytest.mark.parametrize(
    "path",
    [
        "/oauth2/authorize/continue",
        "/oauth2/authorize/continue?request=nonexistent",
        "/consent?request=nonexistent",
        "/consent?request=" + "x" * 500,
    ],
)
async def test_an_unknown_kept_request_is_a_page(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "Sign-in request expired" in response.text


async def test_a_consent_post_without_a_decision_decides_nothing(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    location = await _next(http, await _login(http, await _authorize(http), "alice"))
    page = await http.get(location)
    data = {
        "csrf_token": _found(_TOKEN, page.text),
        "request": _found(_REQUEST, page.text),
        "decision": "maybe",
    }
    refused = await http.post("/consent", data=data)
    assert refused.status_code == 400 and "Choose Allow or Deny" in refused.text
    assert await runtime.db.consents.list_for_user(alice.id) == ()
    # The request is still waiting: Allow now works.
    assert _callback(await _consent(http, location), runtime)["code"].startswith("bac_")


async def test_a_disabled_client_is_refused_when_the_request_continues(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    after_login = await _login(http, await _authorize(http), "alice")
    await runtime.db.clients.update("spa", disabled=True)
    response = await http.get(after_login)
    assert response.status_code == 400 and "location" not in response.headers
    assert "unknown client" in response.text


# -- RP-initiated logout ------------------------------------------------------------------------


async def _signed_in_with_id_token(http: httpx.AsyncClient, runtime: Runtime) -> dict[str, Any]:
    """The code flow from scratch; the ID token and its claims (``sid`` = this session)."""
    tokens = await _tokens(http, runtime)
    keys = KeySet.import_key_set(runtime.signing_keys.jwks())
    claims = jwt.decode(tokens["id_token"], keys).claims
    return {**claims, "id_token": tokens["id_token"], "access_token": tokens["access_token"]}


async def _alive(http: httpx.AsyncClient) -> bool:
    return (await http.get("/account")).status_code == 200


def _hint(runtime: Runtime, claims: dict[str, Any], **changes: Any) -> str:
    """An ID token signed with bastion's active key: ``claims`` with ``changes``."""
    body = {
        k: v
        for k, v in {**claims, **changes}.items()
        if k not in ("id_token", "access_token") and v is not None
    }
    return sign_jwt(body, runtime.signing_keys.current(), typ="JWT")


def _logout_refused(response: httpx.Response, text: str) -> None:
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert "Invalid logout request" in response.text
    assert text in html.unescape(response.text)


async def test_discovery_names_the_end_session_endpoint(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    openid = (await http.get("/.well-known/openid-configuration")).json()
    assert openid["end_session_endpoint"] == runtime.settings.issuer_url + "/oauth2/logout"


async def test_logout_with_the_sessions_id_token_ends_it_and_redirects_with_state(
    http: httpx.AsyncClient, runtime: Runtime, alice: User, events: list[Event]
) -> None:
    token = await _signed_in_with_id_token(http, runtime)
    params = {
        "id_token_hint": token["id_token"],
        "post_logout_redirect_uri": SIGNED_OUT,
        "state": "bye 1",
        "ui_locales": "fr",
        "logout_hint": "alice",
    }
    response = await http.get("/oauth2/logout", params=params)
    assert (response.status_code, response.headers["location"]) == (
        303,
        SIGNED_OUT + "?state=bye+1",
    )
    assert "__Host-bastion_session=; Max-Age=0" in response.headers["set-cookie"]
    assert not await _alive(http)
    [ended] = [e for e in events if e.type == "session.ended"]
    assert (ended.reason, ended.data["session"]) == ("rp_logout", token["sid"])
    [logged_out] = [e for e in events if e.type == "oauth.logout"]
    assert (logged_out.outcome, logged_out.client_id) == ("success", "spa")
    # A registered URI with a query keeps it; state is appended.
    again = await http.get(
        "/oauth2/logout",
        params={
            "client_id": "spa",
            "post_logout_redirect_uri": "https://app.example.com/bye?from=op",
            "state": "s2",
        },
    )
    assert again.headers["location"] == "https://app.example.com/bye?from=op&state=s2"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (SIGNED_OUT + "/", "post_logout_redirect_uri_mismatch"),
        (SIGNED_OUT.upper().replace("HTTP://", "http://"), "post_logout_redirect_uri_mismatch"),
        (SIGNED_OUT + "?next=x", "post_logout_redirect_uri_mismatch"),
        ("https://other.example.com/bye", "post_logout_redirect_uri_mismatch"),
        (CALLBACK, "post_logout_redirect_uri_mismatch"),
        ("https://evil.example/", "post_logout_redirect_uri_mismatch"),
    ],
)
async def test_an_unregistered_or_near_miss_uri_is_a_page_never_a_redirect(
    http: httpx.AsyncClient,
    runtime: Runtime,
    alice: User,
    events: list[Event],
    uri: str,
    reason: str,
) -> None:
    token = await _signed_in_with_id_token(http, runtime)
    params = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": uri, "state": "x"}
    _logout_refused(
        await http.get("/oauth2/logout", params=params),
        "the post_logout_redirect_uri is not registered for this client",
    )
    assert await _alive(http)
    [refused] = [e for e in events if e.type == "oauth.logout"]
    assert (refused.outcome, refused.reason) == ("failure", reason)


async def test_a_redirect_without_a_client_is_refused(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    await _signed_in_with_id_token(http, runtime)
    for uri in (SIGNED_OUT, "https://evil.example/"):
        _logout_refused(
            await http.get("/oauth2/logout", params={"post_logout_redirect_uri": uri}),
            "a post_logout_redirect_uri needs the client",
        )
    _logout_refused(
        await http.get("/oauth2/logout", params={"client_id": "nobody"}), "the client is unknown"
    )
    assert await _alive(http)


async def test_a_forged_foreign_or_mismatched_hint_is_refused(
    http: httpx.AsyncClient, runtime: Runtime, alice: User, events: list[Event]
) -> None:
    token = await _signed_in_with_id_token(http, runtime)
    foreign_key = ECKey.generate_key("P-256", {"kid": runtime.signing_keys.current().kid})
    claims = {k: v for k, v in token.items() if k not in ("id_token", "access_token")}
    forged = jwt.encode({"alg": "ES256", "kid": foreign_key.kid, "typ": "JWT"}, claims, foreign_key)
    cases = {
        forged: "id_token_hint_",
        _hint(runtime, token, iss="https://elsewhere.example"): "id_token_hint_wrong_issuer",
        _hint(runtime, token, aud=None, azp=None): "id_token_hint_missing_claim",
        token["id_token"] + "x": "id_token_hint_",
        "not-a-jwt": "id_token_hint_malformed",
    }
    for hint, reason in cases.items():
        params = {"id_token_hint": hint, "post_logout_redirect_uri": SIGNED_OUT}
        _logout_refused(
            await http.get("/oauth2/logout", params=params),
            "the id_token_hint is not a valid ID token of this server",
        )
        assert events[-1].type == "oauth.logout" and events[-1].reason.startswith(reason)
    # An access token is no ID token.
    _logout_refused(
        await http.get("/oauth2/logout", params={"id_token_hint": token["access_token"]}),
        "the id_token_hint is not a valid ID token of this server",
    )
    mismatch = {"id_token_hint": token["id_token"], "client_id": "other"}
    _logout_refused(
        await http.get("/oauth2/logout", params=mismatch),
        "the client_id is not the id_token_hint's audience",
    )
    repeated = [("client_id", "spa"), ("client_id", "spa")]
    _logout_refused(
        await http.get("/oauth2/logout", params=repeated), "the parameter client_id is repeated"
    )
    assert await _alive(http)


async def test_an_expired_hint_of_this_session_is_accepted(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    token = await _signed_in_with_id_token(http, runtime)
    expired = _hint(runtime, token, iat=token["iat"] - 7200, exp=token["iat"] - 3600)
    params = {"id_token_hint": expired, "post_logout_redirect_uri": SIGNED_OUT}
    response = await http.get("/oauth2/logout", params=params)
    assert (response.status_code, response.headers["location"]) == (303, SIGNED_OUT)
    assert not await _alive(http)


async def test_without_proof_a_confirmation_page_then_the_csrf_post_ends_the_session(
    http: httpx.AsyncClient, runtime: Runtime, alice: User
) -> None:
    token = await _signed_in_with_id_token(http, runtime)
    other_session = _hint(runtime, token, sid="another-session")
    for params in (
        {"client_id": "spa", "post_logout_redirect_uri": SIGNED_OUT, "state": "st"},
        {"id_token_hint": other_session, "post_logout_redirect_uri": SIGNED_OUT, "state": "st"},
        {},
    ):
        for method in ("GET", "POST"):
            if method == "GET":
                asked = await http.get("/oauth2/logout", params=params)
            else:  # an RP may post the request: the same confirmation
                asked = await http.post("/oauth2/logout", data=params)
            assert asked.status_code == 200, asked.text
            assert "Sign out?" in asked.text and "<script" not in asked.text
            assert await _alive(http)
    # The page of a request naming a client: its name, the fields carried, form-action.
    asked = await http.get(
        "/oauth2/logout",
        params={"client_id": "spa", "post_logout_redirect_uri": SIGNED_OUT, "state": "st"},
    )
    assert "Orders SPA" in asked.text
    assert "form-action 'self' http://127.0.0.1:9999;" in asked.headers["content-security-policy"]
    form = {
        "client_id": "spa",
        "post_logout_redirect_uri": SIGNED_OUT,
        "state": "st",
        "confirm": "yes",
    }
    for csrf in (None, "0" * 64):
        data = form if csrf is None else {**form, "csrf_token": csrf}
        refused = await http.post("/oauth2/logout", data=data)
        assert refused.status_code == 403
        assert "Form expired" in refused.text
        assert await _alive(http)
    confirmed = await http.post(
        "/oauth2/logout", data={**form, "csrf_token": _found(_TOKEN, asked.text)}
    )
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, SIGNED_OUT + "?state=st")
    assert not await _alive(http)


async def test_without_a_session_logout_redirects_or_says_signed_out(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    params = {"client_id": "spa", "post_logout_redirect_uri": SIGNED_OUT}
    response = await http.get("/oauth2/logout", params=params)
    assert (response.status_code, response.headers["location"]) == (303, SIGNED_OUT)
    assert "set-cookie" not in response.headers
    page = await http.get("/oauth2/logout")
    assert page.status_code == 200 and "You are signed out" in page.text
