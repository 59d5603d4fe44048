"""``/admin/api/v1/users`` over real HTTP against ``bastion serve``: exact statuses and codes.

An operator's client (created with ``bastion clients create``) gets an admin token
from ``/oauth2/token``; a user created through the API is seen by ``bastion users``
in another process, and each change is in the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, run_cli
from _support.waiting import wait_until

USERS = "/admin/api/v1/users"
PASSWORD = "violet staple orbit 42"


def _token(http: httpx.Client, cwd: Path, issuer: str, scope: str) -> dict[str, str]:
    created = run_cli(
        "clients",
        "create",
        f"ops-{scope}",
        "--grant",
        "client_credentials",
        "--scope",
        scope,
        "--audience",
        issuer + "/admin/api",
        "--json",
        cwd=cwd,
    )
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    response = http.post(
        "/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials", "scope": scope},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": "Bearer " + response.json()["access_token"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BastionProcess]:
    with BastionProcess(cwd=tmp_path_factory.mktemp("users")) as proc:
        yield proc


@pytest.fixture(scope="module")
def http(server: BastionProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, verify=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def admin(server: BastionProcess, http: httpx.Client) -> dict[str, str]:
    issuer = http.get("/.well-known/oauth-authorization-server").json()["issuer"]
    return _token(http, server.cwd, issuer, "bastion:admin")


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["reason"] == code
    return body


def test_user_lifecycle(server: BastionProcess, http: httpx.Client, admin: dict[str, str]) -> None:
    created = http.post(
        USERS,
        headers=admin,
        json={"username": "Alice", "email": "alice@example.com", "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    user = created.json()
    assert created.headers["location"] == f"{USERS}/{user['id']}"
    assert (user["username"], user["has_password"], user["disabled"]) == ("Alice", True, False)
    assert PASSWORD not in created.text and "argon2" not in created.text

    # Another process (the CLI) sees the user at once: one database, one feed.
    listed = run_cli("users", "show", "alice", "--json", cwd=server.cwd)
    assert json.loads(listed.stdout)["id"] == user["id"]

    one = f"{USERS}/{user['id']}"
    assert http.get(one, headers=admin).json() == user
    assert http.post(one + "/disable", headers=admin).json()["disabled"] is True
    assert http.post(one + "/enable", headers=admin).json()["disabled"] is False
    verified = http.patch(one, headers=admin, json={"email_verified": True}).json()
    assert verified["email_verified"] is True
    patched = http.patch(
        one, headers=admin, json={"email": "a.liddell@example.com", "roles": ["ops", "ops", "dev"]}
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["email"], patched.json()["roles"]) == (
        "a.liddell@example.com",
        ["ops", "dev"],
    )
    assert patched.json()["email_verified"] is False  # a new address is not verified
    assert patched.json()["username"] == "Alice"
    reset = http.post(one + "/password", headers=admin, json={"password": "another long phrase"})
    assert reset.status_code == 200, reset.text
    assert reset.json()["password_changed_at"] > user["password_changed_at"]
    page = http.get(USERS, headers=admin, params={"limit": 10}).json()
    assert [u["id"] for u in page["items"]] == [user["id"]] and page["next_cursor"] is None

    deleted = http.delete(one, headers=admin)
    assert deleted.status_code == 204
    assert _problem(http.get(one, headers=admin), 404, "not_found")["detail"] == (
        f"user {user['id']!r} does not exist"
    )

    # The audit writer stores events in batches: the last rows may land a moment after the 204.
    def actions() -> list[str]:
        audit = run_cli("audit", "search", "--type", "user.changed", "--json", cwd=server.cwd)
        return sorted(e["data"]["action"] for e in json.loads(audit.stdout)["items"])

    expected = ["created", "deleted", "disabled", "enabled", "password_reset", "updated", "updated"]
    wait_until(lambda: actions() == expected, "every user.changed audit row")


def test_refusals_have_exact_statuses_and_codes(
    server: BastionProcess, http: httpx.Client, admin: dict[str, str]
) -> None:
    weak = http.post(USERS, headers=admin, json={"username": "bob", "password": "1Qaz2Wsx3Edc"})
    body = _problem(weak, 400, "weak_password")
    assert (body["rule"], body["detail"]) == (
        "common",
        "this password is in a list of common or breached passwords; choose another",
    )
    short = _problem(
        http.post(USERS, headers=admin, json={"username": "bob", "password": "short"}),
        400,
        "weak_password",
    )
    assert short["rule"] == "too_short"
    bad_email = _problem(
        http.post(USERS, headers=admin, json={"username": "bob", "email": "nope"}),
        400,
        "invalid_user_metadata",
    )
    assert bad_email["detail"] == "email: give an address like name@example.com"
    _problem(
        http.post(USERS, headers=admin, json={"username": "bob", "nickname": "b"}),
        400,
        "invalid_request",
    )

    assert http.post(USERS, headers=admin, json={"username": "carol"}).status_code == 201
    taken = _problem(http.post(USERS, headers=admin, json={"username": "CAROL"}), 409, "conflict")
    assert taken["detail"] == "user 'CAROL' already exists"
    _problem(http.post(f"{USERS}/nobody/disable", headers=admin), 404, "not_found")
    carol = f"{USERS}/" + http.get(USERS, headers=admin).json()["items"][-1]["id"]
    _problem(http.patch(carol, headers=admin, json={"username": "eve"}), 400, "invalid_request")
    _problem(http.patch(carol, headers=admin, json={"roles": None}), 400, "invalid_request")
    bad_role = _problem(
        http.patch(carol, headers=admin, json={"roles": ["has space"]}),
        400,
        "invalid_user_metadata",
    )
    assert bad_role["detail"].startswith("roles: 'has space' is not a role")
    _problem(http.patch(f"{USERS}/nobody", headers=admin, json={"roles": []}), 404, "not_found")
    _problem(http.get(USERS), 401, "missing_token")

    issuer = http.get("/.well-known/oauth-authorization-server").json()["issuer"]
    reader = _token(http, server.cwd, issuer, "bastion:admin:read")
    assert http.get(USERS, headers=reader).status_code == 200
    _problem(http.post(USERS, headers=reader, json={"username": "dave"}), 403, "insufficient_scope")
