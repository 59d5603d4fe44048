"""bastion's repositories, in SQL (SQLAlchemy Core, async); their conventions:
:mod:`bastion.storage.repositories`.

Atomic single-use and rotation rely on one conditional ``UPDATE … WHERE
consumed_at IS NULL … RETURNING``: on PostgreSQL a concurrent updater waits for
the row lock and re-checks the condition; on SQLite the write lock taken at
``BEGIN IMMEDIATE`` serialises writers. Either way exactly one wins.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from bastion.storage import feed
from bastion.storage.errors import ConflictError, NotFoundError
from bastion.storage.feed import Change, FeedRow
from bastion.storage.models import (
    ApiKey,
    AuditCheckpoint,
    AuditEvent,
    AuthorizationCode,
    Client,
    ClientSecret,
    CredentialKind,
    Grant,
    Page,
    RefreshToken,
    SettingEntry,
    SigningKey,
    SigningKeyState,
    User,
    UserCredential,
    Webhook,
    new_id,
    normalize_username,
    utcnow,
)
from bastion.storage.outcomes import (
    CodeReplayError,
    InvalidCursorError,
    RefreshTokenReuseError,
    RefreshTokenRevokedError,
)
from bastion.storage.sql import schema as s
from bastion.storage.sql.aio import AsyncConnection
from bastion.storage.sql.engine import Dialect

R = TypeVar("R")


class RowStore(Protocol):
    """What the repositories use of :class:`bastion.storage.sql.database.Database`.

    Declared here, so the database builds its repositories with a plain import and this module
    needs none of it back.
    """

    @property
    def dialect(self) -> Dialect: ...

    def transaction(
        self,
        *,
        write: bool = False,
        conflict: str | None = None,
        missing_reference: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def read_rows(
        self, statement: sa.Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[RowMapping]: ...


MAX_PAGE = 1000


class _Mapper(Generic[R]):
    """Converts between a record dataclass and its table's rows."""

    def __init__(self, record: type[R], table: sa.Table, key: str) -> None:
        self.record = record
        self.table = table
        self.key = table.c[key]
        self.fields = tuple(f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]
        self.tuple_fields = frozenset(
            f.name
            for f in dataclasses.fields(record)  # type: ignore[arg-type]
            if str(f.type).startswith("tuple")
        )
        # The primary key and creation time never change after create.
        self.mutable = frozenset(self.fields) - {key, "id", "created_at"}
        self.columns = [table.c[name] for name in self.fields if name in table.c]

    def to_row(self, record: R) -> dict[str, Any]:
        return {
            name: self._to_db(name, getattr(record, name))
            for name in self.fields
            if name in self.table.c and not (name == "id" and getattr(record, name) is None)
        }

    def _to_db(self, name: str, value: Any) -> Any:
        if name in self.tuple_fields and value is not None:
            return builtins.list(value)
        return value

    def from_row(self, row: RowMapping) -> R:
        values: dict[str, Any] = {}
        for name in self.fields:
            value = row[name]
            if name in self.tuple_fields and value is not None:
                value = tuple(value)
            values[name] = value
        return self.record(**values)

    def changes(self, changes: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
        unknown = set(changes) - self.mutable
        if unknown:
            raise TypeError(
                f"{self.record.__name__} cannot update {', '.join(sorted(unknown))}; "
                f"mutable members: {', '.join(sorted(self.mutable))}"
            )
        values = {name: self._to_db(name, value) for name, value in changes.items()}
        if "updated_at" in self.mutable and "updated_at" not in values:
            values["updated_at"] = now or utcnow()
        return values


def _check_limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return min(limit, MAX_PAGE)


async def record_changes(conn: AsyncConnection, changes: Sequence[Change]) -> None:
    """Append ``changes`` to the change feed on ``conn``, inside the caller's transaction."""
    if changes:
        at = utcnow()
        await conn.execute(
            sa.insert(s.change_feed),
            [{"channel": c.channel, "message": c.message, "created_at": at} for c in changes],
        )


class _SqlRepository(Generic[R]):
    """Shared create/get/update/delete/list on one table keyed by one column.

    A repository with a ``feed_channel`` announces every row it inserts, updates
    or deletes on the change feed (``storage/feed.py``), in the same
    transaction: the message is :meth:`_feed_message` of the row.
    """

    mapper: _Mapper[R]
    noun: str
    feed_channel: ClassVar[str | None] = None

    def _feed_message(self, row: Mapping[Any, Any]) -> str:
        return str(row[self.mapper.key.name])

    async def _announce(self, conn: AsyncConnection, row: Mapping[Any, Any]) -> None:
        if self.feed_channel is not None:
            await record_changes(conn, [Change(self.feed_channel, self._feed_message(row))])

    def __init__(self, db: RowStore) -> None:
        self._db = db

    def _missing(self, key: object) -> NotFoundError:
        return NotFoundError(f"{self.noun} {key!r} does not exist")

    def _conflict(self, key: object) -> str:
        return f"{self.noun} {key!r} already exists"

    async def _insert(self, record: R, *, key: object, missing_reference: str | None = None) -> R:
        async with self._db.transaction(
            write=True, conflict=self._conflict(key), missing_reference=missing_reference
        ) as conn:
            row = self.mapper.to_row(record)
            await conn.execute(sa.insert(self.mapper.table).values(row))
            await self._announce(conn, row)
        return record

    async def _get_where(self, *where: sa.ColumnElement[bool]) -> R | None:
        async with self._db.transaction() as conn:
            row = (
                (await conn.execute(sa.select(self.mapper.table).where(*where))).mappings().first()
            )
        return None if row is None else self.mapper.from_row(row)

    async def _read_where(self, *where: sa.ColumnElement[bool]) -> R | None:
        """Like :meth:`_get_where` in one round trip (hot paths; ``where`` matches ≤ 1 row)."""
        rows = await self._db.read_rows(sa.select(self.mapper.table).where(*where))
        return self.mapper.from_row(rows[0]) if rows else None

    async def _get(self, key: object, *, fast: bool = False) -> R:
        where = self.mapper.key == key
        record = await (self._read_where(where) if fast else self._get_where(where))
        if record is None:
            raise self._missing(key)
        return record

    async def _update(
        self,
        key: object,
        changes: Mapping[str, Any],
        *,
        extra: Mapping[str, Any] | None = None,
        conflict: str | None = None,
    ) -> R:
        values = self.mapper.changes(changes)
        values.update(extra or {})
        if not values:
            return await self._get(key)
        table = self.mapper.table
        async with self._db.transaction(write=True, conflict=conflict) as conn:
            row = (
                (
                    await conn.execute(
                        sa.update(table)
                        .where(self.mapper.key == key)
                        .values(values)
                        .returning(*table.c)
                    )
                )
                .mappings()
                .first()
            )
            if row is not None:
                await self._announce(conn, row)
        if row is None:
            raise self._missing(key)
        return self.mapper.from_row(row)

    async def _delete(self, key: object) -> None:
        table = self.mapper.table
        async with self._db.transaction(write=True) as conn:
            statement = sa.delete(table).where(self.mapper.key == key)
            if self.feed_channel is None:
                if (await conn.execute(statement)).rowcount == 0:
                    raise self._missing(key)
                return
            row = (await conn.execute(statement.returning(*table.c))).mappings().first()
            if row is None:
                raise self._missing(key)
            await self._announce(conn, row)

    async def _page(
        self, *where: sa.ColumnElement[bool], limit: int, cursor: str | None
    ) -> Page[R]:
        limit = _check_limit(limit)
        key = self.mapper.key
        query = sa.select(self.mapper.table).where(*where)
        if cursor is not None:
            query = query.where(key > cursor)
        query = query.order_by(key).limit(limit + 1)
        async with self._db.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = tuple(self.mapper.from_row(row) for row in rows[:limit])
        next_cursor = str(getattr(items[-1], key.name)) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    async def _all(
        self, *where: sa.ColumnElement[bool], order_by: sa.ColumnElement[Any]
    ) -> tuple[R, ...]:
        async with self._db.transaction() as conn:
            rows = (
                (await conn.execute(sa.select(self.mapper.table).where(*where).order_by(order_by)))
                .mappings()
                .all()
            )
        return tuple(self.mapper.from_row(row) for row in rows)


# --- users ---------------------------------------------------------------------------


class _CredentialRepository(_SqlRepository[UserCredential]):
    mapper = _Mapper(UserCredential, s.user_credentials, "id")
    noun = "credential"


class SqlUserRepository(_SqlRepository[User]):
    """Users and their credentials."""

    mapper = _Mapper(User, s.users, "id")
    noun = "user"
    feed_channel = feed.USERS

    def __init__(self, db: RowStore) -> None:
        super().__init__(db)
        self._credentials = _CredentialRepository(db)

    async def create(self, user: User) -> User:
        """Store a new user; ``ConflictError`` if the username (case-insensitively) exists."""
        row = self.mapper.to_row(user)
        row["username_normalized"] = normalize_username(user.username)
        async with self._db.transaction(
            write=True, conflict=f"user {user.username!r} already exists"
        ) as conn:
            await conn.execute(sa.insert(s.users).values(row))
            await self._announce(conn, row)
        return user

    async def get(self, user_id: str) -> User:
        """The user with this id; ``NotFoundError`` if none."""
        return await self._get(user_id)

    async def find_by_username(self, username: str) -> User | None:
        """The user with this username, compared case-insensitively, or ``None``."""
        return await self._get_where(s.users.c.username_normalized == normalize_username(username))

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[User]:
        """Users in creation order."""
        return await self._page(limit=limit, cursor=cursor)

    async def update(self, user_id: str, **changes: Any) -> User:
        """Change the named members; ``ConflictError`` if a new username is taken."""
        extra: dict[str, Any] = {}
        conflict = None
        if "username" in changes:
            extra["username_normalized"] = normalize_username(changes["username"])
            conflict = f"user {changes['username']!r} already exists"
        return await self._update(user_id, changes, extra=extra, conflict=conflict)

    async def delete(self, user_id: str) -> None:
        """Delete the user and everything that belongs to them (credentials, grants, codes)."""
        await self._delete(user_id)

    async def add_credential(self, credential: UserCredential) -> UserCredential:
        """Store a credential; ``NotFoundError`` if its user does not exist."""
        return await self._credentials._insert(
            credential,
            key=credential.id,
            missing_reference=f"user {credential.user_id!r} does not exist",
        )

    async def get_credential(self, credential_id: str) -> UserCredential:
        """The credential with this id; ``NotFoundError`` if none."""
        return await self._credentials._get(credential_id)

    async def list_credentials(
        self, user_id: str, *, kind: CredentialKind | None = None
    ) -> tuple[UserCredential, ...]:
        """A user's credentials (optionally of one kind) in creation order."""
        t = s.user_credentials
        where = [t.c.user_id == user_id]
        if kind is not None:
            where.append(t.c.kind == kind)
        return await self._credentials._all(*where, order_by=t.c.id)

    async def update_credential(self, credential_id: str, **changes: Any) -> UserCredential:
        """Change the named members of a credential (e.g. ``data``, ``last_used_at``)."""
        return await self._credentials._update(credential_id, changes)

    async def delete_credential(self, credential_id: str) -> None:
        """Delete a credential; ``NotFoundError`` if none."""
        await self._credentials._delete(credential_id)


# --- clients -------------------------------------------------------------------------


class _ClientSecretRepository(_SqlRepository[ClientSecret]):
    mapper = _Mapper(ClientSecret, s.client_secrets, "id")
    noun = "client secret"
    feed_channel = feed.CLIENTS

    def _feed_message(self, row: Mapping[Any, Any]) -> str:
        return str(row["client_id"])

    def _conflict(self, key: object) -> str:
        return "a client secret with this digest already exists"


class SqlClientRepository(_SqlRepository[Client]):
    """OAuth clients and their secrets."""

    mapper = _Mapper(Client, s.clients, "client_id")
    noun = "client"
    feed_channel = feed.CLIENTS

    def __init__(self, db: RowStore) -> None:
        super().__init__(db)
        self._secrets = _ClientSecretRepository(db)

    async def create(self, client: Client) -> Client:
        """Store a new client; ``ConflictError`` if the client_id exists."""
        return await self._insert(client, key=client.client_id)

    async def get(self, client_id: str) -> Client:
        """The client; ``NotFoundError`` if none."""
        return await self._get(client_id, fast=True)

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[Client]:
        """Clients ordered by client_id."""
        return await self._page(limit=limit, cursor=cursor)

    async def update(self, client_id: str, **changes: Any) -> Client:
        """Change the named members of a client."""
        return await self._update(client_id, changes)

    async def delete(self, client_id: str) -> None:
        """Delete the client with its secrets, grants, codes and refresh tokens."""
        await self._delete(client_id)

    async def add_secret(self, secret: ClientSecret) -> ClientSecret:
        """Store a secret digest; ``ConflictError`` on a duplicate digest, ``NotFoundError``
        if the client does not exist."""
        return await self._secrets._insert(
            secret,
            key=secret.id,
            missing_reference=f"client {secret.client_id!r} does not exist",
        )

    async def find_secret(self, digest: str) -> ClientSecret | None:
        """The secret with this digest (indexed equality lookup), or ``None``."""
        return await self._secrets._get_where(s.client_secrets.c.digest == digest)

    async def list_secrets(self, client_id: str) -> tuple[ClientSecret, ...]:
        """A client's secrets in creation order."""
        t = s.client_secrets
        # One round trip: client authentication reads these on every token request.
        query = sa.select(t).where(t.c.client_id == client_id).order_by(t.c.id)
        rows = await self._db.read_rows(query)
        return tuple(self._secrets.mapper.from_row(row) for row in rows)

    async def set_secret_expiry(self, secret_id: str, expires_at: datetime | None) -> ClientSecret:
        """Set (or clear) the end of a secret's grace period; ``NotFoundError`` if none."""
        return await self._secrets._update(secret_id, {"expires_at": expires_at})

    async def delete_secret(self, secret_id: str) -> None:
        """Delete a secret; ``NotFoundError`` if none."""
        await self._secrets._delete(secret_id)


# --- grants --------------------------------------------------------------------------


class SqlGrantRepository(_SqlRepository[Grant]):
    """Users' consents to clients."""

    mapper = _Mapper(Grant, s.grants, "id")
    noun = "grant"

    async def create(self, grant: Grant) -> Grant:
        """Store a grant; ``NotFoundError`` if the user or client does not exist."""
        return await self._insert(
            grant,
            key=grant.id,
            missing_reference=(
                f"user {grant.user_id!r} or client {grant.client_id!r} does not exist"
            ),
        )

    async def get(self, grant_id: str) -> Grant:
        """The grant; ``NotFoundError`` if none."""
        return await self._get(grant_id)

    async def find_active(self, user_id: str, client_id: str) -> Grant | None:
        """The newest unrevoked grant of this user to this client, or ``None``."""
        t = s.grants
        query = (
            sa.select(t)
            .where(t.c.user_id == user_id, t.c.client_id == client_id, t.c.revoked_at.is_(None))
            .order_by(t.c.id.desc())
            .limit(1)
        )
        async with self._db.transaction() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else self.mapper.from_row(row)

    async def list_for_user(self, user_id: str) -> tuple[Grant, ...]:
        """A user's grants (revoked ones too) in creation order."""
        return await self._all(s.grants.c.user_id == user_id, order_by=s.grants.c.id)

    async def update(self, grant_id: str, **changes: Any) -> Grant:
        """Change the named members of a grant (e.g. ``scopes``)."""
        return await self._update(grant_id, changes)

    async def revoke(self, grant_id: str, now: datetime) -> Grant:
        """Mark the grant revoked (idempotent: keeps the first ``revoked_at``)."""
        t = s.grants
        async with self._db.transaction(write=True) as conn:
            await conn.execute(
                sa.update(t)
                .where(t.c.id == grant_id, t.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return await self._get(grant_id)

    async def delete(self, grant_id: str) -> None:
        """Delete a grant and the codes issued under it; ``NotFoundError`` if none."""
        await self._delete(grant_id)


# --- authorization codes -------------------------------------------------------------


#: The key of an authorization code's ``claims`` that marks it replayed.
REPLAYED: Final = "replayed"


class SqlAuthorizationCodeRepository(_SqlRepository[AuthorizationCode]):
    """Single-use authorization codes."""

    mapper = _Mapper(AuthorizationCode, s.authorization_codes, "code_digest")
    noun = "authorization code"

    def _missing(self, key: object) -> NotFoundError:
        # Never echo the digest: it identifies a live credential.
        return NotFoundError("the authorization code does not exist")

    def _conflict(self, key: object) -> str:
        return "an authorization code with this digest already exists"

    async def create(self, code: AuthorizationCode) -> AuthorizationCode:
        """Store a code; ``ConflictError`` on a duplicate digest."""
        return await self._insert(
            code,
            key=None,
            missing_reference=(
                f"client {code.client_id!r}, user {code.user_id!r} or grant "
                f"{code.grant_id!r} does not exist"
            ),
        )

    async def get(self, code_digest: str) -> AuthorizationCode:
        """The stored code (consumed or not); ``NotFoundError`` if none."""
        return await self._get(code_digest)

    async def consume(self, code_digest: str, now: datetime) -> AuthorizationCode:
        """Atomically mark the code used and return it (with ``consumed_at=now``).

        Exactly one of any number of concurrent calls succeeds. Raises
        ``NotFoundError`` for an unknown code and
        :class:`~bastion.storage.outcomes.CodeReplayError` (carrying the record)
        when it was already consumed. Expiry is the caller's check.
        """
        t = s.authorization_codes
        async with self._db.transaction(write=True) as conn:
            row = (
                (
                    await conn.execute(
                        sa.update(t)
                        .where(t.c.code_digest == code_digest, t.c.consumed_at.is_(None))
                        .values(consumed_at=now)
                        .returning(*t.c)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                row = (
                    (await conn.execute(sa.select(t).where(t.c.code_digest == code_digest)))
                    .mappings()
                    .first()
                )
                if row is None:
                    raise self._missing(code_digest)
                raise CodeReplayError(self.mapper.from_row(row))
        return self.mapper.from_row(row)

    async def mark_replayed(self, code_digest: str) -> None:
        """Note in the code's ``claims`` (``"replayed": true``) that it was presented again.

        What lets the winner of a redemption find, after it stored what the code issued,
        that a replay came before that was stored (and revoked nothing).
        """
        t = s.authorization_codes
        async with self._db.transaction(write=True) as conn:
            claims = (
                await conn.execute(sa.select(t.c.claims).where(t.c.code_digest == code_digest))
            ).scalar_one_or_none()
            if claims is None:
                raise self._missing(code_digest)
            await conn.execute(
                sa.update(t)
                .where(t.c.code_digest == code_digest)
                .values(claims={**claims, REPLAYED: True})
            )

    async def delete_expired(self, before: datetime) -> int:
        """Delete codes that expired before ``before``; returns how many."""
        t = s.authorization_codes
        async with self._db.transaction(write=True) as conn:
            result = await conn.execute(sa.delete(t).where(t.c.expires_at < before))
        return result.rowcount


# --- refresh tokens ------------------------------------------------------------------


class SqlRefreshTokenRepository(_SqlRepository[RefreshToken]):
    """Refresh tokens with atomic rotation and reuse detection."""

    mapper = _Mapper(RefreshToken, s.refresh_tokens, "id")
    noun = "refresh token"

    def _conflict(self, key: object) -> str:
        return "a refresh token with this id or digest already exists"

    def _references(self, token: RefreshToken) -> str:
        return f"client {token.client_id!r} or user {token.user_id!r} does not exist"

    async def create(self, token: RefreshToken) -> RefreshToken:
        """Store a token; ``ConflictError`` on a duplicate digest."""
        return await self._insert(token, key=None, missing_reference=self._references(token))

    async def get(self, token_id: str) -> RefreshToken:
        """The token with this id; ``NotFoundError`` if none."""
        return await self._get(token_id)

    async def find_by_digest(self, token_digest: str) -> RefreshToken | None:
        """The token with this digest, or ``None``."""
        return await self._get_where(s.refresh_tokens.c.token_digest == token_digest)

    async def rotate(self, old_digest: str, new_token: RefreshToken, now: datetime) -> RefreshToken:
        """Atomically retire the old token and store its successor; returns the old token.

        ``new_token`` is stored with ``family_id`` and ``parent_id`` taken from
        the old token. Exactly one of concurrent rotations of one token wins.
        Raises ``NotFoundError`` for an unknown digest,
        :class:`~bastion.storage.outcomes.RefreshTokenReuseError` when the old
        token was already rotated (revoke its family), and
        :class:`~bastion.storage.outcomes.RefreshTokenRevokedError` when it was
        revoked. Expiry is the caller's check.
        """
        t = s.refresh_tokens
        async with self._db.transaction(
            write=True,
            conflict=self._conflict(None),
            missing_reference=self._references(new_token),
        ) as conn:
            row = (
                (
                    await conn.execute(
                        sa.update(t)
                        .where(
                            t.c.token_digest == old_digest,
                            t.c.rotated_at.is_(None),
                            t.c.revoked_at.is_(None),
                        )
                        .values(rotated_at=now)
                        .returning(*t.c)
                    )
                )
                .mappings()
                .first()
            )
            if row is not None:
                old = self.mapper.from_row(row)
                successor = dataclasses.replace(
                    new_token, family_id=old.family_id, parent_id=old.id
                )
                await conn.execute(sa.insert(t).values(self.mapper.to_row(successor)))
                return old
            row = (
                (await conn.execute(sa.select(t).where(t.c.token_digest == old_digest)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError("the refresh token does not exist")
        existing = self.mapper.from_row(row)
        if existing.rotated_at is not None:
            raise RefreshTokenReuseError(existing)
        raise RefreshTokenRevokedError(existing)

    async def revoke(self, token_id: str, now: datetime) -> None:
        """Revoke one token (idempotent); ``NotFoundError`` if none."""
        t = s.refresh_tokens
        async with self._db.transaction(write=True) as conn:
            await conn.execute(
                sa.update(t)
                .where(t.c.id == token_id, t.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            exists = (await conn.execute(sa.select(t.c.id).where(t.c.id == token_id))).first()
        if exists is None:
            raise self._missing(token_id)

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke every unrevoked token of a family; returns how many were revoked."""
        t = s.refresh_tokens
        async with self._db.transaction(write=True) as conn:
            result = await conn.execute(
                sa.update(t)
                .where(t.c.family_id == family_id, t.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return result.rowcount

    async def end_families(
        self,
        now: datetime,
        *,
        family_id: str | None = None,
        user_id: str | None = None,
        client_id: str | None = None,
        announce: Callable[[Sequence[RefreshToken]], Sequence[Change]] = lambda _: (),
    ) -> tuple[RefreshToken, ...]:
        """Revoke the family ``family_id`` (or every family of ``user_id``) whole.

        In the same transaction, ``announce(tokens)`` — every token of those families,
        rotated and revoked ones too, as they were before — is appended to the change
        feed: what else must end with them (the access tokens they issued) is then
        never lost to another node, nor announced without the revocation. Returns
        those tokens. Exactly one of ``family_id`` and ``user_id`` is given;
        ``client_id`` narrows ``user_id``'s to the families of that client.
        """
        if (family_id is None) == (user_id is None):
            raise ValueError("give exactly one of family_id and user_id")
        if client_id is not None and user_id is None:
            raise ValueError("client_id narrows user_id")
        t = s.refresh_tokens
        where = t.c.family_id == family_id if family_id is not None else t.c.user_id == user_id
        if client_id is not None:
            where = sa.and_(where, t.c.client_id == client_id)
        async with self._db.transaction(write=True) as conn:
            rows = (await conn.execute(sa.select(t).where(where).order_by(t.c.id))).mappings()
            tokens = tuple(self.mapper.from_row(row) for row in rows)
            await conn.execute(
                sa.update(t).where(where, t.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            await record_changes(conn, announce(tokens))
        return tokens

    async def list_family(self, family_id: str) -> tuple[RefreshToken, ...]:
        """The tokens of a family in creation order."""
        t = s.refresh_tokens
        return await self._all(t.c.family_id == family_id, order_by=t.c.id)

    async def delete_expired(self, before: datetime) -> int:
        """Delete tokens that expired before ``before``; returns how many."""
        t = s.refresh_tokens
        async with self._db.transaction(write=True) as conn:
            result = await conn.execute(sa.delete(t).where(t.c.expires_at < before))
        return result.rowcount


# --- API keys ------------------------------------------------------------------------


_API_KEY_BY_DIGEST = sa.select(s.api_keys).where(s.api_keys.c.digest == sa.bindparam("digest"))


class SqlApiKeyRepository(_SqlRepository[ApiKey]):
    """API keys."""

    mapper = _Mapper(ApiKey, s.api_keys, "id")
    noun = "API key"
    feed_channel = feed.API_KEYS

    def _conflict(self, key: object) -> str:
        return "an API key with this id or digest already exists"

    async def create(self, key: ApiKey) -> ApiKey:
        """Store a key; ``ConflictError`` on a duplicate id or digest."""
        return await self._insert(key, key=key.id)

    async def get(self, key_id: str) -> ApiKey:
        """The key; ``NotFoundError`` if none."""
        return await self._get(key_id)

    async def find_by_prefix(self, prefix: str, *, limit: int = 10) -> tuple[ApiKey, ...]:
        """Up to ``limit`` keys whose display prefix is ``prefix``, oldest first."""
        t = s.api_keys
        query = (
            sa.select(t)
            .where(t.c.prefix == prefix)
            .order_by(t.c.created_at, t.c.id)
            .limit(_check_limit(limit))
        )
        async with self._db.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return tuple(self.mapper.from_row(row) for row in rows)

    async def find_by_digest(self, digest: str) -> ApiKey | None:
        """The key with this digest (one indexed equality query), or ``None``."""
        # One round trip: every cache miss of API key verification lands here. The statement
        # is built once; only the digest is bound per call.
        rows = await self._db.read_rows(_API_KEY_BY_DIGEST, {"digest": digest})
        return self.mapper.from_row(rows[0]) if rows else None

    async def list(
        self,
        *,
        owner_type: str | None = None,
        owner_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[ApiKey]:
        """Keys in creation order, optionally only those of one owner."""
        t = s.api_keys
        where = []
        if owner_type is not None:
            where.append(t.c.owner_type == owner_type)
        if owner_id is not None:
            where.append(t.c.owner_id == owner_id)
        return await self._page(*where, limit=limit, cursor=cursor)

    async def update(self, key_id: str, **changes: Any) -> ApiKey:
        """Change the named members of a key (revocation, rotation, limits …)."""
        return await self._update(key_id, changes, conflict=self._conflict(key_id))

    async def touch_last_used(self, key_id: str, at: datetime, ip: str | None) -> None:
        """Record a use: one UPDATE, no read; a missing key is ignored."""
        t = s.api_keys
        async with self._db.transaction(write=True) as conn:
            await conn.execute(
                sa.update(t).where(t.c.id == key_id).values(last_used_at=at, last_used_ip=ip)
            )

    async def touch_last_used_many(self, uses: Sequence[tuple[str, datetime, str | None]]) -> None:
        """Record many uses ``(key_id, at, ip)`` in one transaction (one batched UPDATE).

        A use older than the stored last use is ignored (nodes flush independently);
        missing keys are ignored.
        """
        if not uses:
            return
        t = s.api_keys
        statement = (
            sa.update(t)
            .where(
                t.c.id == sa.bindparam("key_id"),
                # Several nodes flush independently: never move a last use backwards.
                sa.or_(t.c.last_used_at.is_(None), t.c.last_used_at < sa.bindparam("at")),
            )
            .values(last_used_at=sa.bindparam("at"), last_used_ip=sa.bindparam("ip"))
        )
        rows = [{"key_id": key_id, "at": at, "ip": ip} for key_id, at, ip in uses]
        async with self._db.transaction(write=True) as conn:
            await conn.execute(statement, rows)

    async def delete(self, key_id: str) -> None:
        """Delete a key; ``NotFoundError`` if none."""
        await self._delete(key_id)


# --- signing keys --------------------------------------------------------------------


class SqlSigningKeyRepository(_SqlRepository[SigningKey]):
    """Token-signing keys."""

    mapper = _Mapper(SigningKey, s.signing_keys, "kid")
    noun = "signing key"
    feed_channel = feed.SIGNING_KEYS

    async def create(self, key: SigningKey) -> SigningKey:
        """Store a key; ``ConflictError`` if the kid exists."""
        return await self._insert(key, key=key.kid)

    async def get(self, kid: str) -> SigningKey:
        """The key; ``NotFoundError`` if none."""
        return await self._get(kid)

    async def list(
        self, *, states: Sequence[SigningKeyState] | None = None
    ) -> tuple[SigningKey, ...]:
        """Keys (optionally only in some states) in creation order."""
        t = s.signing_keys
        where = [] if states is None else [t.c.state.in_(builtins.list(states))]
        return await self._all(*where, order_by=t.c.created_at)

    async def update(self, kid: str, **changes: Any) -> SigningKey:
        """Change the named members (e.g. ``state``, ``retired_at``)."""
        return await self._update(kid, changes)

    async def delete(self, kid: str) -> None:
        """Delete a key; ``NotFoundError`` if none."""
        await self._delete(kid)


# --- webhooks ------------------------------------------------------------------------


class SqlWebhookRepository(_SqlRepository[Webhook]):
    """Alert and audit delivery targets."""

    mapper = _Mapper(Webhook, s.webhooks, "id")
    noun = "webhook"

    async def create(self, webhook: Webhook) -> Webhook:
        """Store a webhook; ``ConflictError`` if the id exists."""
        return await self._insert(webhook, key=webhook.id)

    async def get(self, webhook_id: str) -> Webhook:
        """The webhook; ``NotFoundError`` if none."""
        return await self._get(webhook_id)

    async def list(self, *, enabled_only: bool = False) -> tuple[Webhook, ...]:
        """Webhooks in creation order."""
        t = s.webhooks
        where = [t.c.enabled.is_(True)] if enabled_only else []
        return await self._all(*where, order_by=t.c.id)

    async def update(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change the named members of a webhook."""
        return await self._update(webhook_id, changes)

    async def delete(self, webhook_id: str) -> None:
        """Delete a webhook; ``NotFoundError`` if none."""
        await self._delete(webhook_id)


# --- audit ---------------------------------------------------------------------------


class SqlAuditRepository(_SqlRepository[AuditEvent]):
    """The append-only audit log."""

    mapper = _Mapper(AuditEvent, s.audit_events, "id")
    noun = "audit event"

    async def append_batch(self, events: Sequence[AuditEvent]) -> int:
        if not events:
            return 0
        rows = []
        for event in events:
            row = self.mapper.to_row(event)
            row.pop("id", None)  # assigned by the database
            rows.append(row)
        async with self._db.transaction(
            write=True, conflict="an audit event with this node_id and seq already exists"
        ) as conn:
            await conn.execute(sa.insert(s.audit_events), rows)
        return len(rows)

    async def search(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        subject: str | None = None,
        type: str | None = None,
        outcome: str | None = None,
        node_id: str | None = None,
        key_id: str | None = None,
        client_id: str | None = None,
        route: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        ip: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[AuditEvent]:
        """Events matching every given filter (``since`` inclusive, ``until`` exclusive),
        keyset-paginated in append order (newest first by default)."""
        limit = _check_limit(limit)
        t = s.audit_events
        query = sa.select(t)
        if since is not None:
            query = query.where(t.c.occurred_at >= since)
        if until is not None:
            query = query.where(t.c.occurred_at < until)
        for column, value in (
            (t.c.subject, subject),
            (t.c.type, type),
            (t.c.outcome, outcome),
            (t.c.node_id, node_id),
            (t.c.key_id, key_id),
            (t.c.client_id, client_id),
            (t.c.route, route),
            (t.c.reason, reason),
            (t.c.request_id, request_id),
            (t.c.ip, ip),
        ):
            if value is not None:
                query = query.where(column == value)
        if cursor is not None:
            try:
                after = int(cursor)
            except ValueError:
                raise InvalidCursorError(f"{cursor!r} is not an audit log cursor") from None
            query = query.where(t.c.id < after if newest_first else t.c.id > after)
        query = query.order_by(t.c.id.desc() if newest_first else t.c.id).limit(limit + 1)
        async with self._db.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = tuple(self.mapper.from_row(row) for row in rows[:limit])
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    async def last_for_node(self, node_id: str) -> AuditEvent | None:
        t = s.audit_events
        query = sa.select(t).where(t.c.node_id == node_id).order_by(t.c.seq.desc()).limit(1)
        async with self._db.transaction() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else self.mapper.from_row(row)

    async def chain(
        self, node_id: str, *, after_seq: int = -1, limit: int = 1000
    ) -> tuple[AuditEvent, ...]:
        t = s.audit_events
        query = (
            sa.select(t)
            .where(t.c.node_id == node_id, t.c.seq > after_seq)
            .order_by(t.c.seq)
            .limit(_check_limit(limit))
        )
        async with self._db.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return tuple(self.mapper.from_row(row) for row in rows)

    async def nodes(self) -> tuple[str, ...]:
        events = sa.select(s.audit_events.c.node_id).distinct()
        checkpoints = sa.select(s.audit_checkpoints.c.node_id).distinct()
        async with self._db.transaction() as conn:
            rows = (await conn.execute(sa.union(events, checkpoints))).all()
        return tuple(sorted(row[0] for row in rows))

    async def prune_before(
        self, before: datetime, *, sign: Callable[[AuditCheckpoint], str]
    ) -> tuple[AuditCheckpoint, ...]:
        written: list[AuditCheckpoint] = []
        for node_id in await self.nodes():
            checkpoint = await self._prune_node(node_id, before, sign)
            if checkpoint is not None:
                written.append(checkpoint)
        return tuple(written)

    async def set_checkpoint_mac(self, checkpoint_id: int, mac: str) -> None:
        t = s.audit_checkpoints
        async with self._db.transaction(write=True) as conn:
            await conn.execute(sa.update(t).where(t.c.id == checkpoint_id).values(mac=mac))

    async def _prune_node(
        self, node_id: str, before: datetime, sign: Callable[[AuditCheckpoint], str]
    ) -> AuditCheckpoint | None:
        t = s.audit_events
        async with self._db.transaction(
            write=True, conflict=f"audit node {node_id!r} is being pruned concurrently"
        ) as conn:
            cut = (
                await conn.execute(
                    sa.select(sa.func.max(t.c.seq)).where(
                        t.c.node_id == node_id, t.c.occurred_at < before
                    )
                )
            ).scalar()
            if cut is None:
                return None
            last = (
                (
                    await conn.execute(
                        sa.select(t.c.seq, t.c.hash, t.c.occurred_at).where(
                            t.c.node_id == node_id, t.c.seq == cut
                        )
                    )
                )
                .mappings()
                .one()
            )
            deleted = await conn.execute(sa.delete(t).where(t.c.node_id == node_id, t.c.seq <= cut))
            checkpoint = AuditCheckpoint(
                node_id=node_id,
                seq=int(last["seq"]),
                hash=last["hash"],
                occurred_at=last["occurred_at"],
                pruned=int(deleted.rowcount or 0),
            )
            checkpoint = dataclasses.replace(checkpoint, mac=sign(checkpoint))
            row = _CHECKPOINTS.to_row(checkpoint)
            result = await conn.execute(
                sa.insert(s.audit_checkpoints).values(row).returning(s.audit_checkpoints.c.id)
            )
            checkpoint_id = result.scalar_one()
        return dataclasses.replace(checkpoint, id=int(checkpoint_id))

    async def checkpoints(self, node_id: str) -> tuple[AuditCheckpoint, ...]:
        t = s.audit_checkpoints
        query = sa.select(t).where(t.c.node_id == node_id).order_by(t.c.seq)
        async with self._db.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return tuple(_CHECKPOINTS.from_row(row) for row in rows)

    async def latest_checkpoint(self, node_id: str) -> AuditCheckpoint | None:
        t = s.audit_checkpoints
        query = sa.select(t).where(t.c.node_id == node_id).order_by(t.c.seq.desc()).limit(1)
        async with self._db.transaction() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _CHECKPOINTS.from_row(row)


_CHECKPOINTS = _Mapper(AuditCheckpoint, s.audit_checkpoints, "id")


# --- settings ------------------------------------------------------------------------


class SqlSettingsRepository(_SqlRepository[SettingEntry]):
    """Runtime settings and overrides."""

    mapper = _Mapper(SettingEntry, s.settings_kv, "key")
    noun = "setting"
    feed_channel = feed.SETTINGS

    async def get(self, key: str) -> SettingEntry:
        """The entry; ``NotFoundError`` if none."""
        return await self._get(key)

    async def find(self, key: str) -> SettingEntry | None:
        """The entry, or ``None``."""
        return await self._get_where(s.settings_kv.c.key == key)

    async def set(self, key: str, value: Any, *, now: datetime | None = None) -> SettingEntry:
        """Insert or replace the value under ``key``."""
        entry = SettingEntry(key=key, value=value, updated_at=now or utcnow())
        t = s.settings_kv
        # The dialect's own module, imported here: the engine loaded it already, and the
        # other dialect (~1.6 MiB resident for PostgreSQL's) is never loaded for nothing.
        dialect_insert: Any
        if self._db.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        statement = dialect_insert(t).values(key=key, value=value, updated_at=entry.updated_at)
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.key],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
        )
        async with self._db.transaction(write=True) as conn:
            await conn.execute(statement)
            await self._announce(conn, {"key": key})
        return entry

    async def delete(self, key: str) -> None:
        """Delete the entry; ``NotFoundError`` if none."""
        await self._delete(key)

    async def list(self) -> tuple[SettingEntry, ...]:
        """Every entry, ordered by key."""
        return await self._all(order_by=s.settings_kv.c.key)


# --- the change feed -------------------------------------------------------------------


class SqlChangeFeed:
    """The ``change_feed`` table (see ``storage/feed.py``); follows ``ChangeFeedStore``."""

    def __init__(self, db: RowStore) -> None:
        self._db = db

    async def append(self, changes: Sequence[Change]) -> None:
        """Record changes that have no other row (token revocations) in their own transaction."""
        async with self._db.transaction(write=True) as conn:
            await record_changes(conn, changes)

    async def head(self) -> int:
        """The highest id written so far (0 for an empty feed)."""
        t = s.change_feed
        rows = await self._db.read_rows(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0)))
        return int(next(iter(rows[0].values())))

    async def read_after(self, after: int, *, limit: int) -> tuple[FeedRow, ...]:
        """Up to ``limit`` rows with ids above ``after``, in id order (one round trip)."""
        t = s.change_feed
        query = sa.select(t).where(t.c.id > after).order_by(t.c.id).limit(limit)
        return tuple(FeedRow(**row) for row in await self._db.read_rows(query))

    async def read_ids(self, ids: Sequence[int]) -> tuple[FeedRow, ...]:
        """The rows with these ids that exist now."""
        if not ids:
            return ()
        t = s.change_feed
        query = sa.select(t).where(t.c.id.in_(builtins.list(ids))).order_by(t.c.id)
        return tuple(FeedRow(**row) for row in await self._db.read_rows(query))

    async def since(self, channel: str, after: datetime) -> tuple[FeedRow, ...]:
        """Every row of ``channel`` written after ``after``, in id order."""
        t = s.change_feed
        query = sa.select(t).where(t.c.channel == channel, t.c.created_at > after).order_by(t.c.id)
        return tuple(FeedRow(**row) for row in await self._db.read_rows(query))

    async def prune(self, before: datetime) -> int:
        """Delete rows written before ``before``, always keeping the newest row; return how many.

        The newest row stays so that the highest id is never handed out again
        (SQLite reuses the highest rowid of an emptied table).
        """
        t = s.change_feed
        newest = sa.select(sa.func.max(t.c.id)).scalar_subquery()
        async with self._db.transaction(write=True) as conn:
            result = await conn.execute(
                sa.delete(t).where(t.c.created_at < before, t.c.id < newest)
            )
        return int(result.rowcount or 0)


# --- browser sessions ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BrowserSession:
    """A browser session, found by ``id_digest`` (SHA-256 of the id its cookie holds).

    ``expires_at`` is the absolute end; the idle end is ``last_seen_at`` plus the
    idle timeout (the caller's setting). ``amr``/``acr``/``auth_time`` are what the
    login proved (OpenID Connect Core 2). ``ended_at``/``end_reason``: ended early.
    """

    id_digest: str
    user_id: str
    expires_at: datetime
    auth_time: datetime
    amr: tuple[str, ...] = ()
    acr: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    id: str = dataclasses.field(default_factory=new_id)
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    last_seen_at: datetime = dataclasses.field(default_factory=utcnow)
    ended_at: datetime | None = None
    end_reason: str | None = None


class SqlSessionRepository(_SqlRepository[BrowserSession]):
    """Browser sessions. Starting and ending one is announced on the feed's ``sessions``
    channel (message: its ``id_digest``) in the same transaction; being seen is not."""

    mapper = _Mapper(BrowserSession, s.sessions, "id")
    noun = "session"
    feed_channel = feed.SESSIONS

    def _feed_message(self, row: Mapping[Any, Any]) -> str:
        return str(row["id_digest"])

    async def create(self, session: BrowserSession) -> BrowserSession:
        """Store a new session; ``ConflictError`` on a duplicate id or digest."""
        return await self._insert(session, key=session.id)

    async def get(self, session_id: str) -> BrowserSession:
        """The session with this record id; ``NotFoundError`` if none."""
        return await self._get(session_id)

    async def find_by_digest(self, id_digest: str) -> BrowserSession | None:
        """The session whose cookie id has this digest (ended or not), or ``None``."""
        return await self._read_where(s.sessions.c.id_digest == id_digest)

    async def touch(self, session_id: str, at: datetime) -> None:
        """Record a use of a live session at ``at`` (not announced: nothing cached changes)."""
        t = s.sessions
        async with self._db.transaction(write=True) as conn:
            await conn.execute(
                sa.update(t)
                .where(t.c.id == session_id, t.c.ended_at.is_(None), t.c.last_seen_at < at)
                .values(last_seen_at=at)
            )

    async def end(self, session_id: str, at: datetime, reason: str) -> BrowserSession | None:
        """End a live session; the ended session, or ``None`` if it had already ended."""
        ended = await self._end_where(s.sessions.c.id == session_id, at=at, reason=reason)
        return ended[0] if ended else None

    async def end_for_user(
        self,
        user_id: str,
        at: datetime,
        reason: str,
        *,
        started_before: datetime | None = None,
        keep: str | None = None,
    ) -> tuple[BrowserSession, ...]:
        """End every live session of a user (only those started before ``started_before``
        when given; all but the session ``keep`` when given); the sessions this call ended."""
        t = s.sessions
        where = [t.c.user_id == user_id]
        if started_before is not None:
            where.append(t.c.created_at < started_before)
        if keep is not None:
            where.append(t.c.id != keep)
        return await self._end_where(*where, at=at, reason=reason)

    async def delete_finished(self, before: datetime, *, unused_since: datetime) -> int:
        """Delete sessions that ended, or passed their absolute deadline, before ``before``,
        and those unused since ``unused_since`` (long past any idle timeout); how many.
        Not announced: nothing may hold such a session any more."""
        t = s.sessions
        async with self._db.transaction(write=True) as conn:
            result = await conn.execute(
                sa.delete(t).where(
                    sa.or_(
                        t.c.ended_at < before,
                        t.c.expires_at < before,
                        t.c.last_seen_at < unused_since,
                    )
                )
            )
        return result.rowcount

    async def list_for_user(self, user_id: str) -> tuple[BrowserSession, ...]:
        """The user's sessions that have not been ended, oldest first."""
        t = s.sessions
        return await self._all(t.c.user_id == user_id, t.c.ended_at.is_(None), order_by=t.c.id)

    async def add_client(self, session_id: str, client_id: str, at: datetime) -> None:
        """Remember that ``client_id`` signed into the session (once; again is nothing)."""
        t = s.session_clients
        pair = (t.c.session_id == session_id, t.c.client_id == client_id)
        if await self._db.read_rows(sa.select(t.c.client_id).where(*pair)):
            return
        try:
            async with self._db.transaction(write=True) as conn:
                await conn.execute(
                    sa.insert(t).values(session_id=session_id, client_id=client_id, created_at=at)
                )
        except (ConflictError, NotFoundError):
            # Two codes for the same client at once in one session: the other insert won.
            # (A session or client deleted meanwhile: nothing to remember either.)
            return

    async def clients_of(self, session_id: str) -> tuple[str, ...]:
        """The clients that signed into the session, by client id."""
        t = s.session_clients
        query = sa.select(t.c.client_id).where(t.c.session_id == session_id)
        rows = await self._db.read_rows(query.order_by(t.c.client_id))
        return tuple(str(row["client_id"]) for row in rows)

    async def _end_where(
        self, *where: sa.ColumnElement[bool], at: datetime, reason: str
    ) -> tuple[BrowserSession, ...]:
        t = s.sessions
        # One conditional UPDATE: of nodes ending the same session at once, exactly one
        # gets the row back (and audits it); the others end nothing.
        async with self._db.transaction(write=True) as conn:
            rows = (
                (
                    await conn.execute(
                        sa.update(t)
                        .where(*where, t.c.ended_at.is_(None))
                        .values(ended_at=at, end_reason=reason)
                        .returning(*t.c)
                    )
                )
                .mappings()
                .all()
            )
            for row in rows:
                await self._announce(conn, row)
        return tuple(self.mapper.from_row(row) for row in rows)


# --- consents ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Consent:
    """A user allowed ``client_id`` the scopes of ``scope`` (distinct, sorted, space-joined)
    at ``created_at`` (the last time this set was allowed)."""

    user_id: str
    client_id: str
    scope: str
    id: str = dataclasses.field(default_factory=new_id)
    created_at: datetime = dataclasses.field(default_factory=utcnow)


class SqlConsentRepository(_SqlRepository[Consent]):
    """Consents, one row per (user, client, scope set)."""

    mapper = _Mapper(Consent, s.consents, "id")
    noun = "consent"

    async def give(self, consent: Consent) -> Consent:
        """Store ``consent``, or move the time of the same (user, client, scope set) to its
        ``created_at``; ``NotFoundError`` when the user or the client does not exist."""
        t = s.consents
        same = (
            t.c.user_id == consent.user_id,
            t.c.client_id == consent.client_id,
            t.c.scope == consent.scope,
        )
        for _ in range(2):  # an insert racing ours: update the row it made
            async with self._db.transaction(write=True) as conn:
                result = await conn.execute(
                    sa.update(t).where(*same).values(created_at=consent.created_at)
                )
            if result.rowcount:
                return dataclasses.replace(consent, id=await self._id_of(*same))
            try:
                return await self._insert(
                    consent,
                    key=consent.id,
                    missing_reference=(
                        f"user {consent.user_id!r} or client {consent.client_id!r} does not exist"
                    ),
                )
            except ConflictError:
                continue
        raise ConflictError(self._conflict(consent.id))

    async def _id_of(self, *where: sa.ColumnElement[bool]) -> str:
        found = await self._get_where(*where)
        if found is None:
            raise self._missing("?")
        return found.id

    async def for_client(self, user_id: str, client_id: str) -> tuple[Consent, ...]:
        """The user's consents to the client (every scope set), oldest first."""
        t = s.consents
        rows = await self._db.read_rows(
            sa.select(t).where(t.c.user_id == user_id, t.c.client_id == client_id)
        )
        return tuple(self.mapper.from_row(row) for row in rows)

    async def list_for_user(self, user_id: str) -> tuple[Consent, ...]:
        """The user's consents, by client then scope set."""
        t = s.consents
        async with self._db.transaction() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(t)
                        .where(t.c.user_id == user_id)
                        .order_by(t.c.client_id, t.c.scope)
                    )
                )
                .mappings()
                .all()
            )
        return tuple(self.mapper.from_row(row) for row in rows)

    async def delete_for_client(self, user_id: str, client_id: str) -> tuple[Consent, ...]:
        """Delete every consent of the user to the client; the deleted consents."""
        t = s.consents
        async with self._db.transaction(write=True) as conn:
            rows = (
                (
                    await conn.execute(
                        sa.delete(t)
                        .where(t.c.user_id == user_id, t.c.client_id == client_id)
                        .returning(*t.c)
                    )
                )
                .mappings()
                .all()
            )
        return tuple(self.mapper.from_row(row) for row in rows)


__all__ = [
    "BrowserSession",
    "Consent",
    "SqlApiKeyRepository",
    "SqlAuditRepository",
    "SqlAuthorizationCodeRepository",
    "SqlChangeFeed",
    "SqlClientRepository",
    "SqlConsentRepository",
    "SqlGrantRepository",
    "SqlRefreshTokenRepository",
    "SqlSessionRepository",
    "SqlSettingsRepository",
    "SqlSigningKeyRepository",
    "SqlUserRepository",
    "SqlWebhookRepository",
]
