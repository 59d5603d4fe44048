"""An upstream that is down, over real HTTP: one log line per target and cause, no traceback.

Issue 13: every request to a dead upstream logged a full traceback and the cause was hidden
(``raise … from None``). Now each failure answers 502 / 504 by cause with a stable reason,
and the log has one line naming the route, the target and the cause, at most one per target
and cause every 10 s.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support import BastionProcess, EchoThread, free_port


@pytest.fixture
def silent() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def route(name: str, upstream: str, extra: str = "") -> str:
    return (
        f"  - {{name: {name}, match: {{path: /{name}}}, upstream: '{upstream}', public: true"
        f"{extra}}}\n"
    )


def test_failures_answer_by_cause_and_log_one_line_per_target(
    tmp_path: Path, silent: int, echo: EchoThread
) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    dns = "http://no-such-upstream.invalid:8080"
    tls = f"https://127.0.0.1:{echo.server.port}"  # a plain-HTTP server: the handshake fails
    slow = f"http://127.0.0.1:{silent}"
    (tmp_path / "bastion.yaml").write_text(
        "routes:\n"
        + route("refused", refused)
        + route("dns", dns)
        + route("tls", tls)
        + route("slow", slow, ", timeout: 1")
    )
    expected = {
        "refused": (502, "upstream_unavailable", refused, "refused"),
        "dns": (502, "upstream_unavailable", dns, "dns"),
        "tls": (502, "upstream_tls_error", tls, "tls"),
        "slow": (504, "upstream_timeout", slow, "timeout"),
    }
    proc = BastionProcess("-c", "bastion.yaml", cwd=tmp_path)
    with proc, httpx.Client(verify=False, timeout=10) as client:
        for name, (status, reason, _, _) in expected.items():
            for _ in range(3):
                response = client.get(f"{proc.url}/{name}")
                assert response.status_code == status, (name, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["reason"] == reason
                # The target and the system's words are for the log, not the client.
                assert "127.0.0.1" not in response.text and ".invalid" not in response.text
    log = proc.stderr
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 1500) : at + 3000]
    for name, (status, reason, target, cause) in expected.items():
        line = f"upstream failed: route={name} target={target} cause={cause} ("
        lines = [entry for entry in log.splitlines() if line in entry]
        # Three failures within 10 s: one line.
        assert len(lines) == 1, (name, log[-3000:])
        assert f") -> {status} {reason}" in lines[0]
    assert "Connect call failed" in log or "Connection refused" in log
