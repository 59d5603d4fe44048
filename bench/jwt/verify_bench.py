"""Micro-benchmark of JWT verification and signing: bastion vs raw `cryptography` vs joserfc.

Usage (from the repository root)::

    .venv/bin/python bench/jwt/verify_bench.py [--seconds 0.2] [--rounds 15] [--clock cpu]

For each algorithm (ES256, RS256 with a 3072-bit key, EdDSA) one RFC 9068-style
access token is signed, then timed in one process on one core:

- ``raw``: the bare ``cryptography`` signature check of the same signing input
  and signature (for ES256 the DER form is prepared once, outside the loop) —
  the floor any verifier pays;
- ``bastion``: :meth:`bastion.crypto.JWTVerifier.verify` — structure and size
  checks, strict base64url, header policy, kid lookup, signature, duplicate-
  member detection, exp/nbf/iat/iss/aud/typ checks;
- ``joserfc``: ``joserfc.jwt.decode`` with the algorithm pinned, plus
  ``JWTClaimsRegistry.validate`` for iss/aud/exp (the same checks);
- ``sign raw``: the bare ``cryptography`` signature of the same signing input
  (for ES256 the DER form OpenSSL returns, not yet ``r || s``);
- ``sign bastion``: :func:`bastion.crypto.sign_jwt` of the same claims.

Run it against another checkout's code (e.g. before a change) with
``PYTHONPATH=<that checkout>/src``: only the public ``bastion.crypto`` names are used.

Each case runs ``rounds`` short batches of about ``seconds`` each, all cases
interleaved, so that load from other processes on a shared machine hits every
case alike. The table reports the best batch (the least disturbed estimate of
the cost) and the median; ratios use the best batches. ``--clock cpu`` times the
batches on this thread's CPU time instead of the wall clock: time spent descheduled
while other processes run on the core is then not counted (cache and frequency
effects still are). Never used as a timed assertion in tests.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cryptography
import joserfc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwk as joserfc_jwk
from joserfc import jwt as joserfc_jwt

from bastion.crypto import JWTVerifier, PublicKeySet, SigningKeyPair, sign_jwt

ISSUER = "https://auth.example.com"
AUDIENCE = "https://api.example.com"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cases(alg: str) -> dict[str, Callable[[], Any]]:
    pair = SigningKeyPair.generate(alg, rsa_key_size=3072)  # type: ignore[arg-type]
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "client-7f3c",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 900,
        "jti": "3b1f0a9c-6a53-4b8f-9d0e-5c2f7a41e8b2",
        "client_id": "client-7f3c",
        "scope": "orders:read orders:write",
    }
    token = sign_jwt(claims, pair, typ="at+jwt")
    signing_input, signature_text = token.rsplit(".", 1)
    data = signing_input.encode()
    signature = _b64decode(signature_text)

    public = pair.public_key.key
    private = serialization.load_pem_private_key(pair.private_bytes(), password=None)
    raw: Callable[[], Any]
    sign_raw: Callable[[], Any]
    if isinstance(public, ec.EllipticCurvePublicKey):
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        algorithm = ec.ECDSA(hashes.SHA256())
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        ec_private = private

        def raw() -> None:
            public.verify(der, data, algorithm)

        def sign_raw() -> None:
            ec_private.sign(data, algorithm)

    elif isinstance(public, rsa.RSAPublicKey):
        pad = padding.PKCS1v15()
        digest = hashes.SHA256()
        assert isinstance(private, rsa.RSAPrivateKey)
        rsa_private = private

        def raw() -> None:
            public.verify(signature, data, pad, digest)

        def sign_raw() -> None:
            rsa_private.sign(data, pad, digest)

    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        ed_private = private

        def raw() -> None:
            public.verify(signature, data)

        def sign_raw() -> None:
            ed_private.sign(data)

    verifier = JWTVerifier(
        PublicKeySet([pair.public_key]), issuer=ISSUER, audience=AUDIENCE, typ="at+jwt"
    )

    def bastion() -> None:
        verifier.verify(token)

    joserfc_key = joserfc_jwk.import_key(pair.public_jwk())
    registry = joserfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )

    def joserfc_case() -> None:
        decoded = joserfc_jwt.decode(token, joserfc_key, algorithms=[alg])
        registry.validate(decoded.claims)

    def sign_bastion() -> None:
        sign_jwt(claims, pair, typ="at+jwt")

    for case in (raw, bastion, joserfc_case, sign_raw, sign_bastion):
        case()  # each must succeed before it is timed
    return {
        "raw": raw,
        "bastion": bastion,
        "joserfc": joserfc_case,
        "sign raw": sign_raw,
        "sign bastion": sign_bastion,
    }


def _time(func: Callable[[], Any], seconds: float, clock: Callable[[], float]) -> float:
    """Seconds per call, from one timed batch of about ``seconds`` on ``clock``."""
    n = 1
    while True:  # calibrate the batch size
        start = clock()
        for _ in range(n):
            func()
        elapsed = clock() - start
        if elapsed > 0.05:
            break
        n *= 4
    n = max(1, int(n * seconds / elapsed))
    start = clock()
    for _ in range(n):
        func()
    return (clock() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="time per batch and case")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this thread's CPU time (steadier when other processes share the core)",
    )
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core, like the gateway's one process per core

    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    results: dict[tuple[str, str], list[float]] = {}
    algs = ("ES256", "RS256", "EdDSA")
    cases = {alg: _cases(alg) for alg in algs}
    for _ in range(args.rounds):
        for alg in algs:
            for name, func in cases[alg].items():
                results.setdefault((alg, name), []).append(_time(func, args.seconds, clock))

    print(
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {platform.machine()}, nproc={os.cpu_count()}, {platform.platform()}\n"
        f"- python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"joserfc {joserfc.__version__}, pinned to one core\n"
        f"- batches: {args.rounds} x ~{args.seconds:g} s ({args.clock} clock) per case, "
        "interleaved; "
        f"load average at start {os.getloadavg()[0]:.2f}\n"
    )
    print("| alg | verifier | best µs / verify | verifies/s (best) | x raw | median µs |")
    print("|---|---|---:|---:|---:|---:|")
    for alg in algs:
        base = min(results[(alg, "raw")])
        for name in ("raw", "bastion", "joserfc"):
            rounds = results[(alg, name)]
            best = min(rounds)
            label = {"raw": "raw cryptography", "bastion": "bastion JWTVerifier"}.get(name, name)
            print(
                f"| {alg} | {label} | {best * 1e6:.1f} | {1 / best:,.0f} | "
                f"{best / base:.2f} | {statistics.median(rounds) * 1e6:.1f} |"
            )
    print()
    print("| alg | signer | best µs / sign | signs/s (best) | x raw | median µs |")
    print("|---|---|---:|---:|---:|---:|")
    for alg in algs:
        base = min(results[(alg, "sign raw")])
        for name in ("sign raw", "sign bastion"):
            rounds = results[(alg, name)]
            best = min(rounds)
            label = {"sign raw": "raw cryptography", "sign bastion": "bastion sign_jwt"}[name]
            print(
                f"| {alg} | {label} | {best * 1e6:.1f} | {1 / best:,.0f} | "
                f"{best / base:.2f} | {statistics.median(rounds) * 1e6:.1f} |"
            )
    print()
    for alg in algs:
        raw = min(results[(alg, "raw")])
        ours = min(results[(alg, "bastion")])
        theirs = min(results[(alg, "joserfc")])
        print(
            f"- {alg}: bastion adds {(ours - raw) * 1e6:.1f} µs to the raw signature check "
            f"({ours / raw:.2f}x); joserfc adds {(theirs - raw) * 1e6:.1f} µs "
            f"({theirs / raw:.2f}x); bastion is {theirs / ours:.2f}x joserfc's rate"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
