"""open_alerting: the chain built from settings, with webhooks from YAML and the webhooks table."""

from __future__ import annotations

from pathlib import Path

from bastion.audit.events import Auditor, EventTypes
from bastion.audit.monitoring import DEAD_LETTER_FILE, open_alerting
from bastion.crypto import Keyring, MasterKey
from bastion.settings import Settings
from bastion.storage import Database, Webhook
from bastion.storage.sql.schema import seal_context


def settings(tmp_path: Path, **alerts: object) -> Settings:
    return Settings.model_validate({"data_dir": str(tmp_path), "alerts": alerts})


async def test_disabled_alerting_builds_nothing(tmp_path: Path) -> None:
    assert await open_alerting(settings(tmp_path, enabled=False), Auditor()) is None


async def test_yaml_and_stored_webhooks_are_targets(tmp_path: Path, db: Database) -> None:
    keyring = Keyring([MasterKey.generate()])

    def sealed(hook_id: str, secret: bytes) -> str:
        return keyring.seal(secret, context=seal_context("webhooks", "secret_sealed", hook_id))

    good = Webhook(url="https://db.example.com/h", secret_sealed="", name="db-hook")
    good = Webhook(
        url=good.url,
        secret_sealed=sealed(good.id, b"db-secret-0123456789"),
        name="db-hook",
        events=("token.*",),
        id=good.id,
    )
    await db.webhooks.create(good)
    off = Webhook(url="https://off.example.com/h", secret_sealed="x", enabled=False)
    await db.webhooks.create(off)
    # sealed for another row: does not open here, so it is skipped (and logged)
    moved = Webhook(url="https://moved.example.com/h", secret_sealed=sealed("other", b"s" * 20))
    await db.webhooks.create(moved)

    config = settings(
        tmp_path,
        webhooks=[{"url": "https://yaml.example.com/h", "secret": "yaml-secret-0123456789"}],
    )
    auditor = Auditor()
    alerting = await open_alerting(config, auditor, db=db, keyring=keyring, node_id="n1")
    assert alerting is not None
    targets = [(t.name, t.url, t.secret, t.events) for t in alerting.sink.targets]
    assert targets == [
        (
            "alerts.webhooks[0]",
            "https://yaml.example.com/h",
            b"yaml-secret-0123456789",
            ("alert.raised",),
        ),
        ("db-hook", "https://db.example.com/h", b"db-secret-0123456789", ("token.*",)),
    ]
    assert alerting.sink.dead_letter_file == tmp_path / DEAD_LETTER_FILE
    assert alerting.sink.node_id == "n1"
    # attached: failures recorded on the auditor reach the detectors, alerts reach the sink
    for _ in range(10):
        auditor.record(EventTypes.CLIENT_AUTH, "failure", client_id="victim", ip="192.0.2.1")
    assert [a.type for a in alerting.manager.recent] == ["brute_force"]
    # one alert to the YAML hook; the db hook gets the token.* events only
    assert alerting.sink.pending == 1
    alerting.close()
    for _ in range(10):
        auditor.record(EventTypes.CLIENT_AUTH, "failure", client_id="again", ip="192.0.2.1")
    assert len(alerting.manager.recent) == 1
