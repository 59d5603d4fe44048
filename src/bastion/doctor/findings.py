"""What a doctor check reports: a :class:`Finding` with a stable id, a severity and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

from bastion.errors import BastionError

Severity = Literal["critical", "high", "medium", "low", "info"]
#: Severities from worst to mildest; the order ``--fail-on`` compares by.
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)


class DoctorError(BastionError):
    """Root of the doctor's own errors (bad options, unusable advisory file)."""

    code = "doctor_error"
    status = 400
    title = "Doctor error"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem (or notable fact) found by a check.

    ``id`` is stable (``<area>.<what>``, e.g. ``signing_key.old``) and documented in
    ``docs/doctor.md``; ``subjects`` names what it is about (route names, key ids,
    client ids, ``package==version``), never a secret.
    """

    id: str
    severity: Severity
    title: str
    detail: str
    fix: str
    subjects: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``bastion doctor --json``."""
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "fix": self.fix,
            "subjects": list(self.subjects),
        }


def severity_rank(severity: str) -> int:
    """0 for critical … 4 for info.

    Raises:
        DoctorError: ``severity`` is not one of :data:`SEVERITIES`.
    """
    try:
        return SEVERITIES.index(cast(Severity, severity))
    except ValueError:
        raise DoctorError(
            f"{severity!r} is not a severity — use one of {', '.join(SEVERITIES)}"
        ) from None


def at_or_above(findings: Iterable[Finding], severity: str) -> list[Finding]:
    """The findings at least as severe as ``severity`` (raises DoctorError for a bad one)."""
    limit = severity_rank(severity)
    return [finding for finding in findings if severity_rank(finding.severity) <= limit]


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first, then by id (a stable order for output and tests)."""
    return sorted(findings, key=lambda f: (severity_rank(f.severity), f.id))


def report(
    findings: Sequence[Finding], *, fail_on: str, checked: dict[str, bool]
) -> dict[str, Any]:
    """The whole ``--json`` document: findings (worst first) and a summary.

    ``checked`` says which parts ran (``config``, ``store``, ``dependencies``).
    """
    findings = ordered(findings)
    counts = {severity: 0 for severity in SEVERITIES}
    for finding in findings:
        counts[finding.severity] += 1
    failing = at_or_above(findings, fail_on)
    return {
        "findings": [finding.as_dict() for finding in findings],
        "summary": {
            "total": len(findings),
            "by_severity": counts,
            "fail_on": fail_on,
            "failed": bool(failing),
            "checked": dict(checked),
        },
    }
