"""``bastion doctor`` end to end: the example production config passes, a weak one shows
exactly the planted findings, the JSON document's shape is pinned.

Commands run in-process (typer's runner) on real databases (SQLite and PostgreSQL);
one real subprocess checks the human output and that the doctor writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _support import run_cli
from bastion.storage import ApiKey, Client, Database, SigningKey
from bastion.storage.models import utcnow

EXAMPLE = Path(__file__).parents[2] / "examples" / "production.yaml"
SEVERITIES = ["critical", "high", "medium", "low", "info"]


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run commands in this process, in ``tmp_path``, without BASTION_* settings variables
    (the BASTION_TEST_* service URLs stay for the database fixtures)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("BASTION_") and not name.startswith("BASTION_TEST_"):
            monkeypatch.delenv(name)
    return tmp_path


def doctor(*args: str, env: dict[str, str] | None = None) -> Any:
    from bastion.cli.app import app

    return CliRunner().invoke(app, ["doctor", *args], env=env, catch_exceptions=False)


def doctor_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = doctor(*args, "--json", env=env)
    return result.exit_code, json.loads(result.stdout)


def ids(doc: dict[str, Any]) -> list[str]:
    return sorted(finding["id"] for finding in doc["findings"])


def production_env(tmp_path: Path, db_url: str, redis_url: str) -> dict[str, str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("certificate")
    key.write_text("private key")
    return {
        "BASTION_TLS__CERT": str(cert),
        "BASTION_TLS__KEY": str(key),
        "BASTION_DATABASE_URL": db_url,
        "BASTION_REDIS_URL": redis_url,
        "BASTION_API_KEY_PEPPER": "pepper-for-tests",
        "BASTION_LEAK_REPORT_SECRET": "Lk7-9fQ2x0vR4mZ8pW1sB6nT3yH5cJ0d",
    }


def test_example_production_config_has_nothing_at_medium_or_above(
    in_process: Path, db_url: str, redis_url: str
) -> None:
    env = production_env(in_process, db_url, redis_url)
    status, doc = doctor_json("-c", str(EXAMPLE), "--no-deps", env=env)
    assert status == 0, doc
    assert ids(doc) == ["routes.public"]
    assert doc["findings"][0]["subjects"] == ["health"]
    assert doc["summary"]["checked"] == {"config": True, "store": True, "dependencies": False}
    assert not [f for f in doc["findings"] if SEVERITIES.index(f["severity"]) <= 2]


WEAK = """\
env: development
issuer: http://localhost:8080
tls: off
trusted_proxies: [127.0.0.1]
storage: {db_url}
secrets: {{master_key: env:MASTER}}
signing_keys: {{rotate_every: 30d}}
api_keys: {{pepper: env:PEPPER, leak_report_secret: env:LEAK}}
routes:
  - name: health
    match: {{path: /health}}
    upstream: http://127.0.0.1:9
    public: true
    limits: [{{per: ip, rate: 10/second}}]
  - name: orders
    match: {{path: /orders}}
    upstream: http://127.0.0.1:9
    auth: [api_key]
    limits: [{{per: key, rate: 10/second}}]
