"""What an OAuth 2.0 client may be: :class:`ClientSpec` and the checks of its members.

Client metadata as RFC 7591 §2 names it (auth method, grant types, redirect
URIs, JWK Set …) with the rules of RFC 9700 (no implicit or password grant,
https redirect URIs but for loopback, RFC 8252 §7.3). Names, scopes, lists and
metadata are checked as for every credential (:mod:`bastion.credentials.validation`).
Every refusal is a :class:`ClientSpecError` naming the member and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, get_args
from urllib.parse import parse_qsl, urlsplit

import orjson

from bastion.credentials.validation import (
    MAX_METADATA_BYTES,
    MAX_NAME,
    MAX_SCOPE_TOKEN,
    SpecChecks,
    SpecError,
    no_controls,
)
from bastion.crypto.keys import InvalidKeyError, PublicKeySet
from bastion.protocol.rfc6749.client_auth import ALL_AUTH_METHODS
from bastion.protocol.rfc9207 import RESPONSE_PARAMETERS
from bastion.storage.models import ClientType

__all__ = [
    "AUTH_METHODS",
    "AVAILABLE_GRANT_TYPES",
    "CHECKS",
    "GRANT_TYPES",
    "REQUIRED_WITH",
    "SECRET_METHODS",
    "UNAVAILABLE_GRANT_TYPES",
    "UPDATABLE",
    "ClientSpec",
    "ClientSpecError",
    "spec_values",
    "validated",
]

#: Token endpoint authentication methods a client may register (RFC 7591 §2): every one
#: the token endpoint implements, so a registered client can always authenticate.
AUTH_METHODS: Final[tuple[str, ...]] = ALL_AUTH_METHODS
#: The methods that present a client secret.
SECRET_METHODS: Final = frozenset({"client_secret_basic", "client_secret_post"})

#: Grant types a client may be allowed; implicit and password are never offered
#: (RFC 9700 §2.1.2, §2.4).
GRANT_TYPES: Final[tuple[str, ...]] = (
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
)

#: Grant types a client could name but this version cannot serve yet, and why. A client
#: allowed only these would be refused at the token endpoint forever, so creating one
#: (or adding one of them to a client) is refused with this reason instead.
UNAVAILABLE_GRANT_TYPES: Final[Mapping[str, str]] = {}
#: Grant types a client may be allowed only together with another: refresh tokens are
#: issued only by the authorization_code grant.
REQUIRED_WITH: Final[Mapping[str, str]] = {"refresh_token": "authorization_code"}
#: The grant types a client can be allowed today (with what each requires).
AVAILABLE_GRANT_TYPES: Final[tuple[str, ...]] = tuple(
    grant
    for grant in GRANT_TYPES
    if grant not in UNAVAILABLE_GRANT_TYPES
    and REQUIRED_WITH.get(grant) not in UNAVAILABLE_GRANT_TYPES
)

_MAX_URI: Final = 2048
_MIN_TTL: Final = 30
_URI_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})

#: The members :meth:`~bastion.oauth.clients.ClientService.update` may change.
UPDATABLE: Final = frozenset(
    {
        "name",
        "token_endpoint_auth_method",
        "grant_types",
        "scopes",
        "audiences",
        "access_token_ttl",
        "redirect_uris",
        "jwks",
        "metadata",
        "id_token_signed_response_alg",
        "post_logout_redirect_uris",
        "backchannel_logout_uri",
        "backchannel_logout_session_required",
    }
)


class ClientSpecError(SpecError):
    """Client metadata is invalid; ``field`` names the member, the detail says the fix."""

    code = "invalid_client_metadata"
    status = 400
    title = "Invalid client metadata"


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What a new client should be; ``None`` members take the defaults of its type.

    Defaults: confidential clients authenticate with ``client_secret_basic`` and
    may use ``client_credentials``; public clients authenticate with ``none`` and
    may use ``authorization_code`` and ``refresh_token``.
    """

    name: str
    client_type: ClientType = "confidential"
    token_endpoint_auth_method: str | None = None
    grant_types: Sequence[str] | None = None
    scopes: Sequence[str] = ()
    audiences: Sequence[str] = ()
    access_token_ttl: int | None = None
    redirect_uris: Sequence[str] = ()
    jwks: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: The JWS algorithm of the client's ID tokens (OIDC Registration §2); ``None``: the
    #: server's default (the first of ``signing_keys.id_token_algorithms``).
    id_token_signed_response_alg: str | None = None
    #: RP-Initiated Logout 1.0 §3.1: where ``/oauth2/logout`` may send the browser after.
    post_logout_redirect_uris: Sequence[str] = ()
    #: Back-Channel Logout 1.0 §2.2: where logout tokens are posted, and whether ``sid``
    #: is required in them (bastion always sends it).
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False


