"""``session`` routes at the gateway against ``bastion serve`` over real HTTPS (issue 16, item 7).

A browser app behind bastion's login, as oauth2-proxy or Pomerium would put it:

- no session: a navigation is sent to ``/login?return_to=<its path and query>`` (303), the
  login sends the browser back to that deep link with its query intact; a script's call
  (``Accept: application/json``, ``X-Requested-With``, ``Sec-Fetch-Mode: cors``, a POST)
  gets ``401 session_required`` as problem+json;
- a session: the upstream gets the identity headers (subject, email, roles), its own
  cookies, and never bastion's (``__Host-bastion_*``); client-sent identity headers go;
- an upstream cannot set bastion's cookies (session fixation by a compromised app);
- a forged or unknown cookie is looked up once, then refused natively; two session
  cookies, an overlong or malformed one are no session, never a lookup;
- logout ends access at the gateway within a second; so does an idle timeout;
- open-redirect attempts never produce a ``Location`` off bastion's origin.

The multi-node check (another node, PostgreSQL + Redis) is ``test_gateway_sessions_multinode``.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread, run_cli
from _support.browser_sessions import (
    BROWSER,
    PASSWORD,
    SESSION,
    csrf_token,
    login,
    redirected_within,
)
from _support.native import native_lookups


@pytest.fixture(scope="module")
def planting() -> Iterator[EchoThread]:
    """An upstream that tries to set bastion's cookies (a compromised app)."""
    thread = EchoThread()
    thread.server.set_cookies = (
        f"{SESSION}=planted-by-the-app; Path=/; Secure; HttpOnly; SameSite=Lax",
        "__host-Bastion_csrf=x; Path=/; Secure",
        "app_pref=1; Path=/",
    )
    try:
        yield thread
    finally:
        thread.close()


def create_user(cwd: Path, username: str, *extra: str) -> str:
    created = run_cli(
        "users", "create", username, "--password-stdin", "--json", *extra, stdin=PASSWORD, cwd=cwd
    )
    assert created.returncode == 0, created.stderr
    found = re.search(r'"id":\s*"([^"]+)"', created.stdout)
    assert found is not None, created.stdout
    return found.group(1)


def write_config(cwd: Path, echo: EchoThread, planting: EchoThread, head: str = "") -> None:
    (cwd / "bastion.yaml").write_text(
        head + "routes:\n"
        "  - name: app\n"
        "    match: {path: /app}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [session]\n"
        "  - name: mixed\n"
        "    match: {path: /mixed}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [api_key, session]\n"
        "  - name: admins\n"
        "    match: {path: /admins}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [session]\n"
        "    roles: [admin]\n"
        "  - name: planted\n"
        "    match: {path: /planted}\n"
        f"    upstream: {planting.server.url}\n"
        "    auth: [session]\n"
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, echo: EchoThread, planting: EchoThread
) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("gateway-sessions")
    head = "sessions: {idle_timeout: 4s}\ntrusted_proxies: [127.0.0.2]\n"  # forward-auth's proxy
    write_config(cwd, echo, planting, head=head)
    create_user(cwd, "alice", "--email", "alice@example.com", "--role", "admin", "--role", "dev")
    create_user(cwd, "bob")
    with BastionProcess("-c", "bastion.yaml", cwd=cwd) as proc:
        yield proc


def _http(server: BastionProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, verify=False, timeout=30)


def echoed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    assert document["upstream"] == "bastion demo echo"
    return document


def test_a_navigation_goes_to_the_login_and_back_to_the_deep_link(
    server: BastionProcess, echo: EchoThread
) -> None:
    with _http(server) as http:
        first = http.get("/app/reports?q=a%20b&x=1", headers=BROWSER)
        assert first.status_code == 303
        location = first.headers["location"]
        assert location == "/login?return_to=/app/reports%3Fq%3Da%2520b%26x%3D1"
        assert first.headers["cache-control"] == "no-store"
        form = http.get(location)
        assert 'name="return_to" value="/app/reports?q=a%20b&amp;x=1"' in form.text
        signed_in = login(http, "alice", return_to="/app/reports?q=a%20b&x=1")
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/app/reports?q=a%20b&x=1"
        http.cookies.set("theme", "dark", domain=http.base_url.host)
        document = echoed(
            http.get(signed_in.headers["location"], headers={"x-bastion-email": "mallory@evil"})
        )
        assert (document["path"], document["query"]) == ("/app/reports", "q=a%20b&x=1")
        headers = document["headers"]
        assert headers["x-bastion-email"] == "alice@example.com"
        assert headers["x-bastion-roles"] == "admin dev"
        assert re.fullmatch(r"[0-9A-Za-z_-]{10,}", headers["x-bastion-subject"])
        # The app's own cookie arrives; bastion's session and CSRF cookies never do.
        assert headers["cookie"] == "theme=dark"
        received = echo.server.received[-1]
        assert not any("bastion_" in value for name, value in received.headers if name == "cookie")


