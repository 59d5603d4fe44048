"""The ``upstream`` section of a native route: where the request goes and what it carries there.

What the native proxy (``native/src/upstream/``) and the native ``mutate`` step
(``native/src/mutate.rs``) need, computed here by the same Python code the
Python gateway runs, so both planes agree by construction:

- ``targets``: every upstream URL parsed by :func:`~bastion.gateway.matcher.parse_upstream`
  (scheme, host, port, base path, the ``Host`` header to send) plus ``key``, the
  pool and health key (the Python client's ``(scheme, host, port, tls_profile)``);
- ``base_path`` (the first target's, for every target: ``CompiledRoute.upstream_path``)
  and ``strip_prefix`` (the normalised ``match.path`` to cut, or ``None``);
- ``timeout`` / ``connect_timeout`` / ``read_timeout`` in seconds, ``health``
  (the passive health policy) and ``pool`` (the idle keep-alive connections kept
  per target and for how long: the Python proxy's defaults, 64 and 30 s);
- ``tls``: ``{"ca", "client_cert", "client_key"}`` paths or ``None`` for https targets
  (``ca`` ``None``: the system trust store; the client certificate for upstream mTLS);
- ``mutate``: bastion's identity header names (lower-case) and ``strip``, every
  header name (lower-case, ``_`` read as ``-``) stripped from the client's request,
  exactly :attr:`~bastion.gateway.mutate.IdentityHeaders.strip`; and ``assertion``,
  ``None`` or the signed identity assertion's ``header`` (lower-case), ``issuer``,
  ``audience`` (the route's ``assertion_audience``, else ``str(route.upstream)``, as
  the Python ``mutate`` step) and ``ttl`` (whole seconds, as ``AssertionSigner``).
  The native core signs it with the current key ``native_push.assertion_key`` pushes.

Every route's upstream is native (a WebSocket route's too: ``native/src/websocket.rs``).
"""

from __future__ import annotations

from typing import Any

from bastion.crypto import SigningKeyPair
from bastion.gateway.assertion import AssertionSigner
from bastion.gateway.errors import BadRequestPathError, GatewayConfigError
from bastion.gateway.matcher import parse_upstream
from bastion.gateway.mutate import DEFAULT_STRIPPED_HEADERS, IdentityHeaders
from bastion.gateway.paths import normalize_path
from bastion.settings import RouteSettings, Settings

__all__ = ["POOL_IDLE_TIMEOUT", "POOL_MAX_IDLE", "section"]

#: Idle keep-alive connections kept per target (``UpstreamClient(pool_size=...)``'s default).
POOL_MAX_IDLE = 64
#: Seconds an idle pooled connection is kept (``UpstreamClient(idle_timeout=...)``'s default).
POOL_IDLE_TIMEOUT = 30.0


def section(route: RouteSettings, settings: Settings) -> dict[str, Any] | list[Any]:
    """The JSON section for ``route``.

    Raises :class:`GatewayConfigError` for an upstream URL the Python gateway
    refuses too (settings validation normally catches it first).
    """
    targets = [parse_upstream(url, route=route.name) for url in route.upstreams]
    ca = route.upstream_ca
    cert = route.upstream_client_cert
    key = route.upstream_client_key
    # UpstreamClient's pool key: routes with their own TLS context pool apart.
    profile = f"{route.name}:{ca}:{cert}" if ca is not None or cert is not None else ""
    out_targets = []
    for target in targets:
        tls_profile = profile if target.scheme == "https" else ""
        host = f"[{target.host}]" if ":" in target.host else target.host
        out_targets.append(
            {
                "scheme": target.scheme,
                "host": target.host,
                "port": target.port,
                "base_path": target.base_path,
                "host_header": target.host_header.decode("ascii"),
                "key": f"{target.scheme}://{host}:{target.port}|{tls_profile}",
            }
        )
    return {
        "targets": out_targets,
        "base_path": targets[0].base_path,
        "strip_prefix": _strip_prefix(route),
        "timeout": float(route.timeout),
        "connect_timeout": float(route.connect_timeout),
        "read_timeout": float(route.read_timeout),
        "health": {
            "failures": int(route.health.failures),
            "cooldown": float(route.health.cooldown),
            "max_cooldown": float(route.health.max_cooldown),
        },
        "pool": {"max_idle": POOL_MAX_IDLE, "idle_timeout": POOL_IDLE_TIMEOUT},
        "tls": {
            "ca": str(ca) if ca is not None else None,
            "client_cert": str(cert) if cert is not None and key is not None else None,
            "client_key": str(key) if cert is not None and key is not None else None,
        },
        "mutate": _mutate(route, settings),
    }


def _strip_prefix(route: RouteSettings) -> str | None:
    """The normalised prefix ``CompiledRoute.upstream_path`` cuts, or None."""
    if not route.strip_prefix:
        return None
    try:
        prefix = normalize_path(route.match.path.encode("utf-8"))
    except BadRequestPathError as exc:
        raise GatewayConfigError(
            f"routes[{route.name}].match.path {route.match.path!r} is invalid: {exc.detail}"
        ) from None
    if prefix != "/":
        prefix = prefix.rstrip("/")
    return None if prefix == "/" else prefix


def _no_key() -> SigningKeyPair:
    raise RuntimeError("the route compiler never signs")  # pragma: no cover


def _mutate(route: RouteSettings, settings: Settings) -> dict[str, Any]:
    config = settings.identity_headers
    assertion = config.assertion
    signer = (
        AssertionSigner(
            _no_key, issuer=settings.issuer_url, ttl=assertion.ttl, header=assertion.header
        )
        if assertion.enabled
        else None
    )
    # The Python step's own constructor: one home for name checks and the strip set.
    rules = IdentityHeaders(
        # A renamed email / roles header is stripped from the client like every x-bastion-*.
        (*DEFAULT_STRIPPED_HEADERS, *config.strip, config.email, config.roles),
        names={
            "subject": config.subject,
            "client": config.client,
            "scopes": config.scopes,
            "key_id": config.key_id,
            "request_id": config.request_id,
        },
        assertion=signer,
    )
    return {
        "headers": {
            "subject": rules.subject.decode("ascii"),
            "client": rules.client.decode("ascii"),
            "scopes": rules.scopes.decode("ascii"),
            "key_id": rules.key_id.decode("ascii"),
            "request_id": rules.request_id.decode("ascii"),
            "email": config.email.lower(),
            "roles": config.roles.lower(),
        },
        "strip": sorted(name.decode("ascii") for name in rules.strip),
        "assertion": None
        if signer is None
        else {
            "header": rules.assertion_header.decode("ascii"),
            "issuer": signer.issuer,
            # mutate(): the same expression, so both planes agree on the audience.
            "audience": route.assertion_audience or str(route.upstream),
            "ttl": int(signer.ttl),
        },
    }
