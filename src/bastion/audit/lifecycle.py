"""Lifecycle audit events: who created, changed, rotated or revoked a client or key.

One builder per event type of the catalogue (:class:`~bastion.audit.events.EventTypes`)
so the admin API, the CLI and the leak endpoint record the same shape::

    Event(type="client.changed", outcome="success", subject=<actor>, client_id=<id>,
          data={"action": "secret_rotated", "actor": <actor>, "target": <id>,
                "fields": ["client_secret"]})

``fields`` names what changed — never a value, so a secret can never leak
through it. ``actor`` is the admin token's subject (``admin:<sub>``), the
operating-system user of a CLI command (``cli:<user>``), or the component that
acted on its own (``leak-report``).
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Iterable, Mapping
from typing import Any, Final

from bastion.audit.events import Event, EventTypes

__all__ = [
    "LEAK_REPORT_ACTOR",
    "admin_actor",
    "api_key_changed",
    "api_key_leaked",
    "cli_actor",
    "client_changed",
    "signing_key_changed",
    "spec_fields",
    "user_changed",
]

#: The actor of revocations made by the leak-report endpoint.
LEAK_REPORT_ACTOR: Final = "leak-report"


def cli_actor() -> str:
    """``cli:<operating-system user>`` for events recorded by a ``bastion`` command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (containers)
        user = "unknown"
    return f"cli:{user}"


def admin_actor(claims: Mapping[str, Any]) -> str:
    """``admin:<sub>`` (else ``admin:<client_id>``) of a verified admin API token's claims."""
    for name in ("sub", "client_id"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return f"admin:{value[:200]}"
    return "admin:unknown"


def spec_fields(spec: Any) -> list[str]:
    """The names of the members of a dataclass ``spec`` that differ from their defaults."""
    names: list[str] = []
    for field in dataclasses.fields(spec):
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            names.append(field.name)
            continue
        value = getattr(spec, field.name)
        # [] and () (or None and "") both mean "not given": callers build specs either way.
        if value != default and (value or default):
            names.append(field.name)
    return names


def _data(actor: str, action: str, target: str, fields: Iterable[str]) -> dict[str, Any]:
    return {"action": action, "actor": actor, "target": target, "fields": sorted(set(fields))}


def client_changed(
    actor: str,
    action: str,
    client_id: str,
    fields: Iterable[str] = (),
    *,
    request_id: str | None = None,
    ip: str | None = None,
) -> Event:
    """A ``client.changed`` event (action: created, updated, secret_rotated, disabled,
    enabled, deleted)."""
    data = _data(actor, action, client_id, fields)
    return _changed(
        EventTypes.CLIENT_CHANGED, actor, data, client_id=client_id, request_id=request_id, ip=ip
    )


def api_key_changed(
    actor: str,
    action: str,
    key_id: str,
    fields: Iterable[str] = (),
    *,
    successor: str | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> Event:
    """An ``api_key.changed`` event (action: created, updated, rotated, revoked, disabled,
    enabled, deleted); ``successor`` is the new key's id for ``rotated``."""
    data = _data(actor, action, key_id, fields)
    if successor is not None:
        data["successor"] = successor
    return _changed(
        EventTypes.KEY_CHANGED, actor, data, key_id=key_id, request_id=request_id, ip=ip
    )


def signing_key_changed(actor: str, action: str, kid: str, fields: Iterable[str] = ()) -> Event:
    """A ``signing_key.changed`` event (action: rotated — a new key, ``target`` its kid —
    or retired)."""
    return _changed(EventTypes.SIGNING_KEY_CHANGED, actor, _data(actor, action, kid, fields))


def _changed(
    type: str,
    actor: str,
    data: dict[str, Any],
    *,
    client_id: str | None = None,
    key_id: str | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> Event:
    """A successful ``<credential>.changed`` event: the actor is its subject."""
    return Event(
        type=type,
        outcome="success",
        subject=actor,
        client_id=client_id,
        key_id=key_id,
        request_id=request_id,
        ip=ip,
        data=data,
    )


def api_key_leaked(
    key_id: str,
    prefix: str | None,
    status: str,
    *,
    source: str | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> Event:
    """An ``api_key.leaked`` event for a reported key that is ours: ``status`` is
    ``revoked`` (now) or ``already_revoked``. Carries the key id and its display
    prefix, never the reported key."""
    return Event(
        type=EventTypes.KEY_LEAKED,
        outcome="success",
        reason=status,
        subject=LEAK_REPORT_ACTOR,
        key_id=key_id,
        request_id=request_id,
        ip=ip,
        data={
            "action": "revoked",
            "actor": LEAK_REPORT_ACTOR,
            "target": key_id,
            "prefix": prefix,
            "status": status,
            "source": (source or "unspecified")[:100],
        },
    )


def user_changed(
    actor: str,
    action: str,
    user_id: str,
    fields: Iterable[str] = (),
    *,
    request_id: str | None = None,
    ip: str | None = None,
) -> Event:
    """A ``user.changed`` event (action: created, disabled, enabled, password_reset — by an
    operator —, password_changed — by the user —, deleted); ``target`` is the user's id (the
    username is personal data: not logged)."""
    return Event(
        type=EventTypes.USER_CHANGED,
        outcome="success",
        subject=actor,
        request_id=request_id,
        ip=ip,
        data=_data(actor, action, user_id, fields),
    )
