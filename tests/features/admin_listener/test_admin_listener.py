"""The admin API on a listener of its own (``admin.listen``) and behind ``admin.allow_from``.

Issue 13: the admin API was always on the public listener. With ``admin.listen`` it is
served only there (the public port answers 404 under /admin/api); ``admin.allow_from``
refuses other client addresses with 403 ``admin_ip_forbidden`` before any token is read,
using the gateway's one client-IP rule (X-Forwarded-For only from trusted_proxies).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from _support import BastionProcess, free_port

OPENAPI = "/admin/api/v1/openapi.json"
CLIENTS = "/admin/api/v1/clients"


def problem(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == reason


def test_admin_api_only_on_its_own_listener(tmp_path: Path) -> None:
    admin_port = free_port()
    (tmp_path / "bastion.yaml").write_text(
        f"admin: {{listen: {{host: 127.0.0.1, port: {admin_port}}}}}\n"
    )
    proc = BastionProcess("--demo", "-c", "bastion.yaml", cwd=tmp_path)
    with proc, httpx.Client(verify=False, timeout=10) as client:
        notices = [event.get("message", "") for event in proc.events]
        admin = f"https://127.0.0.1:{admin_port}"
        assert f"admin API: served only at {admin}/admin/api/v1" in notices
        # The public listener: nothing under /admin/api any more.
        problem(client.get(proc.url + OPENAPI), 404, "not_found")
        problem(client.get(proc.url + CLIENTS), 404, "not_found")
        assert client.get(proc.url + "/demo/hello").status_code == 200
        # The admin listener (the main port's TLS): the admin API, and nothing else.
        assert client.get(admin + OPENAPI).status_code == 200
        problem(client.get(admin + CLIENTS), 401, "missing_token")
        problem(client.get(admin + "/demo/hello"), 404, "not_found")
        problem(client.post(admin + "/oauth2/token"), 404, "not_found")


def test_allow_from_refuses_other_addresses_with_403(tmp_path: Path) -> None:
    (tmp_path / "bastion.yaml").write_text("admin: {allow_from: [10.0.0.0/8]}\n")
    proc = BastionProcess("-c", "bastion.yaml", cwd=tmp_path)
    with proc, httpx.Client(verify=False, timeout=10) as client:
        for path in (OPENAPI, CLIENTS):
            problem(client.get(proc.url + path), 403, "admin_ip_forbidden")
        # A forged X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
        forged = client.get(proc.url + CLIENTS, headers={"X-Forwarded-For": "10.1.2.3"})
        problem(forged, 403, "admin_ip_forbidden")
        # A token does not get past the address check either.
        bearer = client.get(proc.url + CLIENTS, headers={"Authorization": "Bearer x.y.z"})
        problem(bearer, 403, "admin_ip_forbidden")


def test_allow_from_reads_the_client_behind_a_trusted_proxy(tmp_path: Path) -> None:
    (tmp_path / "bastion.yaml").write_text(
        "trusted_proxies: [127.0.0.1]\nadmin: {allow_from: [10.0.0.0/8]}\n"
    )
    proc = BastionProcess("-c", "bastion.yaml", cwd=tmp_path)
    with proc, httpx.Client(verify=False, timeout=10) as client:
        inside = client.get(proc.url + CLIENTS, headers={"X-Forwarded-For": "10.1.2.3"})
        problem(inside, 401, "missing_token")  # allowed through; the token decides
        outside = client.get(proc.url + CLIENTS, headers={"X-Forwarded-For": "192.0.2.9"})
        problem(outside, 403, "admin_ip_forbidden")
        problem(client.get(proc.url + CLIENTS), 403, "admin_ip_forbidden")  # the proxy itself
