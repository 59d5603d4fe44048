"""Gateway errors: codes, statuses and the attributes the HTTP layer renders as headers."""

from __future__ import annotations

import pytest

from bastion.errors import BastionError
from bastion.gateway import errors


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (errors.RouteNotFoundError, "route_not_found", 404),
        (errors.BadRequestPathError, "invalid_path", 400),
        (errors.BadRequestError, "bad_request", 400),
        (errors.UnauthenticatedError, "unauthenticated", 401),
        (errors.RequestTooLargeError, "request_too_large", 413),
        (errors.UpstreamUnavailableError, "upstream_unavailable", 502),
        (errors.UpstreamTimeoutError, "upstream_timeout", 504),
        (errors.UpstreamAbortedError, "upstream_aborted", 502),
        (errors.GatewayConfigError, "gateway_config_invalid", 500),
    ],
)
def test_codes_and_statuses(cls: type[errors.GatewayError], code: str, status: int) -> None:
    error = cls("detail")
    assert isinstance(error, errors.GatewayError)
    assert isinstance(error, BastionError)
    assert (error.code, error.status) == (code, status)
    assert error.to_problem()["reason"] == code


def test_method_not_allowed_carries_allow() -> None:
    error = errors.MethodNotAllowedError("no", allow=["POST", "GET", "GET"])
    assert (error.code, error.status) == ("method_not_allowed", 405)
    assert error.allow == "GET, POST"
    assert error.allowed == ("GET", "POST")
    assert error.to_problem()["allow"] == ["GET", "POST"]


def test_unauthenticated_carries_challenge() -> None:
    assert errors.UnauthenticatedError().www_authenticate == 'Bearer realm="bastion"'
