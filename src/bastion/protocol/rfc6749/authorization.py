"""The authorization request — RFC 6749 §4.1.1 (https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1)
with OpenID Connect Core §3.1.2.1, RFC 7636 (PKCE) and RFC 8252 §7.3 (loopback redirects).

The parameters come from the query of a GET or the form body of a POST (OIDC Core
§3.1.2.1), parsed by :mod:`.requests`' rules; a parameter sent twice is refused (§3.1).

Errors come in two kinds, and the types keep them apart so the HTTP layer cannot mix
them up (§4.1.2.1, §10.15, RFC 9700 §4.1):

- :class:`AuthorizationPageError` — the client is missing or unknown, or the redirect
  URI is missing, repeated or not registered. Nothing can be trusted to redirect to:
  the user gets an error page. The error carries no URI at all.
- :class:`AuthorizationRedirectError` — anything else, once the client and redirect
  URI are known good: an error response at the validated redirect URI, with ``error``,
  ``error_description``, ``state`` and ``iss`` (:mod:`bastion.protocol.rfc9207`).

The rules: ``response_type=code`` only (``unsupported_response_type``); ``redirect_uri``
matches a registered one exactly, except that the port of a loopback IP redirect URI
(``http://127.0.0.1``, ``http://[::1]``; not ``localhost``, RFC 8252 §8.3) may differ
(RFC 8252 §7.3); it may be left out when exactly one is registered (§3.1.2.3), unless
the request is an OpenID Connect one (scope ``openid``), where it is required; the
client must be allowed the ``authorization_code`` grant (``unauthorized_client``);
PKCE with S256 (:mod:`bastion.protocol.rfc7636`); ``scope`` by §3.3's grammar and
within the client's registered scopes (``invalid_scope``); ``state`` (echoed) and
``nonce`` at most 1024 printable characters; ``prompt`` among
:data:`PROMPT_VALUES` with ``none`` alone; ``max_age`` a non-negative integer;
``response_mode`` ``query`` only; ``request``, ``request_uri`` and ``registration``
are refused with their OIDC Core §3.1.2.6 codes. Other parameters are ignored (§3.1).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from bastion.errors import BastionError
from bastion.protocol.oidc.core import UNSUPPORTED_PARAMETERS, ParameterNotSupportedError
from bastion.protocol.rfc6749.errors import (
    InvalidRequestError,
    OAuthError,
    UnauthorizedClientError,
)
from bastion.protocol.rfc6749.requests import (
    REPEATABLE_PARAMETERS,
    check_form_content_type,
    parse_urlencoded,
)
from bastion.protocol.rfc6749.scope import check_scope_allowed, parse_scope
from bastion.protocol.rfc7636 import CODE_CHALLENGE_METHODS, check_code_challenge
from bastion.protocol.rfc9207 import ISS_PARAMETER_SUPPORTED, error_redirect, success_redirect

__all__ = [
    "GRANT_TYPE",
    "MAX_STATE_LENGTH",
    "PROMPT_VALUES",
    "RESPONSE_MODES",
    "RESPONSE_TYPES",
    "AccessDeniedError",
    "AuthorizationClient",
    "AuthorizationPageError",
    "AuthorizationParameters",
    "AuthorizationRedirectError",
    "AuthorizationRequest",
    "FindClient",
    "UnsupportedResponseTypeError",
    "authorization_endpoint_metadata",
    "authorization_request",
    "match_redirect_uri",
    "validate_authorization_request",
]

#: The grant a client needs to use the authorization endpoint.
GRANT_TYPE: Final = "authorization_code"
#: The response types bastion answers (RFC 9700 §2.1.2: no implicit flow).
RESPONSE_TYPES: Final = ("code",)
#: The response modes bastion answers with (OAuth 2.0 Multiple Response Types §2.1).
RESPONSE_MODES: Final = ("query",)
#: The ``prompt`` values bastion honours (OIDC Core §3.1.2.1; ``select_account`` is refused:
#: a browser holds one session).
PROMPT_VALUES: Final = ("none", "login", "consent")
#: Longest ``state``, ``nonce`` and ``acr_values`` accepted (they are echoed in a URL or token).
MAX_STATE_LENGTH: Final = 1024
_MAX_HINT_LENGTH: Final = 512
_MAX_ECHO: Final = 40

#: RFC 6749 Appendix A.5: ``state = 1*VSCHAR`` (%x20-7E).
_VSCHARS: Final = re.compile(r"[\x20-\x7E]+")
#: A loopback IP literal with an optional port (RFC 8252 §7.3).
_LOOPBACK_NETLOC: Final = re.compile(r"(127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?")
_MAX_AGE: Final = re.compile(r"[0-9]{1,10}")


class AuthorizationClient(Protocol):
    """What the authorization request needs to know of a registered client.

    :class:`bastion.storage.models.Client` has this shape; the protocol layer only
    reads it.
    """

    @property
    def client_id(self) -> str: ...

    @property
    def client_type(self) -> str: ...

    @property
    def redirect_uris(self) -> Sequence[str]: ...

    @property
    def grant_types(self) -> Collection[str]: ...

    @property
    def scopes(self) -> Collection[str]: ...


#: ``client_id -> client`` (``None``: unknown or disabled).
FindClient = Callable[[str], Awaitable[AuthorizationClient | None]]


class UnsupportedResponseTypeError(OAuthError):
    """The response type is not ``code`` (RFC 6749 §4.1.2.1)."""

    code = "unsupported_response_type"
    title = "Unsupported response type"


class AccessDeniedError(OAuthError):
    """The user or the server denied the request (RFC 6749 §4.1.2.1)."""

    code = "access_denied"
    title = "Access denied"


class AuthorizationPageError(OAuthError):
    """The client or the redirect URI cannot be trusted: show an error page to the user,
    never redirect (RFC 6749 §4.1.2.1). ``reason`` says which check failed."""

    code = "invalid_request"
    title = "Invalid authorization request"


class AuthorizationRedirectError(BastionError):
    """An authorization error to send to the client at its validated redirect URI.

    ``error`` is the OAuth error; :attr:`location` the redirect carrying ``error``,
    ``error_description``, ``state`` and ``iss`` (RFC 6749 §4.1.2.1, RFC 9207).
    """

    # 400, not a redirect status: a handler that renders any BastionError generically
    # must answer with an error, never a 3xx without the Location this error builds.
    status = 400
    title = "Authorization error"

    def __init__(
        self, error: OAuthError, *, redirect_uri: str, state: str | None, issuer: str
    ) -> None:
        self.error = error
        self.code = error.code
        self.reason = error.reason
        self.redirect_uri = redirect_uri
        self.state = state
        self.issuer = issuer
        super().__init__(error.error_description or error.title)

    @property
    def location(self) -> str:
        """The redirect URI with the error response's parameters."""
        return error_redirect(self.redirect_uri, self.error, state=self.state, issuer=self.issuer)


