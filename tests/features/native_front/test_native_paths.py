"""End to end: every request target Python's app normalises is served natively, alike.

One ``bastion serve`` (native engine); which plane answered is told by the request id's
per-plane prefix. Each request is sent twice over a raw socket: as is, and with a
method-override header (its twin: the native plane defers the head; Python drops the
header and decides alike). The two answers are byte-identical but for the request id and
the date, and:

- a target Python rewrites (``//``, dot segments, ``%41``, ``%7E``, ``%2e``, bytes outside
  ``pchar``) is served natively: the upstream sees the same path (normal form, prefix
  stripped, base added) and the same raw query as with the twin; a refusal of the normal
  form (404, 405) is the same ``gateway.denied`` row (its ``data.path`` the normal form)
  and the same count in ``bastion_gateway_requests_total``;
- a path with ``%`` that normalisation refuses (``%2F``, ``%5C``, ``%00``, a bad escape,
  ``%2e%2e;``, ``..`` above the root spelled ``%2e%2e``) gets the app's ``400
  invalid_path`` natively, neither audited nor metered, as Python's;
- an absolute-form target (``GET http://host/path?q HTTP/1.1``) is served natively as
  Python serves it: by its path and query, routed by the ``Host`` header whatever
  authority the target names (RFC 9112 §3.2.2 says the target's authority wins;
  bastion's Python ignores it, and the native plane keeps Python's answer);
- path tricks get Python's answer, whichever plane gives it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread
from _support.native import migrated_config, plane
from bastion.storage import Database

DEFER = {"X-HTTP-Method-Override": "GET"}


@pytest.fixture(scope="module")
def echo_module() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, echo_module: EchoThread
) -> Iterator[tuple[BastionProcess, Path]]:
    tmp = tmp_path_factory.mktemp("native-paths")
    echo = echo_module.server.url
    config = migrated_config(
        tmp,
        "  - name: api\n"
        "    match: {path: /api}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        "  - name: orders\n"
        "    match: {path: /api/orders, methods: [GET, POST]}\n"
        f"    upstream: {echo}/v1\n"
        "    strip_prefix: true\n"
        "    public: true\n"
        "  - name: hosted\n"
        "    match: {path: /adm, host: admin.example}\n"
        f"    upstream: {echo}\n"
        "    public: true\n",
    )
    with BastionProcess("-c", str(config), cwd=tmp) as proc:
        yield proc, tmp


def raw(proc: BastionProcess, request: bytes) -> tuple[bytes, bytes]:
    """Send one raw request; return (response head, body)."""
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
    if proc.url.startswith("https"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return head, rest


class Answer:
    """A response head and body, the request id and the date masked."""

    def __init__(self, head: bytes, body: bytes) -> None:
        kept = []
        self.rid = ""
        for line in head.split(b"\r\n"):
            name = line.partition(b":")[0].lower()
            if name == b"x-request-id":
                self.rid = line.partition(b":")[2].strip().decode()
            elif name not in (b"date", b"content-length"):
                kept.append(line)
        self.body = body.replace(self.rid.encode(), b"RID") if self.rid else body
        self.head = b"\r\n".join(kept)
        self.status = int(head.split(b" ", 2)[1])
        self.plane = self.rid.rsplit("-", 1)[0]


def send(
    proc: BastionProcess, method: str, target: str, headers: dict[str, str] | None = None
) -> Answer:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if not any(k.lower() == "host" for k in headers or {}):
        lines.insert(1, "Host: gw.test")
    return Answer(*raw(proc, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")))


def twins(
    proc: BastionProcess, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[Answer, Answer]:
    """(the answer as sent, its Python twin: the same request with a method-override header)."""
    return send(proc, method, target, headers), send(
        proc, method, target, {**(headers or {}), **DEFER}
    )


def same(native: Answer, python: Answer, target: str) -> None:
    assert native.status == python.status, (target, native.head, python.head)
    assert native.head == python.head, (target, native.head, python.head)
    assert native.body == python.body, (target, native.body, python.body)


def planes(proc: BastionProcess) -> tuple[str, str]:
    """(Python's request id prefix, the native plane's)."""
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        python = plane(client.get("/healthz"))
        native = plane(client.get("/api/x"))
    assert python != native
    return python, native


def upstream_saw(echo: EchoThread, before: int) -> list[tuple[str, str, str]]:
    """(method, path, query) of each request the upstream received since ``before``."""
    return [(r.method, r.path, r.query) for r in list(echo.server.received)[before:]]


_SERIES = re.compile(rb"^bastion_gateway_requests_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


def counts(proc: BastionProcess) -> dict[tuple[str, str], float]:
    scrape = httpx.get(f"{proc.url}/metrics", verify=False, timeout=10)
    assert scrape.status_code == 200
    out: dict[tuple[str, str], float] = {}
    for labels, value in _SERIES.findall(scrape.content):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels.decode()))
        out[(parsed.get("route", ""), parsed.get("outcome", ""))] = float(value)
    return out


def denied_rows(tmp: Path, rids: set[str], expect: int, within: float = 10.0) -> dict[str, Any]:
    """The ``gateway.denied`` rows of these request ids, once ``expect`` of them are in."""

    async def rows() -> list[Any]:
        db = await Database.connect(f"sqlite:///{tmp}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=1000)
            return list(page.items)
        finally:
            await db.close()

    deadline = time.monotonic() + within
    while True:
        found = {row.request_id: row for row in asyncio.run(rows()) if row.request_id in rids}
        if len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


# (target as sent, the path and query the upstream gets: Python's normal form, mapped)
REWRITTEN = [
    ("/api//x", "/api/x", ""),
    ("//api/x?q=1&r=/../", "/api/x", "q=1&r=/../"),
    ("/api/./x/../y/", "/api/y/", ""),
    ("/api/x/..", "/api/", ""),
    ("/%61pi/%7Ex", "/api/~x", ""),
    ("/api/%2e%2E/api/z?%2e", "/api/z", "%2e"),
    ("/api/a%3a%e2%82%ac", "/api/a%3A%E2%82%AC", ""),
    ('/api/"q"', "/api/%22q%22", ""),
    ("/api/x;p=1", "/api/x;p=1", ""),
    ("/api/orders/../orders//7?x=%2e", "/v1/7", "x=%2e"),
    ("/api/%6Frders/.", "/v1/", ""),
    ("/api/orders?", "/v1/", ""),
]


def test_rewritten_targets_are_served_natively_as_python_serves_them(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, _ = served
    python_plane, native_plane = planes(proc)
    for target, path, query in REWRITTEN:
        before = len(echo_module.server.received)
        native = send(proc, "GET", target)
        middle = len(echo_module.server.received)
        python = send(proc, "GET", target, DEFER)
        assert (native.status, native.plane, python.plane) == (200, native_plane, python_plane), (
            target,
            native.head,
        )
        saw = upstream_saw(echo_module, before)
        assert len(saw) == 2 and middle == before + 1, (target, saw)
        # The upstream got Python's normal form and the raw query, from either plane.
        assert saw[0] == saw[1] == ("GET", path, query), (target, saw)
        same(native, python, target)


# (method, target as sent, status, reason, the path Python's audit row records)
REFUSED = [
    ("GET", "/nothing//x/.", 404, "route_not_found", "/nothing/x/"),
    ("GET", "/API", 404, "route_not_found", "/API"),
    ("GET", "/api;x=1", 404, "route_not_found", "/api;x=1"),
    ("GET", "/%41PI/x", 404, "route_not_found", "/API/x"),
    ("PUT", "/api//orders/./1", 405, "method_not_allowed", "/api/orders/1"),
    ("DELETE", "/api/%6frders", 405, "method_not_allowed", "/api/orders"),
]
# The app's own 400 (before its gateway): a path with "%" that normalisation refuses.
APP_REFUSED = [
    ("/api/%2Fadmin", "The request path contains an encoded slash (%2F), which is refused."),
    ("/api/x%5c", "The request path contains an encoded backslash (%5C), which is refused."),
    ("/api/%00", "The request path contains an encoded control character, which is refused."),
    ("/api/%zz", "The request path contains an invalid percent-escape."),
    ("/api/x%4", "The request path contains an invalid percent-escape."),
    (
        "/api/%2e%2e;/x",
        "The request path contains a dot segment with a path parameter ('..;'), which is refused.",
    ),
    ("/%2e%2e/api", "The request path climbs above the root ('..')."),
]


def test_refusals_of_the_normal_form_and_the_apps_400_are_native_and_pythons(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, tmp = served
    python_plane, native_plane = planes(proc)
    before_upstream = len(echo_module.server.received)
    counts_before = counts(proc)
    audited: dict[str, tuple[str, str]] = {}
    for method, target, status, reason, path in REFUSED:
        native, python = twins(proc, method, target)
        assert (native.status, native.plane, python.plane) == (status, native_plane, python_plane)
        assert f'"reason":"{reason}"'.encode() in native.body, native.body
        same(native, python, target)
        audited[native.rid] = (python.rid, path)
    app_rids: set[str] = set()
    for target, detail in APP_REFUSED:
        for method in ("GET", "POST"):
            native, python = twins(proc, method, target)
            assert (native.status, native.plane, python.plane) == (400, native_plane, python_plane)
            assert b'"reason":"invalid_path","request_id":"RID"' in native.body
            assert f'"detail":"{detail}"'.encode() in native.body, native.body
            same(native, python, target)
            app_rids |= {native.rid, python.rid}
    assert len(echo_module.server.received) == before_upstream, "a refused request went upstream"

    # The gateway's refusals: one row each, the native one as Python records its twin (the
    # normal form as its path); the app's 400s: none.
    rows = denied_rows(
        tmp, set(audited) | {p for p, _ in audited.values()} | app_rids, 2 * len(REFUSED)
    )
    for native_rid, (python_rid, path) in audited.items():
        native_row, python_row = rows[native_rid], rows[python_rid]
        assert native_row.data == python_row.data, (native_row.data, python_row.data)
        assert native_row.data["path"] == path
        assert (native_row.reason, native_row.route, native_row.ip) == (
            python_row.reason,
            python_row.route,
            python_row.ip,
        )
    assert not app_rids & set(rows), "the app's 400 is not a gateway decision"

    # One count each, whichever plane answered; the app's 400 is not counted.
    after = counts(proc)
    for reason in ("route_not_found", "method_not_allowed"):
        expected = 2 * sum(1 for case in REFUSED if case[3] == reason)
        label = ("(none)", reason)
        assert after.get(label, 0) - counts_before.get(label, 0) == expected, reason
    invalid = ("(none)", "invalid_path")
    assert after.get(invalid, 0) == counts_before.get(invalid, 0)


def test_absolute_form_is_served_by_its_path_and_the_host_header(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, _ = served
    python_plane, native_plane = planes(proc)
    cases: list[tuple[str, dict[str, str], int, tuple[str, str, str] | None]] = [
        ("http://gw.test/api/x?q=1", {}, 200, ("GET", "/api/x", "q=1")),
        ("https://gw.test/api//y/%7e", {}, 200, ("GET", "/api/y/~", "")),
        ("http://gw.test/api/orders/7", {}, 200, ("GET", "/v1/7", "")),
        # The authority is not read: the Host header routes (admin.example's route)...
        ("http://gw.test/adm/x", {"Host": "admin.example"}, 200, ("GET", "/adm/x", "")),
        # ... and an authority naming admin.example does not reach it.
        ("http://admin.example/adm/x", {}, 404, None),
        ("http://gw.test/nothing", {}, 404, None),
        ("http://gw.test/api/%2Fx", {}, 400, None),
        ("http://gw.test/api/../..", {}, 400, None),
    ]
    for target, headers, status, upstream in cases:
        before = len(echo_module.server.received)
        native, python = twins(proc, "GET", target, headers)
        assert (native.status, native.plane, python.plane) == (
            status,
            native_plane,
            python_plane,
        ), (
            target,
            native.head,
            native.body,
        )
        same(native, python, target)
        saw = upstream_saw(echo_module, before)
        assert saw == ([upstream, upstream] if upstream else []), (target, saw)
    # The control plane's paths in absolute form stay Python's, as before.
    answer = send(proc, "GET", "http://gw.test/healthz")
    assert (answer.status, answer.plane) == (200, python_plane)


def test_path_tricks_get_pythons_answer_whichever_plane_gives_it(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, _ = served
    python_plane, native_plane = planes(proc)
    before = len(echo_module.server.received)
    cases = {
        # The control plane's, however it is spelled: Python answers.
        "/api/../admin": python_plane,
        "/api/%2e%2e/admin": python_plane,
        "//oauth2/token": python_plane,
        "/x/../../oauth2/.well-known/../token": python_plane,
        "/%61dmin/x": python_plane,
        # Everything else: natively.
        "/api/%2Fadmin": native_plane,
        "/API": native_plane,
        "/api;x=1": native_plane,
        "/api/..;/admin": native_plane,
        "/api/%2e%2e;/admin": native_plane,
        "/api/%5C..%5Cadmin": native_plane,
    }
    for target, expected_plane in cases.items():
        native, python = twins(proc, "GET", target)
        assert (native.plane, python.plane) == (expected_plane, python_plane), (target, native.head)
        same(native, python, target)
    # Bytes the front's HTTP parser refuses never reach either plane: its bare 400.
    native, python = twins(proc, "GET", "/api/{a|b}^`[c]")
    assert (native.status, native.rid, python.status, python.rid) == (400, "", 400, "")
    same(native, python, "braces")
    assert upstream_saw(echo_module, before) == [], "a trick reached the upstream"
    # A path outside ASCII is served natively as ``normalize_path`` reads it (uvicorn
    # cannot read the raw bytes: the twin spells them percent-encoded).
    native = send(proc, "GET", "/api/caf\u00c3\u00a9")
    python = send(proc, "GET", "/api/caf%C3%A9", DEFER)
    assert (native.status, native.plane, python.plane) == (200, native_plane, python_plane)
    same(native, python, "non-ascii")


def _curl_h2(curl: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` over HTTP/2, the path as is: status, head, body."""
    extra = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    done = subprocess.run(
        [curl, "-sk", "--http2", "--path-as-is", "-D", "-", *extra, url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    head, _, answer = done.stdout.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), fields, answer


def test_http2_targets_are_read_alike(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (httpx has no h2 package here)")
    proc, _ = served
    if not proc.url.startswith("https"):
        pytest.skip("HTTP/2 is negotiated over TLS")
    python_plane, native_plane = planes(proc)
    cases = [
        ("/api//x/%7e/./y?q=1", 200, ("GET", "/api/x/~/y", "q=1")),
        ("/api/orders/../orders//7", 200, ("GET", "/v1/7", "")),
        ("/api/%2Fadmin", 400, None),
        ("/nothing//x", 404, None),
    ]
    for target, status, upstream in cases:
        before = len(echo_module.server.received)
        n_status, n_head, n_body = _curl_h2(curl, proc.url + target, {})
        p_status, p_head, p_body = _curl_h2(curl, proc.url + target, DEFER)
        n_rid, p_rid = n_head["x-request-id"], p_head["x-request-id"]
        assert (n_status, p_status) == (status, status), target
        assert (n_rid.rsplit("-", 1)[0], p_rid.rsplit("-", 1)[0]) == (native_plane, python_plane)
        assert n_body.replace(n_rid.encode(), b"RID") == p_body.replace(p_rid.encode(), b"RID")
        saw = upstream_saw(echo_module, before)
        assert saw == ([upstream, upstream] if upstream else []), (target, saw)
