"""The ``auth`` section of a native route: how it authenticates and authorizes.

What the native core serves (``native/src/authn``, ``native/src/authz.rs``):

- ``public: true`` routes (anonymous);
- the ``api_key`` method (``Authorization: Bearer bst_…`` and the route's
  ``api_key_header``) and the ``jwt`` method for bastion's *own* tokens
  (``jwt.issuers == [self]``), from the native caches Python fills;
- the ``mtls`` method: the identity of the connection's verified client
  certificate, from the native cache Python fills by thumbprint;
- per-method ``scopes`` (as :func:`~bastion.gateway.authz.compile_scopes`
  compiles them), ``claims``, ``roles`` / ``roles_claim`` and a credential's
  route allow-list.

Anything else leaves the route to Python (:class:`Unsupported`): the
``introspection`` and ``session`` methods and trusted external issuers.
(Route ``ip`` rules are the ``edge`` section's.)

The section::

    {"public": false, "methods": ["api_key", "jwt"], "api_key_header": "x-api-key",
     "scopes": {"by_method": {"GET": ["orders:read"]}, "default": null},
     "claims": {}, "roles": [], "roles_claim": "roles",
     "jwt": {"audience": "https://auth.example.com"}}

``jwt.audience`` is the route's ``jwt.audience``, or bastion's default API
audience (the issuer URL) as the runtime gives the Python authenticator.
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.authn.jwt import SELF, route_policy
from bastion.gateway.authz import compile_scopes
from bastion.gateway.compile.common import Unsupported

__all__ = ["NATIVE_METHODS", "section"]

#: The authentication methods the native core serves.
NATIVE_METHODS = ("api_key", "jwt", "mtls")


def section(route: Any, settings: Any) -> dict[str, Any] | list[Any] | Unsupported:
    """The JSON section for ``route``, or why the native core cannot serve it."""
    if route.public:
        return {"public": True, "methods": []}
    methods = list(route.auth)
    for method in methods:
        if method not in NATIVE_METHODS:
            return Unsupported(f"auth: the {method} method is not native yet")
    required = compile_scopes(route.scopes)
    out: dict[str, Any] = {
        "public": False,
        "methods": methods,
        "api_key_header": route.api_key_header.lower() if route.api_key_header else None,
        "scopes": {
            "by_method": {m: sorted(s) for m, s in sorted(required.by_method.items())},
            "default": None if required.default is None else sorted(required.default),
        },
        "claims": dict(route.claims),
        "roles": list(route.roles),
        "roles_claim": route.roles_claim or "roles",
    }
    if "jwt" in methods:
        issuers, audience = route_policy(route)
        if issuers != frozenset({SELF}):
            return Unsupported("auth: trusted external issuers are not native yet")
        out["jwt"] = {"audience": audience if audience is not None else settings.issuer_url}
    return out