def test_scripts_get_401_problem_json(server: BastionProcess) -> None:
    with _http(server) as http:
        for method, headers in [
            ("GET", {"accept": "application/json"}),
            ("GET", {"x-requested-with": "XMLHttpRequest", **BROWSER}),
            ("GET", {"sec-fetch-mode": "cors", "accept": "*/*"}),
            ("POST", BROWSER),
            ("DELETE", {}),
        ]:
            response = http.request(method, "/app/data?x=1", headers=headers)
            assert response.status_code == 401, (method, headers)
            assert response.headers["content-type"] == "application/problem+json"
            assert "location" not in response.headers
            body = response.json()
            assert (body["reason"], body["status"]) == ("session_required", 401)
            assert response.headers["www-authenticate"] == 'Session realm="bastion"'


def test_a_route_with_another_method_uses_the_credential_present(server: BastionProcess) -> None:
    with _http(server) as http:
        # No credential at all on a route listing session: the login.
        assert http.get("/mixed/x", headers=BROWSER).status_code == 303
        # An API key present: that method answers (an unknown key: its 401).
        refused = http.get("/mixed/x", headers={"authorization": "Bearer bst_x"})
        assert refused.status_code == 401
        assert refused.json()["reason"] == "invalid_api_key"
        assert login(http, "bob").status_code == 303
        document = echoed(http.get("/mixed/x", headers=BROWSER))
        assert "x-bastion-email" not in document["headers"]  # bob has none
        # The route's roles rule: bob has no admin role (403), alice has.
        assert http.get("/admins/", headers=BROWSER).status_code == 403
    with _http(server) as http:
        assert login(http, "alice").status_code == 303
        assert echoed(http.get("/admins/", headers=BROWSER))["path"] == "/admins/"


def test_forged_cookies_are_looked_up_once_then_refused_natively(server: BastionProcess) -> None:
    forged = "A" * 43
    with _http(server) as http:
        before = native_lookups(http).get(("session", "refused"), 0)
        for _ in range(3):
            response = http.get("/app/", headers={**BROWSER, "cookie": f"{SESSION}={forged}"})
            assert response.status_code == 303
            assert response.headers["location"] == "/login?return_to=/app/"
        after = native_lookups(http).get(("session", "refused"), 0)
        assert after == before + 1
        # No session at all, two session cookies, overlong or malformed: no lookup.
        looked = native_lookups(http)
        for cookie in [
            f"{SESSION}=a; {SESSION}=b",
            f"{SESSION}={'a' * 129}",
            f"{SESSION}=a.b",
            f'{SESSION}="abc"',
        ]:
            response = http.get("/app/", headers={**BROWSER, "cookie": cookie})
            assert response.status_code == 303, cookie
        assert native_lookups(http) == looked


def test_a_duplicate_session_cookie_is_refused_even_with_a_live_one(
    server: BastionProcess,
) -> None:
    with _http(server) as http:
        assert login(http, "alice").status_code == 303
        live = http.cookies[SESSION]
        assert echoed(http.get("/app/", headers=BROWSER))["path"] == "/app/"
    with _http(server) as fresh:
        doubled = fresh.get(
            "/app/", headers={**BROWSER, "cookie": f"{SESSION}={live}; {SESSION}=x"}
        )
        assert doubled.status_code == 303


def test_an_upstream_cannot_set_bastions_cookies(server: BastionProcess) -> None:
    with _http(server) as http:
        assert login(http, "alice").status_code == 303
        session = http.cookies[SESSION]
        response = http.get("/planted/", headers=BROWSER)
        assert response.status_code == 200
        assert response.headers.get_list("set-cookie") == ["app_pref=1; Path=/"]
        assert http.cookies[SESSION] == session


def test_logout_ends_access_at_the_gateway_within_a_second(server: BastionProcess) -> None:
    with _http(server) as http:
        assert login(http, "alice").status_code == 303
        token = http.cookies[SESSION]
        assert echoed(http.get("/app/", headers=BROWSER))["path"] == "/app/"
        ended = http.post("/logout", data={"csrf_token": csrf_token(http, "/logout")})
        assert ended.status_code == 303
    with _http(server) as replay:
        replay.cookies.set(SESSION, token, domain=replay.base_url.host)
        assert redirected_within(replay, "/app/", 1.0) < 1.0


