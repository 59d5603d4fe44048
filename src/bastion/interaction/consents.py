"""Consent: what a user allowed a client, remembered per (user, client, scope set).

- **Given** on the consent page's "Allow" (:meth:`ConsentService.give`): one row of the
  ``consents`` table (migration 0007) per scope set, its time moved forward when the
  same set is allowed again. A ``consent.given`` audit event.
- **Covering** (:meth:`ConsentService.consented_at`): a remembered consent skips the
  page when its scope set holds every requested scope; the answer is when the newest
  such consent was given, which ``required_interaction`` compares with the request
  (``prompt=consent`` asks again unless the user consented during this request).
- **Revoked** (:meth:`ConsentService.revoke`, the admin API and ``bastion users
  revoke-consent``): every scope set of the user at the client goes, and with it the
  client's refresh tokens for the user and the access tokens they issued (the client
  should not keep what the user took back). A ``consent.revoked`` audit event, written
  by the door that revoked it (the admin API, the CLI) with who did it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bastion.audit.events import Auditor, EventTypes
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.storage import Database
from bastion.storage.models import utcnow
from bastion.storage.sql.repositories import Consent

__all__ = ["SCOPE_DESCRIPTIONS", "ConsentService", "RevokedConsent", "canonical_scope", "describe"]

#: What the consent page says each well-known scope lets the client do.
SCOPE_DESCRIPTIONS: Final = {
    "openid": "Know who you are: your user id at this server",
    "profile": "See your name and username",
    "email": "See your email address and whether it is verified",
    "offline_access": "Keep access while you are not using it (a refresh token)",
}


def canonical_scope(scope: Collection[str]) -> str:
    """The one spelling of a scope set: distinct tokens, sorted, one space between."""
    return " ".join(sorted(set(scope)))


def describe(scope: str) -> str:
    """What the consent page says about ``scope`` (a registered API scope by its name)."""
    return SCOPE_DESCRIPTIONS.get(scope, f"Use the API permission “{scope}”")


@dataclass(frozen=True, slots=True)
class RevokedConsent:
    """What :meth:`ConsentService.revoke` took back: the consents and how many refresh
    tokens (with their access tokens) ended with them."""

    consents: tuple[Consent, ...]
    refresh_tokens: int


class ConsentService:
    """The ``consents`` table of ``db``; revocation ends refresh tokens through
    ``refresh_tokens``; every change is audited on ``auditor``."""

    def __init__(
        self, db: Database, refresh_tokens: RefreshTokenService, auditor: Auditor | None = None
    ) -> None:
        self.db = db
        self.refresh_tokens = refresh_tokens
        self.auditor = auditor

    async def consented_at(
        self, user_id: str, client_id: str, scope: Collection[str]
    ) -> float | None:
        """When the user last gave a consent to the client covering every scope of
        ``scope`` (epoch seconds), or ``None``."""
        wanted = set(scope)
        times = [
            consent.created_at.timestamp()
            for consent in await self.db.consents.for_client(user_id, client_id)
            if wanted <= set(consent.scope.split())
        ]
        return max(times, default=None)

    async def give(
        self,
        user_id: str,
        client_id: str,
        scope: Collection[str],
        *,
        at: datetime | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        request_id: str | None = None,
    ) -> Consent:
        """Remember that the user allowed the client ``scope`` (now, or ``at``).

        Raises ``NotFoundError`` when the user or the client does not exist.
        """
        canonical = canonical_scope(scope)
        consent = await self.db.consents.give(
            Consent(
                user_id=user_id, client_id=client_id, scope=canonical, created_at=at or utcnow()
            )
        )
        if self.auditor is not None:
            self.auditor.record(
                EventTypes.CONSENT_GIVEN,
                "success",
                request_id=request_id,
                ip=ip,
                user_agent=user_agent,
                subject=user_id,
                client_id=client_id,
                data={"scope": canonical},
            )
        return consent

    async def list_for_user(self, user_id: str) -> tuple[Consent, ...]:
        """The user's consents, by client then scope set."""
        return await self.db.consents.list_for_user(user_id)

    async def revoke(self, user_id: str, client_id: str) -> RevokedConsent:
        """Forget every consent of the user to the client and revoke the client's refresh
        tokens for the user (and the access tokens they issued). Nothing given: nothing
        revoked (``consents`` empty). The caller audits it (``consent.revoked``: who did
        it is the door's to say, :meth:`ChangeRecorder.consent_revoked`)."""
        removed = await self.db.consents.delete_for_client(user_id, client_id)
        if not removed:
            return RevokedConsent((), 0)
        ended = await self.refresh_tokens.revoke_user_client(user_id, client_id)
        return RevokedConsent(tuple(sorted(removed, key=lambda c: c.scope)), ended)
