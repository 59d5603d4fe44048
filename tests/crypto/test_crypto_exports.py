"""The public surface of bastion.crypto is pinned here; changing it is a decision."""

from __future__ import annotations

import bastion.crypto
from bastion.crypto import CryptoError, DecryptionError, MasterKeyError, TLSConfigError
from bastion.errors import BastionError


def test_exported_members() -> None:
    assert sorted(bastion.crypto.__all__) == [
        "CertificateInfo",
        "CryptoError",
        "DecryptionError",
        "Keyring",
        "MasterKey",
        "MasterKeyError",
        "TLSConfigError",
        "constant_time_equals",
        "create_keyring_file",
        "ensure_dev_certificate",
        "load_keyring_file",
        "load_server_certificate",
        "parse_keyring_text",
        "random_token",
        "server_ssl_context",
        "sha256_hex",
        "write_keyring_file",
    ]
    for name in bastion.crypto.__all__:
        assert hasattr(bastion.crypto, name), name


def test_error_codes() -> None:
    assert issubclass(CryptoError, BastionError)
    assert (CryptoError.code, CryptoError.status) == ("crypto_error", 500)
    assert MasterKeyError.code == "master_key_invalid"
    assert DecryptionError.code == "decryption_failed"
    assert TLSConfigError.code == "tls_config_invalid"
    for cls in (MasterKeyError, DecryptionError, TLSConfigError):
        assert issubclass(cls, CryptoError)
    problem = DecryptionError("sealed value could not be decrypted", key_id="abc").to_problem()
    assert problem["reason"] == "decryption_failed"
    assert problem["key_id"] == "abc"
