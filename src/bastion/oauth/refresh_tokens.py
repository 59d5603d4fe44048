"""Refresh tokens: families, rotation with reuse detection, lifetimes, revocation.

A **family** is every refresh token descending from one authorization (one
authorization-code exchange): :meth:`RefreshTokenService.issue_family` starts
it, each use of the grant (:mod:`bastion.protocol.rfc6749.grants.refresh_token`)
rotates its newest token (:meth:`~RefreshTokenService.rotate`). Rules (RFC 6749
§6 and §10.4, RFC 9700 §4.14.2):

- A token is ``brt_`` + 43 characters of 256 random bits, stored only as its
  SHA-256 digest (high entropy, so a digest is enough, as for client secrets);
  the prefix lets secret scanners recognise a leaked one.
- **Rotation**: one conditional UPDATE retires the presented token and stores
  its successor in one transaction, so of two simultaneous uses exactly one wins.
- **Reuse**: presenting a token that was already rotated means two parties hold
  it — the family is revoked whole, with the access tokens it issued, and a
  ``token.refresh_reuse`` event raises the ``token_reuse`` alert. A token shown
  by another client than its own is handled the same way (possible theft).
  The loser of a simultaneous double use is a reuse too: the two cannot be told apart.
- **Lifetimes**: a family ends ``tokens.refresh_token_ttl`` after it started
  (every token of it carries that ``expires_at``), and a token unused for
  ``tokens.refresh_token_idle_ttl`` is dead (its ``created_at`` is its last use).
- The token is bound to its client and to its user: a disabled user's tokens
  are refused (and the family revoked); deleting a user deletes them.

**Access tokens of a family.** The access token issued with a refresh token
carries that token's record id as its ``jti`` (the first one too: the caller of
:meth:`~RefreshTokenService.issue_family` signs it with
:attr:`IssuedRefreshToken.access_jti`, ``iat`` its ``created_at``), and lives at
most ``tokens.max_access_token_ttl``. Revoking a family therefore deny-lists, in
the transaction that revokes it, ``"<record id> <created + max ttl>"`` on the
change feed's ``revoked-tokens`` channel for each of its tokens whose access
token may still live: every node's follower puts them on its deny-lists (the
native core's included) within a quarter of a second, the CLI's revocations
too; ``deny_locally`` applies them on this node before the call returns.

``offline_access`` (OpenID Connect Core §11) is for the authorization-code
grant to decide when it starts a family; nothing here depends on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from bastion.crypto.digests import random_token, sha256_hex
from bastion.protocol.rfc6749.errors import InvalidGrantError
from bastion.protocol.rfc6749.grants.refresh_token import RefreshRequest, Rotation
from bastion.protocol.rfc6749.scope import check_scope_allowed, parse_scope
from bastion.storage import feed
from bastion.storage.errors import NotFoundError
from bastion.storage.feed import Change
from bastion.storage.models import Client, RefreshToken, new_id
from bastion.storage.outcomes import RefreshTokenReuseError, RefreshTokenRevokedError
from bastion.storage.sql.repositories import SqlRefreshTokenRepository

__all__ = [
    "REFRESH_TOKEN_PREFIX",
    "IssuedRefreshToken",
    "RefreshLifetimes",
    "RefreshTokenService",
    "refresh_token_digest",
]

#: The prefix of every refresh token bastion issues (secret scanners match it).
REFRESH_TOKEN_PREFIX: Final = "brt_"  # noqa: S105 - a format prefix, not a secret
_TOKEN_BYTES: Final = 32
# Longer than any token issued here: refused without a lookup.
_MAX_TOKEN: Final = 128

#: ``(token record, reason, client address)``: a family was revoked as possibly stolen.
TheftListener = Callable[[RefreshToken, str, str | None], None]
#: Applies a ``revoked-tokens`` message (``"<jti> <exp>"``) on this node at once.
DenyLocally = Callable[[str], Awaitable[None]]
#: Whether the user with this id may still use their tokens.
UserIsActive = Callable[[str], Awaitable[bool]]


class RefreshLifetimes(Protocol):
    """The settings the service reads (``settings.tokens``)."""

    @property
    def refresh_token_ttl(self) -> float:
        """Absolute lifetime of a family, seconds."""
        ...

    @property
    def refresh_token_idle_ttl(self) -> float:
        """How long a token may go unused, seconds."""
        ...

    @property
    def max_access_token_ttl(self) -> float:
        """Upper bound on an access token's lifetime, seconds."""
        ...

    @property
    def leeway(self) -> float:
        """Clock leeway verifiers allow past a token's ``exp``, seconds."""
        ...


