"""End to end: CORS routes served by the native plane, alike to the Python pipeline.

One ``bastion serve`` (native engine) with CORS routes; which plane answered is told by
the request id's per-plane prefix (``/healthz`` is always Python's; a public route's GET
is always native):

- a preflight for a CORS route is answered natively (204, never proxied), with a head
  byte-identical to the one Python rendered for the same preflight (recorded in
  ``tests/vectors/twins/test_native_cors.json``, as are Python's other answers here);
- look-alike origins (suffix / prefix tricks, ``null``, case, port, trailing dot, two
  ``Origin`` fields) are refused natively, preflight and actual request alike, with
  Python's 403 ``cors_origin_not_allowed`` (byte-identical) and never reach the upstream;
  every refusal is one ``gateway.denied`` audit row (step ``cors``);
- allowed requests carry ``Access-Control-Allow-Origin`` (the exact origin), credentials,
  expose headers and ``Vary: Origin``; the upstream's own ``Access-Control-*`` are dropped;
- the native 429, the native 401 of a refused API key and the native 502 carry them too
  (the 401 byte-identical to Python's);
- a preflight refused for its method or a header is refused natively too (compared with
  Python's answer in ``test_native_edges.py``); a preflight to a route without CORS is an
  ordinary ``OPTIONS``, proxied natively (``test_native_options.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread, free_port
from _support.gateway_server import raw_request
from _support.native import cli_json, migrated_config, plane
from _support.recorded import Recorded
from bastion.crypto import generate_api_key
from bastion.storage import Database

APP = "https://app.example.com"
LOCAL = "http://localhost:3000"
ATTACKS = [
    "https://app.example.com.evil.com",  # suffix
    "https://evilapp.example.com",  # prefix
    "https://evil.com/https://app.example.com",
    "https://app.example.co",
    "http://app.example.com",  # scheme
    "https://app.example.com:8443",  # port
    "https://app.example.com:443",
    "https://app.example.com.",  # trailing dot
    "https://APP.example.com",  # case
    "HTTPS://app.example.com",
    "https://app.example.com/",
    "null",
    "*",
    "",
]


class _CorsUpstream(BaseHTTPRequestHandler):
    """An upstream that answers CORS itself (wrongly, for bastion's routes)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"upstream": "cors"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Access-Control-Expose-Headers", "X-Secret")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("X-Upstream", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def cors_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CorsUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, echo_module: EchoThread, cors_upstream: str
) -> Iterator[tuple[BastionProcess, Path, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("native-cors")
    echo = echo_module.server.url
    config = migrated_config(
        tmp,
        "  - name: browser\n"
        "    match: {path: /api/browser, methods: [GET, POST, DELETE]}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        f"    cors: {{origins: ['{APP}', '{LOCAL}'], methods: [GET, POST],"
        " expose_headers: [RateLimit], credentials: true, max_age: 5m}\n"
        "  - name: keyed\n"
        "    match: {path: /api/keyed, methods: [GET]}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    api_key_header: X-API-Key\n"
        f"    cors: {{origins: ['{APP}']}}\n"
        "  - name: limited\n"
        "    match: {path: /api/limited}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        "    limits: [{per: ip, rate: 2/minute}]\n"
        f"    cors: {{origins: ['{APP}'], credentials: true}}\n"
        "  - name: theirs\n"
        "    match: {path: /api/theirs, methods: [GET]}\n"
        f"    upstream: {cors_upstream}\n"
        "    public: true\n"
        f"    cors: {{origins: ['{APP}']}}\n"
        "  - name: down\n"
        "    match: {path: /api/down, methods: [GET]}\n"
        f"    upstream: http://127.0.0.1:{free_port()}\n"
        "    public: true\n"
        f"    cors: {{origins: ['{APP}']}}\n"
        "  - name: plain\n"
        "    match: {path: /api/plain}\n"
        f"    upstream: {echo}\n"
        "    public: true\n",
    )
    key = cli_json(config, "keys", "create", "web")
    with BastionProcess("-c", str(config), cwd=tmp) as proc:
        yield proc, tmp, key


@pytest.fixture
def client(served: tuple[BastionProcess, Path, dict[str, Any]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0].url, verify=False, timeout=10) as c:
        yield c


def planes(client: httpx.Client) -> tuple[str, str]:
    """(Python's request id prefix, the native plane's)."""
    python = plane(client.get("/healthz"))
    native = plane(client.get("/api/plain/x"))
    assert python != native
    return python, native


def preflight(origin: str, method: str = "POST", headers: str | None = None) -> dict[str, str]:
    out = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        out["Access-Control-Request-Headers"] = headers
    return out


#: Python's answers to this module's requests.
ANSWERS = Recorded(__name__)


def raw_head(proc: BastionProcess, request: bytes) -> tuple[bytes, bytes]:
    """Send one raw request; return (response head bytes, body bytes read with it)."""
    answer = raw_request(proc.port, request, tls=proc.url.startswith("https"))
    return answer.head, answer.body


def masked(head: bytes, body: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, body) without the date and the request id (in the body too); and the id."""
    lines = head.split(b"\r\n")
    rid = b""
    kept = []
    for line in lines:
        name = line.partition(b":")[0].lower()
        if name == b"x-request-id":
            rid = line.partition(b":")[2].strip()
            continue
        if name == b"date":
            continue
        kept.append(line)
    return b"\r\n".join(kept), body.replace(rid, b"RID") if rid else body, rid


def request_bytes(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: gw.test",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_preflight_answered_natively_byte_identical_to_python(
    served: tuple[BastionProcess, Path, dict[str, Any]],
    client: httpx.Client,
    echo_module: EchoThread,
) -> None:
    proc = served[0]
    _, native = planes(client)
    before = len(echo_module.server.received)
    asked = preflight(APP, "POST", "Content-Type, authorization")
    native_head, native_body, native_rid = masked(
        *raw_head(proc, request_bytes("OPTIONS", "/api/browser/x", asked))
    )
    assert native_rid.rsplit(b"-", 1)[0].decode() == native
    assert native_head.decode("latin-1") == ANSWERS["preflight"]["head"]
    assert native_body == b"" == ANSWERS["preflight"]["body"].encode()
    assert native_head.startswith(b"HTTP/1.1 204 ")
    for line in (
        b"access-control-allow-origin: https://app.example.com",
        b"access-control-allow-methods: GET, HEAD, POST",
        b"access-control-max-age: 300",
        b"vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        b"access-control-allow-headers: authorization, content-type",
        b"access-control-allow-credentials: true",
    ):
        assert line in native_head.lower().split(b"\r\n") or line in native_head.split(b"\r\n")
    # Preflights carry no credentials and are never proxied: the keyed route answers one too.
    keyed = client.options("/api/keyed", headers=preflight(APP, "GET", "x-api-key"))
    assert keyed.status_code == 204
    assert plane(keyed) == native
    assert keyed.headers["access-control-allow-headers"] == "authorization, content-type, x-api-key"
    assert "access-control-allow-credentials" not in keyed.headers
    assert len(echo_module.server.received) == before


@pytest.mark.parametrize("origin", ATTACKS)
def test_look_alike_origins_refused_natively(
    client: httpx.Client, echo_module: EchoThread, origin: str
) -> None:
    _, native = planes(client)
    before = len(echo_module.server.received)
    asked = client.options("/api/browser", headers=preflight(origin))
    actual = client.post("/api/browser", headers={"Origin": origin}, content=b"{}")
    for response in (asked, actual):
        assert response.status_code == 403
        assert response.json()["reason"] == "cors_origin_not_allowed"
        assert response.json()["detail"] == "This origin may not call this route from a browser."
        assert response.headers["vary"] == "Origin"
        assert "access-control-allow-origin" not in response.headers
        assert plane(response) == native
    assert len(echo_module.server.received) == before  # neither reached the upstream


def test_refusals_byte_identical_and_audited(
    served: tuple[BastionProcess, Path, dict[str, Any]], client: httpx.Client
) -> None:
    proc, tmp, _ = served
    _, native = planes(client)
    evil = {"Origin": "https://app.example.com.evil.com"}
    for method, headers in (("GET", evil), ("OPTIONS", preflight(evil["Origin"], "GET"))):
        n_head, n_body, n_rid = masked(
            *raw_head(proc, request_bytes(method, "/api/browser", headers))
        )
        assert n_rid.rsplit(b"-", 1)[0].decode() == native
        expected = ANSWERS[f"{method} evil"]
        assert (n_head.decode("latin-1"), n_body.decode()) == (
            expected["head"],
            expected["body"],
        ), method
        assert n_head.startswith(b"HTTP/1.1 403 ")
    # Two Origin fields: refused (exactly one is compared, byte for byte).
    two = raw_head(
        proc,
        request_bytes("GET", "/api/browser", {}).replace(
            b"\r\n\r\n", f"\r\nOrigin: {APP}\r\nOrigin: {APP}\r\n\r\n".encode()
        ),
    )
    assert two[0].startswith(b"HTTP/1.1 403 ")
    assert b"cors_origin_not_allowed" in two[1]

    async def denied() -> list[Any]:
        db = await Database.connect(f"sqlite:///{tmp}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return [r for r in page.items if r.reason == "cors_origin_not_allowed"]
        finally:
            await db.close()

    # Each refusal, whichever plane rendered it, is one row as Python records it (the
    # audit writer drains the native queue in batches: wait for it).
    for _ in range(50):
        rows = asyncio.run(denied())
        if any(r.data["method"] == "OPTIONS" for r in rows) and len(rows) >= 3:
            break
        time.sleep(0.1)
    mine = [r for r in rows if r.route == "browser" and r.data["path"] == "/api/browser"]
    assert len(mine) >= 3
    for row in mine:
        assert row.data["step"] == "cors" and row.data["status"] == 403
        assert row.ip == "127.0.0.1" and row.subject is None and row.key_id is None


def test_allowed_requests_carry_cors_headers(client: httpx.Client) -> None:
    _, native = planes(client)
    allowed = client.get("/api/browser/x", headers={"Origin": LOCAL})
    assert allowed.status_code == 200
    assert plane(allowed) == native
    assert allowed.headers["access-control-allow-origin"] == LOCAL
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert allowed.headers["access-control-expose-headers"] == "RateLimit"
    assert allowed.headers.get_list("vary") == ["Origin"]
    # The Origin still reaches the upstream (bastion judges it; the upstream may log it).
    assert allowed.json()["headers"]["origin"] == LOCAL
    # Without Origin: not a CORS request, but caches must still key on Origin.
    bare = client.get("/api/browser/x")
    assert bare.status_code == 200 and plane(bare) == native
    assert bare.headers.get_list("vary") == ["Origin"]
    assert not [h for h in bare.headers if h.lower().startswith("access-control-")]


def test_upstream_access_control_headers_dropped(client: httpx.Client) -> None:
    _, native = planes(client)
    response = client.get("/api/theirs", headers={"Origin": APP})
    assert response.status_code == 200 and plane(response) == native
    assert response.headers["x-upstream"] == "yes"
    assert response.headers.get_list("access-control-allow-origin") == [APP]
    assert "access-control-allow-credentials" not in response.headers
    assert "access-control-expose-headers" not in response.headers
    assert response.headers.get_list("vary") == ["Accept-Encoding", "Origin"]
    bare = client.get("/api/theirs")
    assert not [h for h in bare.headers if h.lower().startswith("access-control-")]


def test_native_429_and_502_carry_cors_headers(client: httpx.Client) -> None:
    _, native = planes(client)
    responses = [client.get("/api/limited", headers={"Origin": APP}) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    limited = responses[2]
    assert plane(limited) == native
    assert limited.json()["reason"] == "rate_limited"
    assert limited.headers["access-control-allow-origin"] == APP
    assert limited.headers["access-control-allow-credentials"] == "true"
    assert limited.headers["vary"] == "Origin"
    assert limited.headers["retry-after"]
    names = [n.lower() for n, _ in limited.headers.raw]
    # Python's order: the error's own headers, then the route's CORS headers.
    assert names.index(b"ratelimit") < names.index(b"access-control-allow-origin")
    down = client.get("/api/down", headers={"Origin": APP})
    assert down.status_code == 502 and plane(down) == native
    assert down.json()["reason"] == "upstream_unavailable"
    assert down.headers["access-control-allow-origin"] == APP
    assert down.headers["vary"] == "Origin"


def test_refused_api_key_401_carries_cors_headers_on_both_planes(
    served: tuple[BastionProcess, Path, dict[str, Any]], client: httpx.Client
) -> None:
    _, native = planes(client)
    unknown = generate_api_key()
    headers = {"Origin": APP, "X-API-Key": unknown}
    # The first request of the key (a lookup), natively, as Python answered it.
    first = client.get("/api/keyed", headers=headers)
    assert plane(first) == native
    assert first.status_code == 401
    assert first.json()["reason"] == "invalid_api_key"
    assert first.headers["access-control-allow-origin"] == APP
    assert first.headers["vary"] == "Origin"
    ANSWERS.check("unknown key", first)
    # A valid key: allowed natively (once cached), with the CORS headers.
    key = served[2]["key"]
    ok = [client.get("/api/keyed", headers={"Origin": APP, "X-API-Key": key}) for _ in range(2)]
    assert [r.status_code for r in ok] == [200, 200]
    assert plane(ok[1]) == native
    assert ok[1].headers["access-control-allow-origin"] == APP


def test_refused_preflights_are_native_an_ordinary_options_python(
    client: httpx.Client, echo_module: EchoThread
) -> None:
    _, native = planes(client)
    # DELETE is a route method but not a CORS method: Python's 403 (its detail quotes it).
    method = client.options("/api/browser", headers=preflight(APP, "DELETE"))
    assert method.status_code == 403 and plane(method) == native
    assert method.json()["reason"] == "cors_method_not_allowed"
    assert method.json()["detail"] == "'DELETE' is not allowed from this origin."
    header = client.options("/api/browser", headers=preflight(APP, "GET", "x-secret, accept"))
    assert header.status_code == 403 and plane(header) == native
    assert header.json()["reason"] == "cors_header_not_allowed"
    # A preflight to a route without CORS is an ordinary OPTIONS, proxied natively.
    before = len(echo_module.server.received)
    plain = client.options("/api/plain", headers=preflight(APP, "GET"))
    assert plain.status_code == 200 and plane(plain) == native
    assert plain.json()["method"] == "OPTIONS"
    assert "access-control-allow-origin" not in plain.headers
    assert len(echo_module.server.received) == before + 1
