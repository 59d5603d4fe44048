"""End to end: scripted attacks on a running ``bastion serve`` raise exactly the expected alert,
delivered signed to a real local webhook receiver; normal traffic raises none.

Each test starts its own server (its own data dir and config) with a receiver
configured under ``alerts.webhooks``. Callers' addresses are set with
``X-Forwarded-For`` from the trusted loopback proxy, so each scenario is one
attacker IP. Waits are bounded (the receiver's ``wait_for``), never timed
assertions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, run_cli
from _support.waiting import wait_until
from _support.webhook_receiver import Received, WebhookReceiver
from bastion.audit.webhook import verify_signature

SECRET = "e2e-webhook-secret-0123456789abcdef"


def _config(receiver: WebhookReceiver, events: list[str]) -> str:
    return (
        "trusted_proxies: [127.0.0.1]\n"
        "alerts:\n"
        "  webhooks:\n"
        f"    - {{name: e2e, url: '{receiver.url}', secret: env:HOOK_SECRET, "
        f"events: {json.dumps(events)}}}\n"
        "  delivery: {backoff: 100ms, max_backoff: 1s}\n"
    )


class Scenario:
    """A receiver, a bastion configured to deliver to it, and an HTTP client."""

    def __init__(self, tmp_path: Path, events: list[str], extra: str = "") -> None:
        self.cwd = tmp_path
        self.receiver = WebhookReceiver().__enter__()
        (tmp_path / "bastion.yaml").write_text(_config(self.receiver, events) + extra)
        self.env = {"HOOK_SECRET": SECRET}
        self.proc = BastionProcess("-c", "bastion.yaml", cwd=tmp_path, env=self.env)
        self.http = httpx.Client(verify=False, timeout=10)

    def start(self) -> Scenario:
        self.proc.start()
        return self

    def close(self) -> None:
        self.http.close()
        self.proc.stop()
        self.receiver.__exit__()

    def create_client(self, name: str) -> dict[str, Any]:
        result = run_cli(
            "clients", "create", name, "--grant", "client_credentials", "--scope", "read",
            "--json", "-c", "bastion.yaml", cwd=self.cwd, env=self.env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def token(self, ip: str, client_id: str, secret: str) -> httpx.Response:
        return self.http.post(
            self.proc.url + "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            headers={"X-Forwarded-For": ip},
        )

    def alerts(self, count: int) -> list[dict[str, Any]]:
        """The alerts delivered once ``count`` arrived, each checked for a valid signature."""
        deadline = time.monotonic() + 15
        while True:
            found = [r for r in self.receiver.received if r.json()["kind"] == "alert"]
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for request in found:
            _verify(request)
        return [r.json()["alert"] for r in found]


def _verify(request: Received) -> None:
    verify_signature(
        SECRET,
        body=request.body,
        timestamp=request.headers["x-bastion-timestamp"],
        signature=request.headers["x-bastion-signature"],
    )


@pytest.fixture
def alerts_only(tmp_path: Path) -> Iterator[Scenario]:
    scenario = Scenario(tmp_path, ["alert.raised"])
    try:
        yield scenario
    finally:
        scenario.close()


def _settle(scenario: Scenario) -> None:
    # A bounded grace period for a stray second alert to show up (there must be none).
    time.sleep(1.0)


def test_brute_force_on_one_client_raises_one_alert(alerts_only: Scenario) -> None:
    client = alerts_only.create_client("victim-svc")
    alerts_only.start()
    statuses = []
    for _ in range(25):  # default threshold: 10 failures in 5 minutes
        response = alerts_only.token("203.0.113.10", client["client_id"], "guess")
        statuses.append(response.status_code)
        expected = {401: "invalid_client", 429: "too_many_attempts"}[response.status_code]
        assert response.json()["error"] == expected
    # The brute-force throttle answers 429 after ratelimit.login.free_attempts (5) failures;
    # throttled attempts are still audited as failed authentications, so the alert comes.
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
    (alert,) = alerts_only.alerts(1)
    _settle(alerts_only)
    assert len(alerts_only.alerts(1)) == 1  # the repeats were deduplicated
    assert alert["type"] == "brute_force"
    assert alert["severity"] == "high"
    assert alert["client_id"] == client["client_id"]
    assert alert["ip"] == "203.0.113.10"
    assert alert["dedup_key"] == f"account:{client['client_id']}"
    assert alert["summary"] == (
        f"10 failed authentications of account '{client['client_id']}' within 300s"
    )
    assert "guess" not in json.dumps(alert)


def test_credential_stuffing_across_50_clients_raises_one_alert(alerts_only: Scenario) -> None:
    alerts_only.start()
    for i in range(50):
        response = alerts_only.token("203.0.113.20", f"stuffed-{i:02d}", "password1")
        # 429 once the throttle locks the address (ratelimit.login.stuffing_accounts: 10)
        assert response.status_code == (401 if i < 10 else 429)
    (alert,) = alerts_only.alerts(1)
    _settle(alerts_only)
    assert len(alerts_only.alerts(1)) == 1
    assert alert["type"] == "credential_stuffing"
    assert alert["severity"] == "high"
    assert alert["ip"] == "203.0.113.20"
    assert alert["data"]["accounts"] == 20
    assert alert["data"]["sample_accounts"] == [f"stuffed-{i:02d}" for i in range(5)]


def test_normal_traffic_raises_no_alert(tmp_path: Path) -> None:
    # This receiver also takes auth.client events: they prove deliveries flow while
    # no alert does.
    scenario = Scenario(tmp_path, ["alert.raised", "auth.client"])
    try:
        client = scenario.create_client("normal-svc")
        scenario.start()
        cid, secret = client["client_id"], client["client_secret"]
        for i in range(30):
            ip = f"198.51.100.{i % 3 + 1}"  # one /16
            assert scenario.token(ip, cid, secret).status_code == 200
        for _ in range(3):  # a few typos
            assert scenario.token("198.51.100.1", cid, "typo").status_code == 401
        for i in range(5):  # a few unknown clients from different addresses
            assert scenario.token(f"192.0.2.{i}", f"old-{i}", "x").status_code == 401
        metadata = scenario.http.get(scenario.proc.url + "/.well-known/oauth-authorization-server")
        assert metadata.status_code == 200
        received = scenario.receiver.wait_for(8)
        _settle(scenario)
        received = list(scenario.receiver.received)
        kinds = [(r.json()["kind"], r.json().get("event", {}).get("type")) for r in received]
        assert kinds == [("event", "auth.client")] * 8
        for request in received:
            _verify(request)
    finally:
        scenario.close()


def test_burst_of_401s_on_a_gateway_route_raises_one_spike_alert(tmp_path: Path) -> None:
    # The whole path: real requests without credentials -> the gateway's audit step
    # (gateway.denied, data.status 401) -> the spike detector -> a signed webhook.
    scenario = Scenario(
        tmp_path,
        ["alert.raised"],
        "routes:\n"
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        "    upstream: http://127.0.0.1:9\n"
        "    auth: [api_key]\n",
    )
    try:
        scenario.start()
        for i in range(60):  # default: at least 20 denials in an interval, z >= 4
            response = scenario.http.get(
                scenario.proc.url + "/api/orders", headers={"X-Forwarded-For": f"203.0.113.{i % 4}"}
            )
            assert response.status_code == 401
        (alert,) = scenario.alerts(1)
        _settle(scenario)
        assert len(scenario.alerts(1)) == 1
        assert (alert["type"], alert["route"], alert["dedup_key"]) == (
            "denial_spike",
            "orders",
            "route:orders",
        )
    finally:
        scenario.close()


def test_a_reported_key_leak_is_revoked_audited_and_alerted(tmp_path: Path) -> None:
    # Issue 4's leak response end to end: a signed report at /api-keys/leaks revokes the
    # key, records api_key.leaked and raises a high-severity alert at the webhook.
    leak_secret = "leak-report-secret-0123456789abcdef"
    scenario = Scenario(
        tmp_path, ["alert.raised"], f"api_keys: {{leak_report_secret: '{leak_secret}'}}\n"
    )
    try:
        created = run_cli(
            "keys", "create", "ci-token", "--json", "-c", "bastion.yaml",
            cwd=scenario.cwd, env=scenario.env,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)
        scenario.start()
        body = json.dumps(
            [{"token": key["key"], "type": "bastion_api_key", "url": "https://github.com/x/y"}]
        ).encode()

        def post(signature: str) -> httpx.Response:
            return scenario.http.post(
                scenario.proc.url + "/api-keys/leaks",
                content=body,
                headers={"content-type": "application/json", "x-bastion-signature": signature},
            )

        def signed(when: int) -> str:
            # The wire format, written out: t=<unix time>,sha256=HMAC(secret, "<t>." + body).
            mac = hmac.new(leak_secret.encode(), f"{when}.".encode() + body, hashlib.sha256)
            return f"t={when},sha256={mac.hexdigest()}"

        # The pre-timestamp format (HMAC of the body alone) is refused.
        old = hmac.new(leak_secret.encode(), body, hashlib.sha256).hexdigest()
        refused = post(f"sha256={old}")
        assert (refused.status_code, refused.json()["reason"]) == (401, "invalid_signature")
        # A correctly signed report older than 5 minutes is refused (a captured request).
        stale = post(signed(int(time.time()) - 301))
        assert (stale.status_code, stale.json()["reason"]) == (401, "invalid_signature")
        assert "more than 300 s away from the server's clock" in stale.json()["detail"]
        now = signed(int(time.time()))
        response = post(now)
        assert response.status_code == 200, response.text
        # The same signed request again (a replay within the window) is refused.
        replayed = post(now)
        assert (replayed.status_code, replayed.json()["reason"]) == (401, "invalid_signature")
        assert replayed.json()["detail"].startswith("this signed report was already received")
        (alert,) = scenario.alerts(1)
        assert (alert["type"], alert["severity"], alert["key_id"]) == (
            "api_key_leaked",
            "high",
            key["id"],
        )
        assert key["key"] not in json.dumps(alert)
        shown = run_cli(
            "keys", "show", key["id"], "--json", "-c", "bastion.yaml",
            cwd=scenario.cwd, env=scenario.env,
        )  # fmt: skip
        assert json.loads(shown.stdout)["status"] == "revoked"

        def leaked_events() -> str | None:
            # The audit writer flushes in batches: the row may land a moment after the alert.
            found = run_cli(
                "audit", "search", "--type", "api_key.leaked", "--json", "-c", "bastion.yaml",
                cwd=scenario.cwd, env=scenario.env,
            )  # fmt: skip
            assert found.returncode == 0, found.stderr
            return found.stdout if key["id"] in found.stdout else None

        events = wait_until(leaked_events, "the api_key.leaked audit row")
        assert key["key"] not in events
    finally:
        scenario.close()
