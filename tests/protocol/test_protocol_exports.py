"""Pins the public names of the protocol modules and keeps frameworks and crypto out."""

from __future__ import annotations

import ast
from pathlib import Path

import bastion.protocol
import bastion.protocol.rfc6749 as rfc6749
from bastion.protocol import rfc7009, rfc7662, rfc8414, rfc8707, rfc9068
from bastion.protocol.rfc6749 import client_auth, errors, requests, scope, token_endpoint
from bastion.protocol.rfc6749.grants import client_credentials


def test_rfc6749_package_names() -> None:
    assert sorted(rfc6749.__all__) == [
        "InvalidClientError",
        "InvalidGrantError",
        "InvalidRequestError",
        "InvalidScopeError",
        "InvalidTargetError",
        "OAuthError",
        "OAuthRequest",
        "UnauthorizedClientError",
        "UnsupportedGrantTypeError",
        "parse_form",
    ]


def test_module_names() -> None:
    assert set(client_auth.__all__) == {
        "ALL_AUTH_METHODS",
        "CLIENT_ASSERTION_TYPE_JWT_BEARER",
        "MAX_ASSERTION_LIFETIME",
        "AuthenticatedClient",
        "ClientAuthMethod",
        "ClientLookup",
        "authenticate_client",
        "claimed_client_id",
        "sends_client_credentials",
    }
    assert sorted(token_endpoint.__all__) == [
        "Authenticate",
        "REFUSED_GRANT_TYPES",
        "TOKEN_RESPONSE_HEADERS",
        "TokenEndpoint",
        "token_response",
    ]
    assert sorted(client_credentials.__all__) == [
        "ClientCredentialsGrant",
        "GRANT_TYPE",
        "TokenLifetimes",
        "handle",
        "token_ttl",
    ]
    assert rfc7662.__all__ == [
        "INACTIVE",
        "INTROSPECTED_CLAIMS",
        "INTROSPECT_SCOPE",
        "VerifyToken",
        "introspect",
        "token_claims",
    ]
    assert rfc7009.__all__ == ["RevokeJti", "revoke"]
    assert rfc8414.__all__ == ["ENDPOINT_NAMES", "authorization_server_metadata"]
    assert rfc8707.__all__ == ["MAX_RESOURCE_LENGTH", "check_resource", "requested_resource"]
    assert rfc9068.__all__ == ["ACCESS_TOKEN_TYP", "REGISTERED_CLAIMS", "access_token_claims"]
    for module in (client_auth, errors, requests, scope, token_endpoint, client_credentials):
        for name in module.__all__:
            assert getattr(module, name) is not None


FORBIDDEN = ("starlette", "cryptography", "joserfc", "argon2", "httpx", "fastapi", "jwt")


def test_no_framework_or_crypto_imports() -> None:
    root = Path(bastion.protocol.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"
