"""The JSON descriptions of OAuth clients and signing keys, as the CLI and the admin API show them.

Secrets by display prefix only, never a digest; signing keys by their public
members only, never the sealed private key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bastion.storage.models import Client, ClientSecret, SigningKey

__all__ = ["client_view", "signing_key_view"]


def client_view(client: Client, secrets: tuple[ClientSecret, ...]) -> dict[str, Any]:
    """The JSON members of ``client`` (with secret prefixes only, never digests)."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "client_type": client.client_type,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "grant_types": list(client.grant_types),
        "scopes": list(client.scopes),
        "audiences": list(client.audiences),
        "access_token_ttl": client.access_token_ttl,
        "redirect_uris": list(client.redirect_uris),
        "jwks": client.jwks,
        "metadata": client.metadata,
        # null: a client registered before 0008, signed with the server's default.
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "backchannel_logout_session_required": client.backchannel_logout_session_required,
        "disabled": client.disabled,
        "created_at": client.created_at,
        "updated_at": client.updated_at,
        "secrets": [
            {
                "id": secret.id,
                "prefix": secret.prefix,
                "created_at": secret.created_at,
                "expires_at": secret.expires_at,
            }
            for secret in secrets
        ],
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def signing_key_view(key: SigningKey) -> dict[str, Any]:
    """The public description of a stored signing key (never its sealed private key)."""
    return {
        "kid": key.kid,
        "alg": key.alg,
        "state": key.state,
        "created_at": _when(key.created_at),
        "activates_at": _when(key.activates_at),
        "retires_at": _when(key.retires_at),
        "retired_at": _when(key.retired_at),
    }
