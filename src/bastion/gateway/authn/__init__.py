"""The gateway's authentication methods (the ``authenticate`` step's authenticators)."""

from bastion.gateway.authn.api_key import (
    ApiKeyAuthenticator,
    ApiKeyVerifier,
    identity_of,
    key_in_query,
)
from bastion.gateway.authn.identity import ANONYMOUS, Identity
from bastion.gateway.forwarded import client_ip

__all__ = [
    "ANONYMOUS",
    "ApiKeyAuthenticator",
    "ApiKeyVerifier",
    "Identity",
    "client_ip",
    "identity_of",
    "key_in_query",
]
