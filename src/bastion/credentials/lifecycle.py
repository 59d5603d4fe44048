"""Recording who changed a credential: one audit event per change, whichever door it came through.

An operation (:mod:`bastion.apikeys.operations`, :mod:`bastion.oauth.operations`)
tells its :class:`ChangeRecorder` what it changed; the door decides where the
event goes and what it knows of the request. The CLI collects the events and
writes them after the command succeeded (``cli/context.py``); the admin API
emits them on the runtime's audit bus with the request id and the client's
address (``http/endpoints/admin/recording.py``). The event shapes are
:mod:`bastion.audit.lifecycle`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bastion.audit.events import Event
from bastion.audit.lifecycle import (
    api_key_changed,
    client_changed,
    consent_revoked,
    signing_key_changed,
    user_changed,
)

__all__ = ["ChangeRecorder", "Sink", "collect"]

#: ``sink(build, *args, **kw)``: make the event with ``build(*args, **kw)`` (adding what
#: the door knows, e.g. ``request_id`` and ``ip``) and send it on.
Sink = Callable[..., None]


def collect(events: list[Event]) -> Sink:
    """A sink that appends each event to ``events`` (to be written later)."""

    def sink(build: Callable[..., Event], *args: Any, **kw: Any) -> None:
        events.append(build(*args, **kw))

    return sink


class ChangeRecorder:
    """``actor`` changed a credential: one lifecycle event to ``sink`` per change.

    ``fields`` name what changed, never a value (a secret cannot leak through them).
    """

    def __init__(self, actor: str, sink: Sink) -> None:
        self.actor = actor
        self._sink = sink

    def client(self, action: str, client_id: str, fields: Iterable[str] = ()) -> None:
        """A ``client.changed`` event (created, updated, secret_rotated, disabled, enabled,
        deleted)."""
        self._sink(client_changed, self.actor, action, client_id, fields)

    def api_key(
        self, action: str, key_id: str, fields: Iterable[str] = (), *, successor: str | None = None
    ) -> None:
        """An ``api_key.changed`` event (created, updated, rotated — with the ``successor``'s
        id —, revoked, disabled, enabled, deleted)."""
        extra = {} if successor is None else {"successor": successor}
        self._sink(api_key_changed, self.actor, action, key_id, fields, **extra)

    def signing_key(self, action: str, kid: str, fields: Iterable[str] = ()) -> None:
        """A ``signing_key.changed`` event (rotated: a new key, ``kid`` its kid; retired)."""
        self._sink(signing_key_changed, self.actor, action, kid, fields)

    def consent_revoked(
        self, user_id: str, client_id: str, scopes: Iterable[str], refresh_tokens: int
    ) -> None:
        """A ``consent.revoked`` event: every consent of the user to the client taken back."""
        self._sink(consent_revoked, self.actor, user_id, client_id, scopes, refresh_tokens)

    def user(self, action: str, user_id: str, fields: Iterable[str] = ()) -> None:
        """A ``user.changed`` event (created, disabled, enabled, password_reset, deleted)."""
        self._sink(user_changed, self.actor, action, user_id, fields)
