"""The tokens that open the admin API: their audience and scopes.

An admin API request carries a bastion access token for the audience
``{issuer}/admin/api`` with the scope ``bastion:admin`` (everything) or
``bastion:admin:read`` (GET only). The rule has its home here, in the
authorization server's services, because two places apply it: the admin API
checks it (``http/endpoints/admin/auth.py``), and the runtime's RFC 8693
exchange policy refuses the audience, so an API key never becomes an admin
credential (``runtime.py``, :class:`bastion.oauth.exchange.ApiKeyExchangePolicy`).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ADMIN_AUDIENCE_PATH", "ADMIN_READ_SCOPE", "ADMIN_SCOPE", "admin_audience"]

#: Appended to the issuer URL: the ``aud`` an admin API token must carry.
ADMIN_AUDIENCE_PATH: Final = "/admin/api"
#: Full access to the admin API.
ADMIN_SCOPE: Final = "bastion:admin"
#: Read-only access (GET requests).
ADMIN_READ_SCOPE: Final = "bastion:admin:read"


def admin_audience(issuer_url: str) -> str:
    """The audience of admin API tokens for bastion at ``issuer_url``."""
    return issuer_url.rstrip("/") + ADMIN_AUDIENCE_PATH
