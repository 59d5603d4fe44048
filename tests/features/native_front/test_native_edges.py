"""End to end: the edges the native core used to leave to Python, now answered natively alike.

One ``bastion serve`` (native engine; ``trusted_proxies: [127.0.0.2]``, the forward-auth
caller connects from that source address, anyone else from 127.0.0.1). Which plane answered
is told by the request id's per-plane prefix. Each answer is compared with the answer Python's
pipeline gave to the same request (recorded in ``tests/vectors/twins/test_native_edges.json``)
byte for byte (but for the request id and the date), as one ``gateway.denied`` row with the
recorded step, reason, route, identity and data, and as one count in Python's
``bastion_gateway_requests_total{route,outcome}`` series:

- *authorize*: several required claims failing — ``403 claim_mismatch`` names the first in
  the settings' order (``zone`` before ``tier``: a sorted table would name ``tier``);
- *cors*: a preflight refused for its method (``403 cors_method_not_allowed``) or a request
  header (``403 cors_header_not_allowed``), their details quoting the value as Python's
  ``repr`` writes it — a lower-case or latin-1 method, a latin-1 header name, a quote; a
  preflight from an address the route's IP rules refuse (``403 ip_not_allowed``, step ``ip``);
- *forward-auth*: the door's own refusals — an untrusted caller (``403
  forward_auth_untrusted``), the other header family or a judged header twice (``400
  forward_auth_ambiguous``), missing or unreadable headers (``400 forward_auth_bad_request``);
  audited with no route (step ``forward_auth``, ``data.door``), metered under ``(none)``.

What still defers, and stays Python's: a decision request whose repeated headers' order
decides the detail (an ordinary ``OPTIONS`` to a route without CORS is proxied natively).
With tracing on (a second server), forward-auth decisions are traced natively as Python
traced them (``bastion.door``, the judged method, route and path), answered as recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread
from _support.gateway_server import audit_rows, gateway_counts
from _support.native import cli_json, migrated_config, plane
from _support.otlp import Receiver, attributes
from _support.recorded import Recorded, answer

APP = "https://app.example.com"
#: Python's answers to the requests of this module (its key's id in them is ``KEY``).
ANSWERS = Recorded(__name__)
Headers = list[tuple[str, str | bytes]]


def _routes(echo: str) -> str:
    return (
        "  - name: gold\n"
        "    match: {path: /api/gold}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    claims: {zone: eu, tier: gold}\n"
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    scopes: {GET: [orders:read], '*': [orders:write]}\n"
        "  - name: browser\n"
        "    match: {path: /api/browser, methods: [GET, POST, DELETE]}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        f"    cors: {{origins: ['{APP}'], methods: [GET, POST]}}\n"
        "  - name: open\n"
        "    match: {path: /api/open}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        f"    cors: {{origins: ['{APP}']}}\n"
        "  - name: inside\n"
        "    match: {path: /api/inside}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
        "    ip: {allow: [10.0.0.0/8]}\n"
        f"    cors: {{origins: ['{APP}']}}\n"
        "  - name: plain\n"
        "    match: {path: /api/plain}\n"
        f"    upstream: {echo}\n"
        "    public: true\n"
    )


def _config(tmp: Path, echo: str, extra: str = "") -> Path:
    config = migrated_config(tmp, _routes(echo))
    config.write_text("trusted_proxies: [127.0.0.2/32]\n" + extra + config.read_text())
    return config


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, echo_module: EchoThread
) -> Iterator[tuple[BastionProcess, Path, str]]:
    tmp = tmp_path_factory.mktemp("native-edges")
    config = _config(tmp, echo_module.server.url)
    key = cli_json(config, "keys", "create", "reader", "--scope", "orders:read")
    with BastionProcess("-c", str(config), cwd=tmp) as proc:
        yield proc, tmp, key["key"], key["id"]


def _clients(proc: BastionProcess) -> tuple[httpx.Client, httpx.Client]:
    """(an ordinary client from 127.0.0.1, the trusted proxy from 127.0.0.2)."""
    proxy = httpx.HTTPTransport(verify=False, local_address="127.0.0.2")
    return (
        httpx.Client(base_url=proc.url, verify=False, timeout=10),
        httpx.Client(base_url=proc.url, transport=proxy, timeout=10),
    )


def _masked(value: Any, key_id: str) -> Any:
    """``value`` with the key id of this run written ``KEY``, as in the records."""
    return json.loads(json.dumps(value).replace(key_id, "KEY"))


def _row(row: Any) -> dict[str, Any]:
    """An audit row as recorded: what it shares with Python's for the same request
    (``row_parts``: all but ids and times), by name."""
    names = ("outcome", "reason", "route", "ip", "subject", "key_id", "client_id", "user_agent")
    return {**{name: getattr(row, name) for name in names}, "data": row.data}


def _as_recorded(native: httpx.Response, case: str, key_id: str) -> None:
    """Byte-identical to Python's recorded answer but for the request id (in the body and
    any header: a decision's ``x-bastion-request-id``) and the date."""
    rid = native.headers["x-request-id"]
    got = answer(native)
    got["headers"] = [[name, value.replace(rid, "RID")] for name, value in got["headers"]]
    expected = ANSWERS[case]
    recorded_answer = {name: expected[name] for name in ("status", "headers", "body")}
    assert _masked(got, key_id) == recorded_answer, case


