"""The control plane's answers to the native core's lookups (``bastion.gateway.lookups``).

Each kind runs Python's own code and answers the ticket: ``found``, ``refused``, or
``unavailable`` with the ``ServiceUnavailableError``'s code, title and detail; anything
else leaves the ticket unanswered (a lost lookup: the native core answers the kind's 503).
The hook itself only hands the lookup to the event loop. End to end:
``features/native_front/test_native_lookups``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.waiting import wait_until_async
from bastion import _native
from bastion.apikeys.errors import InvalidApiKeyError
from bastion.gateway import lookups
from bastion.gateway.authn.identity import Identity
from bastion.gateway.authn.introspection import IntrospectionAuthenticator
from bastion.gateway.authn.mtls import MtlsAuthenticator
from bastion.gateway.lookups import NativeLookups
from bastion.storage.errors import DatabaseUnavailableError
from gateway.certs_support import TestCA, client_sans, der

CA = TestCA()
ALICE, _ = CA.issue("alice", client_sans("spiffe://test/alice"), server=False)


class Ticket:
    def __init__(self, renders: bool = True) -> None:
        self.answers: list[tuple[str, ...]] = []
        self.renders = renders

    def found(self) -> None:
        self.answers.append(("found",))

    def refused(self) -> None:
        self.answers.append(("refused",))

    def unavailable(self, code: str, title: str, detail: str) -> None:
        if not self.renders:
            raise ValueError(f"{code}: not rendered natively")
        self.answers.append(("unavailable", code, title, detail))

    def lost(self) -> None:
        self.answers.append(("lost",))


class Keys:
    def __init__(self, outcome: BaseException | None = None) -> None:
        self.outcome = outcome
        self.asked: list[str] = []

    async def look_up(self, key: str) -> Any:
        self.asked.append(key)
        if self.outcome is not None:
            raise self.outcome
        return object()


def _lookups(keys: Keys, **authenticators: Any) -> NativeLookups:
    return NativeLookups(keys, lambda: authenticators)


@pytest.mark.parametrize(
    ("outcome", "answer"),
    [
        (None, ("found",)),
        (InvalidApiKeyError("unknown"), ("refused",)),
        (
            DatabaseUnavailableError("database x is unavailable: timeout"),
            (
                "unavailable",
                "database_unavailable",
                "Database unavailable",
                "database x is unavailable: timeout",
            ),
        ),
    ],
)
async def test_an_api_key_lookup_answers_what_the_service_said(
    outcome: BaseException | None, answer: tuple[str, ...]
) -> None:
    keys, ticket = Keys(outcome), Ticket()
    await _lookups(keys).look_up("api_key", "bst_presented", ticket)
    assert keys.asked == ["bst_presented"]
    assert ticket.answers == [answer]


async def test_a_failure_not_rendered_natively_or_a_bug_is_a_lost_lookup() -> None:
    ticket = Ticket(renders=False)
    await _lookups(Keys(DatabaseUnavailableError("down"))).look_up("api_key", "bst_k", ticket)
    assert ticket.answers == []
    ticket = Ticket()
    await _lookups(Keys(RuntimeError("bug"))).look_up("api_key", "bst_k", ticket)
    assert ticket.answers == []
    # No authenticator for the kind (mtls not configured): lost as well.
    await _lookups(Keys()).look_up("cert", der(ALICE), ticket)
    assert ticket.answers == []


class SlowKeys(Keys):
    async def look_up(self, key: str) -> Any:
        self.asked.append(key)
        await asyncio.sleep(5)
        return object()


async def test_a_store_read_past_its_bound_is_the_kinds_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every lookup is answered within its bound (the native core's own wait is only a
    backstop): a store read past ``STORE_LIMIT`` answers ``lost()``, the kind's 503 that the
    native core renders (``native/src/lookup.rs``: ``a_lookup_is_answered_or_lost_and_counted``)."""
    monkeypatch.setattr(lookups, "STORE_LIMIT", 0.05)
    ticket = Ticket()
    await _lookups(SlowKeys()).look_up("api_key", "bst_slow", ticket)
    assert ticket.answers == [("lost",)]


async def test_an_endpoint_lookup_is_bounded_by_the_endpoint_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lookups, "ENDPOINT_LIMIT", 0.05)
    monkeypatch.setattr(lookups, "STORE_LIMIT", 10.0)

    class Slow(IntrospectionAuthenticator):
        def __init__(self) -> None:
            pass

        async def authenticate(self, token: str) -> Any:
            await asyncio.sleep(5)

    ticket = Ticket()
    await _lookups(Keys(), introspection=Slow()).look_up("introspection", "tok", ticket)
    assert ticket.answers == [("lost",)]


def test_the_lost_answers_have_one_home_in_the_native_core() -> None:
    """Python names no lost lookup's 503: ``lost()`` has the native core render it."""
    source = Path(lookups.__file__).read_text(encoding="utf-8")
    for text in (
        "Service unavailable",
        "Token introspection unavailable",
        "Token issuer unavailable",
        "cannot be checked right now",
        "cannot be fetched right now",
    ):
        assert text not in source
    assert callable(_native.LookupTicket.lost)


