"""``interaction/backchannel.py`` with httpx's mock transport: who is told, the token's
header type, retries on 5xx/408/429/connection failures only, redirects not followed, refused
URIs, one audit event per client and outcome."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bastion.interaction.backchannel import BackchannelLogout
from bastion.storage import NotFoundError
from bastion.storage.models import Client
from bastion.storage.sql.repositories import BrowserSession

ISSUER = "https://auth.example.com"
NOW = datetime(2026, 12, 7, tzinfo=UTC)
SESSION = BrowserSession(
    id="s1",
    id_digest="d" * 64,
    user_id="u1",
    created_at=NOW,
    last_seen_at=NOW,
    expires_at=NOW,
    auth_time=NOW,
)


class _Store:
    def __init__(self, *clients: Client) -> None:
        self.by_id = {client.client_id: client for client in clients}
        self.sessions = self
        self.clients = self

    async def clients_of(self, session_id: str) -> tuple[str, ...]:
        assert session_id == "s1"
        return (*self.by_id, "deleted")

    async def get(self, client_id: str) -> Client:
        if client_id not in self.by_id:
            raise NotFoundError(client_id)
        return self.by_id[client_id]


class _Auditor:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None, str | None, dict[str, Any]]] = []

    def record(self, kind: str, outcome: str, **kw: Any) -> None:
        self.events.append((kind, outcome, kw["reason"], kw["client_id"], kw["data"]))


def _client(client_id: str, uri: str | None, *, disabled: bool = False) -> Client:
    return Client(client_id, backchannel_logout_uri=uri, disabled=disabled)


async def _run(
    answer: Callable[[httpx.Request], httpx.Response],
    *clients: Client,
    production: bool = False,
) -> tuple[list[httpx.Request], _Auditor, list[str]]:
    seen: list[httpx.Request] = []
    types: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    async def sign(
        build: Callable[[str], dict[str, Any]], alg: str | None, *, typ: str = "JWT"
    ) -> str:
        types.append(typ)
        return "token-for-" + build("ES256")["aud"]

    auditor = _Auditor()
    delivery = BackchannelLogout(
        _Store(*clients),  # type: ignore[arg-type]
        ISSUER,
        sign,
        auditor,  # type: ignore[arg-type]
        production=production,
        backoff=0.001,
        transport=httpx.MockTransport(handler),
    )
    delivery.session_ended(SESSION)
    await delivery.drain()
    return seen, auditor, types


async def test_each_registered_client_gets_one_token() -> None:
    seen, auditor, types = await _run(
        lambda _: httpx.Response(200),
        _client("a", "https://a.example/bc"),
        _client("b", None),
        _client("c", "https://c.example/bc", disabled=True),
    )
    [request] = seen
    assert (str(request.url), request.method) == ("https://a.example/bc", "POST")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == b"logout_token=token-for-a"
    assert types == ["logout+jwt"]
    assert auditor.events == [
        ("logout.backchannel", "success", None, "a", {"session": "s1", "attempts": 1})
    ]


@pytest.mark.parametrize(
    ("statuses", "outcome", "reason", "attempts"),
    [
        ([503, 200], "success", None, 2),
        ([500, 500, 500], "failure", "status_500", 3),
        ([429, 408, 204], "success", None, 3),
        ([400], "failure", "status_400", 1),
        ([302], "failure", "status_302", 1),  # never followed
    ],
)
async def test_retries_only_what_may_pass_later(
    statuses: list[int], outcome: str, reason: str | None, attempts: int
) -> None:
    answers = iter(statuses)

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), headers={"location": "https://evil.example/"})

    seen, auditor, _ = await _run(answer, _client("a", "https://a.example/bc"))
    assert len(seen) == attempts
    assert auditor.events == [
        ("logout.backchannel", outcome, reason, "a", {"session": "s1", "attempts": attempts})
    ]


async def test_an_unreachable_receiver_gets_three_attempts() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    seen, auditor, _ = await _run(answer, _client("a", "https://a.example/bc"))
    assert len(seen) == 3
    assert auditor.events[0][1:3] == ("failure", "unreachable")


@pytest.mark.parametrize(
    ("uri", "production", "reason"),
    [
        ("https://auth.example.com/anything", False, "uri_is_bastion"),
        ("https://auth.example.com:443/x", False, "uri_is_bastion"),
        ("http://127.0.0.1:9000/bc", True, "uri_not_https"),
    ],
)
async def test_refused_uris_get_nothing(uri: str, production: bool, reason: str) -> None:
    seen, auditor, _ = await _run(
        lambda _: httpx.Response(200), _client("a", uri), production=production
    )
    assert seen == []
    assert auditor.events == [
        ("logout.backchannel", "failure", reason, "a", {"session": "s1", "attempts": 0})
    ]


async def test_a_session_remembers_each_client_once(db: Any) -> None:
    """``session_clients`` on both backends: again is nothing, an unknown session or client
    is nothing (no error reaches the authorization endpoint)."""
    from bastion.interaction import SessionManager
    from bastion.settings.sessions import SessionSettings
    from bastion.storage import User

    user = await db.users.create(User(username="alice"))
    await db.clients.create(Client("spa"))
    sessions = SessionManager(db, SessionSettings())
    started = await sessions.start(user)
    for _ in range(2):
        await sessions.signed_into(started.session.id, "spa")
    await sessions.signed_into(started.session.id, "no-such-client")
    await sessions.signed_into("no-such-session", "spa")
    assert await db.sessions.clients_of(started.session.id) == ("spa",)
    ended: list[str] = []
    sessions.on_ended(lambda session: ended.append(session.id))
    await sessions.end(started.token, "logout")
    await sessions.end(started.token, "logout")  # already ended: not announced again
    assert ended == [started.session.id]
