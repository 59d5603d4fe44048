"""What an API key may be: :class:`ApiKeySpec` and the checks of its members.

Names, scopes, lists and metadata are checked as for every credential
(:mod:`bastion.credentials.validation`); owners, routes, expiry, CIDRs and
rate limits are an API key's own. Every refusal is an
:class:`~bastion.apikeys.errors.ApiKeySpecError` naming the member and the fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bastion.apikeys.errors import ApiKeySpecError
from bastion.credentials.validation import (
    MAX_ITEMS,
    MAX_NAME,
    MAX_SCOPE_TOKEN,
    SpecChecks,
    storable,
)
from bastion.ratelimit.gcra import Limit
from bastion.storage.models import utcnow

__all__ = ["CHECKS", "UPDATABLE", "ApiKeySpec", "changed_values", "new_values"]

#: The shared checks, worded as API key answers have always been.
CHECKS: Final = SpecChecks(
    ApiKeySpecError,
    noun="key",
    name_rule=f"use at most {MAX_NAME} characters, no control characters",
    scope_rule="",
    text_rule="strings must be valid text without NUL characters",
)

#: The members :meth:`~bastion.apikeys.ApiKeyService.update` may change.
UPDATABLE: Final = frozenset(
    {
        "name",
        "scopes",
        "routes",
        "expires_at",
        "rate_limits",
        "ip_allow",
        "metadata",
        "disabled",
    }
)

_OWNER_TYPES: Final = ("user", "client")
_MAX_RATE_TEXT: Final = 40


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """What a new API key should be.

    ``owner_type`` (``user`` | ``client``) and ``owner_id`` go together or not
    at all. ``routes`` are gateway route names the key may call (empty: any
    route that accepts API keys). ``rate_limits`` are objects such as
    ``{"rate": "100/minute"}`` (optionally ``"burst": 10``). ``ip_allow`` are
    CIDRs or addresses (empty: any address). ``expires_at`` must be aware.
    """

    name: str
    owner_type: str | None = None
    owner_id: str | None = None
    scopes: Sequence[str] = ()
    routes: Sequence[str] = ()
    expires_at: datetime | None = None
    rate_limits: Sequence[Mapping[str, Any]] = ()
    ip_allow: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _check_routes(values: object) -> tuple[str, ...]:
    routes = CHECKS.string_list("routes", values)
    for route in routes:
        if not route or len(route) > MAX_SCOPE_TOKEN or not storable(route) or " " in route:
            CHECKS.fail(
                "routes",
                f"{route[:60]!r} is not a route name or audience "
                f"(1-{MAX_SCOPE_TOKEN} characters, no spaces or control characters)",
            )
    return routes


def _check_owner(owner_type: object, owner_id: object) -> tuple[str | None, str | None]:
    if owner_type is None and owner_id is None:
        return None, None
    if owner_type not in _OWNER_TYPES:
        CHECKS.fail("owner_type", "must be 'user' or 'client' (set with owner_id)")
    if not isinstance(owner_id, str) or not owner_id or len(owner_id) > MAX_NAME:
        CHECKS.fail("owner_id", "name the owning user or client (with owner_type)")
    if not storable(owner_id):
        CHECKS.fail("owner_id", "must not contain control characters")
    return str(owner_type), owner_id


def _check_expiry(expires_at: object, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
        CHECKS.fail("expires_at", "must be a timezone-aware date and time")
    if expires_at <= now:
        CHECKS.fail("expires_at", "must be in the future")
    return expires_at.astimezone(UTC)


def _check_networks(values: object) -> tuple[str, ...]:
    out: list[str] = []
    for item in CHECKS.string_list("ip_allow", values):
        try:
            network = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise CHECKS.error(
                "ip_allow", f"{item[:60]!r} is not an IP address or CIDR (e.g. 203.0.113.0/24)"
            ) from None
        text = str(network)
        if text not in out:
            out.append(text)
    return tuple(out)


def _check_rate_limits(values: object) -> tuple[dict[str, Any], ...]:
    shape = 'must be a list of objects like {"rate": "100/minute"}'
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        CHECKS.fail("rate_limits", shape)
    items = list(values)
    if len(items) > MAX_ITEMS:
        CHECKS.fail("rate_limits", f"at most {MAX_ITEMS} entries are allowed")
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, Mapping):
            CHECKS.fail("rate_limits", shape)
        limit = dict(item)
        rate = limit.get("rate")
        if not isinstance(rate, str) or len(rate) > _MAX_RATE_TEXT:
            CHECKS.fail(
                "rate_limits",
                f"rate {str(rate)[:40]!r} must read N/second, N/minute, N/hour or N/day",
            )
        try:
            Limit.parse(rate)  # the one home of the rate grammar (10/min, 5/s … accepted)
        except ValueError as error:
            raise CHECKS.error("rate_limits", str(error)) from None
        burst = limit.get("burst")
        if burst is not None and (
            isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 10**9
        ):
            CHECKS.fail("rate_limits", "burst must be a whole number >= 1")
        CHECKS.json_value("rate_limits", limit)
        out.append(limit)
    return tuple(out)


def new_values(spec: ApiKeySpec, now: datetime) -> dict[str, Any]:
    """The checked, normalised members of a new key made from ``spec`` at ``now``.

    Raises:
        ApiKeySpecError: a member is invalid (the error names it and the fix).
    """
    owner_type, owner_id = _check_owner(spec.owner_type, spec.owner_id)
    return {
        "name": CHECKS.name(spec.name),
        "owner_type": owner_type,
        "owner_id": owner_id,
        "scopes": CHECKS.scopes(spec.scopes),
        "routes": _check_routes(spec.routes),
        "expires_at": _check_expiry(spec.expires_at, now),
        "rate_limits": _check_rate_limits(spec.rate_limits),
        "ip_allow": _check_networks(spec.ip_allow),
        "metadata": CHECKS.metadata(spec.metadata),
    }


def changed_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The checked, normalised ``changes`` of a stored key (members of :data:`UPDATABLE`).

    ``expires_at`` ``None`` removes the expiry; ``disabled`` must be a bool.

    Raises:
        ApiKeySpecError: an unknown member or an invalid value.
    """
    unknown = sorted(set(changes) - UPDATABLE)
    if unknown:
        CHECKS.fail(unknown[0], f"cannot be changed; updatable: {', '.join(sorted(UPDATABLE))}")
    checks: dict[str, Any] = {
        "name": CHECKS.name,
        "scopes": CHECKS.scopes,
        "routes": _check_routes,
        "rate_limits": _check_rate_limits,
        "ip_allow": _check_networks,
        "metadata": CHECKS.metadata,
    }
    delta: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "expires_at":
            delta[name] = _check_expiry(value, utcnow())
        elif name == "disabled":
            if not isinstance(value, bool):
                CHECKS.fail("disabled", "must be true or false")
            delta[name] = value
        else:
            delta[name] = checks[name](value)
    return delta
