"""What ``env: production`` refuses, and which development defaults are in effect."""

from __future__ import annotations

from bastion.settings._values import redact_url
from bastion.settings.config import Settings


def production_problems(settings: Settings) -> list[str]:
    """The lines ``env: production`` refuses to start with (empty when none).

    Refused: an issuer that is derived (``localhost`` only works on this machine)
    or not https, the self-signed development certificate (``tls.mode: auto``),
    and a generated master key. In-process shared state is allowed (a single
    node is a valid deployment).
    """
    problems: list[str] = []
    if settings.issuer is None:
        problems.append(
            f"issuer: production needs an explicit issuer — the derived {settings.issuer_url} "
            "only works on this machine; set issuer to the public https URL, "
            "e.g. https://auth.example.com"
        )
    elif not settings.issuer.startswith("https://"):
        problems.append(
            f"issuer: production needs an https issuer, not {redact_url(settings.issuer)!r} — "
            "set issuer to the public https URL, e.g. https://auth.example.com"
        )
    if settings.tls.mode == "auto":
        problems.append(
            "tls: production refuses the self-signed development certificate — set tls.cert "
            "and tls.key, or tls: off behind a TLS-terminating proxy listed in trusted_proxies"
        )
    if not settings.master_key_configured:
        problems.append(
            "secrets: production refuses a generated master key — set secrets.master_key_file, "
            "or secrets.master_key: env:BASTION_MASTER_KEY"
        )
    return problems


def development_defaults(settings: Settings) -> list[str]:
    """Human lines naming each development default in effect, for the start-up banner."""
    lines: list[str] = []
    if settings.storage.url is None:
        path = (settings.data_dir / "bastion.db").absolute()
        lines.append(f"SQLite database at {path} (set storage: postgresql://… to scale out)")
    if settings.shared.url == "memory://":
        lines.append(
            "in-process shared state (memory://): rate limits and replay caches are exact for "
            "this one process only (set shared: redis://… for several)"
        )
    if not settings.master_key_configured:
        lines.append(
            f"generated master key at {settings.master_key_path.absolute()} "
            "(set secrets.master_key_file to keep your own)"
        )
    if settings.tls.mode == "auto":
        lines.append(
            f"self-signed TLS certificate in {(settings.data_dir / 'tls').absolute()} "
            "(browsers will warn; set tls.cert and tls.key)"
        )
    if settings.issuer is None:
        line = f"issuer derived from the listen port: {settings.issuer_url}"
        if settings.shared.url != "memory://":
            # Several nodes: each would sign with (and demand) its own issuer, so tokens
            # from one node would be refused by the others.
            line += " — nodes sharing this Redis must share one issuer: set issuer"
        lines.append(line)
    return lines
