"""What an operator does to OAuth clients and signing keys: one service layer for every door.

Each operation changes the credential through its service
(:class:`~bastion.oauth.clients.ClientService`,
:class:`~bastion.oauth.signing_keys.SigningKeyManager`), records the lifecycle
event (:class:`~bastion.credentials.lifecycle.ChangeRecorder`) and returns what
both doors show (:mod:`bastion.oauth.views`). ``bastion clients`` and the admin
API's ``/clients`` (``cli/clients.py``, ``http/endpoints/admin/clients.py``), and
``bastion signing-keys``, only parse their input, call one operation and render.
A client secret is in the documents of :meth:`ClientOperations.create` and
:meth:`ClientOperations.rotate_secret` (member ``client_secret``) and nowhere else.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from bastion.credentials.lifecycle import ChangeRecorder
from bastion.crypto import SigningAlgorithm
from bastion.oauth.client_spec import ClientSpec
from bastion.oauth.clients import ClientService
from bastion.oauth.signing_keys import SigningKeyManager
from bastion.oauth.views import client_view
from bastion.storage.models import Client, SigningKey

__all__ = ["ClientOperations", "ClientStateChange", "SigningKeyOperations"]

ClientStateChange = Literal["disable", "enable"]
_STATE_ACTIONS: Final = {"disable": "disabled", "enable": "enabled"}


class ClientOperations:
    """The client operations of one caller (``recorder`` says who and where events go).

    Every method raises what the service raises: ``NotFoundError``,
    ``ClientSpecError``, ``InvalidCursorError`` and the storage errors.
    """

    def __init__(self, service: ClientService, recorder: ChangeRecorder) -> None:
        self.service = service
        self.recorder = recorder

    async def view(self, client: Client) -> dict[str, Any]:
        """The document of ``client`` (its secrets by display prefix)."""
        return client_view(client, await self.service.list_secrets(client.client_id))

    async def _with_secret(self, client: Client, secret: str | None) -> dict[str, Any]:
        doc = await self.view(client)
        doc["client_secret"] = secret
        return doc

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """One page of clients: ``{"items": [document …], "next_cursor": …}``."""
        page = await self.service.list(limit=limit, cursor=cursor)
        items = [await self.view(client) for client in page.items]
        return {"items": items, "next_cursor": page.next_cursor}

    async def show(self, client_id: str) -> dict[str, Any]:
        """The document of one client."""
        return await self.view(await self.service.get(client_id))

    async def create(self, spec: ClientSpec, fields: Iterable[str]) -> dict[str, Any]:
        """Register a client; its document with ``client_secret`` (shown once; ``None``
        without a secret method). ``fields``: what the caller set, for the event."""
        client, secret = await self.service.create(spec)
        self.recorder.client("created", client.client_id, fields)
        return await self._with_secret(client, secret)

    async def update(self, client_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the members in ``changes``; recorded only when there is a change."""
        client = await self.service.update(client_id, **changes)
        if changes:
            self.recorder.client("updated", client_id, changes)
        return await self.view(client)

    async def rotate_secret(self, client_id: str, grace: float | None) -> dict[str, Any]:
        """Issue a new secret; the document with ``client_secret`` (shown once)."""
        secret = await self.service.rotate_secret(client_id, grace=grace)
        self.recorder.client("secret_rotated", client_id, ["client_secret"])
        return await self._with_secret(await self.service.get(client_id), secret)

    async def change_state(self, change: ClientStateChange, client_id: str) -> dict[str, Any]:
        """Disable or enable the client; its document."""
        if change == "disable":
            client = await self.service.disable(client_id)
        else:
            client = await self.service.enable(client_id)
        self.recorder.client(_STATE_ACTIONS[change], client.client_id, ["disabled"])
        return await self.view(client)

    async def delete(self, client_id: str) -> None:
        """Delete the client with its secrets, grants and tokens."""
        await self.service.delete(client_id)
        self.recorder.client("deleted", client_id)


class SigningKeyOperations:
    """The signing-key operations of one caller; the records are returned for rendering."""

    def __init__(self, manager: SigningKeyManager, recorder: ChangeRecorder) -> None:
        self.manager = manager
        self.recorder = recorder

    async def list(self) -> builtins.list[SigningKey]:
        """Every stored key, retired ones too, in creation order."""
        return await self.manager.list()

    async def rotate(self, alg: SigningAlgorithm | None, *, immediate: bool) -> SigningKey:
        """Create the next key (``immediate``: active now); recorded as ``rotated``."""
        key = await self.manager.rotate(alg=alg, immediate=immediate)
        self.recorder.signing_key("rotated", key.kid, ["state"])
        return key

    async def retire(self, kid: str, alg: SigningAlgorithm | None = None) -> SigningKey:
        """Retire ``kid`` (of ``alg``, when given) at once; recorded as ``retired``."""
        key = await self.manager.retire(kid, alg=alg)
        self.recorder.signing_key("retired", key.kid, ["state"])
        return key
