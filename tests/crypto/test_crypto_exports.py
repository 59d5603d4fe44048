"""The public surface of bastion.crypto is pinned here; changing it is a decision."""

from __future__ import annotations

import bastion.crypto
from bastion.crypto import (
    CryptoError,
    DecryptionError,
    InvalidKeyError,
    InvalidTokenError,
    MasterKeyError,
    TLSConfigError,
)
from bastion.errors import BastionError


def test_exported_members() -> None:
    assert sorted(bastion.crypto.__all__) == [
        "API_KEY_PREFIX",
        "API_KEY_REGEX",
        "ApiKeyFormatError",
        "CertificateInfo",
        "ClientCertificate",
        "CryptoError",
        "DecryptionError",
        "InvalidKeyError",
        "InvalidMacError",
        "InvalidTokenError",
        "JWTVerifier",
        "Keyring",
        "MasterKey",
        "MasterKeyError",
        "ParsedApiKey",
        "PublicKey",
        "PublicKeySet",
        "RecordAuthenticator",
        "SigningAlgorithm",
        "SigningKeyPair",
        "TLSConfigError",
        "UnusableKeyError",
        "VerifiedJWT",
        "api_key_digest",
        "constant_time_equals",
        "create_keyring_file",
        "derive_key",
        "ensure_dev_certificate",
        "generate_api_key",
        "jwk_thumbprint",
        "load_keyring_file",
        "load_server_certificate",
        "parse_api_key",
        "parse_keyring_text",
        "random_token",
        "request_client_certificates",
        "server_ssl_context",
        "sha256_hex",
        "sign_jwt",
        "write_keyring_file",
        "x5t_s256",
    ]
    for name in bastion.crypto.__all__:
        assert hasattr(bastion.crypto, name), name


def test_error_codes() -> None:
    assert issubclass(CryptoError, BastionError)
    assert (CryptoError.code, CryptoError.status) == ("crypto_error", 500)
    assert MasterKeyError.code == "master_key_invalid"
    assert DecryptionError.code == "decryption_failed"
    assert TLSConfigError.code == "tls_config_invalid"
    assert (InvalidTokenError.code, InvalidTokenError.status) == ("invalid_token", 401)
    assert InvalidKeyError.code == "invalid_key"
    assert InvalidTokenError("expired").reason == "expired"
    # Outward the precise reason is collapsed: the problem document says only invalid_token.
    problem = InvalidTokenError("expired", "token has expired").to_problem()
    assert (problem["reason"], problem["status"]) == ("invalid_token", 401)
    for cls in (
        MasterKeyError,
        DecryptionError,
        TLSConfigError,
        InvalidKeyError,
        InvalidTokenError,
    ):
        assert issubclass(cls, CryptoError)
    problem = DecryptionError("sealed value could not be decrypted", key_id="abc").to_problem()
    assert problem["reason"] == "decryption_failed"
    assert problem["key_id"] == "abc"
