"""Browser sessions: server-side, found by the digest of a random id in a ``__Host-`` cookie.

- **The id** is 256 random bits (``__Host-bastion_session``: ``Secure; HttpOnly;
  SameSite=Lax; Path=/``); the database holds only its SHA-256 (``sessions.id_digest``),
  so a copy of the database opens no session.
- **Rotation**: :meth:`SessionManager.start` always makes a new id, and ends the
  session the browser presented before the login, if any — an id someone planted
  before the login (session fixation) is never the one that becomes authenticated.
- **Timeouts** (``sessions`` settings): ``idle_timeout`` since the last use,
  ``absolute_timeout`` since the login. :meth:`SessionManager.resolve` ends a session
  found past either.
- **Ended** by logout, by either timeout, and when its user is disabled, deleted or
  gets a new password: the feed's ``users`` channel tells every node at once
  (:meth:`SessionManager.user_changed`), and :meth:`~SessionManager.resolve` checks the
  user again on every use — the message is the fast path, the check the safe one.
- **Announced**: every start and end is a ``session.started`` / ``session.ended`` audit
  event and a row of the change feed's ``sessions`` channel (the ``id_digest``), written
  with the change, so caches of sessions on other nodes drop it within a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bastion.audit.events import Auditor, EventTypes
from bastion.crypto.digests import random_token, sha256_hex
from bastion.settings.sessions import SessionSettings
from bastion.storage import Database, NotFoundError, User
from bastion.storage.models import utcnow
from bastion.storage.sql.repositories import BrowserSession

__all__ = [
    "SESSION_COOKIE",
    "ActiveSession",
    "EndReason",
    "SessionManager",
    "StartedSession",
]

SESSION_COOKIE: Final = "__Host-bastion_session"
# random_token(32) is 43 characters; anything much longer is not ours (read no further).
_MAX_TOKEN: Final = 128
_MAX_USER_AGENT: Final = 256
_MAX_TOUCHED: Final = 100_000


class EndReason:
    """Why a session ended (``sessions.end_reason``, the audit event's ``reason``)."""

    LOGOUT = "logout"
    IDLE = "idle"
    EXPIRED = "expired"
    REPLACED = "replaced"  # a new login in the same browser (rotation)
    USER_DISABLED = "user_disabled"
    USER_DELETED = "user_deleted"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a reason, not a password
    SIGNED_OUT = "signed_out"  # by the user, from the account page (this or another browser)
    RP_LOGOUT = "rp_logout"  # a relying party's logout request (/oauth2/logout)


@dataclass(frozen=True, slots=True)
class StartedSession:
    """A new session and the id for the browser's cookie (shown only here, once)."""

    token: str
    session: BrowserSession


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A live session and its user, as :meth:`SessionManager.resolve` found them."""

    session: BrowserSession
    user: User


def _digest(token: str) -> str:
    return sha256_hex(token.encode("utf-8"))


class SessionManager:
    """Starts, finds and ends the browser sessions in ``db`` under ``settings``.

    Every method may raise the storage errors (``DatabaseUnavailableError``).
    """

    def __init__(
        self,
        db: Database,
        settings: SessionSettings,
        auditor: Auditor | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.auditor = auditor
        self._clock = clock
        # id_digest -> the last use written for it (used()): bounds the writes per session.
        self._touched: dict[str, datetime] = {}
        self._end_listeners: list[Callable[[BrowserSession], None]] = []

    def on_ended(self, listener: Callable[[BrowserSession], None]) -> None:
        """Call ``listener`` with every session this manager ends (for whatever reason),
        on this node only: of nodes ending the same session, exactly one gets it."""
        self._end_listeners.append(listener)

    async def signed_into(self, session_id: str, client_id: str) -> None:
        """Remember that ``client_id`` obtained a code during the session (back-channel
        logout reaches it when the session ends)."""
        await self.db.sessions.add_client(session_id, client_id, self._clock())

    async def start(
        self,
        user: User,
        *,
        amr: tuple[str, ...] = ("pwd",),
        acr: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        replaces: str | None = None,
    ) -> StartedSession:
        """A new session for ``user`` just authenticated by ``amr``; ends ``replaces`` (the
        id the browser held before) first, so no id survives a login."""
        if replaces:
            await self.end(replaces, EndReason.REPLACED)
        now = self._clock()
        token = random_token(32)
        session = BrowserSession(
            id_digest=_digest(token),
            user_id=user.id,
            expires_at=now + timedelta(seconds=self.settings.absolute_timeout),
            auth_time=now,
            amr=amr,
            acr=acr,
            user_agent=user_agent[:_MAX_USER_AGENT] if user_agent else None,
            ip=ip,
            created_at=now,
            last_seen_at=now,
        )
        await self.db.sessions.create(session)
        self._audit(EventTypes.SESSION_STARTED, session, amr=list(amr))
        return StartedSession(token=token, session=session)

    async def resolve(self, token: str | None) -> ActiveSession | None:
        """The live session whose id is ``token`` and its user, or ``None``.

        A session found past a timeout, or whose user may no longer have it
        (disabled, deleted, a new password since it started) is ended here.
        """
        if not token or len(token) > _MAX_TOKEN:
            return None
        return await self.resolve_digest(_digest(token))

    async def resolve_digest(self, id_digest: str) -> ActiveSession | None:
        """:meth:`resolve` for the session whose id has the SHA-256 ``id_digest`` (hex): what
        the gateway asks (``session`` routes), which holds the digest, never the id."""
        session = await self.db.sessions.find_by_digest(id_digest)
        if session is None or session.ended_at is not None:
            return None
        now = self._clock()
        reason = self._timed_out(session, now)
        user = None
        if reason is None:
            user, reason = await self._user_of(session)
        if reason is not None or user is None:
            await self._end(session.id, reason or EndReason.USER_DELETED)
            return None
        if (now - session.last_seen_at).total_seconds() >= self._touch_every:
            await self.db.sessions.touch(session.id, now)
        return ActiveSession(session=session, user=user)

    async def end(self, token: str, reason: str) -> None:
        """End the session whose id is ``token`` (nothing when it is unknown or ended)."""
        if not token or len(token) > _MAX_TOKEN:
            return
        session = await self.db.sessions.find_by_digest(_digest(token))
        if session is not None and session.ended_at is None:
            await self._end(session.id, reason)

    async def end_for_user(
        self, user_id: str, reason: str, *, started_before: datetime | None = None
    ) -> int:
        """End the user's live sessions (those started before ``started_before``); how many."""
        ended = await self.db.sessions.end_for_user(
            user_id, self._clock(), reason, started_before=started_before
        )
        for session in ended:
            self._audit(EventTypes.SESSION_ENDED, session, reason=reason)
            self._announce_end(session)
        return len(ended)

    async def live_for_user(self, user_id: str) -> tuple[BrowserSession, ...]:
        """The user's sessions that have not ended nor timed out, oldest first."""
        now = self._clock()
        sessions = await self.db.sessions.list_for_user(user_id)
        return tuple(session for session in sessions if self._timed_out(session, now) is None)

    async def end_own(self, user_id: str, session_id: str, reason: str) -> bool:
        """End the session ``session_id`` if it is ``user_id``'s and live; whether it was."""
        try:
            session = await self.db.sessions.get(session_id)
        except NotFoundError:
            return False
        if session.user_id != user_id or session.ended_at is not None:
            return False
        ended = await self.db.sessions.end(session.id, self._clock(), reason)
        if ended is not None:
            self._audit(EventTypes.SESSION_ENDED, ended, reason=reason)
            self._announce_end(ended)
        return ended is not None

    async def end_others(self, user_id: str, keep: str, reason: str) -> int:
        """End every live session of the user but ``keep`` (a session id); how many."""
        ended = await self.db.sessions.end_for_user(user_id, self._clock(), reason, keep=keep)
        for session in ended:
            self._audit(EventTypes.SESSION_ENDED, session, reason=reason)
            self._announce_end(session)
        return len(ended)

    async def user_changed(self, message: str) -> None:
        """The feed's ``users`` channel: end what a disabled, deleted or re-passworded user
        may no longer have. An empty message ("drop everything") ends nothing."""
        if not message:
            return
        try:
            user = await self.db.users.get(message)
        except NotFoundError:
            await self.end_for_user(message, EndReason.USER_DELETED)
            return
        if user.disabled:
            await self.end_for_user(user.id, EndReason.USER_DISABLED)
        elif user.password_changed_at is not None:
            await self.end_for_user(
                user.id, EndReason.PASSWORD_CHANGED, started_before=user.password_changed_at
            )

    async def used(self, uses: list[tuple[str, float]]) -> int:
        """Record the gateway's uses of sessions, ``(id_digest, unix time)`` (the native
        core's ``sessions_used``): a session counts as used, so its idle end moves. At most
        one write per session per :attr:`touch_every` seconds (the same as a page of
        bastion's own); returns how many sessions were written."""
        written = 0
        for id_digest, at in uses:
            seen = datetime.fromtimestamp(at, tz=UTC)
            last = self._touched.get(id_digest)
            if last is not None and (seen - last).total_seconds() < self.touch_every:
                continue
            session = await self.db.sessions.find_by_digest(id_digest)
            if session is None or session.ended_at is not None:
                self._touched.pop(id_digest, None)
                continue
            if (seen - session.last_seen_at).total_seconds() < self.touch_every:
                self._touched[id_digest] = session.last_seen_at
                continue
            await self.db.sessions.touch(session.id, seen)
            self._touched[id_digest] = seen
            written += 1
        if len(self._touched) > _MAX_TOUCHED:
            self._touched.clear()
        return written

    @property
    def idle_timeout(self) -> float:
        """Seconds without a use after which a session ends (the ``sessions`` settings)."""
        return float(self.settings.idle_timeout)

    @property
    def touch_every(self) -> float:
        """Seconds between two writes of a session's last use (never a write per request)."""
        return self._touch_every

    @property
    def _touch_every(self) -> float:
        # Not a write per page view: a tenth of the idle timeout, at most a minute, is
        # precise enough for the idle end and for the account page's "last seen".
        return min(60.0, self.settings.idle_timeout / 10)

    def _timed_out(self, session: BrowserSession, now: datetime) -> str | None:
        if now >= session.expires_at:
            return EndReason.EXPIRED
        if (now - session.last_seen_at).total_seconds() >= self.settings.idle_timeout:
            return EndReason.IDLE
        return None

    async def _user_of(self, session: BrowserSession) -> tuple[User | None, str | None]:
        try:
            user = await self.db.users.get(session.user_id)
        except NotFoundError:
            return None, EndReason.USER_DELETED
        if user.disabled:
            return user, EndReason.USER_DISABLED
        changed = user.password_changed_at
        if changed is not None and changed > session.created_at:
            return user, EndReason.PASSWORD_CHANGED
        return user, None

    async def _end(self, session_id: str, reason: str) -> None:
        ended = await self.db.sessions.end(session_id, self._clock(), reason)
        if ended is not None:
            self._audit(EventTypes.SESSION_ENDED, ended, reason=reason)
            self._announce_end(ended)

    def _announce_end(self, session: BrowserSession) -> None:
        for listener in self._end_listeners:
            listener(session)

    def _audit(
        self, kind: str, session: BrowserSession, *, reason: str | None = None, **data: Any
    ) -> None:
        # A start is the login's success; an end is information (the reason says which).
        if self.auditor is not None:
            self.auditor.record(
                kind,
                "info" if reason else "success",
                reason=reason,
                ip=None if reason else session.ip,
                user_agent=None if reason else session.user_agent,
                subject=session.user_id,
                data={"session": session.id, **data},
            )
