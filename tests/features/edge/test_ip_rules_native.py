"""End to end: a route's IP allow / deny rules are judged by the native plane, as Python does.

A real ``bastion serve`` (native engine, plain HTTP on loopback) with an echo upstream:

- a route with only ``ip`` rules is served natively (``bastion routes list``; the request id's
  per-plane prefix differs from that of a request Python answered);
- an allowed client is proxied natively; a denied one gets a natively rendered
  ``403 ip_not_allowed`` byte-identical (but for the request id and the date) to the one
  Python rendered (recorded in ``tests/vectors/twins/test_ip_rules_native.json``), and never
  reaches the upstream; ``deny`` wins over ``allow``;
- the client address is the one ``X-Forwarded-For`` gives only through a trusted proxy, read
  from the right: an allowed address the client prepends itself is ignored (attack), and
  from an untrusted peer the header is not believed at all (attack);
- an IPv4-mapped IPv6 address is judged as the IPv4 address it carries, both in
  ``X-Forwarded-For`` and as the peer of a dual-stack socket (``::ffff:127.0.0.1``);
- an address that cannot be parsed is refused: natively, bastion's ``400
  invalid_forwarded_for`` (fail closed; Python's twin refuses it as "cannot be determined");
- the refusal comes before authentication (no credential oracle for a blocked network);
- every refusal is one ``gateway.denied`` audit row (step ``ip``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread
from _support.native import plane
from _support.recorded import Recorded
from bastion.storage import Database

RULES = "{allow: [10.0.0.0/8, '2001:db8::/32'], deny: [10.6.6.0/24]}"


def _write(tmp: Path, body: str) -> Path:
    config = tmp / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp}/bastion.db\ndata_dir: {tmp}/data\ntls: off\n" + body
    )
    return config


@pytest.fixture(scope="module")
def behind_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BastionProcess, EchoThread, Path]]:
    tmp = tmp_path_factory.mktemp("ip-native")
    echo = EchoThread()
    up = echo.server.url
    config = _write(
        tmp,
        "trusted_proxies: [127.0.0.1]\n"
        "routes:\n"
        "  - name: office\n"
        "    match: {path: /office}\n"
        f"    upstream: {up}\n"
        "    public: true\n"
        f"    ip: {RULES}\n"
        # The same rules on a twin route; its requests below carry a method-override
        # header, which the native core defers: Python's 403.
        "  - name: office-py\n"
        "    match: {path: /office-py}\n"
        f"    upstream: {up}\n"
        "    public: true\n"
        f"    ip: {RULES}\n"
        "  - name: keyed\n"
        "    match: {path: /keyed}\n"
        f"    upstream: {up}\n"
        "    auth: [api_key]\n"
        "    ip: {deny: [192.0.2.0/24]}\n",
    )
    proc = BastionProcess("-c", str(config), cwd=tmp)
    proc.start()
    try:
        yield proc, echo, config
    finally:
        proc.stop()
        echo.close()


def _get(proc: BastionProcess, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{proc.port}{path}", headers=headers, timeout=10)


def _python_plane(proc: BastionProcess) -> str:
    """The prefix of the Python plane's request ids (the health endpoint is Python's)."""
    response = _get(proc, "/healthz")
    assert response.status_code == 200
    return plane(response)


def _seen(echo: EchoThread, path: str) -> int:
    return sum(1 for r in echo.server.received if r.path.startswith(path))


def _refused(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body == {
        "type": "urn:bastion:problem:ip_not_allowed",
        "title": "Forbidden",
        "status": 403,
        "detail": detail,
        "reason": "ip_not_allowed",
        "request_id": response.headers["x-request-id"],
    }


DENIED = "Requests from this address are not allowed on this route."


def test_allowed_clients_are_proxied_natively(
    behind_proxy: tuple[BastionProcess, EchoThread, Path],
) -> None:
    proc, echo, _ = behind_proxy
    python = _python_plane(proc)
    before = _seen(echo, "/office")
    for client in ("10.1.2.3", "2001:db8::7", "::ffff:10.1.2.3", "203.0.113.5, 10.9.9.9"):
        response = _get(proc, "/office", **{"X-Forwarded-For": client})
        assert response.status_code == 200, client
        assert plane(response) != python, client
    assert _seen(echo, "/office") == before + 4


def test_denied_clients_get_pythons_403_natively(
    behind_proxy: tuple[BastionProcess, EchoThread, Path],
) -> None:
    proc, echo, _ = behind_proxy
    python = _python_plane(proc)
    before = _seen(echo, "/office")
    clients = (
        "10.6.6.6",  # allowed network, denied subnet: deny wins
        "192.0.2.1",  # not in the allow-list
        "::ffff:10.6.6.6",  # mapped: judged as 10.6.6.6
        "2001:db9::1",  # IPv6 outside the allow-list
        # Attack: the client prepends an allowed address; the proxy appended the real one.
        "10.1.2.3, 198.51.100.9",
    )
    for client in clients:
        native = _get(proc, "/office", **{"X-Forwarded-For": client})
        _refused(native, DENIED)
        assert plane(native) != python, client
    # No X-Forwarded-For: the peer itself (127.0.0.1) is the client, not allowed.
    _refused(_get(proc, "/office"), DENIED)
    assert _seen(echo, "/office") == before  # none reached the upstream

    # Byte-identical to Python's refusal (recorded; but for the request id and the date).
    native = _get(proc, "/office", **{"X-Forwarded-For": "10.6.6.6"})
    assert plane(native) != python
    Recorded(__name__).check("403 ip_not_allowed", native)


def test_an_unparseable_address_fails_closed(
    behind_proxy: tuple[BastionProcess, EchoThread, Path],
) -> None:
    proc, echo, _ = behind_proxy
    python = _python_plane(proc)
    before = _seen(echo, "/office")
    for hop in ("unknown", "10.1.2.3.4", "[10.1.2.3]x", "_hidden"):
        response = _get(proc, "/office", **{"X-Forwarded-For": hop})
        # Not a plain address: refused natively (bastion's 400), whatever the route's rules.
        assert response.status_code == 400, hop
        assert response.json()["reason"] == "invalid_forwarded_for"
        assert plane(response) != python, hop
    assert _seen(echo, "/office") == before


def test_refused_before_authentication(
    behind_proxy: tuple[BastionProcess, EchoThread, Path],
) -> None:
    proc, echo, _ = behind_proxy
    python = _python_plane(proc)
    before = _seen(echo, "/keyed")
    for credential in ({}, {"Authorization": "Bearer bst_nope"}):
        response = _get(proc, "/keyed", **credential, **{"X-Forwarded-For": "192.0.2.50"})
        _refused(response, DENIED)
        assert plane(response) != python
    # From an address not denied, the same requests are authentication's business (401).
    response = _get(proc, "/keyed", **{"X-Forwarded-For": "198.51.100.1"})
    assert response.status_code == 401
    assert _seen(echo, "/keyed") == before


def test_every_refusal_is_audited(
    behind_proxy: tuple[BastionProcess, EchoThread, Path],
) -> None:
    proc, _, config = behind_proxy
    _refused(_get(proc, "/office", **{"X-Forwarded-For": "10.6.6.77"}), DENIED)
    found = _denials(config, "10.6.6.77")
    assert len(found) == 1
    row = found[0]
    assert (row.reason, row.route, row.subject, row.key_id) == (
        "ip_not_allowed",
        "office",
        None,
        None,
    )
    assert row.data["status"] == 403 and row.data["step"] == "ip"
    assert row.data["method"] == "GET" and row.data["path"] == "/office"


def _denials(config: Path, ip: str, count: int = 1) -> list[Any]:
    """The ``ip_not_allowed`` rows of client ``ip``, once ``count`` are written (batched)."""

    async def rows() -> list[Any]:
        db = await Database.connect(f"sqlite:///{config.parent}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return [r for r in page.items if r.ip == ip and r.reason == "ip_not_allowed"]
        finally:
            await db.close()

    found: list[Any] = []
    for _ in range(100):
        found = asyncio.run(rows())
        if len(found) >= count:
            break
        time.sleep(0.1)
    return found


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_untrusted_peer_and_dual_stack_mapped_peer(tmp_path: Path, echo: EchoThread) -> None:
    up = echo.server.url
    # The proxy bastion trusts is elsewhere: this test's client is not it.
    config = _write(
        tmp_path,
        "trusted_proxies: [192.0.2.254]\n"
        "routes:\n"
        "  - name: lan\n"
        "    match: {path: /lan}\n"
        f"    upstream: {up}\n"
        "    public: true\n"
        "    ip: {allow: [10.0.0.0/8]}\n"
        "  - name: local\n"
        "    match: {path: /local}\n"
        f"    upstream: {up}\n"
        "    public: true\n"
        "    ip: {allow: [127.0.0.0/8]}\n"
        "  - name: not-local\n"
        "    match: {path: /not-local}\n"
        f"    upstream: {up}\n"
        "    public: true\n"
        "    ip: {deny: [127.0.0.1/32]}\n"
        "  - name: v6-net\n"
        "    match: {path: /v6-net}\n"
        f"    upstream: {up}\n"
        "    public: true\n"
        "    ip: {allow: ['::ffff:0:0/96']}\n",
    )
    # Dual-stack: IPv4 clients arrive as ::ffff:127.0.0.1 (what the native core sees).
    with BastionProcess("-c", str(config), "--host", "::", cwd=tmp_path) as proc:
        python = _python_plane(proc)

        def get(path: str, host: str = "127.0.0.1", **headers: str) -> httpx.Response:
            return httpx.get(f"http://{host}:{proc.port}{path}", headers=headers, timeout=10)

        # Attack: the peer is no trusted proxy, so a forged X-Forwarded-For is not believed.
        forged = get("/lan", **{"X-Forwarded-For": "10.1.2.3"})
        _refused(forged, DENIED)
        assert plane(forged) != python
        # The mapped peer is judged as 127.0.0.1: allowed by 127/8, denied by 127.0.0.1/32.
        allowed = get("/local")
        assert allowed.status_code == 200 and plane(allowed) != python
        _refused(get("/not-local"), DENIED)
        # An IPv6 network never matches it (it is an IPv4 address now), as in Python.
        _refused(get("/v6-net"), DENIED)
        # A real IPv6 client (::1) is not in 127.0.0.0/8 and not denied by 127.0.0.1/32.
        _refused(get("/local", host="[::1]"), DENIED)
        assert get("/not-local", host="[::1]").status_code == 200
        # The native core saw the mapped peer itself (its audit row says so).
        mapped = _denials(config, "::ffff:127.0.0.1", count=3)
        assert sorted(r.route for r in mapped) == ["lan", "not-local", "v6-net"]
