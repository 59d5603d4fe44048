"""The document of a user that ``bastion users`` and ``/admin/api/v1/users`` show.

Never the password hash: only whether there is a password and when it was set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from bastion.storage.models import User
from bastion.storage.sql.repositories import Consent

__all__ = ["consent_view", "user_view"]


#: Members shown as they are stored, and the moments shown in ISO 8601.
_PLAIN: Final = ("id", "username", "email", "email_verified", "display_name", "disabled")
_MOMENTS: Final = ("password_changed_at", "created_at", "updated_at")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def user_view(user: User) -> dict[str, Any]:
    """The JSON document of ``user``."""
    doc: dict[str, Any] = {name: getattr(user, name) for name in _PLAIN}
    doc["roles"] = list(user.roles)
    doc["has_password"] = user.password_hash is not None
    doc.update({name: _iso(getattr(user, name)) for name in _MOMENTS})
    return doc


def consent_view(consent: Consent) -> dict[str, Any]:
    """The JSON document of a consent: the client, the scope set, when it was given."""
    return {
        "client_id": consent.client_id,
        "scope": consent.scope,
        "created_at": consent.created_at.isoformat(),
    }
