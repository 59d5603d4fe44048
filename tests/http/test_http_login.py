"""``/login``, ``/logout`` and ``/account`` through the full app over a real runtime (SQLite,
in-process shared state): exact statuses, cookie attributes, CSRF, one answer for every
refused login, throttling, rotation, logout, and a disabled user's session ending."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from http_support import real_runtime

from bastion.audit.detectors import BruteForceDetector, CredentialStuffingDetector
from bastion.audit.events import Event
from bastion.http.endpoints import create_full_app
from bastion.http.endpoints.login import LOGIN_FAILED
from bastion.http.endpoints.pages import CONTENT_SECURITY_POLICY
from bastion.runtime import Runtime
from bastion.storage import User
from bastion.users import UserService, UserSpec

PASSWORD = "violet staple orbit 42"
COOKIE_TAIL = "; Path=/; Secure; HttpOnly; SameSite=Lax"
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    throttle = {"login": {"free_attempts": 3, "base_delay": 30}}
    async with real_runtime(tmp_path, ratelimit=throttle) as rt:
        yield rt


@pytest.fixture
async def alice(runtime: Runtime) -> User:
    return await UserService(runtime.db, runtime.settings).create(
        UserSpec("alice", display_name="Alice Liddell"), PASSWORD
    )


@pytest.fixture
def events(runtime: Runtime) -> list[Event]:
    seen: list[Event] = []
    runtime.auditor.subscribe(seen.append)
    return seen


def _client(runtime: Runtime, ip: str = "198.51.100.7") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_full_app(runtime), client=(ip, 4000)),
        base_url="https://testserver",
    )


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(runtime) as client:
        yield client


def _csrf(html: str) -> str:
    found = _TOKEN.search(html)
    assert found is not None, html
    return found.group(1)


async def _login(
    http: httpx.AsyncClient, username: str, password: str, **extra: str
) -> httpx.Response:
    token = _csrf((await http.get("/login")).text)
    form = {"csrf_token": token, "username": username, "password": password, **extra}
    return await http.post("/login", data=form)


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        cookies[name] = header
    return cookies


async def test_the_form_is_accessible_and_sets_a_host_only_csrf_cookie(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/login", params={"return_to": "/app/x?y=1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csrf = _set_cookies(response)["__Host-bastion_csrf"]
    assert re.fullmatch(r"__Host-bastion_csrf=[A-Za-z0-9_-]{43}" + re.escape(COOKIE_TAIL), csrf)
    html = response.text
    assert '<label for="username">' in html and '<label for="password">' in html
    assert 'autocomplete="username"' in html and 'autocomplete="current-password"' in html
    assert 'name="return_to" value="/app/x?y=1"' in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


@pytest.mark.parametrize("path", ["/login", "/logout", "/account"])
async def test_every_page_has_the_strict_headers(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == (303 if path == "/account" else 200)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_stylesheet_is_served_by_bastion(http: httpx.AsyncClient) -> None:
    response = await http.get("/login/static/bastion.css")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert 'href="/login/static/bastion.css"' in (await http.get("/login")).text


async def test_a_login_sets_a_new_session_and_returns_to_the_page(
    http: httpx.AsyncClient, alice: User, events: list[Event]
) -> None:
    response = await _login(http, "Alice", PASSWORD, return_to="/app/orders?id=7")
    assert response.status_code == 303
    assert response.headers["location"] == "/app/orders?id=7"
    cookies = _set_cookies(response)
    assert re.fullmatch(
        r"__Host-bastion_session=[A-Za-z0-9_-]{43}" + re.escape(COOKIE_TAIL),
        cookies["__Host-bastion_session"],
    )
    assert "__Host-bastion_csrf" in cookies  # rotated with the session
    account = await http.get("/account")
    assert account.status_code == 200
    assert '<strong id="signed-in-as">alice</strong>' in account.text
    logins = [e for e in events if e.type == "auth.login"]
    assert [(e.outcome, e.subject, e.ip) for e in logins] == [("success", alice.id, "198.51.100.7")]
    assert [e.type for e in events if e.type.startswith("session.")] == ["session.started"]


@pytest.mark.parametrize("return_to", ["//evil.example", "/\\evil.example", "https://evil.example"])
async def test_an_unsafe_return_to_goes_to_the_account_page(
    http: httpx.AsyncClient, alice: User, return_to: str
) -> None:
    response = await _login(http, "alice", PASSWORD, return_to=return_to)
    assert (response.status_code, response.headers["location"]) == (303, "/account")
    form = await http.get("/login", params={"return_to": return_to})
    assert 'name="return_to" value="/account"' in form.text


async def test_unknown_user_and_wrong_password_get_the_same_answer(
    http: httpx.AsyncClient, alice: User, events: list[Event]
) -> None:
    unknown = await _login(http, "mallory", PASSWORD)
    wrong = await _login(http, "alice", PASSWORD + "!")
    for response in (unknown, wrong):
        assert response.status_code == 422
        assert LOGIN_FAILED in response.text
        assert 'role="alert"' in response.text
        assert "__Host-bastion_session" not in _set_cookies(response)
    assert unknown.text.replace("mallory", "X") == wrong.text.replace("alice", "X")
    failures = [(e.outcome, e.reason, e.subject) for e in events if e.type == "auth.login"]
    assert failures == [
        ("failure", "unknown_user", "mallory"),
        ("failure", "bad_password", "alice"),
    ]


async def test_a_form_without_credentials_is_refused_without_a_check(
    http: httpx.AsyncClient, events: list[Event]
) -> None:
    response = await _login(http, "alice", "")
    assert response.status_code == 422
    assert "Enter your username and password." in response.text
    assert not [e for e in events if e.type == "auth.login"]


@pytest.mark.parametrize("token", [None, "", "0" * 64, "forged"])
async def test_a_post_without_its_csrf_token_is_403(
    http: httpx.AsyncClient, alice: User, token: str | None
) -> None:
    await http.get("/login")
    form = {"username": "alice", "password": PASSWORD}
    if token is not None:
        form["csrf_token"] = token
    response = await http.post("/login", data=form)
    assert response.status_code == 403
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Form expired" in response.text
    assert "__Host-bastion_session" not in _set_cookies(response)


@pytest.mark.parametrize(
    "body", [b"\xff\xfe", b"&".join(b"f%d=1" % n for n in range(11)), b"csrf_token"]
)
async def test_a_body_that_is_no_form_of_ours_is_403(http: httpx.AsyncClient, body: bytes) -> None:
    await http.get("/login")
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert (await http.post("/login", content=body, headers=headers)).status_code == 403


async def test_a_token_from_another_browser_is_403(
    runtime: Runtime, http: httpx.AsyncClient, alice: User
) -> None:
    async with _client(runtime) as attacker:
        token = _csrf((await attacker.get("/login")).text)
    await http.get("/login")
    response = await http.post(
        "/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 403


async def test_failures_are_throttled_by_the_fifth_attempt(
    runtime: Runtime, http: httpx.AsyncClient, alice: User, events: list[Event]
) -> None:
    # free_attempts 3: the 4th failure locks the pair, the 5th attempt waits (even right).
    for _ in range(4):
        assert (await _login(http, "alice", "wrong password 1")).status_code == 422
    throttled = await _login(http, "alice", PASSWORD)
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 30
    assert "Too many failed sign-in attempts" in throttled.text
    assert events[-1].type == "auth.login" and events[-1].reason == "throttled_account_ip"
    # Another address is not locked out of the account.
    async with _client(runtime, "203.0.113.9") as elsewhere:
        assert (await _login(elsewhere, "alice", PASSWORD)).status_code == 303


async def test_failures_feed_the_brute_force_and_stuffing_detectors(
    runtime: Runtime, http: httpx.AsyncClient, alice: User, events: list[Event]
) -> None:
    brute = BruteForceDetector(failures=3, window=600)
    stuffing = CredentialStuffingDetector(accounts=3, window=600)
    for username in ("alice", "alice", "alice", "bob", "carol"):
        await _login(http, username, "wrong password 1")
    alerts = [(d.name, d.observe(e)) for e in events for d in (brute, stuffing)]
    fired = {name: alert for name, alert in alerts if alert is not None}
    assert set(fired) == {"brute_force", "credential_stuffing"}


async def test_a_planted_session_id_is_never_the_one_signed_in(
    runtime: Runtime, http: httpx.AsyncClient, alice: User
) -> None:
    bob = await UserService(runtime.db, runtime.settings).create(UserSpec("bob"), PASSWORD)
    planted = (await runtime.sessions.start(bob)).token if runtime.sessions else ""
    http.cookies.set("__Host-bastion_session", planted, domain="testserver.local")
    response = await _login(http, "alice", PASSWORD)
    fresh = response.cookies["__Host-bastion_session"]
    assert fresh != planted
    assert runtime.sessions is not None and await runtime.sessions.resolve(planted) is None


async def test_logout_needs_a_post_and_ends_the_session(
    runtime: Runtime, http: httpx.AsyncClient, alice: User, events: list[Event]
) -> None:
    await _login(http, "alice", PASSWORD)
    token = http.cookies["__Host-bastion_session"]
    confirm = await http.get("/logout")
    assert confirm.status_code == 200 and "You are signed in as" in confirm.text
    assert (await http.get("/account")).status_code == 200  # the GET ended nothing
    refused = await http.post("/logout", data={})
    assert refused.status_code == 403
    response = await http.post("/logout", data={"csrf_token": _csrf(confirm.text)})
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert _set_cookies(response)["__Host-bastion_session"] == (
        "__Host-bastion_session=; Max-Age=0" + COOKIE_TAIL
    )
    http.cookies.set("__Host-bastion_session", token, domain="testserver.local")  # replayed
    account = await http.get("/account")
    assert (account.status_code, account.headers["location"]) == (
        303,
        "/login?return_to=/account",
    )
    assert events[-1].type == "session.ended" and events[-1].reason == "logout"


async def test_disabling_the_user_ends_the_session_through_the_feed(
    runtime: Runtime, http: httpx.AsyncClient, alice: User, events: list[Event]
) -> None:
    await _login(http, "alice", PASSWORD)
    assert (await http.get("/account")).status_code == 200
    await UserService(runtime.db, runtime.settings).set_disabled(alice.id, True)
    await runtime.changes.poll()  # what the follower does every 250 ms
    ended = [e for e in events if e.type == "session.ended"]
    assert [(e.reason, e.subject) for e in ended] == [("user_disabled", alice.id)]
    assert (await http.get("/account")).status_code == 303