def test_gateway_use_keeps_a_session_alive_and_idleness_ends_it(server: BastionProcess) -> None:
    # idle_timeout is 4 s: used through the gateway only, for 6 s, the session lives on
    # (the uses are written to the database); then 4 s without a use end it.
    with _http(server) as http:
        assert login(http, "bob").status_code == 303
        start = time.monotonic()
        while time.monotonic() - start < 6.0:
            assert http.get("/app/", headers=BROWSER).status_code == 200
            time.sleep(0.5)
        # bastion's own pages agree: the database saw the gateway's uses.
        assert http.get("/account").status_code == 200
        time.sleep(4.3)
        assert http.get("/app/", headers=BROWSER).status_code == 303


# target -> the gateway's Location (None: refused before any route, 400 / 404, no Location).
OPEN_REDIRECTS = {
    "//evil.example/app/": None,
    "//evil.example": None,
    "/\\evil.example": None,
    "/%5Cevil.example": None,
    "/app/%2F%2Fevil.example": None,
    "/app//evil.example": "/login?return_to=/app/evil.example",
    "/app/%2F%2F%2Fevil.example?x=//evil.example": None,
    "/app/..%2F..%2F%2Fevil.example": None,
    "/app/?return_to=https://evil.example": (
        "/login?return_to=/app/%3Freturn_to%3Dhttps%3A//evil.example"
    ),
    "/app/%09/evil.example": None,
    "/app/%252F%252Fevil.example": "/login?return_to=/app/%25252F%25252Fevil.example",
}


def _same_origin(location: str) -> bool:
    return location.startswith("/") and not location.startswith(("//", "/\\"))


@pytest.mark.parametrize(("target", "expected"), OPEN_REDIRECTS.items())
def test_open_redirect_attempts_stay_on_this_origin(
    server: BastionProcess, target: str, expected: str | None
) -> None:
    with _http(server) as http:
        # httpx would normalise the target: send it as written (and a forged forwarded host,
        # which the gateway never reads for the address).
        request = http.build_request(
            "GET", "/", headers={**BROWSER, "x-forwarded-host": "evil.example"}
        )
        request.url = request.url.copy_with(raw_path=target.encode())
        response = http.send(request)
        if expected is None:
            assert response.status_code in (400, 404), response.text
            assert "location" not in response.headers
            return
        assert response.status_code == 303
        location = response.headers["location"]
        assert location == expected
        # The login's own answer, for whatever the gateway put there, is same-origin too.
        form = http.get(location)
        found = re.search(r'name="return_to" value="([^"]*)"', form.text)
        return_to = found.group(1).replace("&amp;", "&") if found else None
        signed_in = login(http, "alice", return_to=return_to)
        assert signed_in.status_code == 303
        assert _same_origin(signed_in.headers["location"]), signed_in.headers["location"]


def _raw_get(server: BastionProcess, target: str) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Accept: text/html\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # Absolute form: the path is routed, the authority never reaches the Location.
        ("https://evil.example/app/", ["/login?return_to=/app/"]),
        ("http://evil.example//app/", ["/login?return_to=/app/"]),
        ("//evil.example/app/", []),  # a path no route takes: 404
    ],
)
def test_an_absolute_url_in_the_target_never_moves_the_login_off_origin(
    server: BastionProcess, target: str, expected: list[str]
) -> None:
    head = _raw_get(server, target).split(b"\r\n\r\n", 1)[0].decode("latin-1")
    locations = [
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")[1:]
        if line.lower().startswith("location:")
    ]
    assert locations == expected, head


def test_forward_auth_judges_sessions_without_redirecting(server: BastionProcess) -> None:
    with _http(server) as http:
        assert login(http, "alice").status_code == 303
        session = http.cookies[SESSION]
    proxy = httpx.HTTPTransport(local_address="127.0.0.2", verify=False)
    with httpx.Client(base_url=server.url, transport=proxy, timeout=30) as nginx:
        judged = [("X-Original-Method", "GET"), ("X-Original-URI", "/app/x?y=1"), *BROWSER.items()]
        refused = nginx.get("/auth/verify", headers=judged)
        assert refused.status_code == 401
        assert refused.json()["reason"] == "session_required"
        assert "location" not in refused.headers
        allowed = nginx.get(
            "/auth/verify", headers=[*judged, ("Cookie", f"a=1; {SESSION}={session}")]
        )
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["x-bastion-email"] == "alice@example.com"
        assert allowed.headers["x-bastion-roles"] == "admin dev"
