"""What the ``session`` route tests do as a browser would: sign in with the form (CSRF token
included) and wait for a session's end to reach the gateway."""

from __future__ import annotations

import re
import time

import httpx

PASSWORD = "violet staple orbit 42"
SESSION = "__Host-bastion_session"
#: What a browser's navigation asks for.
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_token(http: httpx.Client, path: str) -> str:
    """The CSRF token of the form at ``path`` (its cookie lands in ``http``'s jar)."""
    form = http.get(path)
    found = _TOKEN.search(form.text)
    assert found is not None, form.text
    return found.group(1)


def login(http: httpx.Client, username: str, return_to: str | None = None) -> httpx.Response:
    """Post the login form as ``username`` (with ``return_to`` when given)."""
    page = "/login" if return_to is None else f"/login?return_to={return_to}"
    data = {"csrf_token": csrf_token(http, page), "username": username, "password": PASSWORD}
    if return_to is not None:
        data["return_to"] = return_to
    return http.post("/login", data=data)


def redirected_within(http: httpx.Client, path: str, seconds: float) -> float:
    """Poll ``path`` as a navigation until the gateway sends it to the login; how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        response = http.get(path, headers=BROWSER)
        if response.status_code == 303:
            assert response.headers["location"].startswith("/login?return_to=")
            return time.monotonic() - start
        assert response.status_code == 200, response.text
        time.sleep(0.05)
    raise AssertionError(f"{path} still served after {seconds} s")
