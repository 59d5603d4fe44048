"""Pruning spent rows (``storage/pruning.py``), on SQLite and PostgreSQL: what goes, what stays."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from bastion.storage import AuthorizationCode, Client, Database, NotFoundError, RefreshToken, User
from bastion.storage.pruning import Pruned, Pruner
from bastion.storage.sql.repositories import BrowserSession

IDLE = 1800.0


def _code(user: User, digest: str, expires_at: datetime) -> AuthorizationCode:
    return AuthorizationCode(
        code_digest=digest,
        client_id="app",
        user_id=user.id,
        redirect_uri="https://app.example.com/cb",
        expires_at=expires_at,
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        created_at=expires_at - timedelta(seconds=60),
    )


def _token(user: User, digest: str, expires_at: datetime) -> RefreshToken:
    return RefreshToken(
        token_digest=digest,
        family_id=f"fam-{digest}",
        client_id="app",
        user_id=user.id,
        scope="openid offline_access",
        created_at=expires_at - timedelta(days=30),
        expires_at=expires_at,
    )


def _session(
    user: User,
    digest: str,
    now: datetime,
    *,
    ended: timedelta | None = None,
    expires_in: timedelta = timedelta(hours=12),
    unused_for: timedelta = timedelta(0),
) -> BrowserSession:
    started = now - unused_for - timedelta(minutes=1)
    return BrowserSession(
        id_digest=digest * 64,
        user_id=user.id,
        created_at=started,
        last_seen_at=now - unused_for,
        expires_at=now + expires_in,
        auth_time=started,
        amr=("pwd",),
        ended_at=None if ended is None else now - ended,
        end_reason=None if ended is None else "logout",
    )


async def test_one_pass_deletes_only_what_is_long_spent(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    day = timedelta(days=1)
    for digest, expired in (("a" * 64, 2 * day), ("b" * 64, timedelta(hours=1))):
        await db.codes.create(_code(user, digest, now - expired))
    await db.codes.create(_code(user, "c" * 64, now + timedelta(seconds=30)))
    for digest, expired in (("t1", 2 * day), ("t2", timedelta(hours=1)), ("t3", -day)):
        await db.refresh_tokens.create(_token(user, digest, now - expired))
    sessions = {
        "ended long ago": _session(user, "1", now, ended=8 * day),
        "ended yesterday": _session(user, "2", now, ended=day),
        "past its deadline long ago": _session(user, "3", now, expires_in=-8 * day),
        "unused for weeks": _session(user, "4", now, unused_for=30 * day),
        "live": _session(user, "5", now),
    }
    for session in sessions.values():
        await db.sessions.create(session)

    pruned = await Pruner(db, idle_timeout=IDLE, clock=lambda: now).prune_once()

    assert pruned == Pruned(codes=1, refresh_tokens=1, sessions=3)
    with pytest.raises(NotFoundError):
        await db.codes.get("a" * 64)
    await db.codes.get("b" * 64)  # expired an hour ago: a replay is still recognised
    await db.codes.get("c" * 64)
    assert await db.refresh_tokens.find_by_digest("t1") is None
    assert await db.refresh_tokens.find_by_digest("t2") is not None
    assert await db.refresh_tokens.find_by_digest("t3") is not None
    left = {s.id_digest for s in await db.sessions.list_for_user(user.id)}
    assert left == {sessions["live"].id_digest}  # list_for_user: the sessions not ended
    assert await db.sessions.get(sessions["ended yesterday"].id) is not None
    # A second pass finds nothing more.
    assert await Pruner(db, idle_timeout=IDLE, clock=lambda: now).prune_once() == Pruned(0, 0, 0)


async def test_the_loop_prunes_and_stops(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    await db.codes.create(_code(user, "d" * 64, now - timedelta(days=3)))
    stop = asyncio.Event()
    pruner = Pruner(db, idle_timeout=IDLE, interval=0.05, clock=lambda: now)
    task = asyncio.create_task(pruner.run(stop))
    for _ in range(100):
        try:
            await db.codes.get("d" * 64)
        except NotFoundError:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the loop never pruned the spent code")
    stop.set()
    await asyncio.wait_for(task, 5)
