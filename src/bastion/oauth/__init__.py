"""bastion.oauth: the authorization server's services, free of HTTP.

Signing keys (generation, rotation with overlap, the JWKS) live in
:mod:`bastion.oauth.signing_keys`.
"""

from bastion.oauth.signing_keys import (
    NoActiveSigningKeyError,
    SigningKeyError,
    SigningKeyInUseError,
    SigningKeyManager,
)

__all__ = [
    "NoActiveSigningKeyError",
    "SigningKeyError",
    "SigningKeyInUseError",
    "SigningKeyManager",
]

# OAuth clients (registry, secrets, authentication): bastion.oauth.clients
from bastion.oauth.clients import ClientService, ClientSpec, ClientSpecError

__all__ += ["ClientService", "ClientSpec", "ClientSpecError"]
