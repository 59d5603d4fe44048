"""Browser sessions on SQLite and PostgreSQL: digests only, rotation, timeouts, ending with
the user, and every start and end audited and written to the change feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bastion.audit.events import Auditor, Event
from bastion.crypto.digests import sha256_hex
from bastion.interaction import EndReason, SessionManager, StartedSession
from bastion.settings.sessions import SessionSettings
from bastion.storage import Database, User, feed
from bastion.storage.sql import schema

START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def manager(db: Database, clock: Clock, events: list[Event]) -> SessionManager:
    auditor = Auditor()
    auditor.subscribe(events.append)
    settings = SessionSettings(idle_timeout=60, absolute_timeout=300)
    return SessionManager(db, settings, auditor, clock=clock)


@pytest.fixture
async def alice(db: Database) -> User:
    return await db.users.create(User(username="alice", created_at=START, updated_at=START))


async def _end_reason(db: Database, manager: SessionManager, started: StartedSession) -> str:
    """Why the session ended, once it no longer resolves."""
    assert await manager.resolve(started.token) is None
    reason = (await db.sessions.get(started.session.id)).end_reason
    assert reason is not None
    return reason


async def _feed(db: Database) -> list[tuple[str, str]]:
    rows = await db.change_feed.read_after(0, limit=1000)
    return [(row.channel, row.message) for row in rows if row.channel == feed.SESSIONS]


async def test_the_id_is_random_and_stored_only_as_its_digest(
    db: Database, manager: SessionManager, alice: User, events: list[Event]
) -> None:
    started = await manager.start(alice, ip="192.0.2.1", user_agent="UA/1")
    assert len(started.token) == 43  # 256 bits, base64url
    assert started.session.id_digest == sha256_hex(started.token.encode())
    async with db.transaction() as conn:
        rows = (await conn.execute(schema.sessions.select())).mappings().all()
    assert len(rows) == 1 and started.token not in {str(v) for v in rows[0].values()}
    found = await manager.resolve(started.token)
    assert found is not None and found.user.id == alice.id
    assert found.session.amr == ("pwd",) and found.session.ip == "192.0.2.1"
    assert [(e.type, e.outcome, e.subject) for e in events] == [
        ("session.started", "success", alice.id)
    ]
    assert await _feed(db) == [("sessions", started.session.id_digest)]


async def test_unknown_empty_and_oversized_ids_find_nothing(
    manager: SessionManager, alice: User
) -> None:
    await manager.start(alice)
    for token in ("", None, "x" * 43, "x" * 5000):
        assert await manager.resolve(token) is None


async def test_a_login_rotates_the_id_and_ends_the_one_presented(
    db: Database, manager: SessionManager, alice: User, events: list[Event]
) -> None:
    before = await manager.start(alice)
    after = await manager.start(alice, replaces=before.token)
    assert after.token != before.token
    assert await manager.resolve(before.token) is None
    assert await manager.resolve(after.token) is not None
    ended = [e for e in events if e.type == "session.ended"]
    assert [(e.reason, e.data["session"]) for e in ended] == [("replaced", before.session.id)]
    assert await _feed(db) == [
        ("sessions", before.session.id_digest),
        ("sessions", before.session.id_digest),
        ("sessions", after.session.id_digest),
    ]


async def test_idle_timeout_ends_an_unused_session(
    db: Database, manager: SessionManager, alice: User, clock: Clock, events: list[Event]
) -> None:
    started = await manager.start(alice)
    clock.advance(59)
    assert await manager.resolve(started.token) is not None  # used: the idle clock restarts
    clock.advance(59)
    assert await manager.resolve(started.token) is not None
    clock.advance(60)
    assert await manager.resolve(started.token) is None
    stored = await db.sessions.get(started.session.id)
    assert (stored.end_reason, stored.ended_at) == ("idle", clock.now)
    assert events[-1].type == "session.ended" and events[-1].reason == "idle"


async def test_absolute_timeout_ends_even_a_busy_session(
    db: Database, manager: SessionManager, alice: User, clock: Clock
) -> None:
    started = await manager.start(alice)
    for _ in range(5):
        clock.advance(59)
        assert await manager.resolve(started.token) is not None
    clock.advance(5)  # 300 s after the login
    assert await _end_reason(db, manager, started) == "expired"


async def test_logout_ends_it_once(
    db: Database, manager: SessionManager, alice: User, events: list[Event]
) -> None:
    started = await manager.start(alice)
    await manager.end(started.token, EndReason.LOGOUT)
    await manager.end(started.token, EndReason.LOGOUT)
    assert await manager.resolve(started.token) is None
    assert [e.reason for e in events if e.type == "session.ended"] == ["logout"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"disabled": True}, "user_disabled"),
        ({"password_changed_at": START + timedelta(seconds=1)}, "password_changed"),
    ],
)
async def test_the_users_feed_ends_the_users_sessions(
    db: Database,
    manager: SessionManager,
    alice: User,
    clock: Clock,
    change: dict[str, object],
    reason: str,
) -> None:
    first = await manager.start(alice)
    second = await manager.start(alice)
    bob = await db.users.create(User(username="bob", created_at=START, updated_at=START))
    other = await manager.start(bob)
    await db.users.update(alice.id, **change)
    await manager.user_changed(alice.id)
    for started in (first, second):
        assert await _end_reason(db, manager, started) == reason
    assert await manager.resolve(other.token) is not None
    assert await db.sessions.list_for_user(alice.id) == ()


async def test_a_new_password_keeps_the_sessions_started_after_it(
    db: Database, manager: SessionManager, alice: User, clock: Clock
) -> None:
    await db.users.update(alice.id, password_changed_at=START)
    clock.advance(1)
    started = await manager.start(alice)
    await manager.user_changed(alice.id)
    assert await manager.resolve(started.token) is not None


async def test_resolve_checks_the_user_even_without_the_feed(
    db: Database, manager: SessionManager, alice: User
) -> None:
    started = await manager.start(alice)
    await db.users.update(alice.id, disabled=True)
    assert await _end_reason(db, manager, started) == "user_disabled"


async def test_a_deleted_user_s_sessions_are_ended_and_announced(
    db: Database, manager: SessionManager, alice: User, events: list[Event]
) -> None:
    started = await manager.start(alice)
    await db.users.delete(alice.id)
    await manager.user_changed(alice.id)
    assert await _end_reason(db, manager, started) == "user_deleted"
    assert events[-1].reason == "user_deleted"
    assert (await _feed(db))[-1] == ("sessions", started.session.id_digest)


async def test_an_empty_users_message_ends_nothing(
    db: Database, manager: SessionManager, alice: User
) -> None:
    started = await manager.start(alice)
    await manager.user_changed("")
    assert await manager.resolve(started.token) is not None


async def test_ending_twice_ends_once(db: Database, manager: SessionManager, alice: User) -> None:
    started = await manager.start(alice)
    first = await db.sessions.end(started.session.id, START, "logout")
    second = await db.sessions.end(started.session.id, START, "logout")
    assert first is not None and first.ended_at == START and second is None


async def test_the_gateway_resolves_by_digest_and_its_uses_move_the_idle_end(
    db: Database, manager: SessionManager, clock: Clock, alice: User
) -> None:
    started = await manager.start(alice)
    digest = sha256_hex(started.token.encode())
    found = await manager.resolve_digest(digest)
    assert found is not None and found.user.id == alice.id
    assert await manager.resolve_digest("0" * 64) is None
    assert manager.idle_timeout == 60.0 and manager.touch_every == 6.0
    # Used through the gateway only, for longer than the idle timeout: it lives on.
    for _ in range(10):
        clock.advance(10)
        written = await manager.used([(digest, clock.now.timestamp())])
        assert written == 1
    assert (await db.sessions.get(started.session.id)).last_seen_at == clock.now
    assert await manager.resolve_digest(digest) is not None
    # Within the touch interval: no write (never one per request).
    clock.advance(1)
    assert await manager.used([(digest, clock.now.timestamp())]) == 0
    assert await manager.used([(digest, (clock.now + timedelta(seconds=2)).timestamp())]) == 0
    # An unknown or ended session's uses write nothing.
    await manager.end(started.token, EndReason.LOGOUT)
    clock.advance(30)
    assert await manager.used([(digest, clock.now.timestamp()), ("f" * 64, 1.0)]) == 0
    assert await manager.resolve_digest(digest) is None
