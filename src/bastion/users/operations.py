"""What an operator does to users: the one service layer of ``bastion users`` and ``/users``.

Each operation changes the user through :class:`~bastion.users.service.UserService`
(which writes the change feed in the change's transaction), records the
``user.changed`` audit event (:class:`~bastion.credentials.lifecycle.ChangeRecorder`)
and returns the document both doors show (:func:`~bastion.users.views.user_view`).
The CLI (``cli/users.py``) and the admin API (``http/endpoints/admin/users.py``)
only parse their input, call one operation and render the document. A password
goes in and never comes out; events name the ``password`` field, never a value.

Disabling or deleting a user is announced on the feed's ``users`` channel and
audited, and revokes every refresh-token family of the user with the access
tokens issued from them (:meth:`~bastion.oauth.refresh_tokens.RefreshTokenService.revoke_user`:
the deny-list entries go on the change feed, so every node — and the native
gateway — refuses those tokens within a second, whichever process made the
change). Sessions end and the API keys the user owns stop working on every node
through the same channel; deleting a user revokes the API keys they own.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from bastion.credentials.lifecycle import ChangeRecorder
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.storage.models import User
from bastion.users.service import UserService
from bastion.users.spec import UserSpec
from bastion.users.views import user_view

__all__ = ["STATE_CHANGES", "UserOperations", "UserStateChange"]

UserStateChange = Literal["disable", "enable"]
#: Each state change: the lifecycle action it records and the value of ``disabled``.
STATE_CHANGES: Final = {"disable": ("disabled", True), "enable": ("enabled", False)}


def _created_fields(spec: UserSpec, password: str | None) -> list[str]:
    fields = ["username"]
    fields += [name for name in ("email", "display_name", "roles") if getattr(spec, name)]
    return [*fields, "password"] if password is not None else fields


class UserOperations:
    """The user operations of one caller (``recorder`` says who and where events go).

    Every method raises what the service raises: ``NotFoundError``,
    ``ConflictError``, ``UserSpecError``, ``WeakPasswordError``,
    ``InvalidCursorError``, the storage errors and, from :meth:`authenticate`,
    ``InvalidCredentialsError``.
    """

    def __init__(
        self,
        service: UserService,
        recorder: ChangeRecorder,
        refresh_tokens: RefreshTokenService | None = None,
    ) -> None:
        self.service = service
        self.recorder = recorder
        # Without the server's service (the CLI), one over the same store: its
        # revocations reach every node through the change feed.
        self.refresh_tokens = refresh_tokens or RefreshTokenService(
            service.db.refresh_tokens, service.token_settings
        )

    async def resolve(self, ref: str) -> str:
        """The id of the user named by ``ref``: their id or their username."""
        return (await self.service.resolve(ref)).id

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """One page of users: ``{"items": [document …], "next_cursor": …}``."""
        page = await self.service.list(limit=limit, cursor=cursor)
        return {"items": [user_view(u) for u in page.items], "next_cursor": page.next_cursor}

    async def show(self, user_id: str) -> dict[str, Any]:
        """The document of one user."""
        return user_view(await self.service.get(user_id))

    async def create(self, spec: UserSpec, password: str | None = None) -> dict[str, Any]:
        """Create a user, with a password when given; their document."""
        user = await self.service.create(spec, password)
        self.recorder.user("created", user.id, _created_fields(spec, password))
        return user_view(user)

    async def change_state(self, change: UserStateChange, user_id: str) -> dict[str, Any]:
        """Disable or enable the user; their document."""
        action, disabled = STATE_CHANGES[change]
        user = await self.service.set_disabled(user_id, disabled)
        if disabled:
            await self.refresh_tokens.revoke_user(user.id)
        self.recorder.user(action, user.id, ["disabled"])
        return user_view(user)

    async def reset_password(self, user_id: str, password: str) -> dict[str, Any]:
        """Set a new password (the policy decides); their document."""
        user = await self.service.reset_password(user_id, password)
        self.recorder.user("password_reset", user.id, ["password"])
        return user_view(user)

    async def change_password(self, user: User, current: str, new: str) -> User:
        """The user's own change (the account page): ``current`` must be their password
        (``InvalidCredentialsError``, one argon2id verify whatever the cause), ``new`` must
        pass the policy (``WeakPasswordError``). Recorded as ``password_changed``; the user's
        sessions started before it end on every node (the ``users`` channel)."""
        await self.service.authenticate(user.username, current)
        changed = await self.service.reset_password(user.id, new)
        self.recorder.user("password_changed", user.id, ["password"])
        return changed

    async def delete(self, user_id: str) -> None:
        """Delete the user and everything that belongs to them.

        Their refresh-token families are revoked first: deleting the rows would
        lose which access tokens they issued."""
        await self.refresh_tokens.revoke_user(user_id)
        revoked = await self.service.delete(user_id)
        self.recorder.user("deleted", user_id, ["api_keys"] if revoked else ())

    async def authenticate(self, username: str, password: str) -> User:
        """The user these credentials belong to (see :meth:`UserService.authenticate`).

        Not a change, so nothing is recorded here: the login door audits the
        attempt (``auth.login``) with what it knows of the request.
        """
        return await self.service.authenticate(username, password)
