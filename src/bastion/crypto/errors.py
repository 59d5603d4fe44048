"""Errors of the crypto package: master keys, sealed secrets and TLS material.

Messages are one line, say what to do next, and never contain key material
or plaintext: they end up in logs and on terminals.
"""

from __future__ import annotations

from bastion.errors import BastionError


class CryptoError(BastionError):
    """Root of every crypto error."""

    code = "crypto_error"
    status = 500
    title = "Cryptography error"


class MasterKeyError(CryptoError):
    """A master key (or the file / variable holding the keyring) is missing or unusable."""

    code = "master_key_invalid"
    title = "Master key invalid"


class DecryptionError(CryptoError):
    """A sealed value cannot be opened: tampered, moved to another record, or its key is absent."""

    code = "decryption_failed"
    title = "Decryption failed"


class TLSConfigError(CryptoError):
    """A TLS certificate or key is unreadable, mismatched, expired or otherwise unusable."""

    code = "tls_config_invalid"
    title = "TLS configuration invalid"


class InvalidMacError(CryptoError):
    """A record's authentication tag is missing, malformed, under an unloaded key, or wrong.

    ``reason``: ``missing``, ``malformed``, ``unknown_key`` or ``mismatch``.
    """

    code = "invalid_mac"
    title = "Authentication tag invalid"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class PasswordMismatchError(CryptoError):
    """A password does not match its stored hash (or the hash is not an argon2 hash)."""

    code = "password_mismatch"
    status = 401
    title = "Password mismatch"