class Answers:
    """Sends each request; checks its native answer against Python's, remembers it."""

    def __init__(self, native: str, key_id: str) -> None:
        self.native = native
        self.key_id = key_id
        self.rids: dict[str, tuple[str, str]] = {}  # native request id -> (case, reason)
        self.expected: dict[tuple[str, str], int] = {}

    def check(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        headers: Headers,
        status: int,
        reason: str,
        route: str | None,
    ) -> httpx.Response:
        native = client.request(method, path, headers=headers)
        assert plane(native) == self.native, (native.status_code, native.content)
        assert native.status_code == status, native.content
        case = f"{len(self.rids) + 1:02d} {method} {path} {reason}"
        _as_recorded(native, case, self.key_id)
        assert native.json()["reason"] == reason
        self.rids[native.headers["x-request-id"]] = (case, reason)
        label = (route or "(none)", reason)
        self.expected[label] = self.expected.get(label, 0) + 1
        return native


def _preflight(method: str | bytes, headers: str | bytes | None = None) -> Headers:
    out: Headers = [("Origin", APP), ("Access-Control-Request-Method", method)]
    if headers is not None:
        out.append(("Access-Control-Request-Headers", headers))
    return out


def _ask(method: str, uri: str, *extra: tuple[str, str]) -> Headers:
    return [("X-Original-Method", method), ("X-Original-URI", uri), *extra]


