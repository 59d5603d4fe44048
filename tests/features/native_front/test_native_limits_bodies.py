"""End to end: the limiter's outage policy and risk-tightened limits, decided natively.

- **Redis unreachable** (a TCP proxy in front of the test Redis, cut and restored): a
  route whose limit fails *open* is still served by the native plane (this node's share,
  decided in the in-process store); one whose limit fails *closed* gets the native
  ``503 rate_limiter_unavailable``, byte-identical to the Python pipeline's twin (forced
  to Python by a method-override header), both audited as ``gateway.denied`` at step
  ``limit``; once Redis answers again the native plane serves the route within seconds.
  The outage and the recovery are logged and audited once each.
- **A risk-flagged requester** (the ``ip_failures`` detector raised on each node by three
  made-up keys): its limits are divided natively by ``ratelimit.risk.factor``, with the
  same buckets as Python's; a Python-only node (``server.engine: uvicorn``) and a native
  node sharing Redis admit the tightened budget once between them, and the native 429 is
  byte-identical to the Python twin's (``RateLimit`` headers included).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from _support import BastionProcess, EchoThread, tcp_proxy
from _support.native import cli_json, plane
from bastion.storage import Database, migrate

_TO_PYTHON = {"X-HTTP-Method-Override": "GET"}  # the native core defers such a request


def _same_answer(python: httpx.Response, native: httpx.Response, status: int) -> None:
    """Byte-identical but for the request id (body and header) and the date."""
    assert python.status_code == native.status_code == status
    assert plane(python) != plane(native)
    rid_p, rid_n = python.headers["x-request-id"], native.headers["x-request-id"]
    assert python.content.replace(rid_p.encode(), b"RID") == native.content.replace(
        rid_n.encode(), b"RID"
    )

    def head(response: httpx.Response) -> list[tuple[bytes, bytes]]:
        return [
            (name.lower(), value)
            for name, value in response.headers.raw
            if name.lower() not in (b"x-request-id", b"date")
        ]

    assert head(python) == head(native)


def _until(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.1)


def _audit(url: str, type_: str) -> list[Any]:
    async def main() -> list[Any]:
        db = await Database.connect(url)
        try:
            page = await db.audit.search(type=type_, limit=1000)
            return list(page.items)
        finally:
            await db.close()

    return asyncio.run(main())


# -- the limiter's outage ---------------------------------------------------------------

_OUTAGE_ROUTES = """  - name: lenient
    match: {{path: /api/lenient}}
    upstream: {upstream}
    public: true
    limits: [{{per: ip, rate: 10/minute, fail: open}}]
  - name: strict
    match: {{path: /api/strict}}
    upstream: {upstream}
    public: true
    limits: [{{per: ip, rate: 100/minute, fail: closed}}]
"""


@pytest.fixture(scope="module")
def module_echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.mark.timeout(180)
def test_redis_outage_is_decided_natively_by_each_limits_fail_mode(
    tmp_path: Path, module_echo: EchoThread, redis_url: str, redis_prefix: str
) -> None:
    target = urlsplit(redis_url)
    database = target.path or "/0"
    with tcp_proxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        config = tmp_path / "bastion.yaml"
        config.write_text(
            f"storage: sqlite:///{tmp_path}/bastion.db\n"
            f"shared: {{url: 'redis://127.0.0.1:{proxy.port}{database}', "
            f"key_prefix: '{redis_prefix}'}}\n"
            "routes:\n" + _OUTAGE_ROUTES.format(upstream=module_echo.server.url),
            encoding="utf-8",
        )
        proc = BastionProcess("-c", str(config), cwd=tmp_path)
        with proc, httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
            before = client.get("/api/strict")
            twin = client.get("/api/strict", headers=_TO_PYTHON)
            assert before.status_code == twin.status_code == 200
            native, python = plane(before), plane(twin)
            assert native != python

            proxy.cut()
            # Fail closed: the native 503, byte for byte Python's.
            refused = client.get("/api/strict")
            assert plane(refused) == native
            refused_twin = client.get("/api/strict", headers=_TO_PYTHON)
            assert plane(refused_twin) == python
            _same_answer(refused_twin, refused, 503)
            assert refused.headers["retry-after"] == "1"
            assert refused.json() == {
                "type": "urn:bastion:problem:rate_limiter_unavailable",
                "title": "Service unavailable",
                "status": 503,
                "detail": "The rate limiter is unavailable; try again shortly.",
                "reason": "rate_limiter_unavailable",
                "request_id": refused.headers["x-request-id"],
            }
            # Fail open: served natively, upstream reached, this node's share decides.
            seen = len(module_echo.server.received)
            lenient = client.get("/api/lenient")
            assert (lenient.status_code, plane(lenient)) == (200, native)
            assert len(module_echo.server.received) == seen + 1
            assert lenient.headers["ratelimit-policy"] == '"10/minute";q=10;w=60'
            assert lenient.headers["ratelimit"] == '"10/minute";r=9;t=6'
            # The deferred twin draws from the same local bucket.
            lenient_twin = client.get("/api/lenient", headers=_TO_PYTHON)
            assert (lenient_twin.status_code, plane(lenient_twin)) == (200, python)
            assert lenient_twin.headers["ratelimit"] == '"10/minute";r=8;t=12'

            proxy.restore()
            _until(lambda: client.get("/api/strict").status_code == 200, within=5)
            after = client.get("/api/strict")
            assert (after.status_code, plane(after)) == (200, native)
            time.sleep(0.5)  # the drain reports the recovery
        log = proc.stderr
        assert log.count("rate limiter backend down, limits fail closed (503)") == 1, log
        assert log.count("rate limiter backend up again after") == 1, log
        assert "Traceback" not in log, log

    rows = _audit(f"sqlite:///{tmp_path}/bastion.db", "gateway.denied")
    assert (
        sorted((r.reason, r.route, r.data["step"], r.data["status"]) for r in rows)
        == [("rate_limiter_unavailable", "strict", "limit", 503)] * 2
    )
    downs = _audit(f"sqlite:///{tmp_path}/bastion.db", "ratelimit.backend_down")
    ups = _audit(f"sqlite:///{tmp_path}/bastion.db", "ratelimit.backend_up")
    assert (len(downs), len(ups)) == (1, 1)


# -- risk-flagged requesters --------------------------------------------------------------

_RISK = """tls: {{mode: 'off'}}
trusted_proxies: ['192.0.2.1']
logging: {{level: warning}}
server: {{engine: {engine}}}
alerts: {{detectors: {{ip_failures: {{failures: 3, window: 60}}}}}}
ratelimit: {{risk: {{factor: 4, duration: 300}}}}
routes:
  - name: free
    match: {{path: /api/free}}
    upstream: {upstream}
    auth: [api_key]
  - name: tight
    match: {{path: /api/tight}}
    upstream: {upstream}
    auth: [api_key]
    limits: [{{per: key, rate: 8/minute}}]
