"""OAuth 2.0 Authorization Server Metadata — RFC 8414 §2 (https://www.rfc-editor.org/rfc/rfc8414#section-2).

The document served at ``/.well-known/oauth-authorization-server``. Endpoints
may be given as absolute URLs or as paths, which are appended to the issuer.

``response_types_supported`` is REQUIRED by §2 but lists what the
authorization endpoint supports; until the authorization code flow lands
there is no authorization endpoint, so the honest value is ``[]``. Once it is
served, the caller passes ``response_types=RESPONSE_TYPES`` and
``extra=authorization_endpoint_metadata()`` from
:mod:`bastion.protocol.rfc6749.authorization`, the members OpenID Connect
Discovery (:mod:`bastion.protocol.oidc.discovery`) carries too.
``token_endpoint_auth_signing_alg_values_supported``
is included whenever ``private_key_jwt`` is offered (§2: REQUIRED then) and
never contains ``none``. Introspection never offers the ``none`` method
(RFC 7662 §2.1 requires the caller to be authorized).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["ENDPOINT_NAMES", "authorization_server_metadata"]

#: The endpoint members this function knows, in document order.
ENDPOINT_NAMES: Final = (
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "introspection_endpoint",
    "revocation_endpoint",
    "registration_endpoint",
    "userinfo_endpoint",
    "end_session_endpoint",
)

_ASSERTION_METHODS: Final = frozenset({"private_key_jwt", "client_secret_jwt"})


def _absolute(issuer: str, endpoint: str) -> str:
    return issuer + endpoint if endpoint.startswith("/") else endpoint


def authorization_server_metadata(
    issuer: str,
    *,
    endpoints: Mapping[str, str],
    grant_types: Sequence[str],
    auth_methods: Sequence[str],
    signing_algs: Sequence[str],
    scopes_supported: Sequence[str] | None = None,
    response_types: Sequence[str] = (),
    service_documentation: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The RFC 8414 metadata document of the authorization server ``issuer``.

    ``endpoints`` maps member names (:data:`ENDPOINT_NAMES`) to URLs or
    issuer-relative paths; ``auth_methods`` are the client authentication
    methods of the token endpoint (revocation accepts the same, introspection
    the same minus ``none``); ``signing_algs`` the JWS algorithms accepted for
    client assertions; ``extra`` adds later members (e.g.
    ``code_challenge_methods_supported``).

    Raises:
        ValueError: the issuer is not an https/http URL without query and
            fragment, or ends with ``/``; an unknown endpoint name; ``none`` among
            ``signing_algs``; or ``extra`` replacing a member set here.
    """
    parts = urlsplit(issuer)
    if parts.scheme not in {"https", "http"} or not parts.netloc:
        raise ValueError(f"issuer {issuer!r} must be an https URL")
    if parts.query or parts.fragment or "#" in issuer or issuer.endswith("/"):
        raise ValueError(f"issuer {issuer!r} must have no query, fragment or trailing slash")
    unknown = sorted(set(endpoints) - set(ENDPOINT_NAMES))
    if unknown:
        raise ValueError(f"unknown endpoint members {unknown}")
    if any(alg.lower() == "none" for alg in signing_algs):
        raise ValueError("'none' is never a supported signing algorithm (RFC 8414 section 2)")

    document: dict[str, Any] = {"issuer": issuer}
    for name in ENDPOINT_NAMES:
        if name in endpoints:
            document[name] = _absolute(issuer, endpoints[name])
    if scopes_supported is not None:
        document["scopes_supported"] = list(scopes_supported)
    document["response_types_supported"] = list(response_types)
    document["grant_types_supported"] = list(grant_types)
    document["token_endpoint_auth_methods_supported"] = list(auth_methods)
    if _ASSERTION_METHODS.intersection(auth_methods):
        document["token_endpoint_auth_signing_alg_values_supported"] = list(signing_algs)
    _endpoint_auth(document, "revocation", endpoints, auth_methods, signing_algs)
    _endpoint_auth(
        document,
        "introspection",
        endpoints,
        [method for method in auth_methods if method != "none"],
        signing_algs,
    )
    if service_documentation is not None:
        document["service_documentation"] = service_documentation
    if extra:
        clash = sorted(set(extra) & set(document))
        if clash:
            raise ValueError(f"extra members may not replace {clash}")
        document.update(extra)
    return document


def _endpoint_auth(
    document: dict[str, Any],
    name: str,
    endpoints: Collection[str],
    methods: Sequence[str],
    signing_algs: Sequence[str],
) -> None:
    if f"{name}_endpoint" not in endpoints:
        return
    document[f"{name}_endpoint_auth_methods_supported"] = list(methods)
    if _ASSERTION_METHODS.intersection(methods):
        document[f"{name}_endpoint_auth_signing_alg_values_supported"] = list(signing_algs)
