"""End to end: the limit cases the native core once left to Python, decided natively.

- **A limit divided past what a bucket can hold**: with Redis unreachable, a limit that
  fails open is this node's share (``limit ÷ live nodes``); a ``1/day`` limit shared by
  20,000 nodes (the heartbeat's counter, set in the test Redis) would make one request
  wait longer than a bucket's bound (~35 years). Both planes now take the furthest
  division within the bound (``Limit.divided``; once, Python raised — a 500 — and the
  native core deferred): the first request is admitted, the next refused with ``429
  rate_limited`` natively as Python refused it; a limit failing closed is the native ``503
  rate_limiter_unavailable``, as Python's (both recorded, answer and audit row, in
  ``tests/vectors/twins/test_native_limits_rest.json``).
- **Redis URLs the native limiter cannot apply** (TLS options beyond ``ssl_ca_certs``,
  ``ssl_certfile`` and ``ssl_keyfile``, options only redis-py reads) are refused when the
  configuration loads, with a line naming the option; the ones it applies leave every
  route native (``bastion routes list``).
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import redis

from _support import BastionProcess, EchoThread, run_cli, tcp_proxy
from _support.gateway_server import audit_rows, plane, row_parts
from _support.native import cli_json, migrated_config
from _support.recorded import Recorded

ROUTES = """  - name: daily
    match: {{path: /daily}}
    upstream: {upstream}
    public: true
    limits: [{{per: ip, rate: 1/day, fail: open}}]
  - name: strict
    match: {{path: /strict}}
    upstream: {upstream}
    public: true
    limits: [{{per: ip, rate: 100/minute, fail: closed}}]
  - name: free
    match: {{path: /free}}
    upstream: {upstream}
    public: true
"""
NODES = 20_000
#: What Python's pipeline answered (and audited) in the outage below.
RECORDED = Recorded(__name__)


@pytest.mark.timeout(180)
def test_limits_divided_past_the_bound_and_failing_closed_during_an_outage(
    tmp_path: Path, echo: EchoThread, redis_url: str, redis_prefix: str
) -> None:
    target = urlsplit(redis_url)
    database = target.path or "/0"
    store = redis.Redis.from_url(redis_url)
    with tcp_proxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        config = tmp_path / "bastion.yaml"
        config.write_text(
            f"storage: sqlite:///{tmp_path}/bastion.db\n"
            f"shared: {{url: 'redis://127.0.0.1:{proxy.port}{database}', "
            f"key_prefix: '{redis_prefix}'}}\n"
            "routes:\n" + ROUTES.format(upstream=echo.server.url),
            encoding="utf-8",
        )
        assert run_cli("migrate", "-c", str(config), cwd=tmp_path).returncode == 0
        # The heartbeat (5 s slots) reads its counter: 20,000 live nodes, for a minute.
        slot = int(time.time() // 5)
        for n in range(-1, 12):
            store.set(f"{redis_prefix}ratelimit:nodes:{slot + n}", NODES, ex=90)
        proc = BastionProcess("-c", str(config), cwd=tmp_path)
        with proc, httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
            free = client.get("/free")
            assert free.status_code == 200
            native = plane(free)
            assert native != plane(client.get("/healthz"))
            time.sleep(3)  # a heartbeat or two: the node count is pushed natively too

            proxy.cut()
            first = client.get("/daily")
            assert (first.status_code, plane(first)) == (200, native)
            assert first.headers["ratelimit-policy"] == '"1/day";q=1;w=1125878400'
            # The next request waits longer than the window: refused, as Python refused it.
            refused = client.get("/daily")
            assert (refused.status_code, plane(refused)) == (429, native)
            assert refused.json()["reason"] == "rate_limited"
            RECORDED.check("daily 429", refused)

            closed = client.get("/strict")
            assert (closed.status_code, plane(closed)) == (503, native)
            assert closed.json()["reason"] == "rate_limiter_unavailable"
            RECORDED.check("strict 503", closed)
            proxy.restore()
    ids = {r.headers["x-request-id"] for r in (refused, closed)}
    rows = audit_rows(tmp_path, "gateway.denied", ids)
    by_id = {
        rid: orjson.loads(orjson.dumps(row_parts(row), default=str)) for rid, row in rows.items()
    }
    assert len(by_id) == 2
    assert by_id[refused.headers["x-request-id"]] == RECORDED["row daily 429"]
    assert by_id[closed.headers["x-request-id"]] == RECORDED["row strict 503"]


def _config(tmp_path: Path, url: str) -> Path:
    config = migrated_config(
        tmp_path,
        "  - name: strict\n"
        "    match: {path: /strict}\n"
        "    upstream: http://127.0.0.1:9\n"
        "    public: true\n"
        "    limits: [{per: ip, rate: 1/second}]\n",
    )
    config.write_text(f"shared: {{url: '{url}'}}\n" + config.read_text())
    return config


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("ssl_cert_reqs=none", "does not apply ssl_cert_reqs"),
        ("ssl_check_hostname=false", "does not apply ssl_check_hostname"),
        ("ssl_ca_path=/etc/ssl/certs", "does not apply ssl_ca_path"),
        ("ssl_min_version=3", "does not apply ssl_min_version"),
        ("ssl_certfile=/c.pem", "ssl_certfile and ssl_keyfile go together"),
    ],
)
def test_tls_options_the_native_limiter_does_not_apply_are_refused_at_load(
    tmp_path: Path, query: str, named: str
) -> None:
    config = _config(tmp_path, f"rediss://127.0.0.1:6380/0?{query}")
    listed = run_cli("routes", "list", "-c", str(config), cwd=tmp_path)
    assert listed.returncode != 0
    assert "shared.url" in listed.stderr and named in listed.stderr, listed.stderr


def test_options_only_redis_py_reads_are_refused_at_load(tmp_path: Path) -> None:
    config = _config(tmp_path, "redis://u:hunter2@127.0.0.1:6379/0?socket_timeout=3")
    listed = run_cli("routes", "list", "-c", str(config), cwd=tmp_path)
    assert listed.returncode != 0
    assert "does not apply socket_timeout" in listed.stderr
    assert "hunter2" not in listed.stderr


def test_the_options_it_applies_leave_every_route_native(tmp_path: Path) -> None:
    url = "rediss://127.0.0.1:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
    config = _config(tmp_path, url)
    listed = cli_json(config, "routes", "list")["routes"]
    assert [r["name"] for r in listed] == ["strict"]
