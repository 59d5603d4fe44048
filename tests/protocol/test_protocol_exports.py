"""Pins the public names of the protocol modules and keeps frameworks and crypto out."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bastion.protocol
import bastion.protocol.rfc6749 as rfc6749
from bastion.protocol import rfc7009, rfc7636, rfc7662, rfc8414, rfc8707, rfc9068, rfc9207
from bastion.protocol.oidc import core, discovery
from bastion.protocol.rfc6749 import (
    authorization,
    client_auth,
    errors,
    requests,
    scope,
    token_endpoint,
)
from bastion.protocol.rfc6749.grants import client_credentials, refresh_token


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
    assert " ".join(sorted(refresh_token.__all__)) == (
        "GRANT_TYPE RefreshRequest RefreshTokenGrant RefreshTokens Rotation handle requested_scope"
    )
    assert rfc7662.__all__ == [
        "INACTIVE",
        "INTROSPECTED_CLAIMS",
        "INTROSPECT_SCOPE",
        "VerifyToken",
        "introspect",
        "required_token",
        "token_claims",
        "verified_claims",
    ]
    assert rfc7009.__all__ == ["RevokeJti", "RevokeRefresh", "revoke"]
    assert rfc8414.__all__ == ["ENDPOINT_NAMES", "authorization_server_metadata"]
    assert rfc8707.__all__ == ["MAX_RESOURCE_LENGTH", "check_resource", "requested_resource"]
    assert rfc9068.__all__ == ["ACCESS_TOKEN_TYP", "REGISTERED_CLAIMS", "access_token_claims"]
    for module in (
        client_auth,
        errors,
        requests,
        scope,
        token_endpoint,
        client_credentials,
        refresh_token,
        authorization,
        core,
        discovery,
        rfc7636,
        rfc9207,
    ):
        for name in module.__all__:
            assert getattr(module, name) is not None


#: The public names of the authorization code flow's modules, space-separated and sorted.
CODE_FLOW_NAMES = {
    authorization: "AccessDeniedError AuthorizationClient AuthorizationPageError "
    "AuthorizationParameters AuthorizationRedirectError AuthorizationRequest FindClient "
    "GRANT_TYPE MAX_STATE_LENGTH PROMPT_VALUES RESPONSE_MODES RESPONSE_TYPES "
    "UnsupportedResponseTypeError authorization_endpoint_metadata authorization_request "
    "match_redirect_uri validate_authorization_request",
    rfc7636: "CODE_CHALLENGE_METHODS S256 check_code_challenge check_code_verifier "
    "s256_challenge verify_code_verifier",
    rfc9207: "ISS_PARAMETER_SUPPORTED IssuerMismatchError RESPONSE_PARAMETERS check_issuer "
    "error_redirect response_parameters success_redirect",
    core: "ConsentRequiredError ID_TOKEN_CLAIMS Interaction InteractionRequiredError "
    "LoginRequiredError ParameterNotSupportedError UNSUPPORTED_PARAMETERS id_token_claims "
    "refuse_interaction required_interaction token_hash",
    discovery: "REQUIRED_ENDPOINTS SUBJECT_TYPES openid_configuration",
}


def test_authorization_code_flow_module_names() -> None:
    for module, names in CODE_FLOW_NAMES.items():
        assert " ".join(sorted(module.__all__)) == names, module.__name__


def test_authorization_code_flow_modules_import_nothing_above_protocol() -> None:
    """The code-flow modules load, even indirectly, no settings, storage or feature."""
    script = (
        "import sys\n"
        "import bastion.protocol.rfc6749.authorization, bastion.protocol.rfc7636\n"
        "import bastion.protocol.rfc9207, bastion.protocol.oidc.core\n"
        "import bastion.protocol.oidc.discovery\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('bastion.')}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    # files: crypto's durable writes (bastion/files.py, a foundation like errors.py)
    assert result.stdout.strip() == "['crypto', 'errors', 'files', 'protocol']"


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
