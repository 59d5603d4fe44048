"""The public surface of bastion.http, pinned."""

from __future__ import annotations

import bastion.http


def test_exported_members() -> None:
    assert sorted(bastion.http.__all__) == sorted(
        [
            "RESERVED_PREFIXES",
            "HTTPError",
            "EndpointMethodNotAllowedError",
            "NotReadyError",
            "EndpointNotFoundError",
            "RuntimeLike",
            "ServerStartError",
            "UnsupportedScopeError",
            "create_app",
            "problem_response",
            "run_server",
            "send_problem",
            "serve_forever",
        ]
    )
    for name in bastion.http.__all__:
        assert getattr(bastion.http, name) is not None


def test_error_codes() -> None:
    assert bastion.http.ServerStartError.code == "server_start_failed"
    assert bastion.http.EndpointNotFoundError.code == "not_found"
    assert bastion.http.NotReadyError.code == "not_ready"
    assert bastion.http.NotReadyError.status == 503
    assert issubclass(bastion.http.ServerStartError, bastion.http.HTTPError)
