"""What the OpenID Connect feature tests do as a browser and as an operator, over plain HTTP:
the CLI with ``--json``, and the login → consent part of an authorization request, each form
posted with its CSRF cookie and field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from _support import run_cli

__all__ = ["CSRF_TOKEN", "REQUEST_ID", "browser_part", "cli_json", "found"]

CSRF_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
REQUEST_ID = re.compile(r'name="request" value="([A-Za-z0-9_-]+)"')


def cli_json(cwd: Path, *args: str, stdin: str | None = None) -> Any:
    """``bastion ARGS --json`` in ``cwd`` (it must succeed); its parsed output."""
    done = (
        run_cli(*args, "--json", stdin=stdin, cwd=cwd)
        if stdin
        else run_cli(*args, "--json", cwd=cwd)
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def found(pattern: re.Pattern[str], html: str) -> str:
    """The first group of ``pattern`` in ``html`` (it must be there)."""
    match = pattern.search(html)
    assert match is not None, html
    return match.group(1)


def browser_part(
    browser: httpx.Client, authorization_url: str, username: str, password: str
) -> str:
    """What a browser does between the authorization URL and the callback: the login form,
    then the consent form (unless a remembered consent skips it). The callback URL."""
    to_login = browser.get(authorization_url)
    assert to_login.status_code == 303, to_login.text
    login_url = to_login.headers["location"]
    form = browser.get(login_url)
    return_to = parse_qs(urlsplit(login_url).query)["return_to"][0]
    signed_in = browser.post(
        "/login",
        data={
            "csrf_token": found(CSRF_TOKEN, form.text),
            "username": username,
            "password": password,
            "return_to": return_to,
        },
    )
    assert signed_in.status_code == 303
    to_consent = browser.get(signed_in.headers["location"])
    assert to_consent.status_code == 303
    if not to_consent.headers["location"].startswith("/consent?"):
        return str(to_consent.headers["location"])  # consent remembered: the code at once
    page = browser.get(to_consent.headers["location"])
    assert page.status_code == 200 and "Allow" in page.text
    allowed = browser.post(
        "/consent",
        data={
            "csrf_token": found(CSRF_TOKEN, page.text),
            "request": found(REQUEST_ID, page.text),
            "decision": "allow",
        },
    )
    assert allowed.status_code == 303
    return str(allowed.headers["location"])
