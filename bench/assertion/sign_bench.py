"""Cost of the signed identity assertion per gateway request (gateway/assertion.py).

Measures, per algorithm bastion can sign with: building the claims alone, and
claims + signing (what the mutate step adds to each authenticated request).

Run: .venv/bin/python bench/assertion/sign_bench.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bastion.crypto import SigningKeyPair
from bastion.gateway.assertion import AssertionSigner
from bastion.gateway.authn.identity import Identity

IDENTITY = Identity(
    method="jwt",
    subject="user:alice",
    scopes=frozenset({"orders:read", "profile"}),
    claims={"client_id": "web-app"},
)


def per_call_us(fn: Callable[[], object], seconds: float = 1.0) -> float:
    for _ in range(200):
        fn()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            fn()
        count += 100
    return (time.perf_counter() - start) / count * 1e6


def bench(alg: str) -> None:
    key = SigningKeyPair.generate(alg, rsa_key_size=3072)  # type: ignore[arg-type]
    signer = AssertionSigner(lambda: key, issuer="https://auth.example.com")

    def claims() -> object:
        return signer.claims(IDENTITY, audience=AUD, route="orders", request_id="r-1")

    def sign() -> object:
        return signer.sign(IDENTITY, audience=AUD, route="orders", request_id="r-1")

    if alg == "ES256":
        print(f"{'claims only':<34} {per_call_us(claims):9.1f}")
    print(f"{'claims + sign ' + alg:<34} {per_call_us(sign):9.1f}")


AUD = "http://orders.internal:9000"


def main() -> None:
    print(f"{'what':<34} {'us/call':>9}")
    for alg in ("ES256", "EdDSA", "RS256"):
        bench(alg)


if __name__ == "__main__":
    main()
