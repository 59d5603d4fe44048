"""Configuration checks: pure functions over :class:`~bastion.settings.Settings`.

Each ``_check_*`` function returns the findings of one concern (possibly none);
:func:`check_settings` runs them all in a fixed order. They read only the
settings — no file, network or database — so they are cheap and deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Network
from typing import Final

from bastion.doctor.findings import Finding
from bastion.settings import Settings

__all__ = ["CONFIG_CHECKS", "LONG_ACCESS_TOKEN_TTL", "check_settings"]

#: Access tokens living longer than this (seconds) are reported: a leaked token stays usable.
LONG_ACCESS_TOKEN_TTL: Final = 3600.0
#: Shorter prefixes than these (IPv4 / IPv6) trust a large part of the Internet as proxies.
_BROAD_PREFIX: Final = {4: 8, 6: 32}


def _env(settings: Settings) -> Iterable[Finding]:
    if settings.env != "production":
        yield Finding(
            "env.not_production",
            "medium",
            "not running in production mode",
            f"env is {settings.env!r}: the production refusals (http issuer, self-signed "
            "certificate, generated master key) are not enforced",
            "set env: production (or BASTION_ENV=production) on every deployed node",
        )


def _tls(settings: Settings) -> Iterable[Finding]:
    if settings.tls.mode == "off":
        yield Finding(
            "tls.off",
            "medium",
            "TLS is off: bastion serves plain HTTP",
            "tls is off; only a TLS-terminating proxy in trusted_proxies protects traffic, "
            f"and the hop from it to {settings.listen.host}:{settings.listen.port} is in the "
            "clear",
            "keep the proxy-to-bastion hop on a private network, or set tls.cert and tls.key "
            "so bastion serves HTTPS itself",
        )
    elif settings.tls.mode == "auto":
        yield Finding(
            "tls.self_signed",
            "high" if settings.env == "production" else "medium",
            "TLS uses the generated self-signed certificate",
            "tls.mode is auto: clients cannot verify the server, so they learn to ignore "
            "certificate warnings",
            "set tls.cert and tls.key to a certificate from a CA (e.g. Let's Encrypt)",
        )


def _issuer(settings: Settings) -> Iterable[Finding]:
    if settings.issuer_url.startswith("http://"):
        yield Finding(
            "issuer.http",
            "high",
            "the issuer is an http URL",
            f"the issuer is {settings.issuer_url}: tokens, discovery and redirects name a "
            "plain-HTTP origin that an attacker on the path can impersonate",
            "set issuer to the public https URL, e.g. https://auth.example.com",
        )
    if settings.issuer is None:
        yield Finding(
            "issuer.derived",
            "medium",
            "the issuer is derived, not configured",
            f"issuer is not set; the derived {settings.issuer_url} only works on this machine",
            "set issuer to the public https URL clients use",
        )


def _secrets(settings: Settings) -> Iterable[Finding]:
    if not settings.master_key_configured:
        yield Finding(
            "secrets.generated_master_key",
            "high",
            "the master key is the generated development key",
            f"secrets at rest are sealed under {settings.master_key_path}, generated next to "
            "the data it protects",
            "set secrets.master_key_file (e.g. /run/secrets/bastion-master-key) or "
            "secrets.master_key: env:BASTION_MASTER_KEY",
        )


def _api_keys(settings: Settings) -> Iterable[Finding]:
    if settings.api_keys.pepper is None:
        yield Finding(
            "api_keys.no_pepper",
            "low",
            "API key digests are not peppered",
            "api_keys.pepper is not set: a stolen database alone lets an attacker confirm a "
            "guessed or leaked key",
            "set api_keys.pepper: env:BASTION_API_KEY_PEPPER before issuing keys "
            "(changing it later invalidates existing keys)",
        )
    if settings.api_keys.leak_report_secret is None:
        yield Finding(
            "api_keys.no_leak_report_secret",
            "low",
            "leaked API keys cannot be reported",
            "api_keys.leak_report_secret is not set, so POST /api-keys/leaks does not exist "
            "and keys found by secret scanners are not revoked automatically",
            "set api_keys.leak_report_secret: env:BASTION_LEAK_REPORT_SECRET and register the "
            "endpoint with your secret scanner",
        )
    else:
        secret = settings.api_keys.leak_report_secret.get_secret_value()
        if _weak_secret(secret):
            yield Finding(
                "api_keys.weak_leak_report_secret",
                "medium",
                "the leak-report secret is guessable",
                "api_keys.leak_report_secret has few distinct characters, repeats a pattern or "
                "holds a placeholder word: whoever guesses it can revoke any key they find",
                "generate one with `openssl rand -hex 32`, set it in the scanner and in "
                "api_keys.leak_report_secret: env:BASTION_LEAK_REPORT_SECRET",
            )


_PLACEHOLDERS: Final = ("changeme", "password", "secret", "example", "12345")
_MIN_DISTINCT: Final = 10


def _weak_secret(secret: str) -> bool:
    # A random secret of 32+ characters (hex or base64) has well over ten distinct
    # characters and no period; typed ones tend to fail one of these.
    lowered = secret.lower()
    if len(set(lowered)) < _MIN_DISTINCT or any(word in lowered for word in _PLACEHOLDERS):
        return True
    size = len(secret)
    return any(
        size % period == 0 and secret == secret[:period] * (size // period)
        for period in range(1, size // 2 + 1)
    )


def _routes(settings: Settings) -> Iterable[Finding]:
    public = [route.name for route in settings.routes if route.public]
    if public:
        yield Finding(
            "routes.public",
            "info",
            "public routes",
            f"{len(public)} route(s) take requests without authentication: {', '.join(public)}",
            "check each is meant to be public; otherwise replace public: true with auth",
            tuple(public),
        )
    unlimited = [route.name for route in settings.routes if not route.limits]
    if unlimited:
        yield Finding(
            "routes.no_limits",
            "medium",
            "routes without rate limits",
            f"{len(unlimited)} route(s) have no rate limit, so one caller can exhaust the "
            f"upstream: {', '.join(unlimited)}",
            "add limits to each, e.g. limits: [{per: key, rate: 100/minute}, "
            "{per: ip, rate: 1000/minute}]",
            tuple(unlimited),
        )


def _broad_origin(origin: str) -> bool:
    return origin == "null" or "*" in origin or origin.startswith("http://")


def _cors(settings: Settings) -> Iterable[Finding]:
    wildcard: list[str] = []
    credentialed: list[str] = []
    for route in settings.routes:
        cors = route.cors
        if cors is None:
            continue
        # The settings refuse "*" and "null" at load; reported all the same (defence in depth).
        origins = cors.origins
        if any("*" in origin for origin in origins):
            wildcard.append(route.name)
        if cors.credentials and any(map(_broad_origin, origins)):
            credentialed.append(route.name)
    if wildcard:
        yield Finding(
            "cors.wildcard",
            "high",
            "CORS allows any origin",
            f"route(s) {', '.join(wildcard)} let scripts on any web site read responses",
            "list the exact origins, e.g. cors: {origins: [https://app.example.com]}",
            tuple(wildcard),
        )
    if credentialed:
        yield Finding(
            "cors.credentials_broad",
            "high",
            "CORS sends credentials to broad origins",
            f"route(s) {', '.join(credentialed)} allow credentials for a wildcard, 'null' or "
            "http:// origin, so a hostile or intercepted page can act as the signed-in user",
            "with credentials: true, list only exact https origins you control",
            tuple(credentialed),
        )


def _trusted_proxies(settings: Settings) -> Iterable[Finding]:
    broad = [
        str(network)
        for network in settings.trusted_proxies
        if network.prefixlen < _BROAD_PREFIX[4 if isinstance(network, IPv4Network) else 6]
    ]
    if broad:
        yield Finding(
            "trusted_proxies.too_broad",
            "high",
            "trusted_proxies trusts far too many addresses",
            f"trusted_proxies holds {', '.join(broad)}: any client in it can forge "
            "X-Forwarded-For and so choose the IP that rate limits and audit logs see",
            "list only your load balancers' addresses, e.g. 10.0.0.5 or 10.0.0.0/24",
            tuple(broad),
        )


def _tokens(settings: Settings) -> Iterable[Finding]:
    if settings.tokens.access_token_ttl > LONG_ACCESS_TOKEN_TTL:
        yield Finding(
            "tokens.long_ttl",
            "medium",
            "access tokens live long",
            f"tokens.access_token_ttl is {settings.tokens.access_token_ttl:g}s: a leaked "
            "token stays usable that long (JWTs cannot be recalled from every verifier)",
            "set tokens.access_token_ttl to 15m (900) or at most 1h, and use refresh tokens",
        )


def _signing_keys(settings: Settings) -> Iterable[Finding]:
    if settings.signing_keys.rotate_every is None:
        yield Finding(
            "signing_keys.no_rotation",
            "low",
            "signing keys are never rotated automatically",
            "signing_keys.rotate_every is not set: keys rotate only when someone runs "
            "`bastion signing-keys rotate`",
            "set signing_keys.rotate_every, e.g. 30d or 90d",
        )


def _demo(settings: Settings) -> Iterable[Finding]:
    if settings.demo.enabled:
        yield Finding(
            "demo.enabled",
            "high" if settings.env == "production" else "medium",
            "the demo echo route is enabled",
            "demo.enabled serves a public /demo route that echoes requests back",
            "set demo: false (and do not start with --demo) outside a laptop",
        )


#: Every configuration check, in report order.
CONFIG_CHECKS: Final[tuple[Callable[[Settings], Iterable[Finding]], ...]] = (
    _env,
    _tls,
    _issuer,
    _secrets,
    _api_keys,
    _routes,
    _cors,
    _trusted_proxies,
    _tokens,
    _signing_keys,
    _demo,
)


def check_settings(settings: Settings) -> list[Finding]:
    """Every configuration finding for ``settings`` (no I/O; never raises for valid settings)."""
    return [finding for check in CONFIG_CHECKS for finding in check(settings)]