async def test_a_certificate_lookup_derives_and_pushes_the_identity() -> None:
    pushed: list[Identity] = []
    mtls = MtlsAuthenticator(push=pushed.append)
    ticket = Ticket()
    await _lookups(Keys(), mtls=mtls).look_up("cert", der(ALICE), ticket)
    assert ticket.answers == [("found",)]
    assert [i.subject for i in pushed] == ["spiffe://test/alice"]
    # A certificate Python cannot read: refused (its 401 invalid_token, malformed).
    await _lookups(Keys(), mtls=mtls).look_up("cert", b"\x30\x03not a certificate", ticket)
    assert ticket.answers[-1] == ("refused",)


async def test_an_introspection_lookup_pushes_every_answer() -> None:
    answers = {"tok-alive": {"active": True, "sub": "alice"}, "tok-dead": {"active": False}}

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.content.decode().split("&")[0].removeprefix("token=")
        if token == "tok-down":
            return httpx.Response(503)
        return httpx.Response(200, json=answers[token])

    pushed: list[tuple[str, Identity | None, float]] = []
    introspection = IntrospectionAuthenticator(
        "https://idp.test/introspect",
        client_id="gw",
        client_secret="s",
        transport=httpx.MockTransport(handler),
        push=lambda digest, identity, until: pushed.append((digest, identity, until)),
    )
    lookups = _lookups(Keys(), introspection=introspection)
    ticket = Ticket()
    for token in ("tok-alive", "tok-dead", "tok-down"):
        await lookups.look_up("introspection", token, ticket)
    await introspection.aclose()
    assert ticket.answers == [
        ("found",),
        ("refused",),
        (
            "unavailable",
            "introspection_unavailable",
            "Token introspection unavailable",
            "The token cannot be checked right now; try again shortly.",
        ),
    ]
    assert [(p[1].subject if p[1] else None) for p in pushed] == ["alice", None]


async def test_the_hook_hands_the_lookup_to_the_loop_and_is_removed_at_uninstall() -> None:
    keys, ticket = Keys(), Ticket()
    lookups = _lookups(keys)
    lookups.install()
    try:
        assert _native.lookup_hooked()
        # As the native lookup thread calls it: from another thread, returning at once.
        await asyncio.to_thread(lookups._hook, "api_key", "bst_threaded", ticket)
        await wait_until_async(lambda: ticket.answers, "the lookup's answer")
        assert (keys.asked, ticket.answers) == (["bst_threaded"], [("found",)])
    finally:
        lookups.uninstall()
    assert not _native.lookup_hooked()
    # Uninstalled: the hook drops the ticket (a lost lookup).
    lookups._hook("api_key", "bst_late", ticket)
    await asyncio.sleep(0.05)
    assert keys.asked == ["bst_threaded"]


class Sessions:
    """A ``SessionManager`` stand-in: ``resolve_digest`` answers ``active`` (or raises)."""

    idle_timeout = 600.0

    def __init__(self, active: Any = None, error: BaseException | None = None) -> None:
        self.active = active
        self.error = error
        self.asked: list[str] = []

    async def resolve_digest(self, id_digest: str) -> Any:
        self.asked.append(id_digest)
        if self.error is not None:
            raise self.error
        return self.active


def _active(user_id: str = "u1") -> Any:
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    now = datetime.now(UTC)
    user = SimpleNamespace(id=user_id, username="alice", email="a@example.com", roles=("admin",))
    session = SimpleNamespace(expires_at=now + timedelta(hours=1), last_seen_at=now)
    return SimpleNamespace(session=session, user=user)


async def test_a_session_lookup_pushes_the_session_or_a_refusal() -> None:
    _native.sessions_clear()
    live, dead = "a" * 64, "b" * 64
    sessions = Sessions(_active())
    found = Ticket()
    await NativeLookups(Keys(), dict, sessions).look_up("session", live, found)
    assert found.answers == [("found",)]
    assert _native.session_cached(live) == "live"
    sessions.active = None
    refused = Ticket()
    await NativeLookups(Keys(), dict, sessions).look_up("session", dead, refused)
    assert refused.answers == [("refused",)]
    assert _native.session_cached(dead) == "refused"
    # Not a digest (never sent by the native core): refused without asking the store.
    odd = Ticket()
    await NativeLookups(Keys(), dict, sessions).look_up("session", "A" * 64, odd)
    assert odd.answers == [("refused",)]
    assert sessions.asked == [live, dead]
    # The store down: its 503, nothing cached.
    down = Sessions(error=DatabaseUnavailableError("database x is unavailable: timeout"))
    failed = Ticket()
    await NativeLookups(Keys(), dict, down).look_up("session", "c" * 64, failed)
    assert failed.answers[0][:2] == ("unavailable", "database_unavailable")
    assert _native.session_cached("c" * 64) is None
    # Without sessions (a runtime that has none): a lost lookup.
    lost = Ticket()
    await NativeLookups(Keys(), dict).look_up("session", live, lost)
    assert lost.answers == []
    _native.sessions_clear()
    assert _native.sessions_len() == 0
