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

With an API key service on the runtime (``runtime.api_keys``), the token
endpoint also serves the RFC 8693 token exchange of an API key
(:mod:`bastion.protocol.rfc8693`): without client authentication — the key is
the credential — or, when client credentials are sent, after authenticating
the client. The caller's address (the peer, or the first address before a
trusted proxy in ``X-Forwarded-For``) is checked against the key's allow-list
(a key that has one is then refused: its token could not keep it). The
runtime's ``exchange_policy`` says which audiences a key may obtain and
throttles exchanges per key. Client authentication at the token, introspection
and revocation endpoints goes through one brute-force throttle
(``runtime.client_throttle``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.crypto import SigningKeyPair
from bastion.errors import BastionError
from bastion.gateway.forwarded import TrustedProxies, client_ip
from bastion.http.endpoints.oauth_audit import OAuthAudit
from bastion.oauth.tokens import TokenIssuer
from bastion.protocol import rfc8693
from bastion.protocol.rfc6749.client_auth import (
    ALL_AUTH_METHODS,
    AuthenticatedClient,
    ClientLookup,
    authenticate_client,
    claimed_client_id,
)
from bastion.protocol.rfc6749.errors import InvalidClientError, OAuthError, TooManyAttemptsError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint, token_response
from bastion.protocol.rfc7009 import revoke
from bastion.protocol.rfc7662 import introspect
from bastion.protocol.rfc8414 import authorization_server_metadata
from bastion.ratelimit.login import LoginThrottle, LoginThrottledError
from bastion.settings import Settings
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import SharedState

log = logging.getLogger("bastion.oauth")

METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/oauth2/jwks.json"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
INTROSPECTION_PATH = "/oauth2/introspect"
REVOCATION_PATH = "/oauth2/revoke"

#: Largest accepted body of an OAuth endpoint request (form parameters only).
MAX_BODY = 64 * 1024

_INTROSPECTION_METHODS = tuple(m for m in ALL_AUTH_METHODS if m != "none")


class RequestBodyTooLargeError(BastionError):
    """The request body exceeds what an OAuth endpoint accepts."""

    code = "request_too_large"
    status = 413
    title = "Request body too large"


class _Keys(Protocol):
    def jwks(self) -> dict[str, Any]: ...

    def current(self) -> SigningKeyPair: ...


class _AccessTokens(Protocol):
    async def verify(self, token: str | bytes) -> Mapping[str, Any]: ...

    async def revoke(self, claims: Mapping[str, Any]) -> None: ...


class OAuthRuntime(Protocol):
    """What these endpoints need from the runtime."""

    @property
    def settings(self) -> Settings: ...
    @property
    def shared(self) -> SharedState: ...
    @property
    def clients(self) -> ClientLookup: ...
    @property
    def signing_keys(self) -> _Keys: ...
    @property
    def token_endpoint(self) -> TokenEndpoint: ...
    @property
    def access_tokens(self) -> _AccessTokens: ...


def _json(body: Mapping[str, Any], *, status: int = 200, cache: str = "no-store") -> Response:
    headers = {"Cache-Control": cache}
    if cache == "no-store":
        headers["Pragma"] = "no-cache"
    return Response(orjson.dumps(dict(body)), status, headers, media_type="application/json")


def _oauth_error(error: OAuthError) -> Response:
    status, headers, body = error.to_token_response()
    return Response(body, status, headers)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise RequestBodyTooLargeError(f"the body may be at most {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise RequestBodyTooLargeError(f"the body may be at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _client_ip(request: Request, trusted_proxies: TrustedProxies) -> str | None:
    """The caller's address, read as :func:`bastion.gateway.forwarded.client_ip` reads it."""
    return client_ip(request.scope, trusted_proxies)


def oauth_routes(runtime: OAuthRuntime) -> list[BaseRoute]:
    """The authorization server's routes, bound to ``runtime``."""
    settings = runtime.settings
    issuer = settings.issuer_url
    token_url = issuer + TOKEN_PATH
    leeway = settings.tokens.leeway

    async def oauth_request(request: Request) -> OAuthRequest:
        body = await _read_body(request)
        return OAuthRequest.from_http(
            request.method, request.headers.raw, body, request.scope.get("query_string", b"")
        )

    trusted_proxies = TrustedProxies(runtime.settings.trusted_proxies)
    # Audit events of every decision here (auth.client, token.issued/refused/revoked).
    audit = OAuthAudit(
        getattr(runtime, "auditor", None), lambda request: _client_ip(request, trusted_proxies)
    )

    async def client_of(
        oreq: OAuthRequest,
        methods: tuple[str, ...] = ALL_AUTH_METHODS,
        *,
        request: Request | None = None,
    ) -> AuthenticatedClient:
        try:
            return await authenticate_client(
                oreq,
                clients=runtime.clients,
                issuer=issuer,
                token_endpoint=token_url,
                shared=runtime.shared,
                allowed_methods=methods,
                leeway=leeway,
            )
        except InvalidClientError as error:
            if request is not None:
                audit.client_failed(request, oreq, error, request.url.path)
            raise

    def oauth_endpoint(
        handler: Callable[[OAuthRequest, Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(await oauth_request(request), request)
            except OAuthError as error:
                return _oauth_error(error)

        return endpoint

    api_keys = getattr(runtime, "api_keys", None)
    exchange: Callable[..., Awaitable[dict[str, Any]]] | None = None
    if api_keys is not None:
        # Which audiences a key may obtain and how often (oauth/exchange.py); without a
        # policy only the issuer's default audience, unthrottled (tests' bare runtimes).
        policy = getattr(runtime, "exchange_policy", None)
        exchange = functools.partial(
            rfc8693.handle,
            issuer=issuer,
            api_keys=api_keys,
            issue_token=TokenIssuer(runtime.signing_keys.current).issue,
            settings_tokens=settings.tokens,
            audiences=policy.audiences if policy is not None else None,
            admit=policy.admit if policy is not None else None,
        )
    trusted_proxies = TrustedProxies(runtime.settings.trusted_proxies)
    throttle: LoginThrottle | None = getattr(runtime, "client_throttle", None)

    async def throttled_client_of(
        oreq: OAuthRequest,
        ip: str | None,
        request: Request,
        methods: tuple[str, ...] = ALL_AUTH_METHODS,
    ) -> AuthenticatedClient:
        # Brute-force protection (ratelimit/login.py): checked before the credentials are
        # verified; a shared-state outage disables it rather than the token endpoint. The
        # same lock covers token, introspection and revocation: any of them checks a secret.
        if throttle is None:
            return await client_of(oreq, methods, request=request)
        account = claimed_client_id(oreq) or "-"
        try:
            await throttle.check(account, ip)
        except LoginThrottledError as exc:
            reason = f"throttled_{exc.scope}"
            audit.client_throttled(request, oreq, reason, request.url.path)
            raise TooManyAttemptsError(exc.retry_after, reason=reason) from None
        except SharedStateUnavailableError as exc:
            log.warning("client authentication throttle unavailable: %s", exc)
        try:
            authed = await client_of(oreq, methods, request=request)
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

    async def token(oreq: OAuthRequest, ip: str | None, request: Request) -> Response:
        if exchange is not None and oreq.form.get("grant_type") == rfc8693.GRANT_TYPE:
            # RFC 8693 §2.1: client authentication is optional for token exchange; the
            # API key is the credential. Credentials that are sent must still be valid.
            client = (
                (await throttled_client_of(oreq, ip, request)).client
                if rfc8693.sends_client_credentials(oreq)
                else None
            )
            result = await exchange(oreq, client, ip=ip)
        else:
            authed = await throttled_client_of(oreq, ip, request)
            result = await runtime.token_endpoint.handle(oreq, authed.client)
        audit.issued(request, oreq, result)
        status, headers, body = token_response(result)
        return Response(body, status, headers)

    async def token_endpoint(request: Request) -> Response:
        oreq: OAuthRequest | None = None
        try:
            oreq = await oauth_request(request)
            return await token(oreq, _client_ip(request, trusted_proxies), request)
        except OAuthError as error:
            if not isinstance(error, InvalidClientError | TooManyAttemptsError):
                # those are auth.client events
                audit.refused(request, oreq, error)
            return _oauth_error(error)

    async def verify(token_value: str) -> Mapping[str, Any]:
        return await runtime.access_tokens.verify(token_value)

    async def introspection(oreq: OAuthRequest, request: Request) -> Response:
        ip = _client_ip(request, trusted_proxies)
        authed = await throttled_client_of(oreq, ip, request, _INTROSPECTION_METHODS)
        result = await introspect(oreq, caller=authed.client, verify_token=verify)
        return _json(result)

    async def revocation(oreq: OAuthRequest, request: Request) -> Response:
        authed = await throttled_client_of(oreq, _client_ip(request, trusted_proxies), request)

        async def deny(jti: str, exp: float) -> None:
            await runtime.access_tokens.revoke({"jti": jti, "exp": exp})
            audit.revoked(request, authed.client.client_id, jti)

        await revoke(oreq, caller=authed.client, verify_token=verify, revoke_jti=deny)
        return Response(b"", 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def jwks(_: Request) -> Response:
        max_age = int(settings.signing_keys.jwks_max_age)
        return _json(runtime.signing_keys.jwks(), cache=f"public, max-age={max_age}")

    grant_types = runtime.token_endpoint.grant_types
    if exchange is not None and rfc8693.GRANT_TYPE not in grant_types:
        grant_types = (*grant_types, rfc8693.GRANT_TYPE)

    async def metadata(_: Request) -> Response:
        document = authorization_server_metadata(
            issuer,
            endpoints={
                "token_endpoint": TOKEN_PATH,
                "jwks_uri": JWKS_PATH,
                "introspection_endpoint": INTROSPECTION_PATH,
                "revocation_endpoint": REVOCATION_PATH,
            },
            grant_types=grant_types,
            auth_methods=ALL_AUTH_METHODS,
            signing_algs=("ES256", "RS256", "PS256", "EdDSA"),
        )
        return _json(document, cache="public, max-age=300")

    return [
        Route(METADATA_PATH, metadata, methods=["GET"]),
        Route(JWKS_PATH, jwks, methods=["GET"]),
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        Route(INTROSPECTION_PATH, oauth_endpoint(introspection), methods=["POST"]),
        Route(REVOCATION_PATH, oauth_endpoint(revocation), methods=["POST"]),
    ]
