"""Back-channel logout against ``bastion serve`` over real HTTPS, to receivers in the test.

A small HTTP server registered as a client's ``backchannel_logout_uri`` receives exactly one
logout token per session end — on logout, on "sign out everywhere else" from the account
page, on the user disabled by the CLI in another process — verified with joserfc against
bastion's JWKS (``typ: logout+jwt``, ``events``, ``sid``, ``sub``, ``aud``, ``exp``, no
``nonce``); a receiver answering 500 gets the retries, then a ``logout.backchannel``
failure event; with two nodes on PostgreSQL + Redis a session end is delivered once.
Discovery advertises the support.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.jwk import KeySet

from _support import BastionProcess, run_cli
from _support.nodes import Nodes
from _support.oidc_flow import CSRF_TOKEN, browser_part, cli_json, found

PASSWORD = "violet staple orbit 42"
SCOPE = "openid profile"
REDIRECT = "http://127.0.0.1/cb"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


class _Receiver:
    """A back-channel logout endpoint on a loopback port: records each posted body and
    answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, list[str]]] = []
        self.content_types: list[str] = []
        received = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                received.content_types.append(self.headers.get("content-type", ""))
                received.bodies.append(parse_qs(body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.server.server_port}/backchannel"

    def tokens(self) -> list[str]:
        return [body["logout_token"][0] for body in self.bodies]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("backchannel")
    for name in ("alice", "bob", "carol", "dave"):
        cli_json(cwd, "users", "create", name, "--password-stdin", stdin=PASSWORD)
    with BastionProcess(cwd=cwd) as proc:
        yield proc


@pytest.fixture(scope="module")
def issuer(server: BastionProcess) -> str:
    document = httpx.get(server.url + "/.well-known/openid-configuration", verify=False).json()
    return str(document["issuer"])


def _client_args(receiver: _Receiver) -> tuple[str, ...]:
    """``bastion clients create …`` of a client whose back-channel URI is ``receiver``'s."""
    return (
        "clients", "create", "Back-channel app", "--type", "public", "--redirect-uri", REDIRECT,
        "--scope", "openid", "--scope", "profile", "--backchannel-logout-uri", receiver.uri,
    )  # fmt: skip


def _register(server: BastionProcess, receiver: _Receiver) -> str:
    created = cli_json(server.cwd, *_client_args(receiver))
    assert created["backchannel_logout_uri"] == receiver.uri
    return str(created["client_id"])


def _sign_into(browser: httpx.Client, client_id: str, username: str) -> None:
    """Login, consent and an authorization code for ``client_id`` (the client signed into
    this browser's session)."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "http://127.0.0.1:8799/cb",
            "scope": SCOPE,
            "state": "s",
            "code_challenge": create_s256_code_challenge("v" * 43),
            "code_challenge_method": "S256",
        }
    )
    callback = browser_part(browser, f"/oauth2/authorize?{query}", username, PASSWORD)
    assert callback.startswith("http://127.0.0.1:8799/cb?code=bac_"), callback


def _session_id(browser: httpx.Client) -> str:
    page = browser.get("/account").text
    match = re.search(r'aria-current="true">.*?name="session_id" value="([^"]+)"', page, re.S)
    assert match is not None, page
    return match.group(1)


def _wait_for(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def _verified(token: str, issuer: str, client_id: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(httpx.get(issuer + "/oauth2/jwks.json", verify=False).json())
    header = jws.extract_compact(token.encode()).protected
    assert header["typ"] == "logout+jwt"
    claims = dict(jwt.decode(token, keys).claims)
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    ).validate(claims)
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims
    assert claims["exp"] - claims["iat"] == 120
    return claims


def test_discovery_advertises_back_channel_logout(issuer: str) -> None:
    document = httpx.get(issuer + "/.well-known/openid-configuration", verify=False).json()
    assert document["backchannel_logout_supported"] is True
    assert document["backchannel_logout_session_supported"] is True
    assert document["frontchannel_logout_supported"] is False
    assert document["end_session_endpoint"] == issuer + "/oauth2/logout"


def test_logout_posts_one_logout_token(server: BastionProcess, issuer: str) -> None:
    receiver = _Receiver()
    client_id = _register(server, receiver)
    with httpx.Client(base_url=issuer, verify=False, timeout=30) as browser:
        _sign_into(browser, client_id, "alice")
        sid = _session_id(browser)
        sub = cli_json(server.cwd, "users", "show", "alice")["id"]
        form = browser.get("/logout")
        out = browser.post("/logout", data={"csrf_token": found(CSRF_TOKEN, form.text)})
        assert out.status_code == 303
    _wait_for(lambda: len(receiver.bodies) >= 1)
    time.sleep(0.5)  # nothing more arrives
    [token] = receiver.tokens()
    assert receiver.content_types == ["application/x-www-form-urlencoded"]
    claims = _verified(token, issuer, client_id)
    assert (claims["sid"], claims["sub"]) == (sid, sub)


def test_sign_out_everywhere_else_and_user_disabled_post_logout_tokens(
    server: BastionProcess, issuer: str
) -> None:
    receiver = _Receiver()
    client_id = _register(server, receiver)
    with (
        httpx.Client(base_url=issuer, verify=False, timeout=30) as laptop,
        httpx.Client(base_url=issuer, verify=False, timeout=30) as phone,
    ):
        _sign_into(laptop, client_id, "bob")
        laptop_sid = _session_id(laptop)
        _sign_into(phone, client_id, "bob")
        page = phone.get("/account").text
        ended = phone.post(
            "/account/sessions/end-others", data={"csrf_token": found(CSRF_TOKEN, page)}
        )
        assert ended.status_code == 303
        _wait_for(lambda: len(receiver.bodies) >= 1)
        time.sleep(0.5)
        [token] = receiver.tokens()
        assert _verified(token, issuer, client_id)["sid"] == laptop_sid
        # The user disabled by the CLI in another process: the phone's session ends too.
        phone_sid = _session_id(phone)
        cli_json(server.cwd, "users", "disable", "bob")
        _wait_for(lambda: len(receiver.bodies) >= 2)
        time.sleep(0.5)
        assert len(receiver.bodies) == 2
        assert _verified(receiver.tokens()[1], issuer, client_id)["sid"] == phone_sid


def test_a_failing_receiver_gets_retries_then_a_failure_event(
    server: BastionProcess, issuer: str
) -> None:
    receiver = _Receiver(status=500)
    client_id = _register(server, receiver)
    with httpx.Client(base_url=issuer, verify=False, timeout=30) as browser:
        _sign_into(browser, client_id, "carol")
        form = browser.get("/logout")
        browser.post("/logout", data={"csrf_token": found(CSRF_TOKEN, form.text)})

    def failed() -> list[dict[str, Any]]:
        found = cli_json(
            server.cwd, "audit", "search", "--type", "logout.backchannel", "--client", client_id
        )
        items: list[dict[str, Any]] = found["items"]
        return items

    _wait_for(lambda: bool(failed()), seconds=20)
    [event] = failed()
    assert (event["outcome"], event["reason"]) == ("failure", "status_500")
    assert len(receiver.bodies) == 3  # the first attempt and two retries
    assert len(set(receiver.tokens())) == 1


def test_two_nodes_deliver_a_session_end_once(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """PostgreSQL + Redis, two nodes: the user disabled by the CLI reaches both through the
    change feed, both try to end the session, one gets it — one logout token, not two."""
    (tmp_path / "bastion.yaml").write_text(
        "issuer: https://localhost:8443\n"
        f"storage: {postgres_url}\n"
        f"shared: {{url: '{redis_url}', key_prefix: '{redis_prefix}'}}\n"
    )
    cluster = Nodes(tmp_path)
    assert run_cli("migrate", "-c", "bastion.yaml", cwd=tmp_path).returncode == 0
    try:
        for index in range(2):
            node = BastionProcess(
                "-c", "bastion.yaml", env={"BASTION_NODE_ID": f"node-{index + 1}"}, cwd=tmp_path
            )
            cluster.nodes.append(node.start())
        run_cli(
            "users",
            "create",
            "erin",
            "--password-stdin",
            "-c",
            "bastion.yaml",
            stdin=PASSWORD,
            cwd=tmp_path,
        )
        receiver = _Receiver()
        created = cluster.cli(*_client_args(receiver))
        client_id = created["client_id"]
        first, second = (node.url for node in cluster.nodes)
        with (
            httpx.Client(base_url=first, verify=False, timeout=30) as one,
            httpx.Client(base_url=second, verify=False, timeout=30) as two,
        ):
            _sign_into(one, client_id, "erin")
            two.cookies = one.cookies  # the same browser, through the other node
            assert two.get("/account").status_code == 200
            cluster.cli("users", "disable", "erin")
            _wait_for(lambda: one.get("/account").status_code == 303)
            _wait_for(lambda: two.get("/account").status_code == 303)
        _wait_for(lambda: len(receiver.bodies) >= 1)
        time.sleep(2)  # both nodes have heard the feed (above); a second token would be here
        assert len(receiver.bodies) == 1
    finally:
        cluster.stop()
