"""OpenID Connect Discovery 1.0 §3 (https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata).

The ``/.well-known/openid-configuration`` document, built from what the server
actually supports (the caller passes it in) and nothing more. It is the RFC 8414
document (:func:`bastion.protocol.rfc8414.authorization_server_metadata`, whose members
it shares) plus the authorization endpoint's members
(:func:`bastion.protocol.rfc6749.authorization.authorization_endpoint_metadata`:
``response_types_supported: ["code"]``, ``response_modes_supported: ["query"]``,
``code_challenge_methods_supported: ["S256"]``,
``authorization_response_iss_parameter_supported: true``) and the OpenID members:
``subject_types_supported: ["public"]``, ``id_token_signing_alg_values_supported``,
``claims_supported``, ``prompt_values_supported`` and, when given,
``acr_values_supported``.

Members whose Discovery default would claim more than bastion does are written out:
``request_uri_parameter_supported`` defaults to ``true`` (§3), so it is ``false``
here; ``request_parameter_supported`` and ``claims_parameter_supported`` default to
``false`` and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bastion.protocol.rfc6749.authorization import (
    GRANT_TYPE,
    PROMPT_VALUES,
    RESPONSE_TYPES,
    authorization_endpoint_metadata,
)
from bastion.protocol.rfc8414 import authorization_server_metadata

__all__ = ["REQUIRED_ENDPOINTS", "SUBJECT_TYPES", "openid_configuration"]

#: Endpoints an OpenID provider of the code flow must name (§3).
REQUIRED_ENDPOINTS: Final = ("authorization_endpoint", "token_endpoint", "jwks_uri")
#: bastion gives every client the same ``sub`` for a user (OIDC Core §8).
SUBJECT_TYPES: Final = ("public",)


def _check(
    endpoints: Mapping[str, str],
    grant_types: Sequence[str],
    id_token_signing_algs: Sequence[str],
    scopes_supported: Sequence[str],
) -> None:
    missing = [name for name in REQUIRED_ENDPOINTS if name not in endpoints]
    if missing:
        raise ValueError(f"an OpenID provider needs the endpoints {missing}")
    if GRANT_TYPE not in grant_types:
        raise ValueError("an OpenID provider of the code flow supports authorization_code")
    if not id_token_signing_algs:
        raise ValueError("id_token_signing_alg_values_supported needs at least one algorithm")
    if any(alg.lower() == "none" for alg in id_token_signing_algs):
        raise ValueError("ID tokens are never unsigned")
    if "openid" not in scopes_supported:
        raise ValueError("scopes_supported must include openid (section 3)")


def openid_configuration(
    issuer: str,
    *,
    endpoints: Mapping[str, str],
    grant_types: Sequence[str],
    auth_methods: Sequence[str],
    client_assertion_algs: Sequence[str],
    id_token_signing_algs: Sequence[str],
    scopes_supported: Sequence[str],
    claims_supported: Sequence[str],
    acr_values_supported: Sequence[str] = (),
    service_documentation: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenID provider metadata of ``issuer`` (Discovery §3).

    ``endpoints``, ``grant_types``, ``auth_methods`` and ``client_assertion_algs`` are
    as for :func:`~bastion.protocol.rfc8414.authorization_server_metadata`;
    ``id_token_signing_algs`` are the algorithms of the ID tokens the server signs.
    ``extra`` adds members of other OpenID specifications (Back-Channel Logout's).
    ``grant_types`` should be the token endpoint's own table's
    (:class:`~bastion.protocol.rfc6749.token_endpoint.TokenEndpoint` refuses the
    implicit and password grants), so the document cannot list a grant it does not run.

    Raises:
        ValueError: an endpoint of :data:`REQUIRED_ENDPOINTS` missing; no
            ``authorization_code`` grant; no ID token algorithm, or ``none`` among
            them; no ``openid`` scope; and as ``authorization_server_metadata``.

    §3 says RS256 "MUST be included"; the list is what the server's keys can sign
    (truthful first), so RS256 is there when bastion holds an RS256 key.
    """
    _check(endpoints, grant_types, id_token_signing_algs, scopes_supported)
    openid: dict[str, Any] = {
        **authorization_endpoint_metadata(),
        "subject_types_supported": list(SUBJECT_TYPES),
        "id_token_signing_alg_values_supported": list(id_token_signing_algs),
        "claims_supported": list(claims_supported),
        "prompt_values_supported": list(PROMPT_VALUES),
        "request_uri_parameter_supported": False,
    }
    if acr_values_supported:
        openid["acr_values_supported"] = list(acr_values_supported)
    openid.update(extra or {})
    return authorization_server_metadata(
        issuer,
        endpoints=endpoints,
        grant_types=grant_types,
        auth_methods=auth_methods,
        signing_algs=client_assertion_algs,
        scopes_supported=scopes_supported,
        response_types=RESPONSE_TYPES,
        service_documentation=service_documentation,
        extra=openid,
    )
