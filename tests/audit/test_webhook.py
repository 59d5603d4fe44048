"""Webhook delivery against a real local HTTP receiver: signatures, retries, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from _support import free_port
from _support.webhook_receiver import WebhookReceiver
from bastion.audit.alerts import Alert
from bastion.audit.events import Auditor, EventTypes
from bastion.audit.webhook import (
    WebhookSignatureError,
    WebhookSink,
    WebhookTarget,
    sign,
    verify_signature,
)

SECRET = b"0123456789abcdef-webhook-secret"


def alert() -> Alert:
    return Alert(
        type="brute_force",
        severity="high",
        summary="10 failed authentications of account 'victim' within 300s",
        dedup_key="account:victim",
        first_seen=1_700_000_000.0,
        last_seen=1_700_000_010.0,
        count=10,
        client_id="victim",
        ip="192.0.2.7",
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@asynccontextmanager
async def running(sink: WebhookSink) -> AsyncIterator[WebhookSink]:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield sink
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def sink_for(url: str, tmp_path: Path, **kw: Any) -> WebhookSink:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    events = kw.pop("events", (EventTypes.ALERT,))
    return WebhookSink(
        [WebhookTarget(url=url, secret=SECRET, events=events, name="soc")],
        node_id="node-1",
        dead_letter_file=tmp_path / "dead.jsonl",
        **kw,
    )


async def test_alert_delivery_is_signed_and_verifies(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = sink_for(receiver.url, tmp_path)
    the_alert = alert()
    async with running(sink):
        sink.deliver_alert(the_alert)
        (request,) = await receiver.await_for(1)
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "bastion-webhooks/1"
    verify_signature(
        SECRET,
        body=request.body,
        timestamp=request.headers["x-bastion-timestamp"],
        signature=request.headers["x-bastion-signature"],
    )
    payload = request.json()
    assert payload["id"] == request.headers["x-bastion-delivery"]
    assert (payload["kind"], payload["node_id"], payload["webhook"]) == ("alert", "node-1", "soc")
    assert payload["alert"] == the_alert.to_json()
    assert sink.delivered == 1
    assert SECRET.decode() not in repr(sink.targets[0])


async def test_500s_are_retried_with_the_same_delivery_id(tmp_path: Path) -> None:
    with WebhookReceiver(fail_first=2) as receiver:
        sink = sink_for(receiver.url, tmp_path)
        async with running(sink):
            sink.deliver_alert(alert())
            requests = await receiver.await_for(3)
            while sink.delivered == 0:
                await asyncio.sleep(0.01)
    assert receiver.answered == [500, 500, 200]
    assert len({r.headers["x-bastion-delivery"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    for request in requests:  # every attempt is signed afresh
        verify_signature(
            SECRET,
            body=request.body,
            timestamp=request.headers["x-bastion-timestamp"],
            signature=request.headers["x-bastion-signature"],
        )
    assert (sink.delivered, sink.retried, sink.dead_lettered) == (1, 2, 0)
    assert not (tmp_path / "dead.jsonl").exists()


async def test_dead_letter_after_max_attempts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookReceiver(status=503) as receiver:
        sink = sink_for(receiver.url, tmp_path, max_attempts=3)
        async with running(sink):
            sink.deliver_alert(alert())
            await receiver.await_for(3)
            while sink.dead_lettered == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # no fourth attempt comes
    assert receiver.answered == [503, 503, 503]
    assert (sink.delivered, sink.retried, sink.dead_lettered) == (0, 2, 1)
    (line,) = (tmp_path / "dead.jsonl").read_bytes().splitlines()
    record = orjson.loads(line)
    assert record["attempts"] == 3
    assert record["reason"] == "3 attempts failed"
    assert record["last_error"] == "HTTP 503"
    assert record["url"] == receiver.url
    assert record["body"]["alert"]["type"] == "brute_force"
    assert SECRET.decode() not in line.decode()
    assert any("dead-lettered after 3 attempt(s)" in r.getMessage() for r in caplog.records)


async def test_a_4xx_is_permanent_and_dead_lettered_at_once(tmp_path: Path) -> None:
    with WebhookReceiver(status=401) as receiver:
        sink = sink_for(receiver.url, tmp_path, max_attempts=5)
        async with running(sink):
            sink.deliver_alert(alert())
            await receiver.await_for(1)
            while sink.dead_lettered == 0:
                await asyncio.sleep(0.01)
    assert receiver.answered == [401]
    record = orjson.loads((tmp_path / "dead.jsonl").read_bytes())
    assert (record["reason"], record["attempts"]) == ("permanent failure", 1)


async def test_unreachable_receiver_is_retried_then_pending_work_is_dead_lettered_at_stop(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    sink = sink_for(url, tmp_path, backoff=60, max_backoff=60, timeout=1)
    async with running(sink):
        sink.deliver_alert(alert())
        while sink.retried == 0:
            await asyncio.sleep(0.01)
        assert sink.pending == 1
    assert sink.dead_lettered == 1
    record = orjson.loads((tmp_path / "dead.jsonl").read_bytes())
    assert record["reason"] == "shutdown"
    assert record["last_error"].startswith("ConnectError")


def test_the_queue_is_bounded_and_never_blocks(tmp_path: Path) -> None:
    sink = sink_for("http://127.0.0.1:9/hook", tmp_path, max_queue=2)
    for _ in range(5):
        sink.deliver_alert(alert())
    assert (sink.pending, sink.dropped) == (2, 3)


async def test_audit_events_go_to_targets_that_subscribe_to_them(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = sink_for(receiver.url, tmp_path, events=("token.*",))
    auditor = Auditor()
    sink.attach(auditor)
    async with running(sink):
        auditor.record(EventTypes.CLIENT_AUTH, "failure", client_id="x")
        auditor.record(
            EventTypes.TOKEN_ISSUED, "success", client_id="svc", data={"scope": "a", "odd": {1}}
        )
        sink.deliver_alert(alert())  # this target does not want alerts
        (request,) = await receiver.await_for(1)
        await asyncio.sleep(0.1)
    assert len(receiver.received) == 1
    payload = request.json()
    assert payload["kind"] == "event"
    assert payload["event"]["type"] == "token.issued"
    assert payload["event"]["client_id"] == "svc"
    # never fails on a type: the auditor encodes data to JSON types when it records
    assert payload["event"]["data"] == {"scope": "a", "odd": [1]}


def test_alert_only_targets_do_not_listen_to_every_event(tmp_path: Path) -> None:
    sink = sink_for("http://127.0.0.1:9/hook", tmp_path)
    auditor = Auditor()
    sink.attach(auditor)
    auditor.record(EventTypes.TOKEN_ISSUED, "success")
    assert sink.pending == 0


def test_backoff_doubles_up_to_the_maximum_with_equal_jitter(tmp_path: Path) -> None:
    low = sink_for("http://x/", tmp_path, backoff=1.0, max_backoff=10.0, rng=lambda: 0.0)
    high = sink_for("http://x/", tmp_path, backoff=1.0, max_backoff=10.0, rng=lambda: 0.999999)
    assert [low.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [round(high.delay(n), 3) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]


@pytest.mark.parametrize(
    ("timestamp", "signature", "message"),
    [
        (None, "sha256=00", "missing X-Bastion-Timestamp or X-Bastion-Signature"),
        ("1000", None, "missing X-Bastion-Timestamp or X-Bastion-Signature"),
        ("-1000", "sha256=00", "X-Bastion-Timestamp is not a number of seconds"),
        ("\u0661\u0660\u0660\u0660", "sha256=00", "X-Bastion-Timestamp is not a number of seconds"),
        ("699", "GOOD", "X-Bastion-Timestamp is outside the replay window"),
        ("1000", "sha256=" + "0" * 64, "X-Bastion-Signature does not match the body"),
        ("1001", "GOOD1000", "X-Bastion-Signature does not match the body"),
    ],
)
def test_verify_signature_refuses(
    timestamp: str | None, signature: str | None, message: str
) -> None:
    body = b'{"a":1}'
    if signature == "GOOD":
        signature = sign(SECRET, int(timestamp or 0), body)
    elif signature == "GOOD1000":
        signature = sign(SECRET, 1000, body)
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(SECRET, body=body, timestamp=timestamp, signature=signature, now=1000)
    assert caught.value.code == "webhook_signature_invalid"
    assert str(caught.value) == message


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET, b"1700000000." + b"{}", hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, b"{}") == "sha256=" + expected
    verify_signature(
        SECRET, body=b"{}", timestamp="1700000000", signature="sha256=" + expected, now=1.7e9 + 299
    )