#: The shared checks, worded as client answers have always been.
CHECKS: Final = SpecChecks(
    ClientSpecError,
    noun="client",
    name_rule=f"use at most {MAX_NAME} characters and no control characters",
    scope_rule=f", at most {MAX_SCOPE_TOKEN} characters",
    text_rule="strings must not contain NUL characters",
)


def _absolute_uri(field_name: str, uri: str) -> tuple[str, str, str]:
    """Split ``uri``; raise ClientSpecError unless it is an absolute URI without a fragment."""
    if len(uri) > _MAX_URI or not no_controls(uri) or " " in uri:
        raise ClientSpecError(
            field_name,
            f"{uri[:60]!r} must be a URI of at most {_MAX_URI} characters without spaces",
        )
    scheme, _, rest = uri.partition(":")
    if not _URI_SCHEME.fullmatch(scheme) or not rest:
        raise ClientSpecError(
            field_name, f"{uri[:60]!r} is not an absolute URI (e.g. https://api.example.com)"
        )
    if "#" in uri:
        raise ClientSpecError(field_name, f"{uri[:60]!r} must not contain a fragment ('#...')")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        raise ClientSpecError(field_name, f"{uri[:60]!r} is not a valid URI") from None
    if rest.startswith("//") and not host:
        raise ClientSpecError(field_name, f"{uri[:60]!r} has no host")
    return scheme.lower(), host.lower(), rest


def _check_audiences(values: object) -> tuple[str, ...]:
    audiences = CHECKS.string_list("audiences", values)
    for audience in audiences:
        _absolute_uri("audiences", audience)
    return audiences


def _check_redirect_query(uri: str) -> None:
    """RFC 6749 §3.1.2: no fragment; and no parameter the authorization response adds
    (RFC 9207's ``iss`` among them), which a response could not add without a clash."""
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientSpecError("redirect_uris", f"{uri[:60]!r} must not have a fragment")
    names = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    clash = sorted(names & RESPONSE_PARAMETERS)
    if clash:
        raise ClientSpecError(
            "redirect_uris",
            f"{uri[:60]!r}: its query must not hold {', '.join(clash)} "
            "(the authorization response adds them)",
        )


def _check_redirect_uris(values: object) -> tuple[str, ...]:
    uris = CHECKS.string_list("redirect_uris", values)
    for uri in uris:
        scheme, host, _ = _absolute_uri("redirect_uris", uri)
        _check_redirect_query(uri)
        if scheme == "https" and host:
            continue
        if scheme == "http" and host in _LOOPBACK_HOSTS:
            continue  # RFC 8252 §7.3: native apps on a loopback port
        raise ClientSpecError(
            "redirect_uris",
            f"{uri[:60]!r} must use https (http only for a loopback host: "
            "127.0.0.1, [::1], localhost)",
        )
    return uris


def _check_post_logout_redirect_uris(values: object) -> tuple[str, ...]:
    """RP-Initiated Logout 1.0 §3.1 ``post_logout_redirect_uris``: absolute, no fragment,
    https (http only for a loopback host), as redirect URIs are; matched exactly."""
    name = "post_logout_redirect_uris"
    uris = CHECKS.string_list(name, values)
    for uri in uris:
        scheme, host, _ = _absolute_uri(name, uri)
        if (scheme == "https" and host) or (scheme == "http" and host in _LOOPBACK_HOSTS):
            continue
        raise ClientSpecError(
            name,
            f"{uri[:60]!r} must use https (http only for a loopback host: "
            "127.0.0.1, [::1], localhost)",
        )
    return uris


