"""The user registry: accounts, their passwords, and checking a username and password.

Every change goes through the repository (``db.users``), which writes the
user's id to the change feed's ``users`` channel in the same transaction
(``storage/feed.py``), so what other processes cache about a user — the
sessions, refresh tokens and native session cache of later work — can be
dropped on every node within a second.

Passwords are checked against :class:`~bastion.users.policy.PasswordPolicy`
when set and hashed with argon2id (:class:`~bastion.crypto.passwords.PasswordHasher`,
parameters from ``users.password.argon2``). Hashing and verifying run in a
worker thread: each takes tens of milliseconds of CPU that must not stall the
event loop.
"""

from __future__ import annotations

from dataclasses import replace

from bastion.crypto.passwords import (
    Argon2Parameters,
    PasswordHasher,
    PasswordMismatchError,
    normalize_password,
)
from bastion.settings import Settings
from bastion.storage import Database, NotFoundError, Page, User
from bastion.storage.models import utcnow
from bastion.users.errors import InvalidCredentialsError
from bastion.users.policy import PasswordPolicy
from bastion.users.spec import UserSpec, check_spec

__all__ = ["UserService"]


def hasher_for(settings: Settings) -> PasswordHasher:
    """The argon2id hasher of ``users.password.argon2``."""
    cost = settings.users.password.argon2
    return PasswordHasher(Argon2Parameters(cost.memory_kib, cost.time_cost, cost.parallelism))


class UserService:
    """Users in ``db`` under the policy and hashing of ``settings``.

    Raises the storage errors (``NotFoundError``, ``ConflictError`` …),
    ``UserSpecError``, ``WeakPasswordError`` and, from :meth:`authenticate`,
    ``InvalidCredentialsError``.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        # The lifetimes a user's refresh tokens were issued under (ending them on disable).
        self.token_settings = settings.tokens
        self.policy = PasswordPolicy(settings.users.password)
        self.hasher = hasher_for(settings)

    async def _hash(self, password: str, username: str) -> str:
        self.policy.check(password, username=username)
        return await self.hasher.hash_async(password)

    async def create(self, spec: UserSpec, password: str | None = None) -> User:
        """Store a new user (with a password, when given, checked by the policy first)."""
        spec = check_spec(spec)
        now = utcnow()
        password_hash = None if password is None else await self._hash(password, spec.username)
        user = User(
            username=spec.username,
            email=spec.email,
            display_name=spec.display_name,
            roles=spec.roles,
            password_hash=password_hash,
            password_changed_at=None if password is None else now,
            created_at=now,
            updated_at=now,
        )
        return await self.db.users.create(user)

    async def get(self, user_id: str) -> User:
        """The user with this id."""
        return await self.db.users.get(user_id)

    async def resolve(self, ref: str) -> User:
        """The user named by ``ref``: their id, else their username (any case)."""
        try:
            return await self.db.users.get(ref)
        except NotFoundError:
            user = await self.db.users.find_by_username(ref)
        if user is None:
            raise NotFoundError(f"user {ref[:60]!r} does not exist")
        return user

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[User]:
        """Users in creation order."""
        return await self.db.users.list(limit=limit, cursor=cursor)

    async def set_disabled(self, user_id: str, disabled: bool) -> User:
        """Disable or enable the user (idempotent)."""
        return await self.db.users.update(user_id, disabled=disabled)

    async def reset_password(self, user_id: str, password: str) -> User:
        """Set a new password (checked by the policy) and when it was set."""
        user = await self.db.users.get(user_id)
        password_hash = await self._hash(password, user.username)
        return await self.db.users.update(
            user_id, password_hash=password_hash, password_changed_at=utcnow()
        )

    async def delete(self, user_id: str) -> int:
        """Delete the user with their credentials, grants, codes and refresh tokens; revoke
        the API keys they own first (``owner_type: user``). How many keys were revoked.

        Revoked before the user goes, so no moment exists where the user is gone and a key
        of theirs still works; each revocation is on the change feed (``api-keys``), which
        every node and the native core follow. Raises ``NotFoundError``."""
        await self.db.users.get(user_id)
        revoked = 0
        cursor: str | None = None
        while True:
            page = await self.db.api_keys.list(
                owner_type="user", owner_id=user_id, limit=1000, cursor=cursor
            )
            for key in page.items:
                if key.revoked_at is None:
                    at = utcnow()
                    await self.db.api_keys.update(key.id, revoked_at=at, updated_at=at)
                    revoked += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        await self.db.users.delete(user_id)
        return revoked

    async def authenticate(self, username: str, password: str) -> User:
        """The user whose username and password these are, if they may log in.

        Every outcome costs one argon2id verify — an unknown username or a user
        without a password verifies against a dummy hash — and every refusal is
        the same error, so neither the answer nor its timing tells whether the
        username exists. A matching hash made under weaker parameters than today's
        is replaced by a new one.

        Raises:
            InvalidCredentialsError: ``reason`` unknown_user, no_password,
                bad_password or disabled.
        """
        user = await self._lookup(username)
        reason = self._refusal_before_verify(user, password)
        if user is None or user.password_hash is None or reason is not None:
            # The dummy verify of the first max_length characters: what any verify costs.
            await self._verify_dummy(password[: self.policy.max_length])
            raise InvalidCredentialsError(reason or "unknown_user")
        try:
            verified = await self.hasher.verify_async(user.password_hash, password)
        except PasswordMismatchError:
            raise InvalidCredentialsError("bad_password") from None
        if user.disabled:
            # Checked after the verify, so a disabled account costs what any other does.
            raise InvalidCredentialsError("disabled")
        if verified.needs_rehash:
            new_hash = await self.hasher.hash_async(password)
            # Not password_changed_at: the password is the same, only its hash is stronger.
            user = replace(user, password_hash=new_hash)
            await self.db.users.update(user.id, password_hash=new_hash)
        return user

    def _refusal_before_verify(self, user: User | None, password: str) -> str | None:
        """Why the password cannot match without verifying it, or ``None``."""
        if user is None:
            return "unknown_user"
        if user.password_hash is None:
            return "no_password"
        # Longer than any password that can be set: refused whole, never cut to fit.
        if len(normalize_password(password)) > self.policy.max_length:
            return "bad_password"
        return None

    async def _lookup(self, username: str) -> User | None:
        # A name no user can have is never looked up (the column holds at most 255).
        if not username or len(username) > 255:
            return None
        return await self.db.users.find_by_username(username)

    async def _verify_dummy(self, password: str) -> None:
        try:
            await self.hasher.verify_dummy_async(password)
        except PasswordMismatchError:
            return
