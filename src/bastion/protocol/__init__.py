"""bastion.protocol: framework-free, async OAuth 2.0 / OpenID Connect, one module per spec.

Nothing here imports an HTTP framework or a crypto library: endpoints in
``bastion.http`` turn HTTP into :class:`~bastion.protocol.rfc6749.requests.OAuthRequest`
and render the results; signing and verification come from ``bastion.crypto``.

- :mod:`.rfc6749` — OAuth 2.0 core: errors, requests, scope, client authentication, grants,
  the authorization request (:mod:`.rfc6749.authorization`)
- :mod:`.rfc6750` — Bearer token usage (the header only) at bastion's own resources
- :mod:`.rfc7009` — token revocation
- :mod:`.rfc7636` — PKCE (S256 only)
- :mod:`.rfc7662` — token introspection
- :mod:`.rfc8414` — authorization server metadata
- :mod:`.rfc8707` — resource indicators
- :mod:`.rfc9068` — JWT access token claims
- :mod:`.rfc9207` — the authorization response, with ``iss``
- :mod:`.oidc` — OpenID Connect Core (ID token, prompt, max_age, userinfo claims) and Discovery
"""
