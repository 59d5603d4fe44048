"""Admin API: the audit log under ``/admin/api/v1/audit`` (read-only).

``GET /admin/api/v1/audit?subject=&type=&outcome=&node_id=&key_id=&client_id=&route=&reason=
&request_id=&ip=&since=&until=&limit=&cursor=`` lists events newest first in keyset pages
(``next_cursor``); every filter given must match exactly (the filters of ``bastion audit
search``). ``since`` is inclusive, ``until`` exclusive, both ISO 8601 (UTC unless an offset
is given).
Needs ``bastion:admin:read`` (or ``bastion:admin``); ``Cache-Control: no-store``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, Field
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.audit.views import event_view
from bastion.http.endpoints.admin.auth import authenticate_admin
from bastion.http.endpoints.admin.clients import ADMIN_API_PREFIX, json_response
from bastion.http.endpoints.admin.errors import InvalidRequestBodyError
from bastion.http.runtime import AdminPlane

__all__ = [
    "AUDIT_FILTERS",
    "AUDIT_MAX_PAGE",
    "AUDIT_PATH",
    "AuditEventList",
    "AuditEventOut",
    "audit_routes",
]

#: Collection path of the audit log.
AUDIT_PATH: Final = f"{ADMIN_API_PREFIX}/audit"
#: Largest page of the listing.
AUDIT_MAX_PAGE: Final = 1000
_CURSOR: Final = re.compile(r"[0-9]{1,19}")
#: The filters (query parameters) and their longest values.
AUDIT_FILTERS: Final = {
    "subject": 255,
    "type": 128,
    "outcome": 32,
    "node_id": 255,
    "key_id": 255,
    "client_id": 255,
    "route": 255,
    "reason": 255,
    "request_id": 128,
    "ip": 64,
}


class AuditEventOut(BaseModel):
    """One stored audit event of a node's hash chain."""

    id: int
    node_id: str
    seq: int = Field(description="Position in the node's hash chain (1, 2, …)")
    occurred_at: str = Field(description="UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ")
    type: str = Field(description="Event type, e.g. gateway.denied (see docs/audit.md)")
    outcome: str = Field(description="success, failure, denied or info")
    reason: str | None
    request_id: str | None
    ip: str | None
    user_agent: str | None
    subject: str | None
    client_id: str | None
    key_id: str | None
    route: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str = Field(description="SHA-256 of the record's canonical encoding")


class AuditEventList(BaseModel):
    """One page of audit events, newest first; pass ``next_cursor`` as ``cursor``."""

    items: list[AuditEventOut]
    next_cursor: str | None


def _query_error(field: str, message: str) -> InvalidRequestBodyError:
    return InvalidRequestBodyError(
        f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def _moment(params: QueryParams, name: str) -> datetime | None:
    text = params.get(name) or None
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _query_error(
            name, "must be an ISO 8601 date/time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def audit_routes(runtime: AdminPlane) -> list[Route]:
    """The audit log endpoint for ``runtime`` (with ``db``, ``settings``, ``access_tokens``)."""

    async def list_events(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        params = request.query_params
        limit_text = params.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= AUDIT_MAX_PAGE:
            raise _query_error("limit", f"must be a whole number from 1 to {AUDIT_MAX_PAGE}")
        cursor = params.get("cursor") or None
        if cursor is not None and not _CURSOR.fullmatch(cursor):
            raise _query_error("cursor", "must be a next_cursor from a previous page")
        filters: dict[str, str | None] = {}
        for name, limit in AUDIT_FILTERS.items():
            value = params.get(name) or None
            if value is not None and len(value) > limit:
                raise _query_error(name, f"is at most {limit} characters")
            filters[name] = value
        page = await runtime.db.audit.search(
            since=_moment(params, "since"),
            until=_moment(params, "until"),
            limit=int(limit_text),
            cursor=cursor,
            # Explicit, so every other keyword is one of AUDIT_FILTERS (their one list).
            newest_first=True,
            **filters,
        )
        return json_response(
            {"items": [event_view(e) for e in page.items], "next_cursor": page.next_cursor}
        )

    return [Route(AUDIT_PATH, list_events, methods=["GET"], name="admin_audit_list")]