def refresh_token_digest(token: str) -> str:
    """The stored form of a refresh token: its SHA-256 hex digest."""
    return sha256_hex(token.encode("utf-8"))


def _new_token() -> str:
    return REFRESH_TOKEN_PREFIX + random_token(_TOKEN_BYTES)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    """A new family's first token (shown once), its stored record, and the ``jti`` the
    access token issued with it must carry (the record's id)."""

    token: str
    record: RefreshToken
    access_jti: str


async def _every_user_active(_: str) -> bool:
    return True


async def _no_deny_list(_: str) -> None:
    return None  # the change feed brings the revocations to every node


def _unheard(_token: RefreshToken, _reason: str, _ip: str | None) -> None:
    return None


def _invalid(reason: str, description: str = "the refresh token is invalid") -> InvalidGrantError:
    # One description for every unusable token: the audit log has the reason.
    return InvalidGrantError(description, reason=reason)


@dataclass(frozen=True, slots=True)
class RefreshTokenService:
    """Refresh-token families in ``store`` under ``lifetimes`` (see the module docstring).

    ``user_is_active`` (default: every user is) refuses a disabled user's tokens;
    ``deny_locally`` applies a family's access-token revocations on this node
    before a revocation returns; ``on_theft`` hears of every family revoked as
    possibly stolen (reuse, another client); ``clock`` gives epoch seconds.
    """

    store: SqlRefreshTokenRepository
    lifetimes: RefreshLifetimes
    _: KW_ONLY
    user_is_active: UserIsActive = _every_user_active
    deny_locally: DenyLocally = _no_deny_list
    on_theft: TheftListener = _unheard
    clock: Callable[[], float] = time.time

    async def issue_family(
        self,
        client: Client,
        user_id: str | None,
        scope: str,
        *,
        family_id: str | None = None,
    ) -> IssuedRefreshToken:
        """Start a family for ``user_id`` at ``client`` with ``scope`` (space-delimited).

        ``family_id`` names the family (default: a new id), so that what started it
        — an authorization code, replayed later — can revoke it by name. Raises
        ``InvalidScopeError`` for a malformed scope and ``NotFoundError`` when the
        client or user does not exist.
        """
        parse_scope(scope)
        now = self.clock()
        token = _new_token()
        record = RefreshToken(
            token_digest=refresh_token_digest(token),
            family_id=family_id or new_id(),
            client_id=client.client_id,
            user_id=user_id,
            scope=scope,
            expires_at=_at(now + self.lifetimes.refresh_token_ttl),
            created_at=_at(now),
        )
        stored = await self.store.create(record)
        return IssuedRefreshToken(token, stored, access_jti=stored.id)

    async def rotate(self, refresh: RefreshRequest) -> Rotation:
        """Retire the presented token and issue its successor (see the module docstring).

        ``refresh.scope`` narrows the access token (``None``: the token's own scope).

        Raises:
            InvalidGrantError: reason ``unknown_refresh_token``, ``foreign_refresh_token``
                (family revoked), ``refresh_token_revoked``, ``refresh_token_reuse``
                (family revoked), ``refresh_token_expired``, ``refresh_token_idle``
                or ``user_inactive`` (family revoked).
            InvalidScopeError: ``scope`` holds a scope the token was not granted.
        """
        scope, client_ip = refresh.scope, refresh.client_ip
        record = await self._usable(refresh.refresh_token, refresh.client, client_ip)
        granted = parse_scope(record.scope)
        if scope is not None:
            check_scope_allowed(scope, granted)
        now = self.clock()
        token = _new_token()
        successor = RefreshToken(
            token_digest=refresh_token_digest(token),
            family_id=record.family_id,
            client_id=record.client_id,
            user_id=record.user_id,
            scope=record.scope,  # RFC 6749 §6: the new refresh token's scope is identical
            expires_at=record.expires_at,  # the family's absolute end never moves
            created_at=_at(now),
        )
        try:
            await self.store.rotate(record.token_digest, successor, _at(now))
        except RefreshTokenReuseError as reused:
            # Lost a race with another use of the same token: a reuse all the same.
            await self._stolen(reused.record, "refresh_token_reuse", client_ip)
            raise _invalid("refresh_token_reuse") from None
        except RefreshTokenRevokedError:
            raise _invalid("refresh_token_revoked") from None
        except NotFoundError:
            raise _invalid("unknown_refresh_token") from None
        return Rotation(
            refresh_token=token,
            jti=successor.id,
            subject=record.user_id or record.client_id,
            scope=granted if scope is None else scope,
            issued_at=now,
        )

    async def _usable(self, presented: str, client: Client, client_ip: str | None) -> RefreshToken:
        """The stored token ``presented`` names, if ``client`` may rotate it now."""
        record = await self.find(presented)
        if record is None:
            raise _invalid("unknown_refresh_token")
        if record.client_id != client.client_id:
            await self._stolen(record, "foreign_refresh_token", client_ip)
            raise _invalid(
                "foreign_refresh_token", "the refresh token was not issued to this client"
            )
        if record.revoked_at is not None:
            raise _invalid("refresh_token_revoked")
        if record.rotated_at is not None:
            await self._stolen(record, "refresh_token_reuse", client_ip)
            raise _invalid("refresh_token_reuse")
        now = self.clock()
        if record.expires_at is not None and record.expires_at.timestamp() <= now:
            raise _invalid("refresh_token_expired", "the refresh token has expired")
        idle_end = record.created_at.timestamp() + self.lifetimes.refresh_token_idle_ttl
        if idle_end <= now:
            raise _invalid("refresh_token_idle", "the refresh token has expired")
        if record.user_id is not None and not await self.user_is_active(record.user_id):
            await self.revoke_family(record.family_id)
            raise _invalid("user_inactive")
        return record

    async def find(self, presented: str) -> RefreshToken | None:
        """The stored token ``presented`` is, or ``None`` (never a lookup for what bastion
        cannot have issued)."""
        if not presented.startswith(REFRESH_TOKEN_PREFIX) or len(presented) > _MAX_TOKEN:
            return None
        return await self.store.find_by_digest(refresh_token_digest(presented))

    async def _stolen(self, record: RefreshToken, reason: str, client_ip: str | None) -> None:
        await self.revoke_family(record.family_id)
        self.on_theft(record, reason, client_ip)

    async def revoke_family(self, family_id: str) -> int:
        """Revoke the family and deny-list its live access tokens; how many tokens it held."""
        tokens = await self.store.end_families(
            _at(self.clock()), family_id=family_id, announce=self._announce
        )
        await self._apply_locally(tokens)
        return len(tokens)

    async def revoke_user(self, user_id: str) -> int:
        """Revoke every family of the user (and their access tokens); how many tokens."""
        tokens = await self.store.end_families(
            _at(self.clock()), user_id=user_id, announce=self._announce
        )
        await self._apply_locally(tokens)
        return len(tokens)

    async def revoke_user_client(self, user_id: str, client_id: str) -> int:
        """Revoke every family of the user at one client (and their access tokens); how
        many tokens (a revoked consent)."""
        tokens = await self.store.end_families(
            _at(self.clock()), user_id=user_id, client_id=client_id, announce=self._announce
        )
        await self._apply_locally(tokens)
        return len(tokens)

    async def revoke(self, presented: str, client: Client) -> RefreshToken | None:
        """RFC 7009 for a refresh token: revoke the family of ``presented`` if it is
        ``client``'s; the stored token, or ``None`` when it is not one (nothing done).

        Raises:
            InvalidGrantError: reason ``foreign_token`` — another client's token (its
                family is revoked all the same: it is in the wrong hands).
        """
        record = await self.find(presented)
        if record is None:
            return None
        if record.client_id != client.client_id:
            await self._stolen(record, "foreign_refresh_token", None)
            raise InvalidGrantError(
                "the token was not issued to this client", reason="foreign_token"
            )
        await self.revoke_family(record.family_id)
        return record

    def _revocations(self, tokens: Sequence[RefreshToken]) -> list[str]:
        """``"<jti> <exp>"`` of each access token of ``tokens`` that may still be live."""
        now = self.clock()
        horizon = self.lifetimes.max_access_token_ttl
        leeway = self.lifetimes.leeway
        messages = []
        for token in tokens:
            exp = math.ceil(token.created_at.timestamp() + horizon)
            if exp + leeway > now:
                messages.append(f"{token.id} {exp}")
        return messages

    def _announce(self, tokens: Sequence[RefreshToken]) -> list[Change]:
        return [Change(feed.REVOKED_TOKENS, m) for m in self._revocations(tokens)]

    async def _apply_locally(self, tokens: Sequence[RefreshToken]) -> None:
        for message in self._revocations(tokens):
            await self.deny_locally(message)