def _check_backchannel_logout_uri(value: object) -> str | None:
    """Back-Channel Logout 1.0 §2.2 ``backchannel_logout_uri``: absolute, no fragment,
    https (http only for a loopback host: refused at delivery in production)."""
    name = "backchannel_logout_uri"
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ClientSpecError(name, "must be a URI (or null for none)")
    scheme, host, _ = _absolute_uri(name, value)
    if (scheme == "https" and host) or (scheme == "http" and host in _LOOPBACK_HOSTS):
        return value
    raise ClientSpecError(
        name,
        f"{value[:60]!r} must use https (http only for a loopback host: "
        "127.0.0.1, [::1], localhost)",
    )


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ClientSpecError(name, "must be true or false")
    return value


def _check_jwks(jwks: object) -> dict[str, Any] | None:
    if jwks is None:
        return None
    if not isinstance(jwks, Mapping):
        raise ClientSpecError("jwks", 'must be a JWK Set: {"keys": [...]}')
    try:
        key_set = PublicKeySet.from_jwks(jwks)
    except InvalidKeyError as error:
        raise ClientSpecError("jwks", error.detail) from None
    if not len(key_set):
        raise ClientSpecError("jwks", "holds no key: register at least one public key")
    # Store the document as given (validated): clients may rely on members we ignore.
    document = dict(jwks)
    CHECKS.json_value("jwks", document)
    if len(orjson.dumps(document)) > 4 * MAX_METADATA_BYTES:
        raise ClientSpecError("jwks", "the JWK Set is too large")
    return document


def _check_ttl(ttl: object, maximum: float) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise ClientSpecError("access_token_ttl", "must be a whole number of seconds")
    if not _MIN_TTL <= ttl <= maximum:
        raise ClientSpecError(
            "access_token_ttl",
            f"{ttl} s is outside {_MIN_TTL}..{maximum:g} s "
            "(the maximum is tokens.max_access_token_ttl)",
        )
    return ttl


def _check_id_token_alg(value: object, offered: Sequence[str], held: str | None) -> str | None:
    """OIDC Registration §2 ``id_token_signed_response_alg``: one bastion signs with.

    ``held`` is the client's stored value: kept as it is even when the settings no
    longer offer it (the token endpoint then says so), never newly chosen.
    """
    if value is None:
        return None
    if held is not None and value == held:
        return held
    if not isinstance(value, str) or value not in offered:
        shown = value[:20] if isinstance(value, str) else value
        raise ClientSpecError(
            "id_token_signed_response_alg",
            f"{shown!r} is not offered; use one of {', '.join(offered)} "
            "(signing_keys.id_token_algorithms)",
        )
    return value


