"""IdTokenSigner: the ID token is signed with the algorithm the client registered.

``None`` (a client registered before ``id_token_signed_response_alg`` existed) takes the
server's default, the first of ``signing_keys.id_token_algorithms``; an algorithm the
settings no longer offer is ``unauthorized_client`` (400), never a 500 or another alg.
"""

from __future__ import annotations

from typing import Any

import pytest

from bastion.crypto import SigningKeyPair
from bastion.oauth.authorization_codes import IdTokenSigner
from bastion.protocol.oidc.core import token_hash
from bastion.protocol.rfc6749.errors import UnauthorizedClientError

KEYS = {
    "ES256": SigningKeyPair.generate("ES256"),
    "RS256": SigningKeyPair.generate("RS256", rsa_key_size=2048),
}


def _signer(offered: tuple[str, ...]) -> IdTokenSigner:
    return IdTokenSigner(lambda alg: KEYS[alg], lambda: offered)


def _build(alg: str) -> dict[str, Any]:
    return {"sub": "u1", "at_hash": token_hash("access-token", alg)}


def _header_alg(token: str) -> str:
    import base64
    import json

    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["alg"])


async def test_the_registered_algorithm_signs() -> None:
    signer = _signer(("ES256", "RS256"))
    assert _header_alg(await signer(_build, "RS256")) == "RS256"
    assert _header_alg(await signer(_build, "ES256")) == "ES256"


async def test_none_takes_the_first_offered() -> None:
    assert _header_alg(await _signer(("ES256", "RS256"))(_build, None)) == "ES256"
    assert _header_alg(await _signer(("RS256", "ES256"))(_build, None)) == "RS256"


async def test_an_algorithm_no_longer_offered_is_unauthorized_client() -> None:
    with pytest.raises(UnauthorizedClientError) as info:
        await _signer(("RS256",))(_build, "ES256")
    assert info.value.status == 400
    assert info.value.code == "unauthorized_client"
    assert info.value.reason == "id_token_alg_not_offered"
    assert info.value.detail == (
        "the client's id_token_signed_response_alg 'ES256' is not offered by this server "
        "(it signs ID tokens with RS256)"
    )