"""
WEAK_ENV = {"MASTER": "m" * 44, "PEPPER": "pepper", "LEAK": "leak" * 8}
PLANTED = [
    "api_key.no_expiry",
    "api_keys.weak_leak_report_secret",
    "client.unused",
    "env.not_production",
    "issuer.http",
    "routes.public",
    "signing_key.old",
    "tls.off",
]


def plant(db_url: str) -> dict[str, str]:
    """A key without expiry, a client nobody used, an active signing key 120 days old."""
    now = utcnow()

    async def main() -> dict[str, str]:
        db = await Database.connect(db_url)
        try:
            key = await db.api_keys.create(ApiKey(digest="d" * 64, prefix="bst_forever"))
            await db.clients.create(Client(client_id="forgotten", created_at=now - timedelta(60)))
            await db.signing_keys.create(
                SigningKey(
                    kid="stale",
                    alg="ES256",
                    public_jwk={"kty": "EC"},
                    private_key_sealed="sealed",
                    state="active",
                    created_at=now - timedelta(days=120),
                )
            )
            return {"key": key.id}
        finally:
            await db.close()

    return asyncio.run(main())


def weak_config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "weak.yaml"
    path.write_text(WEAK.format(db_url=db_url))
    return path


def test_weak_config_shows_exactly_the_planted_findings(in_process: Path, db_url: str) -> None:
    planted = plant(db_url)
    config = weak_config(in_process, db_url)
    status, doc = doctor_json("-c", str(config), "--no-deps", env=WEAK_ENV)
    assert status == 1
    assert ids(doc) == PLANTED
    found = {f["id"]: f for f in doc["findings"]}
    assert found["api_key.no_expiry"]["subjects"] == [planted["key"]]
    assert found["client.unused"]["subjects"] == ["forgotten"]
    assert found["signing_key.old"]["subjects"] == ["stale"]
    assert found["routes.public"]["subjects"] == ["health"]
    assert doc["summary"]["failed"] is True
    assert doc["summary"]["by_severity"] == {
        "critical": 0,
        "high": 2,
        "medium": 4,
        "low": 1,
        "info": 1,
    }
    # worst first, then by id
    order = [(SEVERITIES.index(f["severity"]), f["id"]) for f in doc["findings"]]
    assert order == sorted(order)
    # --fail-on moves the threshold: nothing is critical
    assert (
        doctor("-c", str(config), "--no-deps", "--fail-on", "critical", env=WEAK_ENV).exit_code == 0
    )
    assert doctor("-c", str(config), "--no-deps", "--fail-on", "info", env=WEAK_ENV).exit_code == 1


def test_json_document_shape_is_pinned(in_process: Path) -> None:
    status, doc = doctor_json("--no-deps")
    assert status == 1
    assert list(doc) == ["findings", "summary"]
    assert list(doc["summary"]) == ["total", "by_severity", "fail_on", "failed", "checked"]
    assert list(doc["summary"]["by_severity"]) == SEVERITIES
    assert doc["summary"]["fail_on"] == "high"
    assert (
        doc["summary"]["total"]
        == len(doc["findings"])
        == sum(doc["summary"]["by_severity"].values())
    )
    assert list(doc["summary"]["checked"]) == ["config", "store", "dependencies"]
    for finding in doc["findings"]:
        assert list(finding) == ["id", "severity", "title", "detail", "fix", "subjects"]
        assert finding["severity"] in SEVERITIES
        assert all(isinstance(finding[k], str) and finding[k] for k in list(finding)[:5])
        assert isinstance(finding["subjects"], list)
    # no database yet: the doctor says so and does not create one
    unavailable = next(f for f in doc["findings"] if f["id"] == "store.unavailable")
    assert unavailable["severity"] == "info"
    assert unavailable["detail"] == (
        f"could not check: the database {(in_process / '.bastion' / 'bastion.db').absolute()} "
        "does not exist yet"
    )
    assert not (in_process / ".bastion").exists()


def test_offline_advisories(in_process: Path) -> None:
    advisories = in_process / "advisories.json"
    version = metadata.version("PyYAML")
    advisories.write_text(
        json.dumps(
            {"advisories": [{"package": "pyyaml", "id": "TEST-1", "affected": f"=={version}"}]}
        )
    )
    status, doc = doctor_json(
        "--no-store", "--advisories", str(advisories), "--fail-on", "critical"
    )
    assert status == 0
    vulnerable = next(f for f in doc["findings"] if f["id"] == "dependency.vulnerable")
    assert vulnerable["subjects"] == [f"pyyaml=={version}: TEST-1"]
    assert doc["summary"]["checked"] == {"config": True, "store": False, "dependencies": True}


@pytest.mark.parametrize(
    ("args", "detail"),
    [
        (
            ["--fail-on", "severe"],
            "'severe' is not a severity — use one of critical, high, medium, low, info",
        ),
        (["--advisories", "missing.json"], "cannot read advisory file missing.json: "),
    ],
)
def test_bad_usage_exits_2(in_process: Path, args: list[str], detail: str) -> None:
    status, doc = doctor_json(*args)
    assert status == 2
    assert doc["error"] in ("doctor_error", "invalid_advisory_file")
    assert doc["detail"].startswith(detail)


def test_invalid_config_exits_2(in_process: Path) -> None:
    config = in_process / "bad.yaml"
    config.write_text("tls: off\n")
    status, doc = doctor_json("-c", str(config))
    assert status == 2
    assert doc["error"] == "invalid_config"


def test_human_output_in_a_real_process(tmp_path: Path) -> None:
    result = run_cli("doctor", "--no-deps", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert "HIGH (1)" in out
    assert "secrets.generated_master_key" in out
    assert "MEDIUM (3)" in out
    assert "fix: set env: production" in out
    assert out.rstrip().endswith("fails (something at or above high)")
    assert "\x1b[" not in out  # no colour codes when stdout is not a terminal
    assert not (tmp_path / ".bastion").exists()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_data_dir_and_database_are_created_private_and_loose_modes_are_flagged(
    tmp_path: Path,
) -> None:
    old_umask = os.umask(0o022)  # the usual umask: files would be 0644 by default
    try:
        migrated = run_cli("migrate", "--json", cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        created = run_cli("keys", "create", "k", "--json", cwd=tmp_path)  # writes through WAL
        assert created.returncode == 0, created.stderr
    finally:
        os.umask(old_umask)
    data_dir, database = tmp_path / ".bastion", tmp_path / ".bastion" / "bastion.db"
    assert _mode(data_dir) == 0o700
    assert _mode(database) == 0o600
    for companion in (".bastion/bastion.db-wal", ".bastion/bastion.db-shm"):
        if (tmp_path / companion).exists():
            assert _mode(tmp_path / companion) == 0o600
    result = run_cli("doctor", "--json", "--no-deps", cwd=tmp_path)
    found = {f["id"] for f in json.loads(result.stdout)["findings"]}
    assert not {"files.data_dir_mode", "files.database_mode"} & found
    # A data_dir and a database that existed before (or another tool made) with loose modes.
    data_dir.chmod(0o755)
    database.chmod(0o644)
    result = run_cli("doctor", "--json", "--no-deps", cwd=tmp_path)
    findings = {f["id"]: f for f in json.loads(result.stdout)["findings"]}
    directory = findings["files.data_dir_mode"]
    assert directory["severity"] == "medium"
    assert directory["subjects"] == [".bastion"]
    assert directory["fix"] == "chmod 700 .bastion"
    db_finding = findings["files.database_mode"]
    assert db_finding["severity"] == "high"
    assert db_finding["subjects"] == [f"{database.absolute()} (0644)"]
