"""Problem+json vectors the native core must render byte-identically (``native/src/problem.rs``).

``tests/vectors/problems.json`` is rendered here by Python's own error classes
and ``problem_response``; the Rust test ``problem::tests::python_vectors_render_byte_identical``
reads the same file. Regenerate with ``python tests/gateway/test_native_problem.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.apikeys.errors import ApiKeyInQueryError, InvalidApiKeyError
from bastion.errors import BastionError, ServiceUnavailableError
from bastion.gateway.authn.jwt import InvalidBearerTokenError
from bastion.gateway.errors import (
    BodyTooLargeError,
    NoHealthyUpstreamError,
    RequestTooLargeError,
    UnauthenticatedError,
    UpstreamTimeoutError,
    UpstreamTLSError,
    UpstreamUnavailableError,
)
from bastion.gateway.limit import RateLimitedError, RateLimiterUnavailableError
from bastion.http.problem import problem_response
from bastion.ratelimit import Limit, MemoryLimiter

VECTORS = Path(__file__).parents[1] / "vectors" / "problems.json"
S = 1_000_000


def _refused_result() -> Any:
    now = [1_700_000_000 * S]
    limiter = MemoryLimiter(clock=lambda: now[0])
    checks = [("r:key:k", Limit.parse("2/minute")), ("r:ip:1", Limit.parse("10/minute", burst=4))]
    for _ in range(2):
        limiter.check_now(checks)
    now[0] += 7 * S
    return limiter.check_now(checks)


def _vector(
    kind: str, args: dict[str, Any], error: BastionError, request_id: str
) -> dict[str, Any]:
    status, headers, body = problem_response(error, request_id)
    return {
        "kind": kind,
        "args": args,
        "request_id": request_id,
        "status": status,
        "headers": [[name.decode(), value.decode("latin-1")] for name, value in headers],
        "body": body.decode(),
    }


def render_vectors() -> list[dict[str, Any]]:
    """Every native problem, rendered by Python."""
    refused = _refused_result()
    limited = RateLimitedError("Rate limit exceeded; retry later.", result=refused)
    weird = 'r-"quoted"\\ \t\n\x01\x1f é ✓'
    return [
        _vector(
            "rate_limited",
            {"retry_after": limited.retry_after, "headers": [list(h) for h in limited.headers]},
            limited,
            "01JREQUEST0000000000000000",
        ),
        _vector(
            "rate_limiter_unavailable",
            {},
            RateLimiterUnavailableError("The rate limiter is unavailable; try again shortly."),
            "rid-2",
        ),
        _vector(
            "upstream_unavailable",
            {"detail": "The upstream could not be reached."},
            UpstreamUnavailableError("The upstream could not be reached.", cause="refused"),
            "rid-3",
        ),
        _vector(
            "upstream_unavailable",
            {"detail": "The upstream closed the connection without answering."},
            UpstreamUnavailableError("The upstream closed the connection without answering."),
            weird,
        ),
        _vector(
            "upstream_tls",
            {"detail": "The TLS handshake with the upstream failed."},
            UpstreamTLSError("The TLS handshake with the upstream failed.", cause="tls"),
            "rid-5",
        ),
        _vector(
            "upstream_timeout",
            {"detail": "The upstream did not answer in time."},
            UpstreamTimeoutError("The upstream did not answer in time.", cause="timeout"),
            "rid-6",
        ),
        _vector(
            "upstream_timeout",
            {"detail": "Connecting to the upstream timed out."},
            UpstreamTimeoutError("Connecting to the upstream timed out.", cause="timeout"),
            "rid-7",
        ),
        _vector(
            "no_healthy_upstream",
            {"retry_after": 7},
            NoHealthyUpstreamError(
                "Every upstream target of this route is failing; retry later.", retry_after=7
            ),
            "rid-8",
        ),
        _vector(
            "request_too_large",
            {"max_body": 1048576},
            RequestTooLargeError("The request body is larger than 1048576 bytes."),
            "rid-9",
        ),
        _vector(
            "body_too_large",
            {"max_body": 65536},
            BodyTooLargeError("The request body is larger than 65536 bytes."),
            "rid-11",
        ),
        _vector("service_unavailable", {"detail": None}, ServiceUnavailableError(), "rid-10"),
        # One body for every refused key: the reason is for the audit log only.
        _vector("invalid_api_key", {}, InvalidApiKeyError("unknown"), "rid-12"),
        _vector("invalid_api_key", {}, InvalidApiKeyError("revoked"), weird),
        # An inactive introspected token (one body for every refused bearer token).
        _vector("invalid_token", {}, InvalidBearerTokenError("inactive"), "rid-13"),
        # A refused JWT (bad signature, expired, cnf mismatch …): the same body.
        _vector("invalid_token", {}, InvalidBearerTokenError("bad_signature"), "rid-14"),
        # No method of the route vouched (no credential it reads).
        _vector(
            "unauthenticated",
            {},
            UnauthenticatedError("This route requires authentication."),
            "rid-15",
        ),
        _vector("api_key_in_query", {}, ApiKeyInQueryError(), "rid-16"),
    ]


def _text(vectors: list[dict[str, Any]]) -> str:
    return json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"


def test_vectors_file_is_what_python_renders() -> None:
    assert VECTORS.read_text(encoding="utf-8") == _text(render_vectors())


def test_rate_limited_vector_carries_the_limit_headers() -> None:
    vector = render_vectors()[0]
    assert vector["status"] == 429
    assert vector["headers"][3:] == [
        ["retry-after", "23"],
        ["ratelimit-policy", '"2/minute";q=2;w=60, "10/minute";q=4;w=24'],
        ["ratelimit", '"2/minute";r=0;t=53, "10/minute";r=3;t=5'],
    ]


if __name__ == "__main__":
    VECTORS.write_text(_text(render_vectors()), encoding="utf-8")