def test_edges_are_native_byte_identical_audited_and_metered(
    served: tuple[BastionProcess, Path, str, str], echo_module: EchoThread
) -> None:
    proc, tmp, key, key_id = served
    bearer = [("Authorization", f"Bearer {key}")]
    client, proxy = _clients(proc)
    with client, proxy:
        python = plane(client.get("/healthz"))
        native = plane(client.get("/api/plain/x"))
        assert python != native
        # The key's first request: native, once its lookup answered.
        warm = client.get("/api/orders", headers=bearer)
        assert (warm.status_code, plane(warm)) == (200, native)
        before = len(echo_module.server.received)
        counts_before = gateway_counts(proc.url)
        twins = Answers(native, key_id)

        # authorize: both required claims fail; Python names the first in settings order.
        gold = twins.check(client, "GET", "/api/gold/1", bearer, 403, "claim_mismatch", "gold")
        assert gold.json()["claim"] == "zone"
        assert gold.json()["detail"] == "The credential's claim zone does not allow this route."

        # cors: a preflight refused for its method or a header, quoted as Python's repr.
        cors_cases: list[tuple[str, Headers, str, str, str]] = [
            ("/api/browser", _preflight("DELETE"), "cors_method_not_allowed", "browser",
             "'DELETE' is not allowed from this origin."),
            ("/api/browser/x", _preflight("GET", "x-secret, Accept"), "cors_header_not_allowed",
             "browser", "Request header 'x-secret' is not allowed from this origin."),
            # Not a method token: routed as Python's matcher does (a route without methods).
            ("/api/open", _preflight("post"), "cors_method_not_allowed", "open",
             "'post' is not allowed from this origin."),
            ("/api/open", _preflight(b"G\xe9T"), "cors_method_not_allowed", "open",
             "'G\u00e9T' is not allowed from this origin."),
            ("/api/open", _preflight("GET", b"accept, X-Caf\xc9\x85"), "cors_header_not_allowed",
             "open", "Request header 'x-caf\u00e9' is not allowed from this origin."),
            ("/api/open", _preflight("GET", "X-It's"), "cors_header_not_allowed", "open",
             "Request header \"x-it's\" is not allowed from this origin."),
            ("/api/open", _preflight("P" * 40), "cors_method_not_allowed", "open",
             f"'{'P' * 32}' is not allowed from this origin."),
        ]  # fmt: skip
        for path, headers, reason, route, detail in cors_cases:
            refused = twins.check(client, "OPTIONS", path, headers, 403, reason, route)
            assert refused.json()["detail"] == detail
            assert refused.headers["vary"] == "Origin"
            assert "access-control-allow-origin" not in refused.headers
        # A preflight from an address the route's IP rules refuse: the `ip` step's 403.
        inside = twins.check(
            client, "OPTIONS", "/api/inside", _preflight("GET"), 403, "ip_not_allowed", "inside"
        )
        assert "vary" not in inside.headers

        # forward-auth: the door's own refusals, before any route.
        untrusted = twins.check(
            client,
            "GET",
            "/auth/verify",
            _ask("GET", "/api/orders", ("X-Forwarded-For", "203.0.113.1")),
            403,
            "forward_auth_untrusted",
            None,
        )
        assert untrusted.json()["detail"] == (
            "Only a proxy listed in trusted_proxies may ask for forward-auth decisions."
        )
        asks: list[tuple[Headers, str, str]] = [
            (_ask("GET", "/api/orders", ("X-Forwarded-Uri", "/api/open")),
             "forward_auth_ambiguous",
             "The request carries X-Forwarded-Uri, but forward_auth.headers is nginx: bastion "
             "reads the original request only from X-Original-Method and X-Original-URI, and "
             "refuses a request that carries the other family too (a client may have sent it). "
             "Set forward_auth.headers to match your proxy (nginx: nginx; Caddy, Traefik: "
             "forwarded)."),
            (_ask("GET", "/api/orders", ("X-Forwarded-Host", "a"), ("X-Forwarded-Host", "b")),
             "forward_auth_ambiguous",
             "The request carries more than one X-Forwarded-Host header."),
            ([("X-Original-Method", "GET")], "forward_auth_bad_request",
             "Say which request to judge: send X-Original-Method and X-Original-URI "
             "(forward_auth.headers is nginx)."),
            (_ask("get", "/api/orders"), "forward_auth_bad_request",
             "The original method is not an upper-case HTTP method."),
            (_ask("GET", "api/orders"), "forward_auth_bad_request",
             "The original URI is not an origin-form path."),
        ]  # fmt: skip
        for headers, reason, detail in asks:
            status = 400
            answer = twins.check(proxy, "GET", "/auth/verify", headers, status, reason, None)
            assert answer.json()["detail"] == detail

        # An ordinary OPTIONS to a route without CORS: proxied natively
        # (test_native_options.py).
        plain = client.options("/api/plain", headers=_preflight("GET"))
        assert (plain.status_code, plane(plain)) == (200, native)
        assert plain.json()["method"] == "OPTIONS"
        # Repeated fields: named in the order the hop to Python writes them, natively.
        repeated = [*_ask("GET", "/api/orders"), ("X-Original-Method", "GET"),
                    ("X-Forwarded-Method", "GET")]  # fmt: skip
        twins.check(proxy, "GET", "/auth/verify", repeated, 400, "forward_auth_ambiguous", None)
        assert len(echo_module.server.received) == before + 1  # the plain OPTIONS only
        counts = gateway_counts(proc.url)

    # One gateway.denied row each, as Python recorded the same request.
    rids = twins.rids
    rows = audit_rows(tmp, "gateway.denied", set(rids))
    for native_rid, (case, reason) in rids.items():
        assert native_rid in rows, reason
        assert _masked(_row(rows[native_rid]), key_id) == ANSWERS[case]["row"], case
    steps = {(rows[rid].reason, rows[rid].data["step"]) for rid in rids}
    assert steps == {
        ("claim_mismatch", "authorize"),
        ("cors_method_not_allowed", "cors"),
        ("cors_header_not_allowed", "cors"),
        ("ip_not_allowed", "ip"),
        ("forward_auth_untrusted", "forward_auth"),
        ("forward_auth_ambiguous", "forward_auth"),
        ("forward_auth_bad_request", "forward_auth"),
    }
    for rid, (_, reason) in rids.items():
        row = rows[rid]
        if reason.startswith("forward_auth"):
            assert (row.route, row.data["door"], row.data["path"]) == (
                None,
                "forward_auth",
                "/auth/verify",
            )
            assert row.ip == ("127.0.0.1" if reason.endswith("untrusted") else "127.0.0.2")

    # And one count each in Python's series.
    for label, count in twins.expected.items():
        delta = counts.get(label, 0) - counts_before.get(label, 0)
        assert delta == count, label


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


