"""``bastion doctor``: the running configuration, stored state and dependencies against the
security invariants.

Each check module returns :class:`Finding` objects (stable ``id`` such as
``tls.off``, a severity, what was found and the fix); :func:`run_doctor` runs
them all and :func:`report` turns the findings into the JSON the command prints.
The catalogue of finding ids, with why each matters, is ``docs/doctor.md``.
"""

from __future__ import annotations

from bastion.doctor.config_checks import check_settings
from bastion.doctor.dependencies import (
    AdvisoryFileError,
    audit_dependencies,
    load_advisories,
)
from bastion.doctor.findings import (
    SEVERITIES,
    DoctorError,
    Finding,
    Severity,
    at_or_above,
    report,
    severity_rank,
)
from bastion.doctor.run import run_doctor
from bastion.doctor.store_checks import StoreLimits, check_store

__all__ = [
    "SEVERITIES",
    "AdvisoryFileError",
    "DoctorError",
    "Finding",
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
