"""End to end: every request target Python's app normalises is served natively, alike.

One ``bastion serve`` (native engine); which plane answered is told by the request id's
per-plane prefix. Each request is sent over a raw socket; its answer is byte-identical (but
for the request id and the date) to the one Python's pipeline gave to the same request,
recorded in ``tests/vectors/twins/test_native_paths.json``, and:

- a target Python rewrites (``//``, dot segments, ``%41``, ``%7E``, ``%2e``, bytes outside
  ``pchar``) is served natively: the upstream sees Python's path (normal form, prefix
  stripped, base added) and the raw query; a refusal of the normal form (404, 405) is the
  ``gateway.denied`` row Python recorded (its ``data.path`` the normal form) and one count
  in ``bastion_gateway_requests_total``;
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
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread
from _support.gateway_server import gateway_counts, raw_request
from _support.native import migrated_config, plane
from _support.recorded import Recorded
from bastion.storage import Database

#: Python's answers to this module's requests; in them ``ECHO`` is the upstream's authority,
#: ``GATEWAY`` bastion's and ``curl/VERSION`` curl's user agent (all differ from run to run).
ANSWERS = Recorded(__name__)


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
    answer = raw_request(proc.port, request, tls=proc.url.startswith("https"))
    return answer.head, answer.body


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


def masked(body: bytes, proc: BastionProcess, echo: EchoThread) -> str:
    """``body`` with what differs from run to run written as in the records."""
    upstream = echo.server.url.partition("://")[2].encode()
    body = body.replace(upstream, b"ECHO").replace(b"127.0.0.1:%d" % proc.port, b"GATEWAY")
    return re.sub(rb"curl/[0-9.]+", b"curl/VERSION", body).decode("utf-8", "backslashreplace")


def as_recorded(
    proc: BastionProcess,
    echo: EchoThread,
    native: Answer,
    case: str,
    headers: dict[str, str] | None = None,
) -> None:
    """``native`` is byte-identical to Python's recorded answer to ``case`` (``METHOD
    TARGET``), but for the request id and the date."""
    if headers and "Host" in headers:
        method, _, target = case.partition(" ")
        case = f"{method} Host: {headers['Host']} {target}"
    expected = ANSWERS[case]
    assert native.head.decode("latin-1") == expected["head"], (case, native.head)
    assert masked(native.body, proc, echo) == expected["body"], (case, native.body)


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
    _, native_plane = planes(proc)
    for target, path, query in REWRITTEN:
        before = len(echo_module.server.received)
        native = send(proc, "GET", target)
        assert (native.status, native.plane) == (200, native_plane), (target, native.head)
        saw = upstream_saw(echo_module, before)
        # The upstream got Python's normal form and the raw query.
        assert saw == [("GET", path, query)], (target, saw)
        as_recorded(proc, echo_module, native, f"GET {target}")


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
    _, native_plane = planes(proc)
    before_upstream = len(echo_module.server.received)
    counts_before = gateway_counts(proc.url)
    audited: dict[str, str] = {}
    for method, target, status, reason, path in REFUSED:
        native = send(proc, method, target)
        assert (native.status, native.plane) == (status, native_plane)
        assert f'"reason":"{reason}"'.encode() in native.body, native.body
        as_recorded(proc, echo_module, native, f"{method} {target}")
        audited[native.rid] = path
    app_rids: set[str] = set()
    for target, detail in APP_REFUSED:
        for method in ("GET", "POST"):
            native = send(proc, method, target)
            assert (native.status, native.plane) == (400, native_plane)
            assert b'"reason":"invalid_path","request_id":"RID"' in native.body
            assert f'"detail":"{detail}"'.encode() in native.body, native.body
            as_recorded(proc, echo_module, native, f"{method} {target}")
            app_rids.add(native.rid)
    assert len(echo_module.server.received) == before_upstream, "a refused request went upstream"

    # The gateway's refusals: one row each, as Python recorded it (the normal form as its
    # path); the app's 400s: none.
    rows = denied_rows(tmp, set(audited) | app_rids, len(REFUSED))
    for native_rid, path in audited.items():
        native_row = rows[native_rid]
        assert native_row.data["path"] == path
        fields = {
            "reason": native_row.reason,
            "route": native_row.route,
            "ip": native_row.ip,
            "data": native_row.data,
        }
        assert fields == ANSWERS[f"row {path}"], fields
    assert not app_rids & set(rows), "the app's 400 is not a gateway decision"

    # One count each; the app's 400 is not counted.
    after = gateway_counts(proc.url)
    for reason in ("route_not_found", "method_not_allowed"):
        expected = sum(1 for case in REFUSED if case[3] == reason)
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
        native = send(proc, "GET", target, headers)
        assert (native.status, native.plane) == (status, native_plane), (
            target,
            native.head,
            native.body,
        )
        as_recorded(proc, echo_module, native, f"GET {target}", headers)
        saw = upstream_saw(echo_module, before)
        assert saw == ([upstream] if upstream else []), (target, saw)
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
        native = send(proc, "GET", target)
        assert native.plane == expected_plane, (target, native.head)
        as_recorded(proc, echo_module, native, f"GET {target}")
    # Bytes the front's HTTP parser refuses never reach either plane: its bare 400.
    native = send(proc, "GET", "/api/{a|b}^`[c]")
    assert (native.status, native.rid) == (400, "")
    as_recorded(proc, echo_module, native, "GET braces")
    assert upstream_saw(echo_module, before) == [], "a trick reached the upstream"
    # A path outside ASCII is served natively as ``normalize_path`` reads it: the upstream
    # sees it percent-encoded, as Python's app spelled it.
    native = send(proc, "GET", "/api/caf\u00c3\u00a9")
    assert (native.status, native.plane) == (200, native_plane)
    assert upstream_saw(echo_module, before)[-1][1].endswith("/caf%C3%A9")


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
    _, native_plane = planes(proc)
    cases = [
        ("/api//x/%7e/./y?q=1", 200, ("GET", "/api/x/~/y", "q=1")),
        ("/api/orders/../orders//7", 200, ("GET", "/v1/7", "")),
        ("/api/%2Fadmin", 400, None),
        ("/nothing//x", 404, None),
    ]
    for target, status, upstream in cases:
        before = len(echo_module.server.received)
        n_status, n_head, n_body = _curl_h2(curl, proc.url + target, {})
        n_rid = n_head["x-request-id"]
        assert n_status == status, target
        assert n_rid.rsplit("-", 1)[0] == native_plane
        body = masked(n_body.replace(n_rid.encode(), b"RID"), proc, echo_module)
        assert (n_status, body) == (
            ANSWERS[f"h2 {target}"]["status"],
            ANSWERS[f"h2 {target}"]["body"],
        )
        saw = upstream_saw(echo_module, before)
        assert saw == ([upstream] if upstream else []), (target, saw)
