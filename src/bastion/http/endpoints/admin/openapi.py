"""The admin API's OpenAPI 3.1 document, generated from the pydantic models.

Served publicly at ``GET /admin/api/v1/openapi.json`` (it describes the API,
it grants nothing). :data:`OPERATIONS` is the one list of documented
operations; a test pins it to the routes actually served.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bastion import __version__
from bastion.http.endpoints.admin.audit import (
    AUDIT_FILTERS,
    AUDIT_MAX_PAGE,
    AuditEventList,
    AuditEventOut,
)
from bastion.http.endpoints.admin.auth import ADMIN_READ_SCOPE, ADMIN_SCOPE
from bastion.http.endpoints.admin.common import MAX_PAGE
from bastion.http.endpoints.admin.models import (
    ApiKeyCreate,
    ApiKeyList,
    ApiKeyOut,
    ApiKeyUpdate,
    ApiKeyWithSecret,
    ClientCreate,
    ClientList,
    ClientOut,
    ClientUpdate,
    ClientWithSecret,
    KeyLimitsOut,
    KeyLimitsUpdate,
    Problem,
    RotateApiKey,
    RotateSecret,
)
from bastion.http.endpoints.admin.users import (
    ConsentList,
    ConsentRevoked,
    PasswordReset,
    UserCreate,
    UserList,
    UserOut,
    UserUpdate,
)

__all__ = ["OPENAPI_PATH", "OPERATIONS", "Operation", "openapi_document"]

OPENAPI_PATH: Final = "/admin/api/v1/openapi.json"
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Operation:
    """One documented operation of the admin API."""

    method: str
    path: str
    operation_id: str
    summary: str
    status: int
    response: type[BaseModel] | None
    body: type[BaseModel] | None = None
    body_required: bool = True


_ONE = "/admin/api/v1/clients/{client_id}"
_KEY = "/admin/api/v1/keys/{key_id}"
_USER = "/admin/api/v1/users/{user_id}"

OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation("get", "/admin/api/v1/clients", "listClients", "List clients", 200, ClientList),
    Operation(
        "post",
        "/admin/api/v1/clients",
        "createClient",
        "Register a client; its secret is in this response only",
        201,
        ClientWithSecret,
        ClientCreate,
    ),
    Operation("get", _ONE, "getClient", "Show a client", 200, ClientOut),
    Operation("patch", _ONE, "updateClient", "Change a client", 200, ClientOut, ClientUpdate),
    Operation("delete", _ONE, "deleteClient", "Delete a client and its tokens", 204, None),
    Operation(
        "post",
        _ONE + "/rotate-secret",
        "rotateClientSecret",
        "Issue a new secret; previous secrets work until the grace period ends",
        200,
        ClientWithSecret,
        RotateSecret,
        body_required=False,
    ),
    Operation("post", _ONE + "/disable", "disableClient", "Disable a client", 200, ClientOut),
    Operation("post", _ONE + "/enable", "enableClient", "Enable a client", 200, ClientOut),
    Operation("get", "/admin/api/v1/keys", "listApiKeys", "List API keys", 200, ApiKeyList),
    Operation(
        "post",
        "/admin/api/v1/keys",
        "createApiKey",
        "Create an API key; the key is in this response only",
        201,
        ApiKeyWithSecret,
        ApiKeyCreate,
    ),
    Operation("get", _KEY, "getApiKey", "Show an API key", 200, ApiKeyOut),
    Operation("patch", _KEY, "updateApiKey", "Change an API key", 200, ApiKeyOut, ApiKeyUpdate),
    Operation("delete", _KEY, "deleteApiKey", "Delete an API key", 204, None),
    Operation(
        "post",
        _KEY + "/rotate",
        "rotateApiKey",
        "Create the successor key (in this response only); the old key works until the "
        "grace period ends",
        201,
        ApiKeyWithSecret,
        RotateApiKey,
        body_required=False,
    ),
    Operation("post", _KEY + "/revoke", "revokeApiKey", "Revoke an API key", 200, ApiKeyOut),
    Operation("post", _KEY + "/disable", "disableApiKey", "Disable an API key", 200, ApiKeyOut),
    Operation("post", _KEY + "/enable", "enableApiKey", "Enable an API key", 200, ApiKeyOut),
    Operation(
        "get", "/admin/api/v1/audit", "listAuditEvents", "Search the audit log", 200, AuditEventList
    ),
    Operation(
        "get",
        _KEY + "/limits",
        "getApiKeyLimits",
        "Show a key's effective rate limits and their current usage",
        200,
        KeyLimitsOut,
    ),
    Operation(
        "put",
        _KEY + "/limits",
        "setApiKeyLimits",
        "Override a key's rate limits at runtime (every node applies it)",
        200,
        KeyLimitsOut,
        KeyLimitsUpdate,
    ),
    Operation(
        "delete",
        _KEY + "/limits",
        "clearApiKeyLimits",
        "Drop the override: the key's own limits apply again",
        200,
        KeyLimitsOut,
    ),
    Operation("get", "/admin/api/v1/users", "listUsers", "List users", 200, UserList),
    Operation(
        "post",
        "/admin/api/v1/users",
        "createUser",
        "Create a user (with a password the policy accepts, or none)",
        201,
        UserOut,
        UserCreate,
    ),
    Operation("get", _USER, "getUser", "Show a user", 200, UserOut),
    Operation(
        "patch",
        _USER,
        "updateUser",
        "Change a user's email, display name or roles (a new email is unverified)",
        200,
        UserOut,
        UserUpdate,
    ),
    Operation("delete", _USER, "deleteUser", "Delete a user and what is theirs", 204, None),
    Operation("post", _USER + "/disable", "disableUser", "Disable a user", 200, UserOut),
    Operation("post", _USER + "/enable", "enableUser", "Enable a user", 200, UserOut),
    Operation(
        "post",
        _USER + "/password",
        "resetUserPassword",
        "Set a user's password (400 weak_password names the rule it breaks)",
        200,
        UserOut,
        PasswordReset,
    ),
    Operation(
        "get",
        _USER + "/consents",
        "listUserConsents",
        "The clients a user consented to, with the scope sets",
        200,
        ConsentList,
    ),
    Operation(
        "delete",
        _USER + "/consents/{client_id}",
        "revokeUserConsent",
        "Revoke a user's consent to a client, and that client's refresh tokens for the user",
        200,
        ConsentRevoked,
    ),
)

_ERRORS: Final = {
    "400": "Invalid request body or metadata",
    "401": "Missing or invalid access token",
    "403": "The token lacks the required scope",
    "404": "No such record",
    "409": "The operation does not apply in the record's current state",
    "413": "Request body too large",
    "415": "Request body is not JSON",
}
_PATH_PARAMETERS: Final = ("client_id", "key_id", "user_id")


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _page(largest: int) -> list[dict[str, Any]]:
    # The bound is the endpoint's own, so the document cannot drift from what is enforced.
    limit = {"type": "integer", "minimum": 1, "maximum": largest, "default": 50}
    return [_query("limit", limit), _query("cursor", {"type": "string"})]


_LIST_PARAMETERS: Final = _page(MAX_PAGE)
_OWNER_PARAMETERS: Final = [
    _query("owner_type", {"type": "string", "enum": ["user", "client"]}),
    _query("owner_id", {"type": "string", "maxLength": 255}),
]
_AUDIT_PARAMETERS: Final = [
    *(
        _query(
            name,
            {"type": "string", "enum": ["success", "failure", "denied", "info"]}
            if name == "outcome"
            else {"type": "string", "maxLength": longest},
        )
        for name, longest in AUDIT_FILTERS.items()
    ),
    _query("since", {"type": "string", "format": "date-time"}),
    _query("until", {"type": "string", "format": "date-time"}),
    *_page(AUDIT_MAX_PAGE),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(Problem)}},
    }


def _tag(op: Operation) -> str:
    if op.path.startswith("/admin/api/v1/audit"):
        return "audit"
    if op.path.startswith("/admin/api/v1/users"):
        return "users"
    return "keys" if op.path.startswith("/admin/api/v1/keys") else "clients"


def _operation(op: Operation) -> dict[str, Any]:
    scopes = [ADMIN_READ_SCOPE] if op.method == "get" else [ADMIN_SCOPE]
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [_tag(op)],
        "security": [{"bearer": scopes}],
    }
    parameters: list[dict[str, Any]] = []
    has_id = False
    for name in _PATH_PARAMETERS:
        if "{" + name + "}" in op.path:
            has_id = True
            parameters.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
    if op.operation_id == "listApiKeys":
        parameters += _OWNER_PARAMETERS
    if op.operation_id in ("listClients", "listApiKeys", "listUsers"):
        parameters += _LIST_PARAMETERS
    if op.operation_id == "listAuditEvents":
        parameters += _AUDIT_PARAMETERS
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": _ref(op.response)}}
    if op.status == 201:
        success["headers"] = {
            "Location": {"description": "URL of the new record", "schema": {"type": "string"}}
        }
    responses: dict[str, Any] = {str(op.status): success}
    for status, description in _ERRORS.items():
        if status == "413" and op.body is None:
            continue
        if status == "415" and op.body is None:
            continue
        if status == "404" and not has_id:
            continue
        if status == "409" and not (
            (_tag(op) == "keys" and has_id and op.method in ("post", "patch"))
            or op.operation_id == "createUser"
        ):
            continue
        responses[status] = _problem_response(description)
    doc["responses"] = responses
    return doc


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of the admin API (built once)."""
    models: list[type[BaseModel]] = [
        ClientCreate,
        ClientUpdate,
        RotateSecret,
        ApiKeyCreate,
        ApiKeyUpdate,
        RotateApiKey,
        KeyLimitsUpdate,
        UserCreate,
        UserUpdate,
        PasswordReset,
    ]
    outputs: list[type[BaseModel]] = [
        ClientOut,
        ClientWithSecret,
        ClientList,
        ApiKeyOut,
        ApiKeyWithSecret,
        ApiKeyList,
        AuditEventOut,
        AuditEventList,
        KeyLimitsOut,
        UserOut,
        UserList,
        ConsentList,
        ConsentRevoked,
        Problem,
    ]
    _, schemas = models_json_schema(
        [(m, "validation") for m in models] + [(m, "serialization") for m in outputs],
        ref_template=_REF,
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bastion admin API",
            "version": __version__,
            "description": (
                "Manage bastion's OAuth clients, API keys and users. Authenticate with an access "
                "token issued by bastion for the audience '<issuer>/admin/api' with scope "
                f"'{ADMIN_SCOPE}' (or '{ADMIN_READ_SCOPE}' for GET requests)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A bastion access token (RFC 9068) for the admin API",
                }
            },
        },
        "tags": [
            {"name": "clients", "description": "OAuth 2.0 clients"},
            {"name": "keys", "description": "API keys"},
            {"name": "audit", "description": "The tamper-evident audit log (read-only)"},
            {"name": "users", "description": "User accounts and their passwords"},
        ],
    }
