"""Authorization codes: issued once, redeemed once, with PKCE (RFC 6749 §4.1, RFC 7636).

The authorization endpoint (after login and consent) calls
:meth:`AuthorizationCodeService.issue`; the token endpoint's
``authorization_code`` grant (:mod:`bastion.protocol.rfc6749.grants.authorization_code`)
calls :meth:`~AuthorizationCodeService.redeem`. Rules (RFC 6749 §4.1.2 and
§10.5, RFC 9700 §2.1.1 and §4.5):

- A code is ``bac_`` + 43 characters of 256 random bits, stored only as its
  SHA-256 digest (like refresh tokens: high entropy, so a digest is enough);
  it lives ``tokens.authorization_code_ttl`` (60 s by default).
- **Single use**: redeeming is one conditional UPDATE of ``consumed_at``, so of
  simultaneous redemptions exactly one wins. The code is consumed before the
  rest is checked: a code shown with a wrong client, ``redirect_uri`` or
  verifier is burnt (it may be in an attacker's hands).
- **Replay**: a consumed code presented again revokes every token issued from
  it — the refresh family named after the code (:func:`family_id_of`) and the
  access tokens of that family, deny-listed on every node through the
  ``revoked-tokens`` feed — and a ``token.code_reuse`` event raises the
  ``token_reuse`` alert.
- The client must be the one the code was issued to, ``redirect_uri`` the exact
  one of the authorization request, the verifier must match the S256 challenge
  (constant time), and the code must not have expired: else ``invalid_grant``.

Every access token issued from a code belongs to the family, even when no
refresh token is returned (the client may not refresh, or an OpenID request
lacked ``offline_access``): the family's first token is stored but never shown,
so the one revocation path covers every case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from bastion.crypto.digests import random_token, sha256_hex
from bastion.crypto.jwt import sign_jwt
from bastion.crypto.keys import SigningKeyPair
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.protocol.rfc6749.errors import InvalidGrantError, UnauthorizedClientError
from bastion.protocol.rfc6749.grants.authorization_code import CodeRedemption, RedeemedCode
from bastion.protocol.rfc6749.grants.refresh_token import Rotation
from bastion.protocol.rfc6749.scope import parse_scope
from bastion.protocol.rfc7636 import S256, verify_code_verifier
from bastion.storage.errors import NotFoundError
from bastion.storage.models import AuthorizationCode, Client
from bastion.storage.outcomes import CodeReplayError
from bastion.storage.sql.repositories import REPLAYED, SqlAuthorizationCodeRepository

__all__ = [
    "AUTHORIZATION_CODE_PREFIX",
    "AuthorizationCodeService",
    "CodeLifetime",
    "IdTokenSigner",
    "authorization_code_digest",
    "family_id_of",
]

#: The prefix of every authorization code bastion issues (secret scanners match it).
AUTHORIZATION_CODE_PREFIX: Final = "bac_"
_CODE_BYTES, _MAX_CODE = 32, 128  # random bytes; longer than any code: refused unseen
_SID: Final = "sid"  # where ``claims`` keeps the browser session's id

#: ``(code record, client address)``: a consumed code was presented again.
ReplayListener = Callable[[AuthorizationCode, str | None], None]


class CodeLifetime(Protocol):
    """The settings the service reads (``settings.tokens``)."""

    @property
    def authorization_code_ttl(self) -> float:
        """How long a code may wait to be redeemed, seconds."""
        ...


def authorization_code_digest(code: str) -> str:
    """The stored form of a code: its SHA-256 hex digest."""
    return sha256_hex(code.encode("utf-8"))


def family_id_of(code_digest: str) -> str:
    """The id of the refresh family a code (by its digest) starts: half the digest —
    128 bits, so unique, and not the stored digest itself."""
    return code_digest[: len(code_digest) // 2]


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


_INVALID: Final = "the authorization code is invalid"


def _invalid(reason: str, description: str = _INVALID) -> InvalidGrantError:
    return InvalidGrantError(description, reason=reason)


def _unheard(_code: AuthorizationCode, _ip: str | None) -> None:
    return None


@dataclass(frozen=True, slots=True)
class IdTokenSigner:
    """Signs ID tokens (``typ: JWT``, OIDC Core §2) with the active key of the algorithm
    the client registered (OIDC Registration §2 ``id_token_signed_response_alg``).

    ``algorithms()`` are the ID-token algorithms bastion signs with now, the first being
    the default for a client that registered none
    (:meth:`~bastion.oauth.signing_keys.SigningKeyManager.id_token_algorithms`);
    ``current_key(alg)`` the active key of ``alg``.
    """

    current_key: Callable[[str], SigningKeyPair]
    algorithms: Callable[[], Sequence[str]]

    async def __call__(
        self, build: Callable[[str], dict[str, Any]], alg: str | None, *, typ: str = "JWT"
    ) -> str:
        """Sign ``build(alg)`` with the active key of ``alg`` (``None``: the default);
        ``typ`` is the header's (``logout+jwt`` for back-channel logout tokens, which are
        signed as the client's ID tokens are).

        Raises:
            UnauthorizedClientError: the client registered an algorithm the settings no
                longer offer (``signing_keys.id_token_algorithms``).
            NoActiveSigningKeyError: no key is loaded (503).
        """
        offered = self.algorithms()
        chosen = alg or (offered[0] if offered else None)
        if chosen is None or chosen not in offered:
            raise UnauthorizedClientError(
                f"the client's id_token_signed_response_alg {chosen!r} is not offered by "
                f"this server (it signs ID tokens with {', '.join(offered) or 'nothing'})",
                reason="id_token_alg_not_offered",
            )
        key = self.current_key(chosen)
        return sign_jwt(build(key.alg), key, typ=typ)


@dataclass(frozen=True, slots=True)
class AuthorizationCodeService:
    """Authorization codes in ``store`` (see the module docstring); the refresh families
    they start in ``refresh_tokens``. ``on_replay`` hears of every replayed code (after
    its family was revoked); ``clock`` gives epoch seconds."""

    store: SqlAuthorizationCodeRepository
    refresh_tokens: RefreshTokenService
    lifetime: CodeLifetime
    _: KW_ONLY
    on_replay: ReplayListener = _unheard
    clock: Callable[[], float] = time.time

    async def issue(
        self,
        client: Client,
        user_id: str,
        *,
        redirect_uri: str,
        scope: str,
        code_challenge: str,
        nonce: str | None = None,
        auth_time: float | None = None,
        acr: str | None = None,
        amr: Sequence[str] = (),
        session_id: str | None = None,
    ) -> str:
        """A new code for ``user_id`` at ``client`` (shown once; stored as its digest).

        The caller (the authorization endpoint) has checked ``redirect_uri``, the
        scope and the S256 ``code_challenge`` (``rfc7636.check_code_challenge``).
        Raises ``InvalidScopeError`` for a malformed scope and ``NotFoundError``
        when the client or user does not exist.
        """
        parse_scope(scope)
        now = self.clock()
        code = AUTHORIZATION_CODE_PREFIX + random_token(_CODE_BYTES)
        claims: Mapping[str, Any] = {_SID: session_id} if session_id is not None else {}
        await self.store.create(
            AuthorizationCode(
                code_digest=authorization_code_digest(code),
                client_id=client.client_id,
                user_id=user_id,
                redirect_uri=redirect_uri,
                expires_at=_at(now + self.lifetime.authorization_code_ttl),
                code_challenge=code_challenge,
                code_challenge_method=S256,
                scope=scope,
                nonce=nonce,
                auth_time=_at(auth_time) if auth_time is not None else None,
                acr=acr,
                amr=tuple(amr),
                claims=dict(claims),
                created_at=_at(now),
            )
        )
        return code

    async def redeem(self, redemption: CodeRedemption) -> RedeemedCode:
        """Consume the code of ``redemption`` once and return what it was issued for.

        Raises:
            InvalidGrantError: reason ``unknown_code``, ``code_reuse`` (what it issued
                is revoked), ``foreign_code``, ``code_expired``,
                ``redirect_uri_mismatch``, ``pkce_mismatch`` or ``user_inactive``.
        """
        presented = redemption.code
        if not presented.startswith(AUTHORIZATION_CODE_PREFIX) or len(presented) > _MAX_CODE:
            raise _invalid("unknown_code")
        try:
            record = await self.store.consume(
                authorization_code_digest(presented), _at(self.clock())
            )
        except NotFoundError:
            raise _invalid("unknown_code") from None
        except CodeReplayError as replay:
            digest = replay.record.code_digest
            # Marked first: a winner still storing its family then sees the replay (start_family).
            await self.store.mark_replayed(digest)
            await self.refresh_tokens.revoke_family(family_id_of(digest))
            self.on_replay(replay.record, redemption.client_ip)
            raise _invalid("code_reuse") from None
        self._check(record, redemption)
        # A user disabled since the login gets nothing (their families were revoked then).
        if not await self.refresh_tokens.user_is_active(record.user_id):
            raise _invalid("user_inactive")
        return _redeemed(record)

    def _check(self, record: AuthorizationCode, redemption: CodeRedemption) -> None:
        if record.client_id != redemption.client.client_id:
            raise _invalid("foreign_code", "the authorization code was not issued to this client")
        if record.expires_at.timestamp() <= self.clock():
            raise _invalid("code_expired", "the authorization code has expired")
        if record.redirect_uri != redemption.redirect_uri:
            raise _invalid(
                "redirect_uri_mismatch",
                "redirect_uri does not match the one of the authorization request",
            )
        verify_code_verifier(redemption.code_verifier, record.code_challenge)

    async def start_family(self, client: Client, code: RedeemedCode) -> Rotation:
        """Start the refresh family named after ``code``; its first token, and the ``jti``
        and ``iat`` of the access token issued with it.

        Raises ``InvalidGrantError`` (reason ``code_reuse``, the family revoked) when the
        code was replayed since it was redeemed.
        """
        issued = await self.refresh_tokens.issue_family(
            client, code.user_id, code.scope, family_id=code.family_id
        )
        # A replay between the redemption and the line above revoked nothing: this one does.
        if (await self.store.get(code.code_digest)).claims.get(REPLAYED):
            await self.refresh_tokens.revoke_family(code.family_id)
            raise _invalid("code_reuse")
        return Rotation(
            refresh_token=issued.token,
            jti=issued.access_jti,
            subject=code.user_id,
            scope=parse_scope(code.scope),
            issued_at=issued.record.created_at.timestamp(),
        )


def _redeemed(record: AuthorizationCode) -> RedeemedCode:
    sid = record.claims.get(_SID)
    return RedeemedCode(
        code_digest=record.code_digest,
        user_id=record.user_id,
        scope=record.scope,
        family_id=family_id_of(record.code_digest),
        issued_at=record.created_at.timestamp(),
        nonce=record.nonce,
        auth_time=record.auth_time.timestamp() if record.auth_time is not None else None,
        acr=record.acr,
        amr=tuple(record.amr),
        sid=sid if isinstance(sid, str) else None,
    )