"""


@pytest.mark.timeout(180)
def test_risk_flagged_limits_are_tightened_natively_like_pythons(
    tmp_path: Path,
    module_echo: EchoThread,
    redis_url: str,
    redis_prefix: str,
    postgres_url: str,
) -> None:
    asyncio.run(migrate(postgres_url))
    configs = []
    for engine in ("native", "uvicorn"):
        config = tmp_path / f"{engine}.yaml"
        config.write_text(
            f"storage: '{postgres_url}'\n"
            f"shared: {{url: '{redis_url}', key_prefix: '{redis_prefix}'}}\n"
            + _RISK.format(engine=engine, upstream=module_echo.server.url),
            encoding="utf-8",
        )
        configs.append(config)
    key = cli_json(configs[0], "keys", "create", "shop")["key"]
    bearer = {"Authorization": f"Bearer {key}"}
    made_up = {"Authorization": "Bearer bst_nope"}
    with (
        BastionProcess("-c", str(configs[0]), cwd=tmp_path) as native_node,
        BastionProcess("-c", str(configs[1]), cwd=tmp_path) as python_node,
        httpx.Client(timeout=10) as client,
    ):
        n, p = native_node.url, python_node.url
        # The key is looked up (Python) and pushed: its next request is native.
        assert client.get(n + "/api/free", headers=bearer).status_code == 200
        warm = client.get(n + "/api/free", headers=bearer)
        assert warm.status_code == 200
        native = plane(warm)
        assert client.get(p + "/api/free", headers=bearer).status_code == 200
        # Three 401s from 127.0.0.1 on each node: its ip_failures alert flags the address.
        for url in (n, p):
            for _ in range(3):
                assert client.get(url + "/api/free", headers=made_up).status_code == 401
        alerts = lambda: _audit(postgres_url, "alert.raised")  # noqa: E731
        _until(lambda: sum(a.reason == "ip_failures" for a in alerts()) >= 2, within=10)
        time.sleep(0.3)  # each node's listener flags on the same event

        # 8/minute divided by 4: 8 per 240 s with a bucket of 2, one budget for both nodes.
        first = client.get(n + "/api/tight", headers=bearer)
        assert (first.status_code, plane(first)) == (200, native)
        assert first.headers["ratelimit-policy"] == '"8/minute";q=2;w=60'
        assert first.headers["ratelimit"] == '"8/minute";r=1;t=30'
        second = client.get(p + "/api/tight", headers=bearer)
        assert second.status_code == 200
        assert second.headers["ratelimit"] == '"8/minute";r=0;t=60'
        refused = client.get(n + "/api/tight", headers=bearer)
        assert plane(refused) == native
        twin = client.get(n + "/api/tight", headers=bearer | _TO_PYTHON)
        _same_answer(twin, refused, 429)
        assert refused.headers["ratelimit"] == '"8/minute";r=0;t=60'
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["reason"] == "rate_limited"
        assert client.get(p + "/api/tight", headers=bearer).status_code == 429
        # The free route has no limits: the flag changes nothing there.
        assert client.get(n + "/api/free", headers=bearer).status_code == 200
