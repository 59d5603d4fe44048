"""OAuth 2.0 Authorization Server Issuer Identification — RFC 9207
(https://www.rfc-editor.org/rfc/rfc9207), and the authorization response of RFC 6749
§4.1.2 / §4.1.2.1 it extends.

Every authorization response bastion sends — success (``code``, ``state``) and error
(``error``, ``error_description``, ``state``) — carries ``iss``, the issuer identifier
(§2), so a client talking to several servers can tell which one answered (mix-up
attacks, RFC 9700 §4.4). The parameters are added to the redirect URI's query
(``response_mode=query``), keeping the query it already has (RFC 6749 §3.1.2: it "MUST
be retained"); a redirect URI must not have a fragment (§3.1.2), nor already carry
one of the response parameters (the client could not tell which one is bastion's).

:func:`check_issuer` is the client's side of §2.4, for tests and for symmetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bastion.errors import BastionError
from bastion.protocol.rfc6749.errors import OAuthError

__all__ = [
    "ISS_PARAMETER_SUPPORTED",
    "RESPONSE_PARAMETERS",
    "IssuerMismatchError",
    "check_issuer",
    "error_redirect",
    "response_parameters",
    "success_redirect",
]

#: The metadata member ``authorization_response_iss_parameter_supported`` (§3).
ISS_PARAMETER_SUPPORTED: Final = True

#: Parameters an authorization response may add to the redirect URI.
RESPONSE_PARAMETERS: Final = frozenset({"code", "state", "iss", "error", "error_description"})


class IssuerMismatchError(BastionError):
    """An authorization response's ``iss`` is missing or names another issuer (§2.4)."""

    code = "issuer_mismatch"
    status = 400
    title = "Issuer mismatch"


def _with_parameters(redirect_uri: str, parameters: Mapping[str, str | None]) -> str:
    parts = urlsplit(redirect_uri)
    if parts.fragment or "#" in redirect_uri:
        raise ValueError("a redirect URI must not have a fragment (RFC 6749 section 3.1.2)")
    existing = parse_qsl(parts.query, keep_blank_values=True)
    clash = sorted({name for name, _ in existing} & RESPONSE_PARAMETERS)
    if clash:
        raise ValueError(f"the redirect URI's query already has response parameters {clash}")
    added = urlencode([(name, value) for name, value in parameters.items() if value is not None])
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def success_redirect(redirect_uri: str, *, code: str, state: str | None, issuer: str) -> str:
    """The ``Location`` of a successful authorization response (RFC 6749 §4.1.2, §2 here).

    Raises:
        ValueError: the redirect URI has a fragment or already has a response
            parameter in its query (a registration mistake; registration refuses both).
    """
    return _with_parameters(redirect_uri, {"code": code, "state": state, "iss": issuer})


def error_redirect(redirect_uri: str, error: OAuthError, *, state: str | None, issuer: str) -> str:
    """The ``Location`` of an error authorization response (RFC 6749 §4.1.2.1, §2 here).

    ``error_description`` is the error's description, already limited to the
    characters RFC 6749 allows.

    Raises:
        ValueError: as :func:`success_redirect`.
    """
    parameters = {
        "error": error.error,
        "error_description": error.error_description,
        "state": state,
        "iss": issuer,
    }
    return _with_parameters(redirect_uri, parameters)


def response_parameters(location: str) -> dict[str, str]:
    """The response parameters in the query of an authorization response's ``Location``.

    Raises:
        ValueError: a response parameter occurs more than once.
    """
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(location).query, keep_blank_values=True):
        if name not in RESPONSE_PARAMETERS:
            continue
        if name in parameters:
            raise ValueError(f"response parameter {name!r} repeated")
        parameters[name] = value
    return parameters


def check_issuer(parameters: Mapping[str, str], issuer: str) -> None:
    """Return when the response's ``iss`` is exactly ``issuer`` (§2.4: simple string
    comparison), as a client that knows the server sends ``iss`` must check.

    Raises:
        IssuerMismatchError: ``iss`` is missing or differs.
    """
    received = parameters.get("iss")
    if received is None:
        raise IssuerMismatchError("the authorization response has no iss parameter")
    if received != issuer:
        raise IssuerMismatchError("the authorization response comes from another issuer")
