"""``/account`` through the full app over a real runtime (SQLite, in-process shared state):
the sessions list and signing sessions out, the password change (current password first,
policy, throttle, other sessions ended, a new id for this browser), the user's own API keys
(revoke; create only when ``users.self_service_keys`` allows, within its scopes and count),
CSRF on every form, and nobody acting on what is not theirs."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from http_support import real_runtime

from bastion.apikeys import ApiKeySpec
from bastion.audit.events import Event
from bastion.http.endpoints import create_full_app
from bastion.http.endpoints.account import DONE_MESSAGES
from bastion.runtime import Runtime
from bastion.storage import User
from bastion.users import UserService, UserSpec

PASSWORD = "violet staple orbit 42"
NEW_PASSWORD = "amber kettle sonnet 97"
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
_SESSION_IDS = re.compile(r'name="session_id" value="([^"]+)"')


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    sections = {
        "ratelimit": {"login": {"free_attempts": 2, "base_delay": 30}},
        "users": {
            "self_service_keys": {
                "enabled": True,
                "scopes": ["orders:read", "orders:write"],
                "max_per_user": 2,
                "lifetime": "30d",
            }
        },
    }
    async with real_runtime(tmp_path, **sections) as rt:
        yield rt


@pytest.fixture
async def alice(runtime: Runtime) -> User:
    return await UserService(runtime.db, runtime.settings).create(UserSpec("alice"), PASSWORD)


@pytest.fixture
async def bob(runtime: Runtime) -> User:
    return await UserService(runtime.db, runtime.settings).create(UserSpec("bob"), PASSWORD)


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


@contextlib.asynccontextmanager
async def _signed_in(
    runtime: Runtime, username: str, password: str = PASSWORD
) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(runtime) as http:
        form = (await http.get("/login")).text
        token = _TOKEN.search(form)
        assert token is not None
        data = {"csrf_token": token.group(1), "username": username, "password": password}
        response = await http.post("/login", data=data)
        assert response.status_code == 303, response.text
        yield http


async def _post(http: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    page = await http.get("/account")
    token = _TOKEN.search(page.text)
    assert token is not None, page.text
    return await http.post(path, data={"csrf_token": token.group(1), **fields})


async def _live(http: httpx.AsyncClient) -> bool:
    return (await http.get("/account")).status_code == 200


async def test_without_a_session_the_page_sends_to_the_login(runtime: Runtime) -> None:
    async with _client(runtime) as http:
        response = await http.get("/account")
        assert (response.status_code, response.headers["location"]) == (
            303,
            "/login?return_to=/account",
        )
        posted = await http.post("/account/sessions/end-others", data={})
        assert (posted.status_code, posted.headers["location"]) == (
            303,
            "/login?return_to=/account",
        )


async def test_the_page_lists_the_sessions_and_has_the_strict_headers(
    runtime: Runtime, alice: User
) -> None:
    async with _signed_in(runtime, "alice") as one, _signed_in(runtime, "alice"):
        page = await one.get("/account")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert len(_SESSION_IDS.findall(page.text)) == 2
        assert page.text.count("(this browser)") == 1
        assert "<script" not in page.text


async def test_signing_out_another_session_and_everywhere_else(
    runtime: Runtime, alice: User, events: list[Event]
) -> None:
    async with (
        _signed_in(runtime, "alice") as here,
        _signed_in(runtime, "alice") as laptop,
        _signed_in(runtime, "alice") as phone,
    ):
        page = (await here.get("/account")).text
        this = re.search(r'aria-current="true">.*?name="session_id" value="([^"]+)"', page, re.S)
        assert this is not None
        laptop_id = next(i for i in _SESSION_IDS.findall(page) if i != this.group(1))
        ended = await _post(here, "/account/sessions/end", session_id=laptop_id)
        assert (ended.status_code, ended.headers["location"]) == (303, "/account?done=session")
        assert DONE_MESSAGES["session"] in (await here.get(ended.headers["location"])).text
        still = [await _live(laptop), await _live(phone)]
        assert still.count(True) == 1  # exactly the one signed out is gone
        others = await _post(here, "/account/sessions/end-others")
        assert (others.status_code, others.headers["location"]) == (303, "/account?done=others")
        assert not await _live(laptop) and not await _live(phone)
        assert await _live(here)
    reasons = [e.reason for e in events if e.type == "session.ended"]
    assert reasons == ["signed_out", "signed_out"]


async def test_signing_out_this_session_is_the_logout(runtime: Runtime, alice: User) -> None:
    async with _signed_in(runtime, "alice") as http:
        page = (await http.get("/account")).text
        (session_id,) = _SESSION_IDS.findall(page)
        response = await _post(http, "/account/sessions/end", session_id=session_id)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
        assert not await _live(http)


async def test_another_users_session_is_not_found_and_stays(
    runtime: Runtime, alice: User, bob: User
) -> None:
    async with (
        _signed_in(runtime, "alice") as mallory,
        _signed_in(runtime, "bob") as victim,
    ):
        (bobs,) = _SESSION_IDS.findall((await victim.get("/account")).text)
        for target in (bobs, "no-such-session", ""):
            response = await _post(mallory, "/account/sessions/end", session_id=target)
            assert response.status_code == 404
            assert "not one of yours" in response.text
        assert await _live(victim)


async def test_every_form_needs_its_csrf_token(runtime: Runtime, alice: User) -> None:
    async with _signed_in(runtime, "alice") as http:
        for path in (
            "/account/password",
            "/account/sessions/end",
            "/account/sessions/end-others",
            "/account/keys",
            "/account/keys/revoke",
        ):
            missing = await http.post(path, data={"current_password": PASSWORD})
            forged = await http.post(path, data={"csrf_token": "0" * 64})
            assert missing.status_code == forged.status_code == 403, path
        assert await _live(http)


async def test_changing_the_password(runtime: Runtime, alice: User, events: list[Event]) -> None:
    async with (
        _signed_in(runtime, "alice") as http,
        _signed_in(runtime, "alice") as elsewhere,
    ):
        old_cookie = http.cookies["__Host-bastion_session"]
        mismatch = await _post(
            http,
            "/account/password",
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
            confirm_password=NEW_PASSWORD + "x",
        )
        assert mismatch.status_code == 422 and "confirmation differ" in mismatch.text
        weak = await _post(
            http,
            "/account/password",
            current_password=PASSWORD,
            new_password="password1234",
            confirm_password="password1234",
        )
        assert weak.status_code == 422 and 'role="alert"' in weak.text
        changed = await _post(
            http,
            "/account/password",
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
            confirm_password=NEW_PASSWORD,
        )
        assert (changed.status_code, changed.headers["location"]) == (
            303,
            "/account?done=password",
        )
        assert http.cookies["__Host-bastion_session"] != old_cookie  # a new id here
        assert await _live(http)
        await runtime.changes.poll()  # what every node's follower does within 250 ms
        assert not await _live(elsewhere)
    with_old = _client(runtime)
    async with with_old:
        with_old.cookies.set("__Host-bastion_session", old_cookie, domain="testserver.local")
        assert not await _live(with_old)
    async with _signed_in(runtime, "alice", NEW_PASSWORD):
        pass
    changes = [e.data for e in events if e.type == "user.changed"]
    assert changes[-1]["action"] == "password_changed"
    assert changes[-1]["actor"] == f"user:{alice.id}"
    assert NEW_PASSWORD not in repr([e.data for e in events])


async def test_a_wrong_current_password_is_refused_and_throttled(
    runtime: Runtime, alice: User
) -> None:
    async with _signed_in(runtime, "alice") as http:
        fields = {
            "current_password": "not my password 1",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        }
        for _ in range(3):  # two free failures; the third sets the lock
            wrong = await _post(http, "/account/password", **fields)
            assert wrong.status_code == 422 and "current password is not correct" in wrong.text
        fields["current_password"] = PASSWORD  # even the right one waits now
        locked = await _post(http, "/account/password", **fields)
        assert locked.status_code == 429 and 1 <= int(locked.headers["retry-after"]) <= 30
        assert await _live(http)  # still signed in, password unchanged


async def test_own_api_keys_created_listed_and_revoked(
    runtime: Runtime, alice: User, events: list[Event]
) -> None:
    async with _signed_in(runtime, "alice") as http:
        refused = await _post(http, "/account/keys", name="ci", scopes="orders:admin")
        assert refused.status_code == 422 and "from the list only" in refused.text
        created = await _post(http, "/account/keys", name="ci", scopes="orders:read")
        assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
        key = re.search(r'id="new-key">(bst_[^<]+)<', created.text)
        assert key is not None
        stored = await runtime.api_keys.verify(key.group(1))
        assert (stored.owner_type, stored.owner_id, stored.scopes) == (
            "user",
            alice.id,
            ("orders:read",),
        )
        assert stored.expires_at is not None
        page = (await http.get("/account")).text
        assert stored.prefix in page and key.group(1) not in page  # shown once only
        assert (await _post(http, "/account/keys", name="two")).status_code == 200
        full = await _post(http, "/account/keys", name="three")
        assert full.status_code == 422 and "revoke one first" in full.text
        revoked = await _post(http, "/account/keys/revoke", key_id=stored.id)
        assert (revoked.status_code, revoked.headers["location"]) == (
            303,
            "/account?done=key_revoked",
        )
        assert (await runtime.api_keys.get(stored.id)).revoked_at is not None
    actions = [(e.data["action"], e.data["actor"]) for e in events if e.type == "api_key.changed"]
    assert actions == [
        ("created", f"user:{alice.id}"),
        ("created", f"user:{alice.id}"),
        ("revoked", f"user:{alice.id}"),
    ]


async def test_another_users_key_cannot_be_revoked(
    runtime: Runtime, alice: User, bob: User
) -> None:
    key, _ = await runtime.api_keys.create(
        ApiKeySpec(name="bobs", owner_type="user", owner_id=bob.id)
    )
    operator_key, _ = await runtime.api_keys.create(ApiKeySpec(name="ops"))
    async with _signed_in(runtime, "alice") as http:
        for target in (key.id, operator_key.id, "nope"):
            response = await _post(http, "/account/keys/revoke", key_id=target)
            assert response.status_code == 404 and "not one of yours" in response.text
    assert (await runtime.api_keys.get(key.id)).revoked_at is None
    assert (await runtime.api_keys.get(operator_key.id)).revoked_at is None


async def test_creating_keys_is_off_by_default(tmp_path: Path) -> None:
    async with real_runtime(tmp_path) as runtime:
        await UserService(runtime.db, runtime.settings).create(UserSpec("carol"), PASSWORD)
        async with _signed_in(runtime, "carol") as http:
            page = (await http.get("/account")).text
            assert 'action="/account/keys"' not in page
            response = await _post(http, "/account/keys", name="ci")
            assert response.status_code == 403 and "turned off" in response.text
