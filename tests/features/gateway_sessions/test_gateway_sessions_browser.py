"""The demo's protected app (``bastion serve --demo``: ``/app/``, a ``session`` route) driven in
headless Chromium (Debian's chromium through Playwright, TESTING-NOTES).

A deep link with a query sends the browser to the login; signing in brings it back to that
deep link, query intact, and the page shows the identity the upstream received (and no
bastion cookie); after the logout the page sends the browser to the login again.
Screenshots of each step are kept in ``test-artifacts/gateway-sessions/`` (or
``$BASTION_TEST_ARTIFACTS/gateway-sessions/``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import BastionProcess, run_cli
from _support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium

PASSWORD = "violet staple orbit 42"
DEEP_LINK = "/app/reports?q=a%20b&x=1"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("gateway-sessions-demo")
    created = run_cli(
        "users",
        "create",
        "alice",
        "--email",
        "alice@example.com",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD,
        cwd=cwd,
    )
    assert created.returncode == 0, created.stderr
    with BastionProcess("--demo", cwd=cwd) as proc:
        yield proc


@pytest.mark.slow
def test_chromium_reaches_the_demo_app_through_the_login(demo: BastionProcess) -> None:
    from playwright.sync_api import sync_playwright

    require_chromium()  # skipped outside CI, a failure under CI=true
    shots = ARTIFACTS / "gateway-sessions"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(demo.url + DEEP_LINK)
            assert page.url == demo.url + "/login?return_to=/app/reports%3Fq%3Da%2520b%26x%3D1"
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.screenshot(path=str(shots / "1-login.png"))
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(demo.url + DEEP_LINK)
            assert page.locator("#target").inner_text() == DEEP_LINK
            email = page.locator('td[data-header="x-bastion-email"]').inner_text()
            roles = page.locator('td[data-header="x-bastion-roles"]').inner_text()
            subject = page.locator('td[data-header="x-bastion-subject"]').inner_text()
            assert (email, roles) == ("alice@example.com", "admin")
            assert subject and subject != "—"
            assert "bastion" not in page.locator("#cookies").inner_text()
            page.screenshot(path=str(shots / "2-app.png"))
            # Sign out (the confirmation form), then the app sends the browser to the login.
            page.goto(demo.url + "/logout")
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(demo.url + "/login")
            page.goto(demo.url + "/app/")
            assert page.url == demo.url + "/login?return_to=/app/"
            page.screenshot(path=str(shots / "3-signed-out.png"))
        finally:
            browser.close()
    assert (shots / "2-app.png").stat().st_size > 1000
