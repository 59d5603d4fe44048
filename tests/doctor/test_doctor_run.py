"""Findings, the report document and one whole doctor run (store and dependency parts)."""

from __future__ import annotations

import pytest

import bastion.doctor
from bastion.doctor import (
    DoctorError,
    Finding,
    at_or_above,
    report,
    run_doctor,
    severity_rank,
)
from bastion.settings import Settings
from bastion.storage import HEAD_REVISION


def finding(fid: str, severity: str) -> Finding:
    return Finding(fid, severity, "t", "d", "f")  # type: ignore[arg-type]


def test_public_names_are_pinned() -> None:
    assert sorted(bastion.doctor.__all__) == [
        "AdvisoryFileError",
        "DoctorError",
        "Finding",
        "SEVERITIES",
        "Severity",
        "StoreLimits",
        "at_or_above",
        "audit_dependencies",
        "check_settings",
        "check_store",
        "load_advisories",
        "report",
        "run_doctor",
        "severity_rank",
    ]


def test_severity_order() -> None:
    assert [severity_rank(s) for s in ("critical", "high", "medium", "low", "info")] == [
        0,
        1,
        2,
        3,
        4,
    ]
    with pytest.raises(DoctorError) as caught:
        severity_rank("urgent")
    assert caught.value.detail == (
        "'urgent' is not a severity — use one of critical, high, medium, low, info"
    )


def test_at_or_above() -> None:
    found = [finding("a", "info"), finding("b", "high"), finding("c", "medium")]
    assert [f.id for f in at_or_above(found, "medium")] == ["b", "c"]
    assert [f.id for f in at_or_above(found, "critical")] == []
    assert len(at_or_above(found, "info")) == 3


def test_report_orders_and_counts() -> None:
    doc = report(
        [finding("z.low", "low"), finding("b.high", "high"), finding("a.high", "high")],
        fail_on="critical",
        checked={"config": True},
    )
    assert [f["id"] for f in doc["findings"]] == ["a.high", "b.high", "z.low"]
    assert doc["summary"] == {
        "total": 3,
        "by_severity": {"critical": 0, "high": 2, "medium": 0, "low": 1, "info": 0},
        "fail_on": "critical",
        "failed": False,
        "checked": {"config": True},
    }


async def test_unreachable_database_is_one_info_finding() -> None:
    settings = Settings.model_validate({"storage": "postgresql://nobody@127.0.0.1:1/none"})
    run = await run_doctor(settings, dependencies=False)
    [store] = [f for f in run.findings if f.id.startswith("store.")]
    assert (store.id, store.severity) == ("store.unavailable", "info")
    assert store.detail.startswith(
        "could not check: database postgresql://nobody@127.0.0.1:1/none is unavailable"
    )
    assert run.checked == {"config": True, "store": False, "dependencies": False}


async def test_database_behind_on_migrations(postgres_url: str) -> None:
    settings = Settings.model_validate({"storage": postgres_url})
    run = await run_doctor(settings, dependencies=False)
    [store] = [f for f in run.findings if f.id == "store.unavailable"]
    assert store.detail == (
        "could not check: database schema is at revision none (empty database), "
        f"this bastion needs {HEAD_REVISION} — run `bastion migrate`"
    )
    assert run.checked["store"] is False


async def test_migrated_database_is_checked(db_url: str) -> None:
    run = await run_doctor(Settings.model_validate({"storage": db_url}), dependencies=False)
    assert run.checked == {"config": True, "store": True, "dependencies": False}
    assert not [f for f in run.findings if f.id.startswith("store.")]


async def test_database_password_never_in_findings() -> None:
    url = "postgresql://user:SuperSecretPw@127.0.0.1:1/none"
    run = await run_doctor(Settings.model_validate({"storage": url}), dependencies=False)
    text = repr([f.as_dict() for f in run.findings])
    assert "SuperSecretPw" not in text
    assert "postgresql://user:***@127.0.0.1:1/none" in text
