"""The gateway-wide sections every route shares: what goes upstream (``identity_headers``),
how ``/auth/verify`` reads the original request (``forward_auth``) and the request
bounds (``request_limits``). The routes themselves: :mod:`bastion.settings.routes`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from bastion.settings._values import Loc, Problems, show
from bastion.settings.fields import (
    _HEADER_NAME,
    _RESERVED_HEADERS,
    ByteSize,
    _duration,
    _not_bool,
    _Section,
)


class AssertionSettings(_Section):
    """The signed identity assertion (a JWT) bastion sends upstream with each request."""

    enabled: bool = False
    ttl: Annotated[float, BeforeValidator(_duration), Field(ge=1, le=60)] = 30.0
    header: str = "X-Bastion-Assertion"

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        return _identity_header(value)


def _identity_header(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(
            f"{show(value)} is not a header name — use letters, digits and '-', "
            "e.g. X-Bastion-Subject"
        )
    lower = value.lower()
    if (
        lower in _RESERVED_HEADERS
        or lower == "authorization"
        or lower.startswith(("x-forwarded-", "proxy-"))
    ):
        raise ValueError(
            f"{show(value)} is a header the HTTP layer or the gateway controls — "
            "use a header of your own, e.g. X-Bastion-Subject"
        )
    return value


class IdentityHeaderSettings(_Section):
    """What the ``mutate`` step sends upstream: header names, extra headers to strip, assertion.

    Every client-sent header with one of these names (and every ``X-Bastion-*``)
    is stripped before bastion adds its own.
    """

    subject: str = "X-Bastion-Subject"
    client: str = "X-Bastion-Client"
    scopes: str = "X-Bastion-Scopes"
    key_id: str = "X-Bastion-Key-Id"
    request_id: str = "X-Bastion-Request-Id"
    # A browser session's user (``session`` routes): their email, and roles space-separated.
    email: str = "X-Bastion-Email"
    roles: str = "X-Bastion-Roles"
    # Added to the built-in list of commonly trusted identity headers (X-User-Id, …).
    strip: list[str] = Field(default_factory=list)
    assertion: AssertionSettings = Field(default_factory=AssertionSettings)

    @field_validator("subject", "client", "scopes", "key_id", "request_id", "email", "roles")
    @classmethod
    def _check_names(cls, value: str) -> str:
        return _identity_header(value)

    @field_validator("strip")
    @classmethod
    def _check_strip(cls, value: list[str]) -> list[str]:
        problems: list[tuple[Loc, str]] = [
            ((index,), f"{show(name)} is not a header name — use letters, digits and '-'")
            for index, name in enumerate(value)
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name)
        ]
        if problems:
            raise Problems(problems)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> IdentityHeaderSettings:
        names = [
            self.subject,
            self.client,
            self.scopes,
            self.key_id,
            self.request_id,
            self.email,
            self.roles,
        ]
        if self.assertion.enabled:
            names.append(self.assertion.header)
        lowered = [n.lower() for n in names]
        if len(set(lowered)) != len(lowered):
            raise ValueError(
                "two identity headers share a name — give subject, client, scopes, key_id, "
                "request_id, email, roles and assertion.header distinct names"
            )
        return self


class ForwardAuthSettings(_Section):
    """The forward-auth endpoint ``/auth/verify`` (answered by the native core).

    ``headers`` names the one header family the proxy in front says the original
    request in: ``nginx`` (``X-Original-Method`` / ``X-Original-URI``, set by the
    shipped nginx example) or ``forwarded`` (``X-Forwarded-Method`` /
    ``X-Forwarded-Uri``: Caddy ``forward_auth``, Traefik ``forwardAuth``). A
    decision request that carries the other family as well is refused (400):
    the proxies pass the client's own headers through, so the other family is
    what a client would forge.
    """

    headers: Literal["nginx", "forwarded"] = "nginx"


class RequestLimitSettings(_Section):
    """Bounds on every gateway request: body size (default for routes) and header size."""

    max_body: ByteSize = 10 * 1000**2
    max_header_bytes: ByteSize = 32 * 1024
    max_headers: Annotated[int, BeforeValidator(_not_bool), Field(ge=16, le=1000)] = 100