def test_forward_auth_decisions_are_traced_natively_as_python_traces_them(
    tmp_path: Path, echo: EchoThread, receiver: Receiver
) -> None:
    tracing = (
        f"tracing: {{enabled: true, otlp_endpoint: {receiver.url}, service_name: edges, "
        "sample_ratio: 1.0}\n"
    )
    config = _config(tmp_path, echo.server.url, tracing)
    key = cli_json(config, "keys", "create", "reader", "--scope", "orders:read")
    bearer = ("Authorization", f"Bearer {key['key']}")
    proc = BastionProcess("-c", str(config), cwd=tmp_path)
    answers: list[httpx.Response] = []
    with proc:
        client, proxy = _clients(proc)
        with client, proxy:
            python = plane(client.get("/healthz"))
            for caller, headers in (
                (proxy, _ask("GET", "/api/orders/1", bearer)),  # allowed
                (proxy, _ask("DELETE", "/api/orders/2", bearer)),  # 403 insufficient_scope
                (client, _ask("GET", "/api/orders/3", bearer)),  # 403 forward_auth_untrusted
                (proxy, _ask("get", "/api/orders/4")),  # 400 forward_auth_bad_request
            ):
                native = caller.get("/auth/verify", headers=headers)
                assert plane(native) != python, native.content
                _as_recorded(native, f"traced {len(answers)} {headers[1][1]}", key["id"])
                answers.append(native)
    assert proc.proc is not None and proc.proc.returncode == 0, proc.stderr
    assert [n.status_code for n in answers] == [200, 403, 403, 400]

    spans = receiver.spans("edges")
    decisions = [s for s in spans if attributes(s).get("bastion.door") == "forward_auth"]
    # Each native span as Python traced the same decision: name and attributes (ids and
    # times aside). An allowed decision has no status: Python's span ended before the 200.
    door = ("bastion.door", "forward_auth")

    def judged(path: str, method: str, outcome: str, *status: tuple[str, int]) -> Any:
        route = [("bastion.route", "orders"), ("url.path", path)]
        named = [door, ("http.request.method", method), ("bastion.outcome", outcome)]
        return ("gateway orders", (*route, *named, *status))

    def own(outcome: str, status: int) -> Any:
        attrs = (door, ("http.request.method", "GET"), ("bastion.outcome", outcome))
        return ("gateway", (*attrs, ("http.response.status_code", status)))

    each = [
        judged("/api/orders/1", "GET", "allowed"),
        judged("/api/orders/2", "DELETE", "insufficient_scope", ("http.response.status_code", 403)),
        own("forward_auth_untrusted", 403),
        own("forward_auth_bad_request", 400),
    ]
    seen = [(s.name, tuple(attributes(s).items())) for s in decisions]
    assert sorted(seen) == sorted(each)
