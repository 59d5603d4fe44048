"""``bastion doctor``: check the configuration, stored state and dependencies for weaknesses.

Exit status: 0 when no finding is at least as severe as ``--fail-on`` (default
high), 1 when one is, 2 for bad usage (unknown option or severity, invalid
configuration, unusable advisory file). Findings and their fixes are
catalogued in ``docs/doctor.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import typer
from rich.markup import escape

from bastion.cli.options import flag_option
from bastion.cli.output import EXIT_CONFIG, ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings, run

__all__ = ["EXIT_FINDINGS", "doctor"]

#: Exit status when a finding reaches ``--fail-on``.
EXIT_FINDINGS: Final = 1
_STYLES: Final = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
AdvisoriesOption = flag_option(
    "--advisories",
    "Offline advisory file (JSON) to audit dependencies against instead of "
    "the online vulnerability service.",
)


def _human(doc: dict[str, Any]) -> None:
    summary = doc["summary"]
    parts = ", ".join(
        f"{part} {'checked' if done else 'not checked'}"
        for part, done in summary["checked"].items()
    )
    console.print(f"[bold]bastion doctor[/] — {parts}")
    findings = doc["findings"]
    if not findings:
        console.print("[green]✓[/] no findings")
    current = None
    for finding in findings:
        severity = finding["severity"]
        style = _STYLES[severity]
        if severity != current:
            current = severity
            count = summary["by_severity"][severity]
            console.print(f"\n[{style}]{severity.upper()} ({count})[/]")
        console.print(
            f"  [{style}]●[/] [bold]{escape(finding['id'])}[/]  {escape(finding['title'])}"
        )
        console.print(f"      {escape(finding['detail'])}")
        console.print(f"      [green]fix:[/] {escape(finding['fix'])}")
    counts = ", ".join(f"{n} {sev}" for sev, n in summary["by_severity"].items() if n)
    verdict = (
        f"[bold red]fails[/] (something at or above {summary['fail_on']})"
        if summary["failed"]
        else f"[green]passes[/] (nothing at or above {summary['fail_on']})"
    )
    console.print(f"\n{summary['total']} finding(s){f': {counts}' if counts else ''} — {verdict}")


@handles_errors
def doctor(
    config: Path | None = ConfigOption,
    fail_on: str = typer.Option(
        "high",
        "--fail-on",
        help="Exit 1 when a finding is at least this severe: critical, high, medium, low, info.",
    ),
    no_deps: bool = typer.Option(
        False, "--no-deps", help="Skip the dependency vulnerability audit."
    ),
    no_store: bool = typer.Option(
        False, "--no-store", help="Skip the database checks (keys, clients, users)."
    ),
    advisories: Path | None = AdvisoriesOption,
    as_json: bool = JsonOption,
) -> None:
    """Check the configuration against the security invariants and audit dependencies.

    Reports TLS, issuer, master key, CORS, public routes, rate limits and proxies from
    the configuration; old signing keys, unused or over-privileged clients, API keys
    without expiry and admins without MFA from the database; and installed
    dependencies with known vulnerabilities.
    """
    from bastion.doctor import DoctorError, load_advisories, report, run_doctor, severity_rank

    try:
        severity_rank(fail_on)
        advisory_list = load_advisories(advisories) if advisories is not None else None
    except DoctorError as error:
        _usage_error(error, as_json)
    settings = read_settings(config)
    result = run(
        run_doctor(settings, store=not no_store, dependencies=not no_deps, advisories=advisory_list)
    )
    doc = report(result.findings, fail_on=fail_on, checked=result.checked)
    emit(doc, as_json, lambda: _human(doc))
    if doc["summary"]["failed"]:
        raise typer.Exit(EXIT_FINDINGS)


def _usage_error(error: Any, as_json: bool) -> None:
    from bastion.cli.output import err_console

    if as_json:
        emit({"error": error.code, "detail": error.detail}, True)
    else:
        err_console.print(f"[bold red]error:[/] {escape(error.detail)}")
    raise typer.Exit(EXIT_CONFIG)
