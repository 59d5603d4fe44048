"""Client authentication at the token, introspection and revocation endpoints.

- ``client_secret_basic`` — RFC 6749 §2.3.1 (https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1):
  HTTP Basic with the client id and secret each form-urlencoded first.
- ``client_secret_post`` — RFC 6749 §2.3.1: ``client_id`` and ``client_secret`` in the body.
- ``private_key_jwt`` — RFC 7523 §2.2 and §3 (https://www.rfc-editor.org/rfc/rfc7523#section-3)
  with OpenID Connect Core §9: a JWT signed with a key from the client's
  registered JWKS; ``iss`` = ``sub`` = client id, ``aud`` = the issuer or the
  token endpoint URL, ``exp`` required and at most an hour ahead, ``jti``
  required and single-use (replay cache in shared state); a header ``typ``, when
  present, must be ``JWT`` or ``client-authentication+jwt`` (an access token or a
  DPoP proof is not a client assertion).
- ``none`` — a public client sends only ``client_id`` (RFC 6749 §2.1, §3.2.1).

Exactly one method per request (RFC 6749 §2.3: "MUST NOT use more than one
authentication method in each request"), and it must be the method the client
registered (``token_endpoint_auth_method``). Every failure the outside could
use to tell clients apart (unknown client, wrong secret, disabled, wrong
method, bad assertion) is ``invalid_client`` with the one description
"client authentication failed"; the precise ``reason`` goes to the audit log.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, get_args
from urllib.parse import parse_qsl, unquote_plus

import orjson

from bastion.crypto.jwt import InvalidTokenError, JWTVerifier
from bastion.crypto.keys import InvalidKeyError, PublicKeySet
from bastion.protocol.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuthError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.storage.models import Client
from bastion.storage.shared import SharedState

__all__ = [
    "ALL_AUTH_METHODS",
    "CLIENT_ASSERTION_TYPE_JWT_BEARER",
    "MAX_ASSERTION_LIFETIME",
    "AuthenticatedClient",
    "ClientAuthMethod",
    "ClientLookup",
    "authenticate_client",
    "claimed_client_id",
    "sends_client_credentials",
]

ClientAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]

#: Every client authentication method bastion implements.
ALL_AUTH_METHODS: Final[tuple[ClientAuthMethod, ...]] = get_args(ClientAuthMethod)

#: RFC 7523 §2.2: the client_assertion_type of a JWT client assertion.
CLIENT_ASSERTION_TYPE_JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Seconds a client assertion's ``exp`` may lie ahead of now. It bounds how long a
#: ``jti`` must stay in the replay cache. One hour, because widely used clients
#: (Authlib among them) sign assertions valid for exactly that by default; the
#: jti cache makes every assertion single-use whatever its lifetime.
MAX_ASSERTION_LIFETIME: Final = 3600.0

#: Header ``typ`` values a client assertion may carry (compared case-insensitively).
_ASSERTION_TYPS: Final = frozenset({"jwt", "client-authentication+jwt"})
#: Longest ``jti`` accepted (it becomes part of a shared-state key).
_MAX_JTI_LENGTH: Final = 256
#: Largest client assertion read (before any parsing).
_MAX_ASSERTION_BYTES: Final = 8192
#: Longest client id accepted from a request before any lookup.
_MAX_CLIENT_ID_LENGTH: Final = 256


class ClientLookup(Protocol):
    """What client authentication needs from the client registry (``ClientService``)."""

    async def find_active(self, client_id: str) -> Client | None:
        """The enabled client with this id, or ``None`` (unknown or disabled)."""
        ...

    async def authenticate_secret(self, client_id: str, secret: str) -> Client:
        """The client whose current (or in-grace) secret this is.

        Raises InvalidClientError otherwise, at the same cost whether or not
        the client exists.
        """
        ...


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """A client that proved its identity, and the method it used."""

    client: Client
    method: ClientAuthMethod


def _fail(reason: str, *, basic: bool = False) -> InvalidClientError:
    return InvalidClientError(reason=reason, basic=basic)


def _decode_basic(value: str) -> tuple[str, str]:
    """(client_id, secret) of a ``Basic`` credential (RFC 7617 + RFC 6749 §2.3.1 encoding)."""
    token = value[len("basic") :].strip()

    def malformed(what: str, reason: str) -> InvalidClientError:
        return InvalidClientError(
            f"the Basic credentials are malformed: {what}", reason=reason, basic=True
        )

    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise malformed("not base64", "basic_bad_base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("not UTF-8", "basic_not_utf8") from None
    user, colon, password = text.partition(":")
    if not colon:
        raise malformed("no ':' between client id and secret", "basic_missing_colon")
    try:
        # RFC 6749 §2.3.1: both halves are application/x-www-form-urlencoded first.
        client_id = unquote_plus(user, encoding="utf-8", errors="strict")
        secret = unquote_plus(password, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise malformed("percent-encoding is not UTF-8", "basic_bad_percent_encoding") from None
    if not client_id or not secret:
        raise malformed("empty client id or secret", "basic_empty")
    return client_id, secret


def _basic_credentials(request: OAuthRequest) -> str | None:
    """The Basic credential text when the request has ``Authorization: Basic …``."""
    authorization = request.header("authorization")
    if authorization is None:
        return None
    scheme = authorization.split(" ", 1)[0].lower()
    if scheme != "basic":
        raise InvalidRequestError(
            "the Authorization header at this endpoint must use the Basic scheme"
        )
    return authorization


def _detect_method(request: OAuthRequest, basic: str | None) -> ClientAuthMethod:
    form = request.form
    used: list[ClientAuthMethod] = []
    if basic is not None:
        used.append("client_secret_basic")
    if "client_secret" in form:
        used.append("client_secret_post")
    if "client_assertion" in form or "client_assertion_type" in form:
        used.append("private_key_jwt")
    if len(used) > 1:
        raise InvalidRequestError(
            "more than one client authentication method used: " + ", ".join(used)
        )
    if used:
        return used[0]
    if "client_id" in form:
        return "none"
    raise _fail("no_credentials")


def _check_query(request: OAuthRequest) -> None:
    # RFC 6749 §2.3.1: credentials MUST NOT be in the request URI (they end up in logs).
    if not request.query:
        return
    names = {name for name, _ in parse_qsl(request.query, keep_blank_values=True)}
    if names & {"client_secret", "client_assertion"}:
        raise InvalidRequestError("client credentials must not be sent in the URL query")


def _check_registered(
    client: Client, method: ClientAuthMethod, *, basic: bool = False
) -> AuthenticatedClient:
    if client.disabled:
        raise _fail("client_disabled", basic=basic)
    if client.token_endpoint_auth_method != method:
        raise _fail("auth_method_mismatch", basic=basic)
    if (method == "none") != (client.client_type == "public"):
        raise _fail("client_type_mismatch", basic=basic)
    return AuthenticatedClient(client=client, method=method)


def sends_client_credentials(request: OAuthRequest) -> bool:
    """Whether ``request`` carries any client authentication (then it must succeed).

    What a grant whose client authentication is optional (RFC 8693 §2.1) is
    decided by: an ``Authorization`` header or any client credential parameter.
    """
    form = request.form
    if request.headers.get("authorization"):
        return True
    return any(
        name in form
        for name in ("client_id", "client_secret", "client_assertion", "client_assertion_type")
    )


def claimed_client_id(request: OAuthRequest) -> str | None:
    """The client id a request *claims* (Basic user, ``client_id``, or assertion ``sub``).

    Unverified: only for throttling failed attempts per client before the
    credentials are checked. Never raises; ``None`` when nothing is claimed.
    """
    try:
        basic = _basic_credentials(request)
        if basic is not None:
            return _decode_basic(basic)[0]
        claimed = request.form.get("client_id")
        if claimed:
            return claimed
        assertion = request.form.get("client_assertion")
        return _unverified_subject(assertion) if assertion else None
    except OAuthError:
        return None


async def authenticate_client(
    request: OAuthRequest,
    *,
    clients: ClientLookup,
    issuer: str,
    token_endpoint: str,
    shared: SharedState,
    allowed_methods: Collection[str] = ALL_AUTH_METHODS,
    leeway: float = 30.0,
    now: float | None = None,
) -> AuthenticatedClient:
    """Authenticate the client making ``request`` with exactly one method.

    ``allowed_methods`` are the methods this endpoint accepts (introspection
    leaves out ``none``). ``issuer`` and ``token_endpoint`` are the audiences a
    client assertion may name. ``leeway`` (seconds) absorbs clock skew in
    assertion time checks.

    Raises:
        InvalidRequestError: two methods at once, an Authorization header that
            is not Basic, credentials in the URL query, a ``client_id`` that
            contradicts the credentials, or half of a client assertion.
        InvalidClientError: no credentials, unknown or disabled client, wrong
            secret, a method the client did not register or the endpoint does
            not allow, or an assertion that is invalid, expired or replayed.
            ``reason`` says which.
    """
    _check_query(request)
    basic = _basic_credentials(request)
    method = _detect_method(request, basic)
    form_client_id = request.form.get("client_id")
    if method not in allowed_methods:
        raise _fail("method_not_allowed", basic=basic is not None)

    if basic is not None:
        client_id, secret = _decode_basic(basic)
        if form_client_id is not None and form_client_id != client_id:
            raise InvalidRequestError("client_id does not match the Basic credentials")
        try:
            client = await clients.authenticate_secret(client_id, secret)
        except InvalidClientError as exc:
            raise exc.with_basic_challenge() from None
        return _check_registered(client, method, basic=True)

    if method == "client_secret_post":
        if form_client_id is None:
            raise _fail("missing_client_id")
        client = await clients.authenticate_secret(form_client_id, request.form["client_secret"])
        return _check_registered(client, method)

    if method == "none" and form_client_id is not None:
        found = await _find(clients, form_client_id)
        return _check_registered(found, method)

    return await _authenticate_assertion(
        request,
        clients=clients,
        audiences=(issuer, token_endpoint),
        shared=shared,
        leeway=leeway,
        now=time.time() if now is None else now,
    )


async def _find(clients: ClientLookup, client_id: str) -> Client:
    if len(client_id) > _MAX_CLIENT_ID_LENGTH:
        raise _fail("unknown_client")
    client = await clients.find_active(client_id)
    if client is None:
        raise _fail("unknown_client")
    return client


def _unverified_subject(assertion: str) -> str:
    """The ``sub`` of a JWS compact assertion, read before its signature is checked.

    Used only to choose whose keys to verify with; nothing else is trusted yet.
    """
    parts = assertion.split(".")
    if len(parts) != 3:  # header.payload.signature
        raise _fail("assertion_malformed")
    payload = parts[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise _fail("assertion_malformed") from None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(subject, str) or not subject:
        raise _fail("assertion_missing_sub")
    return subject


def _check_assertion_typ(header: Mapping[str, Any]) -> None:
    """Refuse an assertion whose header ``typ`` names another kind of JWT.

    RFC 7523 defines no ``typ``; absent, ``JWT`` and the explicit
    ``client-authentication+jwt`` (draft-ietf-oauth-rfc7523bis) are accepted.
    Anything else — an access token (``at+jwt``), a DPoP proof, a logout
    token … — is a JWT minted for another purpose (RFC 8725 §3.11).
    """
    typ = header.get("typ")
    if typ is None:
        return
    if not isinstance(typ, str):
        raise _fail("assertion_wrong_typ")
    lowered = typ.lower()
    if lowered.startswith("application/"):
        lowered = lowered[len("application/") :]
    if lowered not in _ASSERTION_TYPS:
        raise _fail("assertion_wrong_typ")


def _audiences(claims: Mapping[str, Any]) -> list[Any]:
    aud = claims.get("aud")
    return aud if isinstance(aud, list) else [aud]


async def _authenticate_assertion(
    request: OAuthRequest,
    *,
    clients: ClientLookup,
    audiences: tuple[str, str],
    shared: SharedState,
    leeway: float,
    now: float,
) -> AuthenticatedClient:
    assertion_type = request.form.get("client_assertion_type")
    assertion = request.form.get("client_assertion")
    if assertion_type is None or assertion is None:
        raise InvalidRequestError(
            "private_key_jwt needs both client_assertion and client_assertion_type"
        )
    if assertion_type != CLIENT_ASSERTION_TYPE_JWT_BEARER:
        raise InvalidClientError(
            f"unsupported client_assertion_type; use {CLIENT_ASSERTION_TYPE_JWT_BEARER}",
            reason="assertion_type_unsupported",
        )
    if len(assertion) > _MAX_ASSERTION_BYTES:
        raise _fail("assertion_too_large")
    form_client_id = request.form.get("client_id")
    client_id = form_client_id if form_client_id is not None else _unverified_subject(assertion)
    client = await _find(clients, client_id)
    authenticated = _check_registered(client, "private_key_jwt")
    if not client.jwks:
        raise _fail("client_jwks_missing")
    try:
        keys = PublicKeySet.from_jwks(client.jwks)
    except InvalidKeyError:
        raise _fail("client_jwks_invalid") from None
    verifier = JWTVerifier(
        keys,
        issuer=None,
        audience=None,
        typ=None,
        leeway=leeway,
        max_size=_MAX_ASSERTION_BYTES,
        required_claims=("iss", "sub", "aud", "exp", "jti"),
        require_kid=False,
        # Client libraries sign with OpenSSL and friends, which do not normalise S;
        # an assertion is single-use by jti, so its high-S twin is replayed, not new.
        allow_high_s=True,
    )
    try:
        verified = verifier.verify(assertion, now=now)
    except InvalidTokenError as exc:
        raise _fail(f"assertion_{exc.reason}") from None
    _check_assertion_typ(verified.header)
    claims = verified.claims
    # RFC 7523 §3: iss and sub are both the client id (OIDC Core §9 for private_key_jwt).
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise _fail("assertion_wrong_subject")
    if not any(aud in audiences for aud in _audiences(claims)):
        raise _fail("assertion_wrong_audience")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
        raise _fail("assertion_missing_claim")
    if exp > now + MAX_ASSERTION_LIFETIME + leeway:
        raise _fail("assertion_exp_too_far")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI_LENGTH:
        raise _fail("assertion_bad_jti")
    # Single use: the first presentation wins; the key outlives the assertion's validity.
    ttl = max(exp - now, 0.0) + leeway + 1.0
    if not await shared.add(f"pkjwt-jti:{client.client_id}:{jti}", b"1", ttl=ttl):
        raise _fail("assertion_replayed")
    return authenticated
