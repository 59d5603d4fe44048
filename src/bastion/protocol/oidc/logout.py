"""OpenID Connect RP-Initiated Logout 1.0 (https://openid.net/specs/openid-connect-rpinitiated-1_0.html).

The rules of the logout request (§2) and of the redirect after it (§3), framework-free:

- :func:`parse_logout_request` — the parameters of §2 (``id_token_hint``, ``client_id``,
  ``post_logout_redirect_uri``, ``state``, ``logout_hint``, ``ui_locales``), from the
  query (GET) or the form body (POST); a repeated or oversized parameter is
  ``invalid_request``. ``logout_hint`` and ``ui_locales`` are read and ignored.
- :func:`hint_client` — the client an ``id_token_hint`` names: its ``aud`` (one client),
  else ``azp``. The hint's signature and ``iss`` are the caller's to verify, with the
  OP's own keys; §2 lets an expired hint through ("the OP SHOULD accept ID Tokens when
  the RP identified by the ID Token's aud claim ... is logged out").
- :func:`check_post_logout_redirect_uri` — §3: the URI must have been registered by the
  client, compared **exactly** (no normalisation: a trailing slash, a case change or an
  added query is another URI). Without an identified client there is nothing to compare
  with: refused, never an open redirect (§3 "MUST NOT perform post-logout redirection
  if ... not ... registered").
- :func:`post_logout_redirect` — the URI with ``state`` added to its query (§3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from bastion.protocol.rfc6749.errors import InvalidRequestError

__all__ = [
    "LOGOUT_PARAMETERS",
    "InvalidLogoutRequestError",
    "LogoutRequest",
    "check_post_logout_redirect_uri",
    "hint_client",
    "parse_logout_request",
    "post_logout_redirect",
]

#: The request parameters of §2 (others are ignored, as OAuth 2.0 endpoints do).
LOGOUT_PARAMETERS: Final = (
    "id_token_hint",
    "logout_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
)
#: Longer than any value bastion issues or accepts (an ID token is ~1 KB; URIs ≤ 2048).
_MAX_VALUE: Final = 8192


class InvalidLogoutRequestError(InvalidRequestError):
    """The logout request is refused (``invalid_request``); ``reason`` says why."""

    title = "Invalid logout request"


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """The parameters of a logout request that bastion uses (empty ones are ``None``)."""

    id_token_hint: str | None = None
    client_id: str | None = None
    post_logout_redirect_uri: str | None = None
    state: str | None = None


def parse_logout_request(params: Mapping[str, Sequence[str]]) -> LogoutRequest:
    """The logout request in ``params`` (each name with its values, in order).

    Raises:
        InvalidLogoutRequestError: a parameter of §2 given twice (``repeated_parameter``)
            or longer than 8 KiB (``parameter_too_long``).
    """
    values: dict[str, str | None] = {}
    for name in LOGOUT_PARAMETERS:
        given = params.get(name, ())
        if len(given) > 1:
            raise InvalidLogoutRequestError(
                f"the parameter {name} is repeated", reason="repeated_parameter"
            )
        value = given[0] if given else ""
        if len(value) > _MAX_VALUE:
            raise InvalidLogoutRequestError(
                f"the parameter {name} is too long", reason="parameter_too_long"
            )
        values[name] = value or None
    return LogoutRequest(
        id_token_hint=values["id_token_hint"],
        client_id=values["client_id"],
        post_logout_redirect_uri=values["post_logout_redirect_uri"],
        state=values["state"],
    )


def hint_client(claims: Mapping[str, Any]) -> str:
    """The client a verified ``id_token_hint`` was issued to: its ``aud`` when that names
    one client, else its ``azp``.

    Raises:
        InvalidLogoutRequestError: no single client (``id_token_hint_audience``).
    """
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    if isinstance(aud, str) and aud:
        return aud
    azp = claims.get("azp")
    if isinstance(aud, list) and isinstance(azp, str) and azp in aud:
        return azp
    raise InvalidLogoutRequestError(
        "the id_token_hint does not name one client", reason="id_token_hint_audience"
    )


def check_post_logout_redirect_uri(
    uri: str, client_id: str | None, registered: Sequence[str]
) -> None:
    """Return when ``uri`` is one of ``registered`` (the client's), character for character.

    Raises:
        InvalidLogoutRequestError: no client identified (``client_unidentified``) or the
            URI not registered for it (``post_logout_redirect_uri_mismatch``).
    """
    if client_id is None:
        raise InvalidLogoutRequestError(
            "a post_logout_redirect_uri needs the client: send id_token_hint or client_id",
            reason="client_unidentified",
        )
    if uri not in registered:
        raise InvalidLogoutRequestError(
            "the post_logout_redirect_uri is not registered for this client",
            reason="post_logout_redirect_uri_mismatch",
        )


def post_logout_redirect(uri: str, state: str | None) -> str:
    """``uri`` (registered) with ``state`` appended to its query when given (§3)."""
    if state is None:
        return uri
    # Appended to the registered URI as it is (its own query is not re-encoded).
    separator = "&" if urlsplit(uri).query else "?"
    return uri + separator + urlencode({"state": state})
