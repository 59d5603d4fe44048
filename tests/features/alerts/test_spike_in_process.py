"""A burst of 401s on a gateway route raises one denial-spike alert, delivered to a real receiver.

The gateway's audit step records ``gateway.denied`` with ``data.status`` (the
end-to-end version through a real route is in ``test_alerts_e2e.py``); here the
same events are recorded through the runtime's auditor in-process, to pin the
detector's numbers. Everything after the auditor
— detectors, alert manager, webhook sink, HTTP delivery, signature — is the
real runtime wiring (``Runtime.open`` + ``startup``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from _support.webhook_receiver import WebhookReceiver
from bastion.audit.events import Event, EventTypes
from bastion.audit.webhook import verify_signature
from bastion.runtime import Runtime
from bastion.settings import Settings

SECRET = "in-process-webhook-secret-0123456789"


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "tls": {"mode": "off"},
            "trusted_proxies": ["127.0.0.1"],
            "alerts": {"webhooks": [{"name": "soc", "url": url, "secret": SECRET}]},
        }
    )


def _denied(runtime: Runtime, route: str, ip: str, status: int = 401) -> None:
    runtime.auditor.record(
        EventTypes.GATEWAY_DENIED,
        "denied",
        reason="invalid_token",
        route=route,
        ip=ip,
        data={"status": status},
    )


async def test_burst_of_401s_on_a_route_raises_one_spike_alert(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        runtime = await Runtime.open(_settings(tmp_path, receiver.url), announce=lambda _: None)
        seen: list[Event] = []
        runtime.auditor.subscribe(seen.append)
        try:
            await runtime.startup()
            # normal traffic first: a few scattered denials on other routes
            for i in range(5):
                _denied(runtime, "catalog", f"198.51.100.{i}", status=403)
            for i in range(60):  # the burst: default min_count 20, z 4
                _denied(runtime, "orders", f"203.0.113.{i % 4}")
            (request,) = await receiver.await_for(1)
            await asyncio.sleep(0.5)  # bounded grace for a stray second delivery
            assert len(receiver.received) == 1
            await runtime.shutdown()
        finally:
            await runtime.close()
    verify_signature(
        SECRET,
        body=request.body,
        timestamp=request.headers["x-bastion-timestamp"],
        signature=request.headers["x-bastion-signature"],
    )
    alert = request.json()["alert"]
    assert (alert["type"], alert["severity"], alert["route"]) == (
        "denial_spike",
        "medium",
        "orders",
    )
    assert alert["dedup_key"] == "route:orders"
    assert alert["data"]["by"] == "route"
    assert alert["count"] >= 20
    assert runtime.alerting is not None
    assert runtime.alerting.sink.dead_lettered == 0
    # the alert is also in the audit stream, for the writer
    raised = [e for e in seen if e.type == EventTypes.ALERT]
    assert [e.reason for e in raised] == ["denial_spike"]
