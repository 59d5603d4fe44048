"""Admin API: user accounts under ``/admin/api/v1/users``.

=======  ======================================  =====================================
method   path                                    does
=======  ======================================  =====================================
GET      /admin/api/v1/users?limit=&cursor=      list (keyset pages)
POST     /admin/api/v1/users                     create (201; with a password or none)
GET      /admin/api/v1/users/{user_id}           show
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
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.http.endpoints.admin import common
from bastion.users import UserOperations, UserService, UserSpec, UserStateChange

__all__ = [
    "USERS_PATH",
    "ConsentList",
    "ConsentOut",
    "ConsentRevoked",
    "PasswordReset",
    "UserCreate",
    "UserList",
    "UserOut",
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


def _user_id(request: Request) -> str:
    return common.path_id(request, "user_id", "user")


def user_routes(runtime: Any) -> list[Route]:
    """The user endpoints for ``runtime`` (with ``db``, ``settings`` and ``access_tokens``)."""

    @functools.cache
    def service() -> UserService:
        # Built when first needed: the runtime's stores may open after the routes are made.
        return UserService(runtime.db, runtime.settings)

    operations = common.admin_operations(runtime, service, UserOperations)

    async def list_users(request: Request) -> Response:
        ops = await operations(request)
        limit, cursor = common.page_params(request)
        return common.json_response(await ops.list(limit=limit, cursor=cursor))

    async def create_user(request: Request) -> Response:
        ops = await operations(request)
        body = await common.parse_body(request, UserCreate)
        spec = UserSpec(
            username=body.username,
            email=body.email,
            display_name=body.display_name,
            roles=tuple(body.roles),
        )
        doc = await ops.create(spec, body.password)
        return common.json_response(doc, 201, {"location": f"{USERS_PATH}/{doc['id']}"})

    async def show_user(request: Request) -> Response:
        ops = await operations(request)
        return common.json_response(await ops.show(_user_id(request)))

    async def delete_user(request: Request) -> Response:
        ops = await operations(request)
        await ops.delete(_user_id(request))
        return Response(status_code=204, headers=common.NO_STORE)

    async def reset_password(request: Request) -> Response:
        ops = await operations(request)
        user_id = _user_id(request)
        body = await common.parse_body(request, PasswordReset)
        return common.json_response(await ops.reset_password(user_id, body.password))

    async def list_consents(request: Request) -> Response:
        ops = await operations(request)
        return common.json_response(await ops.consents(_user_id(request)))

    async def revoke_consent(request: Request) -> Response:
        ops = await operations(request)
        client_id = common.path_id(request, "client_id", "client")
        return common.json_response(await ops.revoke_consent(_user_id(request), client_id))

    def state_change(change: UserStateChange) -> common.Endpoint:
        async def endpoint(request: Request) -> Response:
            ops = await operations(request)
            return common.json_response(await ops.change_state(change, _user_id(request)))

        return endpoint

    one = USERS_PATH + "/{user_id}"
    return common.routes_by_method(
        {
            USERS_PATH: {"GET": list_users, "POST": create_user},
            one: {"GET": show_user, "DELETE": delete_user},
            one + "/disable": {"POST": state_change("disable")},
            one + "/enable": {"POST": state_change("enable")},
            one + "/password": {"POST": reset_password},
            one + "/consents": {"GET": list_consents},
            one + "/consents/{client_id}": {"DELETE": revoke_consent},
        }
    )