@dataclass(frozen=True, slots=True)
class AuthorizationParameters:
    """Every parameter of an authorization request, with all its values."""

    values: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_http(
        cls,
        method: str,
        query: str | bytes = b"",
        body: bytes = b"",
        content_type: str | None = None,
    ) -> AuthorizationParameters:
        """The parameters of a GET's query or a POST's form body (OIDC Core §3.1.2.1).

        Raises:
            AuthorizationPageError: another method, or parameters that cannot be read
                (wrong media type, not UTF-8, too large): the redirect URI is unknown.
        """
        try:
            pairs = _pairs(method.upper(), query, body, content_type)
        except InvalidRequestError as error:
            raise AuthorizationPageError(
                error.error_description, reason="malformed_request"
            ) from None
        values: dict[str, list[str]] = {}
        for name, value in pairs:
            values.setdefault(name, []).append(value)
        return cls({name: tuple(found) for name, found in values.items()})

    def one(self, name: str) -> str | None:
        """The value of ``name`` (``None`` when absent).

        Raises:
            InvalidRequestError: ``name`` was sent more than once (RFC 6749 §3.1).
        """
        found = self.values.get(name, ())
        if len(found) > 1:
            raise InvalidRequestError(f"parameter '{name[:_MAX_ECHO]}' repeated")
        return found[0] if found else None


