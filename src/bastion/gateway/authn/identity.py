"""Who a gateway request acts for: the result of the ``authenticate`` step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.ratelimit.gcra import Limit

__all__ = ["ANONYMOUS", "Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts for, as established by the ``authenticate`` step.

    ``method`` names the authenticator that vouched (``"public"`` for the
    anonymous identity of a public route); ``subject`` is ``None`` only then.
    ``key_id`` is the API key's id when one vouched; ``routes`` restricts
    which route names the credential may call (``None``: no restriction),
    enforced by the ``authorize`` step like ``scopes``. ``key_limits`` are
    the API key's own rate limits (enforced by the ``limit`` step unless an
    operator override replaces them).
    """

    method: str
    subject: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    key_id: str | None = None
    routes: frozenset[str] | None = None
    key_limits: tuple[Limit, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.subject is None


ANONYMOUS = Identity(method="public")
