"""Audit events of the authorization server's endpoints (token, introspection, revocation).

The protocol code (:mod:`bastion.protocol`) stays framework- and audit-free;
the HTTP bindings in :mod:`bastion.http.endpoints.oauth` call this recorder
at each decision:

=====================  =========  ================================================
event                  outcome    when
=====================  =========  ================================================
``auth.client``        failure    client authentication failed (any endpoint);
                                  reason = the precise ``InvalidClientError.reason``,
                                  or ``throttled_…`` (the brute-force throttle)
``token.issued``       success    the token endpoint issued a token
``token.refused``      failure    the token endpoint refused (reason = OAuth error)
``token.revoked``      success    revocation revoked a token (data.jti)
=====================  =========  ================================================

``client_id`` is the one the request *claims* (Basic user name or the
``client_id`` parameter) — cleaned to printable ASCII and cut to 128
characters, since it is attacker input; the secret is never read here.
Introspection of an inactive token is not an event.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote_plus

from starlette.requests import Request

from bastion.audit.events import Auditor, EventTypes
from bastion.gateway.forwarded import request_client_ip
from bastion.http.middleware import get_request_id
from bastion.protocol.rfc6749.errors import OAuthError
from bastion.protocol.rfc6749.requests import OAuthRequest

__all__ = ["OAuthAudit", "claimed_client_id"]

_MAX_CLIENT_ID: Final = 128
_MAX_USER_AGENT: Final = 256


def _clean(text: str, limit: int) -> str:
    # Attacker-controlled text goes into logs and webhooks: printable ASCII only, bounded.
    cleaned = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def claimed_client_id(oreq: OAuthRequest) -> str | None:
    """The client id ``oreq`` claims (Basic user name, else the ``client_id`` parameter), cleaned.

    Never raises: a malformed credential simply claims nothing. The secret
    half of a Basic credential is discarded unread.
    """
    try:
        authorization = oreq.header("authorization")
    except OAuthError:  # repeated header: claims nothing
        authorization = None
    if authorization is not None and authorization[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True)
            user = raw.split(b":", 1)[0].decode("utf-8")
            claimed = unquote_plus(user, encoding="utf-8", errors="replace")
        except (binascii.Error, ValueError):
            claimed = ""
        if claimed:
            return _clean(claimed, _MAX_CLIENT_ID)
    form_id = oreq.form.get("client_id")
    return _clean(form_id, _MAX_CLIENT_ID) if form_id else None


class OAuthAudit:
    """Records the authorization server's decisions on ``auditor`` (no-op without one).

    The client address is the one resolved for the request as it entered the app.
    """

    def __init__(self, auditor: Auditor | None) -> None:
        self.auditor = auditor

    def _common(self, request: Request) -> dict[str, Any]:
        agent = request.headers.get("user-agent")
        return {
            "ip": request_client_ip(request.scope),
            "user_agent": _clean(agent, _MAX_USER_AGENT) if agent else None,
            "request_id": rid if (rid := get_request_id(request.scope)) != "-" else None,
        }

    def client_failed(self, request: Request, oreq: OAuthRequest, reason: str | None) -> None:
        """``auth.client`` failure: the client the request claimed could not authenticate
        (``reason``: the precise ``InvalidClientError.reason``), or the brute-force throttle
        refused it before any check (``throttled_…``).

        A throttled attempt is still an authentication attempt of the claimed account:
        detectors count it, so an attack the throttle slows down is reported all the same.
        """
        if self.auditor is None:
            return
        self.auditor.record(
            EventTypes.CLIENT_AUTH,
            "failure",
            reason=reason,
            client_id=claimed_client_id(oreq),
            data={"endpoint": request.url.path},
            **self._common(request),
        )

    def issued(self, request: Request, oreq: OAuthRequest, body: Mapping[str, Any]) -> None:
        """``token.issued``: which client got which kind of token (never the token)."""
        if self.auditor is None:
            return
        self.auditor.record(
            EventTypes.TOKEN_ISSUED,
            "success",
            client_id=claimed_client_id(oreq),
            data={
                "grant_type": _clean(oreq.form.get("grant_type") or "", 100),
                "scope": body.get("scope"),
                "expires_in": body.get("expires_in"),
            },
            **self._common(request),
        )

    def refused(self, request: Request, oreq: OAuthRequest | None, error: OAuthError) -> None:
        """``token.refused``: the token endpoint's OAuth error (reason = its code)."""
        if self.auditor is None:
            return
        grant_type = oreq.form.get("grant_type") if oreq is not None else None
        self.auditor.record(
            EventTypes.TOKEN_REFUSED,
            "failure",
            reason=error.code,
            client_id=claimed_client_id(oreq) if oreq is not None else None,
            data={
                "grant_type": _clean(grant_type, 100) if grant_type else None,
                "detail": error.reason,
            },
            **self._common(request),
        )

    def revoked(
        self, request: Request, client_id: str, jti: str | None, *, family: str | None = None
    ) -> None:
        """``token.revoked``: ``client_id`` revoked the access token ``jti``, or the
        refresh-token ``family`` (with the access tokens it issued)."""
        if self.auditor is None:
            return
        data = {"jti": jti} if family is None else {"family": family}
        self.auditor.record(
            EventTypes.TOKEN_REVOKED,
            "success",
            client_id=client_id,
            data=data,
            **self._common(request),
        )