def _pairs(
    method: str, query: str | bytes, body: bytes, content_type: str | None
) -> list[tuple[str, str]]:
    if method == "GET":
        # A str query is the raw query text; as UTF-8 it encodes whatever it holds.
        raw = query.encode("utf-8") if isinstance(query, str) else query
        return parse_urlencoded(raw, source="query")
    if method == "POST":
        check_form_content_type(content_type)
        return parse_urlencoded(body)
    raise InvalidRequestError("the authorization endpoint accepts GET and POST only")


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request.

    ``redirect_uri`` is where to answer; ``redirect_uri_sent`` whether the request
    named it (then the token request must repeat it, RFC 6749 §4.1.3); ``scope`` the
    distinct requested scopes; ``prompt`` the ``prompt`` values; ``issuer`` the
    ``iss`` of the responses.
    """

    client_id: str
    redirect_uri: str
    redirect_uri_sent: bool
    issuer: str
    code_challenge: str
    scope: tuple[str, ...] = ()
    state: str | None = None
    nonce: str | None = None
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    login_hint: str | None = None
    acr_values: tuple[str, ...] = ()
    code_challenge_method: str = CODE_CHALLENGE_METHODS[0]

    @property
    def is_openid(self) -> bool:
        """Whether this is an OpenID Connect request (scope ``openid``)."""
        return "openid" in self.scope

    def success_location(self, code: str) -> str:
        """The redirect of the successful response: ``code``, ``state``, ``iss``."""
        return success_redirect(self.redirect_uri, code=code, state=self.state, issuer=self.issuer)

    def error(self, error: OAuthError) -> AuthorizationRedirectError:
        """``error`` (e.g. ``access_denied``, ``login_required``) as a redirect to the client."""
        return AuthorizationRedirectError(
            error, redirect_uri=self.redirect_uri, state=self.state, issuer=self.issuer
        )


def authorization_endpoint_metadata() -> dict[str, Any]:
    """The metadata members that describe the authorization endpoint, the same in the
    RFC 8414 document and OIDC Discovery (pass them as ``extra`` with
    ``response_types=RESPONSE_TYPES``)."""
    return {
        "response_modes_supported": list(RESPONSE_MODES),
        "code_challenge_methods_supported": list(CODE_CHALLENGE_METHODS),
        "authorization_response_iss_parameter_supported": ISS_PARAMETER_SUPPORTED,
    }


def _page_one(parameters: AuthorizationParameters, name: str) -> str | None:
    try:
        return parameters.one(name)
    except InvalidRequestError as error:
        raise AuthorizationPageError(error.error_description, reason=f"{name}_repeated") from None


def _loopback_key(uri: str) -> str | None:
    """``uri`` without its port when it is a loopback IP redirect URI, else ``None``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    match = _LOOPBACK_NETLOC.fullmatch(parts.netloc)
    prefix = "http://" + parts.netloc
    if parts.scheme != "http" or match is None or not uri.startswith(prefix):
        return None
    if match.group(2) is not None and int(match.group(2)) > 65535:
        return None
    return "http://" + match.group(1) + uri[len(prefix) :]


def match_redirect_uri(requested: str | None, registered: Sequence[str]) -> str:
    """The redirect URI to answer at: ``requested`` when it matches a registered one.

    The match is exact (RFC 9700 §2.1), except for loopback IP redirect URIs, whose port
    may differ (RFC 8252 §7.3). Without ``requested``, the one registered URI.

    Raises:
        AuthorizationPageError: no URI registered; ``requested`` missing while several
            are; or ``requested`` not registered.
    """
    if not registered:
        raise AuthorizationPageError(
            "the client has no redirect URI registered", reason="no_redirect_uri_registered"
        )
    if requested is None:
        if len(registered) == 1:
            return registered[0]
        raise AuthorizationPageError(
            "missing parameter 'redirect_uri'", reason="redirect_uri_missing"
        )
    if requested in registered:
        return requested
    key = _loopback_key(requested)
    if key is not None and any(_loopback_key(uri) == key for uri in registered):
        return requested
    raise AuthorizationPageError(
        "redirect_uri is not registered for this client", reason="redirect_uri_mismatch"
    )


def _state(parameters: AuthorizationParameters) -> str | None:
    state = parameters.one("state")
    if state is not None and (len(state) > MAX_STATE_LENGTH or not _VSCHARS.fullmatch(state)):
        raise InvalidRequestError(
            f"state must be at most {MAX_STATE_LENGTH} printable ASCII characters",
            reason="state_malformed",
        )
    return state


