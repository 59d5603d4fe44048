"""gateway/native_push.assertion_key: the native assertion signer gets the current key, only it.

The key goes in as PKCS#8 DER and never comes back out: ``_native.assertion_key()``
shows its kid and algorithm only. A key ring cannot sign with (RSA over 4096 bits: bastion
no longer generates one, but an older version may have stored it) is logged by kid, never
by content, and leaves no key held (routes sending the assertion then answer 503
``assertion_unavailable``).
End to end (the upstream verifies what the native plane signed):
``tests/features/native_front/test_native_assertion.py``.
"""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion import _native
from bastion.crypto import SigningKeyPair
from bastion.gateway import native_push


@pytest.fixture(autouse=True)
def _no_key_after() -> object:
    yield
    _native.assertion_key_clear()


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_every_signing_algorithm_is_held(alg: str) -> None:
    key = SigningKeyPair.generate(alg, rsa_key_size=2048)  # type: ignore[arg-type]
    native_push.assertion_key(key)
    assert _native.assertion_key() == (key.kid, alg)
    native_push.assertion_key(None)
    assert _native.assertion_key() is None


def test_a_key_ring_refuses_is_logged_by_kid_and_drops_the_held_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    held = SigningKeyPair.generate("ES256")
    native_push.assertion_key(held)
    # Generated as an older version did (SigningKeyPair.generate now stops at 4096 bits).
    private = rsa.generate_private_key(public_exponent=65537, key_size=4352)
    big = SigningKeyPair(private, kid="legacy-4352", alg="RS256")
    with caplog.at_level(logging.WARNING, logger="bastion.gateway.native_push"):
        native_push.assertion_key(big)
    assert _native.assertion_key() is None
    [record] = caplog.records
    assert record.kid == big.kid  # type: ignore[attr-defined]
    logged = caplog.text + str(record.__dict__)
    der = big.private_der()
    for secret in (base64.b64encode(der[40:80]).decode(), der[40:80].hex()):
        assert secret not in logged


def test_the_private_key_is_not_readable_back() -> None:
    key = SigningKeyPair.generate("EdDSA")
    native_push.assertion_key(key)
    assert repr(key) == f"SigningKeyPair(kid={key.kid!r}, alg='EdDSA')"
    exposed = [name for name in dir(_native) if name.startswith("assertion_key")]
    assert sorted(exposed) == ["assertion_key", "assertion_key_clear", "assertion_key_set"]
    assert _native.assertion_key() == (key.kid, "EdDSA")
    with pytest.raises(ValueError, match="not supported") as refused:
        _native.assertion_key_set("k", "HS256", key.private_der())
    assert key.private_der().hex() not in str(refused.value)
