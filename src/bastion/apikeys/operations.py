"""What an operator does to API keys: the one service layer of ``bastion keys`` and ``/keys``.

Each operation changes keys through :class:`~bastion.apikeys.ApiKeyService`,
records the lifecycle event (:class:`~bastion.credentials.lifecycle.ChangeRecorder`)
and returns the document both doors show (:func:`~bastion.apikeys.views.api_key_view`).
The CLI (``cli/keys.py``) and the admin API (``http/endpoints/admin/keys.py``)
only parse their input, call one operation and render its document. The full
key is in the documents of :meth:`~ApiKeyOperations.create` and
:meth:`~ApiKeyOperations.rotate` (member ``key``) and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from bastion.apikeys.service import ApiKeyService
from bastion.apikeys.spec import ApiKeySpec
from bastion.apikeys.views import api_key_view
from bastion.credentials.lifecycle import ChangeRecorder
from bastion.storage.models import ApiKey

__all__ = ["STATE_CHANGES", "ApiKeyOperations", "StateChange"]

StateChange = Literal["revoke", "disable", "enable"]
#: Each state change: the lifecycle action it records and the member it changes.
STATE_CHANGES: Final[Mapping[str, tuple[str, str]]] = {
    "revoke": ("revoked", "revoked_at"),
    "disable": ("disabled", "disabled"),
    "enable": ("enabled", "disabled"),
}


def _with_key(key: ApiKey, secret: str, now: datetime) -> dict[str, Any]:
    doc = api_key_view(key, now)
    doc["key"] = secret
    return doc


class ApiKeyOperations:
    """The API key operations of one caller (``recorder`` says who and where events go).

    Every method raises what the service raises: ``NotFoundError``,
    ``ApiKeySpecError``, ``ApiKeyStateError``, ``AmbiguousApiKeyError`` and the
    storage errors.
    """

    def __init__(self, service: ApiKeyService, recorder: ChangeRecorder) -> None:
        self.service = service
        self.recorder = recorder

    async def resolve(self, ref: str) -> str:
        """The id of the key named by ``ref``: its id or its display prefix."""
        return (await self.service.resolve(ref)).id

    async def list(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        owner_type: str | None = None,
        owner_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of keys: ``{"items": [view …], "next_cursor": …}``."""
        page = await self.service.list(
            limit=limit, cursor=cursor, owner_type=owner_type, owner_id=owner_id
        )
        now = datetime.now(UTC)
        return {
            "items": [api_key_view(key, now) for key in page.items],
            "next_cursor": page.next_cursor,
        }

    async def show(self, key_id: str) -> dict[str, Any]:
        """The view of one key."""
        return api_key_view(await self.service.get(key_id), datetime.now(UTC))

    async def create(self, spec: ApiKeySpec, fields: Iterable[str]) -> dict[str, Any]:
        """Create a key; its view with the full ``key`` (shown once). ``fields``: what the
        caller set, for the event."""
        key, secret = await self.service.create(spec)
        self.recorder.api_key("created", key.id, fields)
        return _with_key(key, secret, datetime.now(UTC))

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the members in ``changes`` (none: nothing changes, nothing is recorded)."""
        if not changes:
            return await self.show(key_id)
        key = await self.service.update(key_id, **changes)
        self.recorder.api_key("updated", key_id, changes)
        return api_key_view(key, datetime.now(UTC))

    async def rotate(self, key_id: str, grace: float | None) -> dict[str, Any]:
        """Issue a successor; its view with the full ``key`` (shown once)."""
        successor, secret = await self.service.rotate(key_id, grace=grace)
        self.recorder.api_key("rotated", key_id, ["grace_until"], successor=successor.id)
        return _with_key(successor, secret, datetime.now(UTC))

    async def change_state(self, change: StateChange, key_id: str) -> dict[str, Any]:
        """Revoke, disable or enable the key; its view."""
        action, member = STATE_CHANGES[change]
        if change == "revoke":
            key = await self.service.revoke(key_id)
        elif change == "disable":
            key = await self.service.disable(key_id)
        else:
            key = await self.service.enable(key_id)
        self.recorder.api_key(action, key.id, [member])
        return api_key_view(key, datetime.now(UTC))

    async def delete(self, key_id: str) -> None:
        """Delete the key."""
        await self.service.delete(key_id)
        self.recorder.api_key("deleted", key_id)