def validated(
    values: Mapping[str, Any],
    max_ttl: float,
    held: Collection[str] = (),
    *,
    id_token_algs: Sequence[str] = (),
    held_id_token_alg: str | None = None,
) -> dict[str, Any]:
    """Check a complete set of client members; return them normalised.

    ``held`` are the grant types the client already has: one of them that this
    version cannot serve (:data:`UNAVAILABLE_GRANT_TYPES`) is kept, never added.
    ``id_token_algs`` are the ID-token algorithms bastion offers
    (``signing_keys.id_token_algorithms``); ``held_id_token_alg`` the client's stored one,
    kept as for ``held``.

    Raises:
        ClientSpecError: a member is invalid or the members contradict each other.
    """
    client_type = values["client_type"]
    if client_type not in get_args(ClientType):
        raise ClientSpecError("client_type", "must be 'confidential' or 'public'")
    method = values["token_endpoint_auth_method"]
    if method not in AUTH_METHODS:
        raise ClientSpecError(
            "token_endpoint_auth_method", f"must be one of {', '.join(AUTH_METHODS)}"
        )
    if client_type == "public" and method != "none":
        raise ClientSpecError(
            "token_endpoint_auth_method",
            "a public client cannot keep a credential: use 'none' (or make it confidential)",
        )
    if client_type == "confidential" and method == "none":
        raise ClientSpecError(
            "token_endpoint_auth_method",
            "a confidential client must authenticate: use client_secret_basic, "
            "client_secret_post or private_key_jwt (or make it public)",
        )
    grant_types = CHECKS.string_list("grant_types", values["grant_types"])
    available = ", ".join(AVAILABLE_GRANT_TYPES)
    if not grant_types:
        raise ClientSpecError("grant_types", f"allow at least one of {available}")
    for grant in grant_types:
        if grant not in GRANT_TYPES:
            raise ClientSpecError(
                "grant_types", f"{grant[:60]!r} is not supported; use one of {available}"
            )
        if grant in UNAVAILABLE_GRANT_TYPES and grant not in held:
            raise ClientSpecError(
                "grant_types",
                f"{grant} is not available in this version ({UNAVAILABLE_GRANT_TYPES[grant]}); "
                f"use one of {available}",
            )
    for grant, required in REQUIRED_WITH.items():
        # A grant the client already holds is kept, as for an unavailable one.
        if grant in grant_types and required not in grant_types and grant not in held:
            raise ClientSpecError(
                "grant_types",
                f"{grant} needs {required}: refresh tokens are issued only by the "
                f"{required} grant; allow both",
            )
    if client_type == "public" and "client_credentials" in grant_types:
        raise ClientSpecError(
            "grant_types",
            "a public client cannot use client_credentials (it has no credential): "
            "make the client confidential",
        )
    redirect_uris = _check_redirect_uris(values["redirect_uris"])
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientSpecError(
            "redirect_uris", "the authorization_code grant needs at least one redirect URI"
        )
    jwks = _check_jwks(values["jwks"])
    if method == "private_key_jwt" and jwks is None:
        raise ClientSpecError(
            "jwks", "private_key_jwt needs the client's public keys: register a JWK Set"
        )
    return {
        "name": CHECKS.name(values["name"]),
        "client_type": client_type,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "scopes": CHECKS.scopes(values["scopes"]),
        "audiences": _check_audiences(values["audiences"]),
        "access_token_ttl": _check_ttl(values["access_token_ttl"], max_ttl),
        "redirect_uris": redirect_uris,
        "jwks": jwks,
        "metadata": CHECKS.metadata(values["metadata"]),
        "id_token_signed_response_alg": _check_id_token_alg(
            values.get("id_token_signed_response_alg"), id_token_algs, held_id_token_alg
        ),
        "post_logout_redirect_uris": _check_post_logout_redirect_uris(
            values.get("post_logout_redirect_uris", ())
        ),
        "backchannel_logout_uri": _check_backchannel_logout_uri(
            values.get("backchannel_logout_uri")
        ),
        "backchannel_logout_session_required": _check_flag(
            "backchannel_logout_session_required",
            values.get("backchannel_logout_session_required", False),
        ),
    }


def spec_values(spec: ClientSpec) -> dict[str, Any]:
    public = spec.client_type == "public"
    method = spec.token_endpoint_auth_method
    if method is None:
        method = "none" if public else "client_secret_basic"
    grant_types = spec.grant_types
    if grant_types is None:
        grant_types = ("authorization_code", "refresh_token") if public else ("client_credentials",)
    return {
        "name": spec.name,
        "client_type": spec.client_type,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "scopes": spec.scopes,
        "audiences": spec.audiences,
        "access_token_ttl": spec.access_token_ttl,
        "redirect_uris": spec.redirect_uris,
        "jwks": spec.jwks,
        "metadata": spec.metadata,
        "id_token_signed_response_alg": spec.id_token_signed_response_alg,
        "post_logout_redirect_uris": spec.post_logout_redirect_uris,
        "backchannel_logout_uri": spec.backchannel_logout_uri,
        "backchannel_logout_session_required": spec.backchannel_logout_session_required,
    }
