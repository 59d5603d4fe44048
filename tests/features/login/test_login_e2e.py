"""The browser login against ``bastion serve`` over real HTTPS, and in headless Chromium.

- httpx: the cookies' exact attributes, the session reaching ``/account``, CSRF refusal, one
  answer for an unknown user and a wrong password, the 429 by the 4th attempt, logout, a user
  disabled by ``bastion users disable`` in another process losing the session within a second
  (the change feed), and a short idle timeout ending an unused session.
- Playwright driving Debian's chromium (TESTING-NOTES): ``/account`` sends the browser to
  the form, the form signs in and returns to ``/account``, which lists this session; the
  password is changed through the account page's form (a new session id), then the user signs
  out; a screenshot of each page is kept in ``test-artifacts/login/`` (or
  ``$BASTION_TEST_ARTIFACTS/login/``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support import BastionProcess, run_cli

PASSWORD = "violet staple orbit 42"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("BASTION_TEST_ARTIFACTS", Path(__file__).parents[3] / "test-artifacts")
)
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def _create_user(cwd: Path, username: str) -> None:
    created = run_cli("users", "create", username, "--password-stdin", stdin=PASSWORD, cwd=cwd)
    assert created.returncode == 0, created.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("login")
    for name in ("alice", "bob", "carol", "dave", "erin"):
        _create_user(cwd, name)
    # A short idle timeout, so a test can watch a session expire (carol's).
    env = {
        "BASTION_SESSIONS__IDLE_TIMEOUT": "3s",
        # Two free failures of an account from one address; the third locks the pair.
        "BASTION_RATELIMIT__LOGIN__FREE_ATTEMPTS": "2",
        "BASTION_RATELIMIT__LOGIN__BASE_DELAY": "30s",
    }
    with BastionProcess(cwd=cwd, env=env) as proc:
        yield proc


def _http(server: BastionProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, verify=False, timeout=30)


def _token(http: httpx.Client, path: str = "/login") -> str:
    form = http.get(path)
    found = _TOKEN.search(form.text)
    assert found is not None, form.text
    return found.group(1)


def _login(http: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    data = {"csrf_token": _token(http), "username": username, "password": password}
    return http.post("/login", data=data)


def _signed_out_within(http: httpx.Client, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if http.get("/account").status_code == 303:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"still signed in after {seconds} s")


def test_login_over_https_sets_host_only_cookies(server: BastionProcess) -> None:
    with _http(server) as http:
        response = _login(http, "alice")
        assert response.status_code == 303 and response.headers["location"] == "/account"
        session = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-bastion_s")
        )
        assert re.fullmatch(
            r"__Host-bastion_session=[A-Za-z0-9_-]{43}; Path=/; Secure; HttpOnly; SameSite=Lax",
            session,
        )
        account = http.get("/account")
        assert account.status_code == 200 and ">alice</strong>" in account.text
        assert account.headers["cache-control"] == "no-store"


def test_refusals_csrf_uniform_failure_and_throttling(server: BastionProcess) -> None:
    with _http(server) as http:
        http.get("/login")
        forged = http.post("/login", data={"csrf_token": "0" * 64, "username": "dave"})
        assert forged.status_code == 403
        unknown = _login(http, "nobody-here", "wrong password 1")
        wrong = _login(http, "dave", "wrong password 1")
        assert unknown.status_code == wrong.status_code == 422
        assert unknown.text.replace("nobody-here", "X") == wrong.text.replace("dave", "X")
        assert _login(http, "dave", "wrong password 1").status_code == 422
        assert _login(http, "dave", "wrong password 1").status_code == 422  # the lock is set
        throttled = _login(http, "dave")  # the right password, by the 4th attempt: it waits
        assert throttled.status_code == 429 and 1 <= int(throttled.headers["retry-after"]) <= 30


def test_logout_ends_the_session(server: BastionProcess) -> None:
    with _http(server) as http:
        assert _login(http, "alice").status_code == 303
        token = http.cookies["__Host-bastion_session"]
        response = http.post("/logout", data={"csrf_token": _token(http, "/logout")})
        assert (response.status_code, response.headers["location"]) == (303, "/login")
        with _http(server) as replay:
            replay.cookies.set("__Host-bastion_session", token)
            assert replay.get("/account").status_code == 303


def test_disabling_the_user_in_another_process_ends_the_session(server: BastionProcess) -> None:
    with _http(server) as http:
        assert _login(http, "bob").status_code == 303
        assert http.get("/account").status_code == 200
        disabled = run_cli("users", "disable", "bob", cwd=server.cwd)
        assert disabled.returncode == 0, disabled.stderr
        assert _signed_out_within(http, 1.5) < 1.5


def test_an_idle_session_ends(server: BastionProcess) -> None:
    with _http(server) as http:
        assert _login(http, "carol").status_code == 303
        assert http.get("/account").status_code == 200
        time.sleep(3.2)
        assert http.get("/account").status_code == 303


@pytest.mark.slow
def test_chromium_signs_in_through_the_form(server: BastionProcess) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():  # skipped outside CI, a failure under CI=true
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shots = ARTIFACTS / "login"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(server.url + "/account")
            assert page.url == server.url + "/login?return_to=/account"
            page.get_by_label("Username").fill("erin")  # its password changes below
            page.get_by_label("Password").fill(PASSWORD)
            page.screenshot(path=str(shots / "login-form.png"))
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(server.url + "/account")
            assert page.locator("#signed-in-as").inner_text() == "erin"
            page.screenshot(path=str(shots / "account.png"))
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["__Host-bastion_session"]
            assert (session["secure"], session["httpOnly"], session["sameSite"]) == (
                True,
                True,
                "Lax",
            )
            # The account page: this browser's session listed, then the password changed
            # through the form (a new session id here), then signed out.
            assert page.locator("#sessions tbody tr").count() >= 1
            assert page.locator("#sessions [aria-current=true]").count() == 1
            page.get_by_label("Current password").fill(PASSWORD)
            page.get_by_label("New password", exact=True).fill(PASSWORD + " renewed")
            page.get_by_label("New password again").fill(PASSWORD + " renewed")
            page.get_by_role("button", name="Change password").click()
            page.wait_for_url(server.url + "/account?done=password")
            assert "password was changed" in page.locator("#account-done").inner_text()
            renewed = {c["name"]: c["value"] for c in context.cookies()}
            assert renewed["__Host-bastion_session"] != session["value"]
            page.screenshot(path=str(shots / "account-password-changed.png"), full_page=True)
            page.get_by_role("button", name="Sign out", exact=True).first.click()
            page.wait_for_url(server.url + "/login")
            page.goto(server.url + "/account")
            assert page.url == server.url + "/login?return_to=/account"
        finally:
            browser.close()
    assert (shots / "account.png").stat().st_size > 1000
