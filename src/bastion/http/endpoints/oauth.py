"""HTTP bindings of the authorization server: token, introspection, revocation, JWKS, metadata.

The protocol work happens in :mod:`bastion.protocol` (framework-free); this
module only turns Starlette requests into :class:`OAuthRequest` objects and
protocol results into responses. OAuth errors are rendered as RFC 6749 §5.2
JSON (``{"error": …}``), not problem+json: that is what OAuth clients parse.

Paths (all listed in the RFC 8414 metadata document):

==========================================  ====================================
``/.well-known/oauth-authorization-server`` RFC 8414 metadata
``/oauth2/jwks.json``                        the published signing keys (JWKS)
``/oauth2/token``                            RFC 6749 §3.2 token endpoint
``/oauth2/introspect``                       RFC 7662 introspection
``/oauth2/revoke``                           RFC 7009 revocation
==========================================  ====================================

A token request goes to the runtime's grant table
(:class:`~bastion.protocol.rfc6749.token_endpoint.TokenEndpoint`), which
authenticates the client as the request's grant declares (the RFC 8693 token
exchange of an API key: only when client credentials are sent) and hands the
grant the caller's address, resolved once as the request entered the app
(:func:`bastion.gateway.forwarded.request_client_ip`). Client authentication
at the token, introspection and revocation endpoints goes through one
brute-force throttle (``runtime.client_throttle``) and audits each failure
(:class:`ClientAuthenticator`); the token endpoint's decisions are audited by
:class:`~bastion.http.endpoints.oauth_audit.OAuthAudit`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.errors import BastionError
from bastion.gateway.forwarded import request_client_ip
from bastion.http.body import read_bounded
from bastion.http.endpoints.oauth_audit import OAuthAudit
from bastion.http.endpoints.oidc import metadata_documents
from bastion.http.runtime import ControlPlane
from bastion.protocol.rfc6749.client_auth import (
    ALL_AUTH_METHODS,
    AuthenticatedClient,
    ClientAuthMethod,
    authenticate_client,
    claimed_client_id,
)
from bastion.protocol.rfc6749.errors import InvalidClientError, OAuthError, TooManyAttemptsError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc6749.token_endpoint import token_response
from bastion.protocol.rfc7009 import revoke
from bastion.protocol.rfc7662 import introspect
from bastion.ratelimit.login import LoginThrottledError
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.models import Client

__all__ = [
    "INTROSPECTION_PATH",
    "JWKS_PATH",
    "MAX_BODY",
    "METADATA_PATH",
    "REVOCATION_PATH",
    "TOKEN_PATH",
    "ClientAuthenticator",
    "OAuthEndpoints",
    "RequestBodyTooLargeError",
    "oauth_routes",
]

log = logging.getLogger("bastion.oauth")

METADATA_PATH: Final = "/.well-known/oauth-authorization-server"
JWKS_PATH: Final = "/oauth2/jwks.json"
TOKEN_PATH: Final = "/oauth2/token"  # noqa: S105 - a path, not a secret
INTROSPECTION_PATH: Final = "/oauth2/introspect"
REVOCATION_PATH: Final = "/oauth2/revoke"

#: Largest accepted body of an OAuth endpoint request (form parameters only).
MAX_BODY: Final = 64 * 1024

_INTROSPECTION_METHODS: Final = tuple(m for m in ALL_AUTH_METHODS if m != "none")
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class RequestBodyTooLargeError(BastionError):
    """The request body exceeds what an OAuth endpoint accepts."""

    code = "request_too_large"
    status = 413
    title = "Request body too large"


def _json(body: Mapping[str, Any], *, status: int = 200, cache: str = "no-store") -> Response:
    headers = {"Cache-Control": cache}
    if cache == "no-store":
        headers["Pragma"] = "no-cache"
    return Response(orjson.dumps(dict(body)), status, headers, media_type="application/json")


def _oauth_error(error: OAuthError) -> Response:
    status, headers, body = error.to_token_response()
    return Response(body, status, headers)


async def _oauth_request(request: Request) -> OAuthRequest:
    body = await read_bounded(
        request,
        MAX_BODY,
        lambda: RequestBodyTooLargeError(f"the body may be at most {MAX_BODY} bytes"),
    )
    return OAuthRequest.from_http(
        request.method, request.headers.raw, body, request.scope.get("query_string", b"")
    )


class ClientAuthenticator:
    """Client authentication at the token, introspection and revocation endpoints.

    The brute-force throttle (:mod:`bastion.ratelimit.login`) is checked before
    the credentials are verified, per claimed client and address; a shared-state
    outage disables it rather than the endpoints. One lock covers the three
    endpoints: any of them checks a secret. Each failure is an ``auth.client``
    audit event.
    """

    def __init__(self, runtime: ControlPlane, audit: OAuthAudit) -> None:
        self._runtime = runtime
        self._audit = audit
        self._issuer = runtime.settings.issuer_url
        self._token_url = self._issuer + TOKEN_PATH
        self._leeway = runtime.settings.tokens.leeway
        self._throttle = runtime.client_throttle

    async def authenticate(
        self,
        oreq: OAuthRequest,
        request: Request,
        methods: tuple[ClientAuthMethod, ...] = ALL_AUTH_METHODS,
    ) -> AuthenticatedClient:
        """The client ``oreq`` authenticates as; raises ``InvalidClientError`` or
        ``TooManyAttemptsError`` (throttled, before any credential is checked)."""
        throttle = self._throttle
        if throttle is None:
            return await self._verify(oreq, request, methods)
        account = claimed_client_id(oreq) or "-"
        ip = request_client_ip(request.scope)
        try:
            await throttle.check(account, ip)
        except LoginThrottledError as exc:
            reason = f"throttled_{exc.scope}"
            self._audit.client_failed(request, oreq, reason)
            raise TooManyAttemptsError(exc.retry_after, reason=reason) from None
        except SharedStateUnavailableError as exc:
            log.warning("client authentication throttle unavailable: %s", exc)
        try:
            authed = await self._verify(oreq, request, methods)
        except InvalidClientError:
            try:
                await throttle.failed(account, ip)
            except SharedStateUnavailableError as exc:
                log.warning("client authentication throttle unavailable: %s", exc)
            raise
        try:
            await throttle.succeeded(account, ip)
        except SharedStateUnavailableError as exc:
            log.warning("client authentication throttle unavailable: %s", exc)
        return authed

    async def _verify(
        self, oreq: OAuthRequest, request: Request, methods: tuple[ClientAuthMethod, ...]
    ) -> AuthenticatedClient:
        try:
            return await authenticate_client(
                oreq,
                clients=self._runtime.clients,
                issuer=self._issuer,
                token_endpoint=self._token_url,
                shared=self._runtime.shared,
                allowed_methods=methods,
                leeway=self._leeway,
            )
        except InvalidClientError as error:
            self._audit.client_failed(request, oreq, error.reason)
            raise


class OAuthEndpoints:
    """The authorization server's endpoints over one runtime: one method per path."""

    def __init__(self, runtime: ControlPlane) -> None:
        self._runtime = runtime
        self._audit = OAuthAudit(runtime.auditor)
        self._clients = ClientAuthenticator(runtime, self._audit)
        settings = runtime.settings
        self._jwks_cache = f"public, max-age={int(settings.signing_keys.jwks_max_age)}"

    async def token(self, request: Request) -> Response:
        """``POST /oauth2/token``: the grant table's answer, audited."""
        oreq: OAuthRequest | None = None
        try:
            oreq = await _oauth_request(request)
            result = await self._runtime.token_endpoint.handle(
                oreq,
                lambda o: self._client_of(o, request),
                client_ip=request_client_ip(request.scope),
            )
        except OAuthError as error:
            if not isinstance(error, InvalidClientError | TooManyAttemptsError):
                # those are auth.client events
                self._audit.refused(request, oreq, error)
            return _oauth_error(error)
        self._audit.issued(request, oreq, result)
        status, headers, body = token_response(result)
        return Response(body, status, headers)

    async def _client_of(self, oreq: OAuthRequest, request: Request) -> Client:
        return (await self._clients.authenticate(oreq, request)).client

    async def introspect(self, request: Request) -> Response:
        """``POST /oauth2/introspect`` (RFC 7662): clients that can keep a secret only."""
        try:
            oreq = await _oauth_request(request)
            authed = await self._clients.authenticate(oreq, request, _INTROSPECTION_METHODS)
            result = await introspect(oreq, caller=authed.client, verify_token=self._verify)
        except OAuthError as error:
            return _oauth_error(error)
        return _json(result)

    async def revoke(self, request: Request) -> Response:
        """``POST /oauth2/revoke`` (RFC 7009): each revoked token is audited."""
        try:
            oreq = await _oauth_request(request)
            authed = await self._clients.authenticate(oreq, request)

            async def deny(jti: str, exp: float) -> None:
                await self._runtime.access_tokens.revoke({"jti": jti, "exp": exp})
                self._audit.revoked(request, authed.client.client_id, jti)

            async def end_family(token: str, caller: Client) -> bool:
                # A refresh token ends its family and the access tokens it issued.
                record = await self._runtime.refresh_tokens.revoke(token, caller)
                if record is not None:
                    self._audit.revoked(request, caller.client_id, None, family=record.family_id)
                return record is not None

            await revoke(
                oreq,
                caller=authed.client,
                verify_token=self._verify,
                revoke_jti=deny,
                revoke_refresh=end_family,
            )
        except OAuthError as error:
            return _oauth_error(error)
        return Response(b"", 200, dict(_NO_STORE))

    async def _verify(self, token_value: str) -> Mapping[str, Any]:
        return await self._runtime.access_tokens.verify(token_value)

    async def jwks(self, _: Request) -> Response:
        """``GET /oauth2/jwks.json``: the published signing keys, cacheable."""
        return _json(self._runtime.signing_keys.jwks(), cache=self._jwks_cache)

    async def metadata(self, _: Request) -> Response:
        """``GET /.well-known/oauth-authorization-server`` (RFC 8414)."""
        return _json(metadata_documents(self._runtime)[0], cache="public, max-age=300")


def oauth_routes(runtime: ControlPlane) -> list[BaseRoute]:
    """The authorization server's routes, bound to ``runtime``."""
    endpoints = OAuthEndpoints(runtime)
    return [
        Route(METADATA_PATH, endpoints.metadata, methods=["GET"]),
        Route(JWKS_PATH, endpoints.jwks, methods=["GET"]),
        Route(TOKEN_PATH, endpoints.token, methods=["POST"]),
        Route(INTROSPECTION_PATH, endpoints.introspect, methods=["POST"]),
        Route(REVOCATION_PATH, endpoints.revoke, methods=["POST"]),
    ]
