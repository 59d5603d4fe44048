"""bastion.crypto: the only package that imports cryptography, joserfc and argon2.

Public surface: secrets at rest (envelope encryption under a master keyring),
TLS material (development certificate, certificate checks, server contexts),
signing keys and key sets, JWT signing and strict verification, and small
digest / token helpers, and the API key format (generation, offline checksum,
stored digest).
"""

from bastion.crypto.apikeys import (
    API_KEY_PREFIX,
    API_KEY_REGEX,
    ApiKeyFormatError,
    ParsedApiKey,
    api_key_digest,
    generate_api_key,
    parse_api_key,
)
from bastion.crypto.client_certs import ClientCertificate, request_client_certificates, x5t_s256
from bastion.crypto.digests import constant_time_equals, random_token, sha256_hex
from bastion.crypto.envelope import (
    Keyring,
    MasterKey,
    create_keyring_file,
    load_keyring_file,
    parse_keyring_text,
    write_keyring_file,
)
from bastion.crypto.errors import (
    CryptoError,
    DecryptionError,
    InvalidMacError,
    MasterKeyError,
    TLSConfigError,
)
from bastion.crypto.jwt import InvalidTokenError, JWTVerifier, VerifiedJWT, sign_jwt
from bastion.crypto.keys import (
    InvalidKeyError,
    PublicKey,
    PublicKeySet,
    SigningAlgorithm,
    SigningKeyPair,
    UnusableKeyError,
    jwk_thumbprint,
)
from bastion.crypto.macs import RecordAuthenticator, derive_key
from bastion.crypto.tls import (
    CertificateInfo,
    ensure_dev_certificate,
    load_server_certificate,
    server_ssl_context,
)

__all__ = [
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
