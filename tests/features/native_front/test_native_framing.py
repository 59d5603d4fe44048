"""End to end: every request head Python's `framing` step refuses or serves, answered natively.

One ``bastion serve`` (native engine, ``request_limits`` small enough to cross); which plane
answered is told by the request id's per-plane prefix. Where Python's pipeline answered the
same request, its answer is recorded (``tests/vectors/twins/test_native_framing.json``): the
native one is byte-identical to it but for the request id and the date, one
``gateway.denied`` row with the recorded step, reason, route, identity and data, and one
count in Python's ``bastion_gateway_requests_total`` series:

- methods: any upper-case token (``PROPFIND``, ``QUERY``, a plain ``OPTIONS``) is proxied as
  Python proxies it, or refused with the route's ``405``; ``delete`` is ``400 invalid_method``;
- ``Host``: none, an empty one or two in HTTP/1.1, ``400 invalid_host``; one that is not a
  host name (spaces inside) is matched as Python's matcher reads it (no route's host);
- more header fields or bytes than ``request_limits``, ``431 headers_too_large`` (a
  control-plane path keeps the front's bare 431: Python's app never judges those heads);
- body framing that cannot be read one way only (``Content-Length`` with
  ``Transfer-Encoding``, several or malformed lengths, another coding, several
  ``Transfer-Encoding`` fields, chunked in HTTP/1.0): ``400 bad_request_framing`` with
  Python's document (bastion's wording for HTTP/1.0), ``connection: close``, the connection
  closed, the body never read — Python's pipeline never answered these (such a body cannot
  be forwarded), so the documents are checked against those its errors rendered (recorded);
- header fields no server reads (a name that is not a token, a control character or
  obs-fold in a value): bastion's ``400 bad_request`` problem, the connection closed, not
  audited (Python's servers refuse them before its app);
- a declared body over the route's ``max_body`` and over what a connection drains (64 KiB):
  Python's ``413 body_too_large`` without reading it, ``connection: close``, and a lingering
  close, so that a client still sending reads it; ``Expect: 100-continue`` gets the 413 and
  no ``100``; over HTTP/2 (curl) the stream ends with the 413.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread
from _support.gateway_server import (
    audit_rows,
    gateway_counts,
    h2_connect,
    h2_frame,
    h2_frames,
    hpack_literal,
)
from _support.native import migrated_config, plane
from _support.recorded import Recorded

#: Python's answers and problem documents (``document DETAIL``) for this module's requests;
#: ``ECHO`` in them is the upstream's authority (it differs from run to run).
ANSWERS = Recorded(__name__)
MAX_HEADERS = 20
MAX_HEADER_BYTES = 2048


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, echo_module: EchoThread
) -> Iterator[tuple[BastionProcess, Path]]:
    tmp = tmp_path_factory.mktemp("native-framing")
    echo = echo_module.server.url
    config = migrated_config(
        tmp,
        "  - name: open\n"
        "    match: {path: /api/open}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        "    max_body: 16\n"
        "  - name: staff\n"
        "    match: {path: /api/staff, host: staff.test}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        "  - name: gets\n"
        "    match: {path: /api/gets, methods: [GET]}\n"
        f"    upstream: {echo}\n"
        "    public: true\n",
    )
    with config.open("a") as file:
        limits = f"max_headers: {MAX_HEADERS}, max_header_bytes: {MAX_HEADER_BYTES}"
        file.write(f"request_limits: {{{limits}}}\n")
    with BastionProcess("-c", str(config), cwd=tmp) as proc:
        yield proc, tmp


def connect(proc: BastionProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
    if proc.url.startswith("https"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="localhost")
    return sock


def read_answer(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """(head, body, what came after the body) of one response (never a HEAD's)."""
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
    return head, rest[:length], rest[length:]


def closed_after(sock: socket.socket, extra: bytes) -> bool:
    """Whether the server closed the connection after its answer (nothing more came)."""
    if extra:
        return False
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class Answer:
    """A response head and body, with the request id and the date masked."""

    def __init__(self, head: bytes, body: bytes, closed: bool = False) -> None:
        kept = []
        self.rid = ""
        for line in head.split(b"\r\n"):
            name = line.partition(b":")[0].lower()
            if name == b"x-request-id":
                self.rid = line.partition(b":")[2].strip().decode()
            elif name != b"date":
                kept.append(line)
        self.body = body.replace(self.rid.encode(), b"RID") if self.rid else body
        if self.rid and self.rid.encode() in body:
            # The length of the body without its request id (ids differ in length).
            kept = [
                b"content-length: %d" % len(self.body)
                if line.lower().startswith(b"content-length:")
                else line
                for line in kept
            ]
        self.head = b"\r\n".join(kept)
        self.status = int(head.split(b" ", 2)[1])
        self.plane = self.rid.rsplit("-", 1)[0]
        self.closed = closed

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.lower() == name:
                return value.strip()
        return None

    def problem(self) -> dict[str, Any]:
        assert self.header(b"content-type") == b"application/problem+json", self.head
        document: dict[str, Any] = orjson.loads(self.body)
        return document


def send(proc: BastionProcess, request: bytes, closing: bool = False) -> Answer:
    """Send one raw request (the whole of it at once); the answer, and (``closing``) whether
    the server closed the connection after it."""
    with connect(proc) as sock:
        sock.sendall(request)
        head, body, extra = read_answer(sock)
        return Answer(head, body, closing and closed_after(sock, extra))


def as_recorded(native: Answer, case: str, echo: EchoThread, head: bytes | None = None) -> None:
    """``native`` (or its ``head`` instead of its own) is byte-identical to Python's recorded
    answer to ``case`` but for the request id and the date."""
    upstream = echo.server.url.partition("://")[2].encode()
    expected = ANSWERS[case]
    assert (head or native.head).decode("latin-1") == expected["head"], (case, native.head)
    assert native.body.replace(upstream, b"ECHO").decode() == expected["body"], native.body


def planes(client: httpx.Client) -> tuple[str, str]:
    """(Python's request id prefix, the native plane's)."""
    python = plane(client.get("/healthz"))
    native = plane(client.get("/api/open/x"))
    assert python != native
    return python, native


def _row(row: Any) -> dict[str, Any]:
    """An audit row as recorded: what it shares with Python's for the same request
    (``row_parts``: all but ids and times), by name."""
    names = ("outcome", "reason", "route", "ip", "subject", "key_id", "client_id", "user_agent")
    return {**{name: getattr(row, name) for name in names}, "data": row.data}


def _document(detail: str) -> bytes:
    """The problem document Python's error with ``detail`` rendered (``problem_response``'s
    members and order; its request id ``RID``)."""
    document: str = ANSWERS[f"document {detail}"]
    return document.encode()


def _fields(count: int) -> bytes:
    return b"".join(b"X-F%d: 1\r\n" % i for i in range(count))


def test_methods_and_hosts_and_header_limits_are_answered_natively_as_python_does(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, tmp = served
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        _, native_plane = planes(client)
    counts_before = gateway_counts(proc.url)
    received = len(echo_module.server.received)

    # A Host that is not a host name is still a host: the routes for any host serve it.
    native = send(proc, b"GET /api/open/x HTTP/1.1\r\nHost: gw.test :8443\r\n\r\n")
    assert (native.plane, native.status) == (native_plane, 200)
    as_recorded(native, "host not a name", echo_module)
    received += 1

    # Any upper-case token is proxied (the upstream sees the method), as Python proxied it.
    proxied = 0
    for method in (b"PROPFIND", b"QUERY", b"OPTIONS", b"M-SEARCH"):
        request = method + b" /api/open/x?a=1 HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        native = send(proc, request)
        assert native.plane == native_plane, method
        assert native.status == 200, (method, native.head)
        as_recorded(native, method.decode(), echo_module)
        assert orjson.loads(native.body)["method"] == method.decode()
        proxied += 1
    seen = list(echo_module.server.received)[received:]
    assert [r.method for r in seen] == ["PROPFIND", "QUERY", "OPTIONS", "M-SEARCH"]
    received += proxied

    # The refusals: (request, status, reason, route label of the metric).
    big = b"X-Big: " + b"b" * MAX_HEADER_BYTES + b"\r\n"
    # The last member: the detail of Python's own document for it (None: its route's answer).
    cases: list[tuple[bytes, int, str, str, str | None]] = [
        (
            b"delete /api/open/x HTTP/1.1\r\nHost: gw.test\r\n\r\n",
            400,
            "invalid_method",
            "(none)",
            "The request method must be an upper-case HTTP method (e.g. DELETE, not delete).",
        ),
        (
            b"PROPFIND /api/gets/x HTTP/1.1\r\nHost: gw.test\r\n\r\n",
            405,
            "method_not_allowed",
            "(none)",
            None,  # the route's 405 (`match`): compared to Python's recorded answer
        ),
        (
            b"GET /api/open/x HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
            400,
            "invalid_host",
            "(none)",
            "An HTTP/1.1 request must carry a Host header.",
        ),
        (
            b"GET /nothing/here HTTP/1.1\r\nHost:\r\n\r\n",
            400,
            "invalid_host",
            "(none)",
            "An HTTP/1.1 request must carry a Host header.",
        ),
        (
            # Not a host name: Python matches it as no route's host (no route for any host here).
            b"GET /api/staff HTTP/1.1\r\nHost: staff.test x\r\n\r\n",
            404,
            "route_not_found",
            "(none)",
            None,
        ),
        (
            b"GET /api/open/x HTTP/1.1\r\nHost: gw.test\r\nHost: other.test\r\n\r\n",
            400,
            "invalid_host",
            "(none)",
            "The request has more than one Host header; send one.",
        ),
        (
            # Over max_headers.
            b"GET /api/open/x HTTP/1.1\r\nHost: gw.test\r\n" + _fields(MAX_HEADERS) + b"\r\n",
            431,
            "headers_too_large",
            "(none)",
            f"The request has more than {MAX_HEADERS} header fields.",
        ),
        (
            # Over the fields the HTTP/1 loop parses on its stack (128) too.
            b"GET /api/open/x HTTP/1.1\r\nHost: gw.test\r\n" + _fields(300) + b"\r\n",
            431,
            "headers_too_large",
            "(none)",
            f"The request has more than {MAX_HEADERS} header fields.",
        ),
        (
            b"GET /api/open/x HTTP/1.1\r\nHost: gw.test\r\n" + big + b"\r\n",
            431,
            "headers_too_large",
            "(none)",
            f"The request headers are larger than {MAX_HEADER_BYTES} bytes.",
        ),
        (
            # The method first, as Python checks it.
            b"get /api/open/x HTTP/1.1\r\n" + _fields(MAX_HEADERS + 1) + b"\r\n",
            400,
            "invalid_method",
            "(none)",
            "The request method must be an upper-case HTTP method (e.g. DELETE, not delete).",
        ),
    ]
    rids: dict[str, tuple[str, str]] = {}  # native request id -> (case, reason)
    expected: dict[tuple[str, str], int] = {}
    for n, (request, status, reason, label, detail) in enumerate(cases):
        native = send(proc, request)
        assert native.plane == native_plane, (request[:40], native.head)
        assert native.status == status, (request[:40], native.head)
        case = f"{n:02d} {reason}"
        as_recorded(native, case, echo_module)
        assert native.problem()["reason"] == reason
        if detail is not None:
            assert native.body == _document(detail), native.body
        rids[native.rid] = (case, reason)
        expected[(label, reason)] = expected.get((label, reason), 0) + 1
    assert len(echo_module.server.received) == received, "the upstream saw a refused request"

    rows = audit_rows(tmp, "gateway.denied", set(rids))
    for native_rid, (case, reason) in rids.items():
        assert native_rid in rows, reason
        assert _row(rows[native_rid]) == ANSWERS[case]["row"], case
        step = "match" if reason in ("method_not_allowed", "route_not_found") else "framing"
        assert (rows[native_rid].reason, rows[native_rid].data["step"]) == (reason, step)
        assert rows[native_rid].route is None

    counts = gateway_counts(proc.url)
    for series, count in expected.items():
        assert counts.get(series, 0) - counts_before.get(series, 0) == count, series

    # A control-plane path is not the gateway's: Python's app does not judge its head.
    with connect(proc) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        head, _, _ = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200 "), head
    # ... and with more fields than the front hands Python: the front's bare 431, closed.
    many = b"GET /healthz HTTP/1.1\r\nHost: gw.test\r\n" + _fields(30) + b"\r\n"
    answer = send(proc, many, closing=True)
    assert (answer.status, answer.body, answer.rid, answer.closed) == (431, b"", "", True)
    assert answer.header(b"connection") == b"close"


FRAMING = [
    (
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"0\r\n\r\n",
        "The request has both Content-Length and Transfer-Encoding; send only one.",
    ),
    (
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"0\r\n\r\n",
        "The request has both Content-Length and Transfer-Encoding; send only one.",
    ),
    (
        b"Content-Length: 1\r\nContent-Length: 1\r\n",
        b"x",
        "The request's Content-Length header is malformed.",
    ),
    (b"Content-Length: 1, 1\r\n", b"x", "The request's Content-Length header is malformed."),
    (b"Content-Length: +1\r\n", b"x", "The request's Content-Length header is malformed."),
    (b"Content-Length: 1x\r\n", b"x", "The request's Content-Length header is malformed."),
    (b"Transfer-Encoding: gzip\r\n", b"x", "Transfer-Encoding must be exactly 'chunked'."),
    (
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"0\r\n\r\n",
        "Transfer-Encoding must be exactly 'chunked'.",
    ),
    (
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        b"0\r\n\r\n",
        "Transfer-Encoding must be exactly 'chunked'.",
    ),
]


def test_framing_that_cannot_be_read_one_way_is_refused_natively_and_closed(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, tmp = served
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        _, native_plane = planes(client)
    counts_before = gateway_counts(proc.url)
    received = len(echo_module.server.received)
    rids = set()
    cases = [
        (b"HTTP/1.1", b"Host: gw.test\r\n" + fields, body, detail)
        for fields, body, detail in FRAMING
    ]
    cases.append(
        (
            b"HTTP/1.0",
            b"Transfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
            # bastion's wording: Python never sees such a request (its servers refuse it).
            "An HTTP/1.0 request cannot carry Transfer-Encoding.",
        )
    )
    for version, fields, body, detail in cases:
        request = b"POST /api/open/x " + version + b"\r\n" + fields + b"\r\n" + body
        answer = send(proc, request, closing=True)
        assert answer.plane == native_plane, request
        assert answer.status == 400, (request, answer.head)
        assert answer.body == _document(detail), answer.body
        assert answer.closed, request
        if version == b"HTTP/1.1":
            assert answer.header(b"connection") == b"close"
        rids.add(answer.rid)
    assert len(echo_module.server.received) == received, "the upstream saw a refused request"
    rows = audit_rows(tmp, "gateway.denied", rids)
    assert set(rows) == rids
    for row in rows.values():
        assert (row.reason, row.route, row.data["step"]) == ("bad_request_framing", None, "framing")
    counts = gateway_counts(proc.url)
    label = ("(none)", "bad_request_framing")
    assert counts.get(label, 0) - counts_before.get(label, 0) == len(rids)

    # On a control-plane path: the same answer (not a gateway decision: no audit row).
    answer = send(
        proc,
        b"POST /oauth2/token HTTP/1.1\r\nHost: gw.test\r\n" + FRAMING[0][0] + b"\r\n0\r\n\r\n",
        closing=True,
    )
    assert (answer.status, answer.plane, answer.closed) == (400, native_plane, True)
    assert answer.body == _document(FRAMING[0][2])
    assert audit_rows(tmp, "gateway.denied", {answer.rid}, within=1.0) == {}

    # A plain chunked body is still served.
    chunked = (
        b"POST /api/open/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    answer = send(proc, chunked)
    assert (answer.status, answer.plane) == (200, native_plane)
    assert orjson.loads(answer.body)["body"] == "abc"


def test_header_fields_no_server_reads_get_a_problem_and_the_connection_closes(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, tmp = served
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        _, native_plane = planes(client)
    received = len(echo_module.server.received)
    counts_before = gateway_counts(proc.url)
    detail = (
        "The request's header fields cannot be read: a name that is not a token, or a control "
        "character or line folding in a value."
    )
    document = orjson.dumps(
        {
            "type": "urn:bastion:problem:bad_request",
            "title": "Bad request",
            "status": 400,
            "detail": detail,
            "reason": "bad_request",
            "request_id": "RID",
        }
    )
    rids = set()
    for field in (
        b"Bad Name: x\r\n",
        b"X{A}: 1\r\n",
        b"X-A: 1\r\n 2\r\n",  # obs-fold
        b"X-A: a\x01b\r\n",
        b"X-A: a\x7fb\r\n",
        b"Content-Length : 5\r\n",
    ):
        for path in (b"/api/open/x", b"/oauth2/token"):
            request = b"POST " + path + b" HTTP/1.1\r\nHost: gw.test\r\n" + field + b"\r\nhello"
            answer = send(proc, request, closing=True)
            assert (answer.status, answer.plane, answer.closed) == (400, native_plane, True), field
            assert answer.body == document, answer.body
            assert answer.header(b"connection") == b"close"
            rids.add(answer.rid)
    # Python's servers refuse these heads before its app (uvicorn: a plain-text 400): not a
    # gateway decision, neither audited nor metered, nothing forwarded.
    assert len(echo_module.server.received) == received
    assert audit_rows(tmp, "gateway.denied", rids, within=1.0) == {}
    assert gateway_counts(proc.url) == counts_before
    # Bytes every server reads: obs-text and a tab inside a value.
    answer = send(proc, b"GET /api/open/x HTTP/1.1\r\nHost: gw.test\r\nX-A: caf\xe9\tb\r\n\r\n")
    assert (answer.status, answer.plane) == (200, native_plane)


def _big_post(headers: bytes = b"", length: int = 200_000) -> bytes:
    return (
        b"POST /api/open/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n" % length
        + headers
        + b"\r\n"
    )


def test_a_large_declared_body_over_max_body_gets_the_413_unread_and_the_connection_closes(
    served: tuple[BastionProcess, Path], echo_module: EchoThread
) -> None:
    proc, tmp = served
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        _, native_plane = planes(client)
    counts_before = gateway_counts(proc.url)
    received = len(echo_module.server.received)
    document = _document("The request body is larger than 16 bytes.")

    # A client that writes its whole body while it reads: it gets the 413, then the close.
    with connect(proc) as sock:
        sock.sendall(_big_post())
        answers: list[tuple[bytes, bytes, bytes]] = []
        reader = threading.Thread(target=lambda: answers.append(read_answer(sock)))
        reader.start()
        sent = 0
        try:
            chunk = b"x" * 16384
            while sent < 200_000:
                sent += sock.send(chunk[: 200_000 - sent])
        except OSError:
            pass  # the server may stop reading once it has lingered
        reader.join(10)
        head, body, extra = answers[0]
        streamed = Answer(head, body, closed_after(sock, extra))
    assert (streamed.status, streamed.plane, streamed.closed) == (413, native_plane, True)
    assert streamed.body == document
    assert streamed.header(b"connection") == b"close"

    # Expect: 100-continue: the 413 at once, never a 100 (the body is never asked for).
    with connect(proc) as sock:
        sock.sendall(_big_post(b"Expect: 100-continue\r\n"))
        head, body, extra = read_answer(sock)
        expecting = Answer(head, body, closed_after(sock, extra))
    assert (expecting.status, expecting.plane, expecting.closed) == (413, native_plane, True)
    assert expecting.body == document and not head.startswith(b"HTTP/1.1 100")

    # Python's answer, but for the connection: Python's pipeline read the body while the
    # front streamed it, so it closed only when more than the front drains (64 KiB) was
    # still unread then, which depended on how far the upload got.
    def without_connection(head: bytes) -> bytes:
        return b"\r\n".join(
            line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")
        )

    as_recorded(streamed, "body too large", echo_module, without_connection(streamed.head))
    assert expecting.head == streamed.head
    assert len(echo_module.server.received) == received, "the upstream saw a refused request"

    rows = audit_rows(tmp, "gateway.denied", {streamed.rid, expecting.rid})
    assert _row(rows[streamed.rid]) == ANSWERS["body too large"]["row"]
    assert _row(rows[expecting.rid]) == ANSWERS["body too large"]["row"]
    assert rows[streamed.rid].data["step"] == "body"
    counts = gateway_counts(proc.url)
    label = ("open", "body_too_large")
    assert counts.get(label, 0) - counts_before.get(label, 0) == 2

    # HTTP/2: the 413 ends the stream, then the request's half is reset with NO_ERROR (RFC 9113
    # §8.1); the connection goes on (a second stream on it is served).
    frames = _h2_exchange(proc, 200_000)
    assert frames["status_seen"] and frames["ended"], frames
    rid = orjson.loads(frames["body"])["request_id"]
    assert rid.rsplit("-", 1)[0] == native_plane
    assert frames["body"].replace(rid.encode(), b"RID") == document
    assert frames["reset"] == 0 and frames["goaway"] is None, frames
    assert orjson.loads(frames["second"])["method"] == "GET"
    assert len(echo_module.server.received) == received + 1  # the second stream's GET


def _h2_exchange(proc: BastionProcess, length: int) -> dict[str, Any]:
    """POST a body declared ``length`` bytes long over HTTP/2 (sending 48 KiB of it: within
    the initial window), then a GET on stream 3; what came back (a minimal client: the frames
    are read, the response headers' HPACK is not decoded)."""
    sock = h2_connect(proc.port)
    head = b"".join(
        hpack_literal(name, value)
        for name, value in (
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"gw.test"),
            (b":path", b"/api/open/x"),
            (b"content-length", str(length).encode()),
        )
    )
    get = b"".join(
        hpack_literal(name, value)
        for name, value in (
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"gw.test"),
            (b":path", b"/api/open/x"),
        )
    )
    out: dict[str, Any] = {
        "status_seen": False,
        "body": b"",
        "ended": False,
        "reset": None,
        "goaway": None,
        "second": b"",
    }
    with sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
        sock.sendall(h2_frame(1, 0x4, 1, head))  # HEADERS, END_HEADERS
        for _ in range(3):
            sock.sendall(h2_frame(0, 0, 1, b"x" * 16384))  # DATA, not the end
        asked = False
        for kind, flags, stream, payload in h2_frames(sock):
            if kind == 4 and not flags & 1:
                sock.sendall(h2_frame(4, 1, 0, b""))  # SETTINGS ACK
            elif kind == 6 and not flags & 1:
                sock.sendall(h2_frame(6, 1, 0, payload))  # PING ACK
            elif kind == 7:
                out["goaway"] = int.from_bytes(payload[4:8], "big")
                break
            elif kind == 1 and stream == 1:
                out["status_seen"] = True
            elif kind == 0 and stream == 1:
                out["body"] += payload
                out["ended"] |= bool(flags & 1)
            elif kind == 3 and stream == 1:
                out["reset"] = int.from_bytes(payload, "big")
            elif kind == 0 and stream == 3:
                out["second"] += payload
            if out["ended"] and not asked:
                sock.sendall(h2_frame(1, 0x5, 3, get))  # HEADERS, END_HEADERS | END_STREAM
                asked = True
            if out["second"] and out["reset"] is not None:
                break
    return out