def validate_authorization_request(
    parameters: AuthorizationParameters,
    client: AuthorizationClient | None,
    *,
    issuer: str,
) -> AuthorizationRequest:
    """Check an authorization request of ``client`` (``None``: unknown or disabled).

    Raises:
        AuthorizationPageError: ``client_id`` missing or repeated, the client unknown,
            or the redirect URI missing, repeated or not registered.
        AuthorizationRedirectError: any other rule broken (see the module docstring).
    """
    client_id = _page_one(parameters, "client_id")
    if client_id is None:
        raise AuthorizationPageError("missing parameter 'client_id'", reason="client_id_missing")
    if client is None or client.client_id != client_id:
        raise AuthorizationPageError("unknown client", reason="unknown_client")
    requested_uri = _page_one(parameters, "redirect_uri")
    redirect_uri = match_redirect_uri(requested_uri, client.redirect_uris)
    state: str | None = None
    try:
        state = _state(parameters)
        return _checked(
            parameters,
            client,
            AuthorizationRequest(
                client_id=client_id,
                redirect_uri=redirect_uri,
                redirect_uri_sent=requested_uri is not None,
                issuer=issuer,
                code_challenge="",
                state=state,
            ),
        )
    except AuthorizationPageError:
        raise  # never turned into a redirect, wherever it comes from
    except OAuthError as error:
        raise AuthorizationRedirectError(
            error, redirect_uri=redirect_uri, state=state, issuer=issuer
        ) from None


async def authorization_request(
    parameters: AuthorizationParameters, *, find_client: FindClient, issuer: str
) -> AuthorizationRequest:
    """Look the client up with ``find_client`` and validate the request.

    Raises:
        AuthorizationPageError, AuthorizationRedirectError: as
            :func:`validate_authorization_request`.
    """
    client_id = _page_one(parameters, "client_id")
    client = await find_client(client_id) if client_id is not None else None
    return validate_authorization_request(parameters, client, issuer=issuer)


def _checked(
    parameters: AuthorizationParameters, client: AuthorizationClient, base: AuthorizationRequest
) -> AuthorizationRequest:
    for name, found in parameters.values.items():
        if len(found) > 1 and name not in REPEATABLE_PARAMETERS:
            raise InvalidRequestError(f"parameter '{name[:_MAX_ECHO]}' repeated")
    for name in UNSUPPORTED_PARAMETERS:
        if name in parameters.values:
            raise ParameterNotSupportedError(name)
    _check_response(parameters)
    if GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClientError(
            "the client may not use the authorization code grant", reason="grant_not_allowed"
        )
    challenge = check_code_challenge(
        parameters.one("code_challenge"), parameters.one("code_challenge_method")
    )
    scope = parse_scope(parameters.one("scope") or "")
    check_scope_allowed(scope, client.scopes)
    if "openid" in scope and not base.redirect_uri_sent:
        raise InvalidRequestError(
            "redirect_uri is required in an OpenID Connect request", reason="redirect_uri_missing"
        )
    return replace(
        base,
        code_challenge=challenge,
        scope=scope,
        nonce=_bounded(parameters, "nonce", MAX_STATE_LENGTH),
        prompt=_prompt(parameters.one("prompt")),
        max_age=_max_age(parameters.one("max_age")),
        login_hint=_bounded(parameters, "login_hint", _MAX_HINT_LENGTH),
        acr_values=tuple((_bounded(parameters, "acr_values", MAX_STATE_LENGTH) or "").split()),
    )


def _check_response(parameters: AuthorizationParameters) -> None:
    response_type = parameters.one("response_type")
    if response_type is None:
        raise InvalidRequestError("missing parameter 'response_type'")
    if response_type not in RESPONSE_TYPES:
        raise UnsupportedResponseTypeError(
            f"response_type '{response_type[:_MAX_ECHO]}' is not supported; use code"
        )
    response_mode = parameters.one("response_mode")
    if response_mode is not None and response_mode not in RESPONSE_MODES:
        raise InvalidRequestError(
            f"response_mode '{response_mode[:_MAX_ECHO]}' is not supported; use query"
        )


def _bounded(parameters: AuthorizationParameters, name: str, limit: int) -> str | None:
    value = parameters.one(name)
    if value is not None and (len(value) > limit or not value.isprintable()):
        raise InvalidRequestError(f"{name} must be at most {limit} printable characters")
    return value


def _prompt(value: str | None) -> frozenset[str]:
    prompt = frozenset((value or "").split(" ")) - {""}
    for item in sorted(prompt):
        if item not in PROMPT_VALUES:
            raise InvalidRequestError(f"prompt value '{item[:_MAX_ECHO]}' is not supported")
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values")
    return prompt


def _max_age(value: str | None) -> int | None:
    if value is None:
        return None
    if _MAX_AGE.fullmatch(value) is None:
        raise InvalidRequestError("max_age must be a non-negative integer (seconds)")
    return int(value)
