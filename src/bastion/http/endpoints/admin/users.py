"""Admin API: user accounts under ``/admin/api/v1/users``.

=======  ======================================  =====================================
method   path                                    does
=======  ======================================  =====================================
GET      /admin/api/v1/users?limit=&cursor=      list (keyset pages)
POST     /admin/api/v1/users                     create (201; with a password or none)
GET      /admin/api/v1/users/{user_id}           show
PATCH    /admin/api/v1/users/{user_id}           change email, email_verified,
                                                 display_name, roles
DELETE   /admin/api/v1/users/{user_id}           delete (204)
POST     /admin/api/v1/users/{user_id}/disable   disable: no more logins
POST     /admin/api/v1/users/{user_id}/enable    enable
POST     /admin/api/v1/users/{user_id}/password  set a new password (the policy decides)
GET      /admin/api/v1/users/{user_id}/consents  the clients the user consented to
DELETE   /admin/api/v1/users/{user_id}/consents/{client_id}
                                                 revoke that consent and the client's
                                                 refresh tokens for the user (200)
=======  ======================================  =====================================

A password goes in (``password``, checked by the ASVS policy: 400
``weak_password`` with the ``rule`` it breaks) and never comes out: documents
show ``has_password`` and ``password_changed_at``, never the hash. Same
authentication as the rest of the admin API (``bastion:admin``, or
``bastion:admin:read`` for GET); every response is ``Cache-Control: no-store``.
Each endpoint parses its request, calls one of
:class:`~bastion.users.UserOperations` (what ``bastion users`` runs too) and
renders the document.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.http.endpoints.admin import common
from bastion.http.runtime import AdminPlane
from bastion.users import UserOperations, UserService, UserSpec, UserStateChange

__all__ = [
    "USERS_PATH",
    "ConsentList",
    "ConsentOut",
    "ConsentRevoked",
    "PasswordReset",
    "UserCreate",
    "UserEndpoints",
    "UserList",
    "UserOut",
    "UserUpdate",
    "user_routes",
]

#: Collection path of the user endpoints.
USERS_PATH: Final = f"{common.ADMIN_API_PREFIX}/users"

# Longer than any password the policy accepts (users.password.max_length is at most 4096);
# the policy gives the precise answer, this only bounds what is read.
Password = Annotated[str, Field(min_length=1, max_length=4096)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(_Request):
    """A new user; without ``password`` they cannot log in until one is set."""

    username: Annotated[str, Field(min_length=1, max_length=255)]
    email: Annotated[str, Field(max_length=320)] | None = None
    display_name: Annotated[str, Field(max_length=255)] = ""
    roles: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=100)] = []
    password: Password | None = None


class UserUpdate(_Request):
    """Members to change; members left out keep their value. A new ``email`` is unverified
    unless ``email_verified`` comes with it; ``null`` clears the email."""

    email: Annotated[str, Field(max_length=320)] | None = None
    email_verified: bool | None = None
    display_name: Annotated[str, Field(max_length=255)] | None = None
    roles: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=100)] | None = (
        None
    )


class PasswordReset(_Request):
    """The user's new password."""

    password: Password


class UserOut(BaseModel):
    """A user: never the password or its hash."""

    id: str
    username: str
    email: str | None
    email_verified: bool
    display_name: str
    roles: list[str]
    disabled: bool
    has_password: bool
    password_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserList(BaseModel):
    """One page of users; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[UserOut]
    next_cursor: str | None


class ConsentOut(BaseModel):
    """A consent: the client, the scope set allowed (space-separated), when."""

    client_id: str
    scope: str
    created_at: datetime


class ConsentList(BaseModel):
    """The consents of a user, by client then scope set."""

    items: list[ConsentOut]


class ConsentRevoked(BaseModel):
    """What revoking a consent took back: the consents and how many refresh tokens."""

    revoked: list[ConsentOut]
    refresh_tokens_revoked: int


class UserEndpoints(common.RecordEndpoints[UserOperations, UserStateChange]):
    """The user endpoints over the runtime's stores (``db``, ``settings``)."""

    path = USERS_PATH
    id_param = "user_id"
    noun = "user"
    id_member = "id"
    update_model = UserUpdate
    not_nullable = ("email_verified", "display_name", "roles")

    def __init__(self, runtime: AdminPlane) -> None:
        @functools.cache
        def service() -> UserService:
            # Built when first needed: the runtime's stores may open after the routes are made.
            return UserService(runtime.db, runtime.settings)

        super().__init__(runtime, service, UserOperations)

    async def list_users(self, request: Request) -> Response:
        ops = await self.operations(request)
        limit, cursor = common.page_params(request)
        return common.json_response(await ops.list(limit=limit, cursor=cursor))

    async def create_user(self, request: Request) -> Response:
        ops = await self.operations(request)
        body = await common.parse_body(request, UserCreate)
        spec = UserSpec(
            username=body.username,
            email=body.email,
            display_name=body.display_name,
            roles=tuple(body.roles),
        )
        return self.created(await ops.create(spec, body.password))

    async def reset_password(self, request: Request) -> Response:
        ops = await self.operations(request)
        user_id = self.record_id(request)
        body = await common.parse_body(request, PasswordReset)
        return common.json_response(await ops.reset_password(user_id, body.password))

    async def list_consents(self, request: Request) -> Response:
        ops = await self.operations(request)
        return common.json_response(await ops.consents(self.record_id(request)))

    async def revoke_consent(self, request: Request) -> Response:
        ops = await self.operations(request)
        client_id = common.path_id(request, "client_id", "client")
        return common.json_response(await ops.revoke_consent(self.record_id(request), client_id))

    def routes(self) -> list[Route]:
        return common.routes_by_method(
            {
                self.path: {"GET": self.list_users, "POST": self.create_user},
                **self.record_table(),
                self.one + "/disable": {"POST": self.state_change("disable")},
                self.one + "/enable": {"POST": self.state_change("enable")},
                self.one + "/password": {"POST": self.reset_password},
                self.one + "/consents": {"GET": self.list_consents},
                self.one + "/consents/{client_id}": {"DELETE": self.revoke_consent},
            }
        )


def user_routes(runtime: AdminPlane) -> list[Route]:
    """The user endpoints for ``runtime``."""
    return UserEndpoints(runtime).routes()
