"""bastion.crypto: the only package that imports cryptography, joserfc and argon2.

Public surface: secrets at rest (envelope encryption under a master keyring),
TLS material (development certificate, certificate checks, server contexts),
signing keys and key sets, JWT signing and strict verification, and small
digest / token helpers.
"""

from bastion.crypto.digests import constant_time_equals, random_token, sha256_hex
from bastion.crypto.envelope import (
    Keyring,
    MasterKey,
    create_keyring_file,
    load_keyring_file,
    parse_keyring_text,
    write_keyring_file,
)
from bastion.crypto.errors import CryptoError, DecryptionError, MasterKeyError, TLSConfigError
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
from bastion.crypto.tls import (
    CertificateInfo,
    ensure_dev_certificate,
    load_server_certificate,
    server_ssl_context,
)

__all__ = [
    "CertificateInfo",
    "CryptoError",
    "DecryptionError",
    "InvalidKeyError",
    "InvalidTokenError",
    "JWTVerifier",
    "Keyring",
    "MasterKey",
    "MasterKeyError",
    "PublicKey",
    "PublicKeySet",
    "SigningAlgorithm",
    "SigningKeyPair",
    "TLSConfigError",
    "UnusableKeyError",
    "VerifiedJWT",
    "constant_time_equals",
    "create_keyring_file",
    "ensure_dev_certificate",
    "jwk_thumbprint",
    "load_keyring_file",
    "load_server_certificate",
    "parse_keyring_text",
    "random_token",
    "server_ssl_context",
    "sha256_hex",
    "sign_jwt",
    "write_keyring_file",
]
