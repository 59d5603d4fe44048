"""OpenID Connect — OpenID Connect Core 1.0 and Discovery 1.0 (https://openid.net/specs/).

Submodules: :mod:`.core` (ID token claims, ``at_hash``/``c_hash``, the ``max_age`` and
``prompt`` rules, the authentication error codes of §3.1.2.6) and :mod:`.discovery`
(the ``/.well-known/openid-configuration`` document) and :mod:`.userinfo` (the claims
of the userinfo endpoint by scope). Import them by name.
"""
