"""The ``auth`` section of a native route: how it authenticates and authorizes.

What the native core serves (``native/src/authn``, ``native/src/authz.rs``):

- ``public: true`` routes (anonymous);
- the ``api_key`` method (``Authorization: Bearer bst_…`` and the route's
  ``api_key_header``) and the ``jwt`` method for bastion's own tokens and
  those of trusted external issuers (``jwt.issuers``), from the native caches
  and the issuers' key sets Python fills;
- the ``mtls`` method: the identity of the connection's verified client
  certificate, from the native cache Python fills by thumbprint;
- the ``introspection`` method: the answers Python's RFC 7662 client cached
  (active: the identity; inactive: its ``401 invalid_token``), pushed by token
  digest; a token with no cached answer is Python's to ask about;
- per-method ``scopes`` (as :func:`~bastion.gateway.authz.compile_scopes`
  compiles them), ``claims``, ``roles`` / ``roles_claim`` and a credential's
  route allow-list.

- the ``session`` method: the ``__Host-bastion_session`` cookie of bastion's own
  login, looked up by its digest in the native session cache Python fills
  (``native/src/authn/session.rs``); no session: a navigation is sent to the
  login, a script's call gets ``401 session_required``.

Every route the settings accept is native here: they refuse a ``jwt.issuers``
entry naming bastion's own issuer URL at load, so meeting one is a
:class:`ValueError`, never a route left to Python. (Route
``ip`` rules are the ``edge`` section's.)

The section::

    {"public": false, "methods": ["api_key", "jwt"], "api_key_header": "x-api-key",
     "scopes": {"by_method": {"GET": ["orders:read"]}, "default": null},
     "claims": [], "roles": [], "roles_claim": "roles",
     "jwt": {"audience": "https://auth.example.com"}}

``jwt.audience`` is the route's ``jwt.audience``, or bastion's default API
audience (the issuer URL) as the runtime gives the Python authenticator.
A route whose ``jwt.issuers`` names trusted external issuers adds
``"self": false`` when bastion's own tokens are not accepted, and one policy
per external issuer — what :class:`~bastion.gateway.authn.external_jwt.TrustedIssuer`
checks (``aud``: the route's ``jwt.audience``, else the issuer's ``audiences``)::

    "jwt": {"audience": "https://auth.example.com", "self": false,
            "issuers": [{"issuer": "https://idp.example.com", "audiences": ["https://api"],
                         "typ": "at+jwt", "algorithms": ["ES256", "RS256"],
                         "leeway": 30.0, "required_claims": ["exp", "sub"]}]}
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.authn.external_jwt import DEFAULT_REQUIRED_CLAIMS
from bastion.gateway.authn.jwt import SELF, route_policy
from bastion.gateway.authz import compile_scopes
from bastion.settings import RouteSettings, Settings
from bastion.settings.routes import RouteJwtSettings

__all__ = ["NATIVE_METHODS", "section"]

#: The authentication methods the native core serves.
NATIVE_METHODS = ("api_key", "jwt", "mtls", "introspection", "session")


def section(route: RouteSettings, settings: Settings) -> dict[str, Any]:
    """The JSON section for ``route``.

    Raises :class:`ValueError` for what the settings refuse at load (a method
    not in :data:`NATIVE_METHODS`, a ``jwt.issuers`` entry that is not a
    distinct trusted issuer).
    """
    if route.public:
        return {"public": True, "methods": []}
    methods = list(route.auth)
    for method in methods:
        if method not in NATIVE_METHODS:
            raise ValueError(f"auth: the {method} method is not available (settings refuse it)")
    required = compile_scopes(route.scopes)
    out: dict[str, Any] = {
        "public": False,
        "methods": methods,
        "api_key_header": route.api_key_header.lower() if route.api_key_header else None,
        "scopes": {
            "by_method": {m: sorted(s) for m, s in sorted(required.by_method.items())},
            "default": None if required.default is None else sorted(required.default),
        },
        # [name, value] pairs in the settings' order: Python names the first failing claim
        # (a JSON object would be read back sorted).
        "claims": [[name, value] for name, value in route.claims.items()],
        "roles": list(route.roles),
        "roles_claim": route.roles_claim,
    }
    if "jwt" in methods:
        issuers, audience = route_policy(route)
        jwt: dict[str, Any] = {
            "audience": audience if audience is not None else settings.issuer_url
        }
        if route.jwt is not None and issuers != frozenset({SELF}):
            external = _issuers(route.jwt, settings, audience)
            if SELF not in issuers:
                jwt["self"] = False
            jwt["issuers"] = external
        out["jwt"] = jwt
    return out


def _issuers(
    route_jwt: RouteJwtSettings, settings: Settings, audience: str | None
) -> list[dict[str, Any]]:
    """The policies of the route's external issuers, in the route's order."""
    trusted = {entry.issuer: entry for entry in settings.trusted_issuers}
    out: list[dict[str, Any]] = []
    for name in route_jwt.issuers:
        if name == SELF:
            continue
        entry = trusted.get(name)
        if entry is None or entry.issuer == settings.issuer_url:
            # The settings refuse both (`_auth_references`): bastion's own iss is `self`.
            raise ValueError(f"auth: the jwt issuer {name} is not a distinct trusted issuer")
        out.append(
            {
                "issuer": entry.issuer,
                "audiences": [audience] if audience is not None else list(entry.audiences),
                "typ": entry.typ,
                "algorithms": list(entry.algorithms),
                "leeway": float(settings.tokens.leeway),
                "required_claims": list(DEFAULT_REQUIRED_CLAIMS),
            }
        )
    return out
