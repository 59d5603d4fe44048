"""Run every doctor check for one configuration and collect the findings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bastion.doctor.config_checks import check_settings
from bastion.doctor.dependencies import Advisory, audit_dependencies
from bastion.doctor.file_checks import check_files
from bastion.doctor.findings import Finding
from bastion.doctor.store_checks import StoreLimits, check_store
from bastion.errors import BastionError
from bastion.settings import Settings, redact_url

__all__ = ["STORE_TIMEOUT", "DoctorRun", "run_doctor"]

#: Longest the stored-state checks may take (connect + reads), in seconds.
STORE_TIMEOUT: Final = 60.0


@dataclass
class DoctorRun:
    """The findings of one run and which parts were checked."""

    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, bool] = field(default_factory=dict)


def _store_unavailable(reason: str) -> Finding:
    return Finding(
        "store.unavailable",
        "info",
        "the stored state could not be checked",
        f"could not check: {reason}",
        "run `bastion doctor` where the configured database is reachable and migrated "
        "(`bastion migrate`)",
    )


def _sqlite_missing(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist (else ``None``).

    The doctor only reads: it must not create (and migrate) a development database.
    """
    from bastion.storage.sql.engine import parse_database_url

    path = parse_database_url(url).sqlite_path
    return path if path is not None and not path.exists() else None


async def _store_findings(
    settings: Settings, limits: StoreLimits | None, seconds: float
) -> tuple[list[Finding], bool]:
    from bastion.storage import Database

    url = settings.storage_url
    try:
        missing = _sqlite_missing(url)
        if missing is not None:
            return [_store_unavailable(f"the database {missing} does not exist yet")], False
        async with asyncio.timeout(seconds):
            db = await Database.connect(url, pool_size=1)
            try:
                await db.check_schema()
                return await check_store(db, settings, limits=limits), True
            finally:
                await db.close()
    except TimeoutError:
        reason = f"the database {redact_url(url)} did not answer within {seconds:g}s"
    except BastionError as error:
        reason = error.detail
    except OSError as error:
        reason = f"{redact_url(url)}: {error.strerror or error}"
    return [_store_unavailable(reason)], False


async def run_doctor(
    settings: Settings,
    *,
    store: bool = True,
    dependencies: bool = True,
    advisories: list[Advisory] | None = None,
    limits: StoreLimits | None = None,
    store_timeout: float = STORE_TIMEOUT,
) -> DoctorRun:
    """Run the configuration and local file-mode checks, then (unless turned off) the store
    checks and the dependency audit; an unreachable database or vulnerability service
    becomes one info finding, never an exception."""
    run = DoctorRun(
        findings=check_settings(settings) + list(check_files(settings)), checked={"config": True}
    )
    if store:
        found, run.checked["store"] = await _store_findings(settings, limits, store_timeout)
        run.findings += found
    else:
        run.checked["store"] = False
    if dependencies:
        found_deps = await asyncio.to_thread(audit_dependencies, advisories=advisories)
        run.findings += found_deps
        run.checked["dependencies"] = not any(
            f.id == "dependency.audit_unavailable" for f in found_deps
        )
    else:
        run.checked["dependencies"] = False
    return run
